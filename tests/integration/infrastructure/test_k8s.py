"""infrastructure/k8s, checked without a cluster: each overlay rendered by kustomize, every object
validated against the Kubernetes API schemas of a named version, and the invariants the compose
files already hold (same image, commands, settings and secret files; the prod hardening; the
Ingress routes equal to nginx's) asserted on what `kubectl apply -k` would send.

kustomize comes from infrastructure/ci/k8s-tools.sh (scripts/test exports its path as
MLOPS_KUSTOMIZE); without it these tests fail, never skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions, major_minor

from tests.support.paths import REPO

ROOT = REPO
K8S = ROOT / "infrastructure" / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.33"
"""The Kubernetes minor the manifests are validated for (docs/kubernetes.md)."""

IMAGE_UID = 10001
SECRETS_DIR = "/run/secrets"

# What the compose stack has that is not deployed on Kubernetes, and why (docs/kubernetes.md)
NOT_ON_KUBERNETES_ROUTES = {
    "/jupyter/": "JupyterLab is compose's profile `notebooks`",
    "/prometheus/": "Prometheus is compose's profile `observability`; a cluster has its own",
}
NOT_ON_KUBERNETES_SECRETS = {
    "postgres_password": "PostgreSQL is external",
    "backup_postgres_password": "the backup service: the managed database's backups instead",
    "jupyter_token": "JupyterLab is not deployed",
}
# compose's nginx secrets, which the Ingress uses (TLS and the UIs' login)
INGRESS_SECRETS = {"tls_cert", "tls_key", "htpasswd"}
# secret files only Kubernetes has: compose's Redis is on its private network without a
# password, and compose keeps MLflow's artifacts on a volume
KUBERNETES_ONLY_SECRETS = {"redis_url", "aws_access_key_id", "aws_secret_access_key"}
# compose settings whose value differs on Kubernetes, and why
KUBERNETES_SETTINGS = {
    "MLOPS_REDIS_URL": "external: MLOPS_REDIS_URL_FILE",
    "MLOPS_MONITORING_DB_URL": "external: MLOPS_MONITORING_DB_URL_FILE",
    "MLOPS_DASHBOARD_API_URL": "every replica: the headless Service api-replicas",
    "MLOPS_DASHBOARD_PROMETHEUS_URL": "the cluster's Prometheus, set by the operator",
    "MLOPS_DASHBOARD_JUPYTER_URL": "JupyterLab is not deployed",
    "MLFLOW_BACKEND_STORE_URI": "external: MLFLOW_BACKEND_STORE_URI_FILE",
    "PREFECT_SERVER_DATABASE_CONNECTION_URL": "external: ..._CONNECTION_URL_FILE",
    "MLFLOW_SERVER_ALLOWED_HOSTS": "the cluster's host names",
    "MLOPS_API_WORKERS": "1 per pod, as the prod compose: replicas are the parallelism",
}
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY|CREDENTIAL|PASSWD", re.IGNORECASE)
URL_WITH_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.IGNORECASE)


class ComposeLoader(yaml.SafeLoader):
    """Compose's YAML: its merge tags (!reset, !override) read as plain values."""


ComposeLoader.add_constructor("!reset", lambda loader, node: None)
ComposeLoader.add_constructor(
    "!override",
    lambda loader, node: (
        loader.construct_sequence(node)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_scalar(node)  # type: ignore[arg-type]
    ),
)


def compose(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)  # noqa: S506
    return data


def compose_default(value: str) -> str:
    """``${X:-default}`` as compose renders it with nothing set."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def kustomize() -> str:
    """The kustomize binary: MLOPS_KUSTOMIZE (scripts/test), else one on PATH."""
    path = os.environ.get("MLOPS_KUSTOMIZE") or shutil.which("kustomize")
    if not path:
        pytest.fail("no kustomize: run `bash infrastructure/ci/k8s-tools.sh` (scripts/test does)")
    return path


_rendered: dict[str, list[dict[str, Any]]] = {}


def render(overlay: str) -> list[dict[str, Any]]:
    """`kustomize build` of an overlay, once per test session."""
    if overlay not in _rendered:
        built = subprocess.run(
            [kustomize(), "build", str(K8S / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert built.returncode == 0, built.stderr
        _rendered[overlay] = [d for d in yaml.safe_load_all(built.stdout) if d]
    return _rendered[overlay]


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: d["spec"]["template"]["spec"] for name, d in of_kind(objects, "Deployment").items()
    }


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def main_container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in spec["containers"] if c["name"] == name]
    assert len(found) == 1, f"{name}: no container named as its Deployment"
    return found[0]


def environment(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """A container's environment: its ConfigMaps' entries, then its literals."""
    maps = of_kind(objects, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]]["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def secret_files(spec: dict[str, Any], container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Files a container sees under /run/secrets: {file name: (Secret, key)}."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    files: dict[str, tuple[str, str]] = {}
    for mount in container.get("volumeMounts", []):
        if mount["mountPath"] != SECRETS_DIR:
            continue
        assert mount.get("readOnly") is True
        volume = volumes[mount["name"]]
        sources = (
            [volume["secret"] | {"name": volume["secret"]["secretName"]}]
            if "secret" in volume
            else [s["secret"] for s in volume["projected"]["sources"]]
        )
        for source in sources:
            for item in source["items"]:
                files[item["path"]] = (source["name"], item["key"])
    return files


def test_every_object_validates_against_the_kubernetes_schemas(overlay):
    assert KUBERNETES_VERSION in {major_minor(v) for v in all_versions()}
    objects = render(overlay)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "Ingress", "ConfigMap", "HorizontalPodAutoscaler"} <= kinds
    assert {"PodDisruptionBudget", "Namespace"} <= kinds
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {name}: {exc.message} at {list(exc.path)}")


def test_the_stacks_services_are_deployments(overlay):
    deployed = set(of_kind(render(overlay), "Deployment"))
    assert deployed == {"api", "worker", "mlflow", "prefect-server", "dashboard"}
    # compose's service names: the same URLs reach them (MLOPS_TRACKING_URI, ...); nothing
    # connects to the worker
    assert deployed - {"worker"} <= set(of_kind(render(overlay), "Service"))
    assert deployed <= set(compose("docker-compose.yml")["services"])


def test_every_container_runs_as_the_images_user_read_only_without_capabilities(overlay):
    dockerfile = (ROOT / "infrastructure" / "Dockerfile").read_text()
    assert f"useradd --system --uid {IMAGE_UID} " in dockerfile
    for name, spec in pod_specs(render(overlay)).items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == IMAGE_UID, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec.get("automountServiceAccountToken") is False, name
        assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True, name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(spec):
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security.get("runAsNonRoot", pod["runAsNonRoot"]) is True, where
            assert security.get("runAsUser", pod["runAsUser"]) == IMAGE_UID, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security.get("privileged") is not True, where
            # docker-compose.prod.yml's tmpfs: /tmp writable, in memory
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1, where
            assert volumes[tmp[0]["name"]]["emptyDir"]["medium"] == "Memory", where


def test_limits_are_the_prod_composes_and_requests_fit_under_them(overlay):
    services = compose("docker-compose.prod.yml")["services"]
    quantity = {"g": "Gi", "m": "Mi"}
    for name, spec in pod_specs(render(overlay)).items():
        limits = services[name]["deploy"]["resources"]["limits"]
        resources = main_container(spec, name)["resources"]
        memory = re.fullmatch(r"(\d+)([gm])", limits["memory"])
        assert memory, limits
        assert resources["limits"]["memory"] == memory[1] + quantity[memory[2]], name
        assert float(resources["limits"]["cpu"]) == float(limits["cpus"]), name
        assert {"cpu", "memory"} <= set(resources["requests"]), name


def test_every_deployment_has_readiness_and_liveness_probes(overlay):
    for name, spec in pod_specs(render(overlay)).items():
        container = main_container(spec, name)
        for probe in ("readinessProbe", "livenessProbe"):
            assert probe in container, f"{name}: no {probe}"
    api = main_container(pod_specs(render(overlay))["api"], "api")
    port = api["ports"][0]["name"]
    assert api["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port}
    assert api["livenessProbe"]["httpGet"] == {"path": "/health", "port": port}


def test_no_secret_in_a_configmap_or_an_env_literal(overlay):
    objects = render(overlay)
    literals: list[tuple[str, str, str]] = []
    for name, config in of_kind(objects, "ConfigMap").items():
        literals += [(f"ConfigMap/{name}", k, v) for k, v in config.get("data", {}).items()]
    for name, spec in pod_specs(objects).items():
        for container in containers(spec):
            where = f"{name}/{container['name']}"
            literals += [
                (where, e["name"], e["value"]) for e in container.get("env", []) if "value" in e
            ]
            literals += [(where, "args", a) for a in container.get("args", [])]
            literals += [(where, "command", a) for a in container.get("command", [])]
    assert literals
    for where, key, value in literals:
        assert not URL_WITH_CREDENTIALS.search(value), f"{where}: {key} has a URL with credentials"
        assert "mlops-dev-only" not in value, f"{where}: {key} has the development password"
        if SECRET_NAME.search(key):
            # a secret's name may only point at its file
            assert key.endswith("_FILE") and value.startswith(f"{SECRETS_DIR}/"), (where, key)


def test_every_image_is_compose_s_pinned_tag(overlay):
    # docker-compose.yml's image of every Python service: ${MLOPS_IMAGE:-mlops-stack:<tag>}
    image = compose_default(compose("docker-compose.yml")["x-python-image"]["image"])
    assert re.fullmatch(r"mlops-stack:\d+\.\d+\.\d+", image), image
    for name, spec in pod_specs(render(overlay)).items():
        for container in containers(spec):
            assert container["image"] == image, f"{name}: {container['image']}"
            reference = container["image"].rsplit("/", 1)[-1]
            assert ":" in reference and not reference.endswith(":latest"), container["image"]


def test_commands_are_the_composes(overlay):
    services = compose("docker-compose.yml")["services"]
    for name, spec in pod_specs(render(overlay)).items():
        container = main_container(spec, name)
        assert "command" not in container, f"{name}: the image's entrypoint must run (secrets)"
        args = container["args"]
        expected = services[name]["command"]
        # the one difference: where MLflow keeps artifacts (a ConfigMap entry here)
        pattern = re.compile(r"--artifacts-destination=.*")
        assert [pattern.sub("--artifacts-destination", a) for a in args] == [
            pattern.sub("--artifacts-destination", a) for a in expected
        ], name


def test_settings_are_the_composes(overlay):
    objects = render(overlay)
    dev = compose("docker-compose.yml")["services"]
    for name, spec in pod_specs(objects).items():
        env = environment(objects, main_container(spec, name))
        for key, value in dev[name].get("environment", {}).items():
            if key in KUBERNETES_SETTINGS:
                continue
            assert env.get(key) == compose_default(str(value)), f"{name}: {key}"
    production = {
        name: environment(objects, main_container(spec, name)).get("MLOPS_ENVIRONMENT")
        for name, spec in pod_specs(objects).items()
    }
    expected = "production" if overlay == "prod" else None
    assert set(production.values()) == {expected}, production


def test_secret_files_are_the_prod_composes():
    objects = render("prod")
    prod = compose("docker-compose.prod.yml")
    accounted: set[str] = set()
    for name, spec in pod_specs(objects).items():
        container = main_container(spec, name)
        files = secret_files(spec, container)
        wanted = set(prod["services"][name].get("secrets", []))
        assert set(files) - KUBERNETES_ONLY_SECRETS == wanted, name
        # each file has the key of its name, in the Secrets docs/kubernetes.md creates
        assert all(key == file for file, (_, key) in files.items()), files
        assert {secret for secret, _ in files.values()} <= {"mlops-stack-secrets", "mlops-stack-s3"}
        # each *_FILE variable names a mounted file, and compose's are here with their paths
        pointers = {e["name"]: e["value"] for e in container["env"] if e["name"].endswith("_FILE")}
        assert {Path(p).name for p in pointers.values()} == set(files), name
        composes = prod["services"][name].get("environment", {})
        assert {
            k: v for k, v in composes.items() if k.endswith("_FILE")
        }.items() <= pointers.items()
        accounted |= set(files)
    ingresses = of_kind(objects, "Ingress")
    assert {i["spec"]["tls"][0]["secretName"] for i in ingresses.values()} == {"mlops-stack-tls"}
    for ingress in ingresses.values():  # HTTPS for every host a route answers on
        hosts = {rule.get("host") for rule in ingress["spec"]["rules"]}
        assert None not in hosts and hosts <= set(ingress["spec"]["tls"][0]["hosts"])
    logins = {
        name: i["metadata"]["annotations"].get("nginx.ingress.kubernetes.io/auth-secret")
        for name, i in ingresses.items()
    }
    ui = "mlops-stack-htpasswd"
    assert logins == {"api": None, "mlflow": ui, "prefect": ui, "dashboard": ui}
    accounted |= INGRESS_SECRETS
    # every secret file of the prod compose is mounted, used by the Ingress, or not needed here
    assert accounted - KUBERNETES_ONLY_SECRETS | set(NOT_ON_KUBERNETES_SECRETS) == set(
        prod["secrets"]
    )


def test_mlflow_artifacts_on_s3_in_prod_and_on_a_volume_in_dev():
    for overlay, destination in (("prod", "s3://"), ("dev", "/artifacts")):
        objects = render(overlay)
        spec = pod_specs(objects)["mlflow"]
        container = main_container(spec, "mlflow")
        env = environment(objects, container)
        assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith(destination), overlay
        assert "--artifacts-destination=$(MLFLOW_ARTIFACTS_DESTINATION)" in container["args"]
        s3 = {"aws_access_key_id", "aws_secret_access_key"}
        files = set(secret_files(spec, container))
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        if overlay == "prod":
            assert s3 <= files and "/artifacts" not in mounts
        else:
            assert not s3 & files and not any("AWS" in e["name"] for e in container["env"])
            claim = volumes[mounts["/artifacts"]]["persistentVolumeClaim"]["claimName"]
            assert claim in of_kind(objects, "PersistentVolumeClaim")
            assert (
                objects
                and of_kind(objects, "Deployment")["mlflow"]["spec"]["strategy"]["type"]
                == "Recreate"
            )


def nginx_locations() -> dict[str, str]:
    """routes.conf's top-level `location` blocks: {"= /x" or "/x/" or "@x": body}."""
    text = re.sub(r"#[^\n]*", "", (ROOT / "infrastructure" / "nginx" / "routes.conf").read_text())
    blocks: dict[str, str] = {}
    for match in re.finditer(r"^location\s+(=\s*)?(\S+)\s*\{", text, re.MULTILINE):
        depth, end = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        blocks[("= " if match[1] else "") + match[2]] = text[match.end() : end - 1]
    return blocks


def test_ingress_paths_are_nginxs_routes(overlay):
    locations = nginx_locations()
    prefixes = {p for p in locations if p.startswith("/")}
    assert {"/api/", "/mlflow/", "/prefect/", "/dashboard/"} <= prefixes
    objects = render(overlay)
    services = of_kind(objects, "Service")
    routed: dict[str, dict[str, Any]] = {}
    for ingress in of_kind(objects, "Ingress").values():
        assert ingress["spec"]["ingressClassName"] == "nginx"
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["pathType"] == "Prefix"
                routed[path["path"]] = path["backend"]["service"]
    assert set(routed) == prefixes - set(NOT_ON_KUBERNETES_ROUTES)
    for prefix, backend in routed.items():
        # the same upstream as nginx's: `set $x http://<service>:<port>;`
        upstream = re.search(r"set\s+\$\w+\s+http://([\w-]+):(\d+);", locations[prefix])
        assert upstream, prefix
        assert backend["name"] == upstream[1], prefix
        ports = {p["name"]: p["port"] for p in services[backend["name"]]["spec"]["ports"]}
        assert ports[backend["port"]["name"]] == int(upstream[2]), prefix
    # exact locations: `/` (the landing page, app-root), nginx-internal pages, and the
    # trailing-slash redirects a Prefix path already covers
    landing = re.search(r"proxy_pass\s+\$\w+(/\S+);", locations["= /"])
    assert landing
    roots = {
        i["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/app-root")
        for i in of_kind(objects, "Ingress").values()
    }
    assert landing[1] in roots
    for path, body in locations.items():
        if not path.startswith("= ") or path == "= /":
            continue
        redirect = re.search(r"return\s+301\s+(\S+);", body)
        assert "internal;" in body or (redirect and redirect[1] == path[2:] + "/"), path


def test_the_hpa_scales_the_api_deployment_on_cpu(overlay):
    objects = render(overlay)
    hpas = list(of_kind(objects, "HorizontalPodAutoscaler").values())
    assert len(hpas) == 1
    hpa = hpas[0]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    api = of_kind(objects, "Deployment")["api"]
    assert "replicas" not in api["spec"], "the HPA owns the count"
    assert main_container(api["spec"]["template"]["spec"], "api")["resources"]["requests"]["cpu"]
    if overlay == "prod":
        replicas = compose_default(
            str(compose("docker-compose.prod.yml")["services"]["api"]["deploy"]["replicas"])
        )
        assert hpa["minReplicas"] == int(replicas)


def test_a_pdb_selects_the_api_pods_and_no_other(overlay):
    objects = render(overlay)
    budgets = list(of_kind(objects, "PodDisruptionBudget").values())
    assert len(budgets) == 1
    selector = budgets[0]["spec"]["selector"]["matchLabels"]
    selected = {
        name
        for name, d in of_kind(objects, "Deployment").items()
        if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    }
    assert selected == {"api"}

"""Every replica of the predictor behind its one name, read as one.

Compose (``--scale api=3``, prod's ``MLOPS_API_REPLICAS``) gives the predictor one service name
with an A record per replica container, and a Kubernetes headless Service does the same. A plain
request to that name reaches whichever replica the resolver listed first, so a figure read that
way is one replica's share. What the dashboard reads as "the predictor" reads all of them:

- the error rate: Prometheus' figures when ``MLOPS_DASHBOARD_PROMETHEUS_URL`` answers (it scrapes
  every replica already, one target per A record in its ``predictor`` job:
  infrastructure/prometheus/prometheus.yml), else every A record of
  ``MLOPS_DASHBOARD_API_URL``'s host asked for its /metrics, the counters summed;
- the landing page's predictor status: every A record asked for /ready.

A replica that does not answer is named with the reason, never dropped from the count. The
resolution is a parameter (``resolve``): the tests map one name to several loopback addresses.

Counters are cumulative since each replica process started (the predictor's own semantics, kept
from the single-replica read): the sum is over the replicas alive now. A replica that restarted
counts from zero again, so the failures it had counted leave the figure; a replica scaled away
takes its counts with it. Prometheus' figure is the same sum (the latest scraped value of each
target that answered its last scrape: at most one scrape interval old), not a rate over a window.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import anyio.to_thread
import httpx

from mlops_stack.dashboard import slo

Resolver = Callable[[str], list[str]]
"""A host name to the addresses to ask (one per replica)."""

PREDICTOR_JOB = "predictor"  # the scrape job of the api replicas in prometheus.yml
PREDICT_ROUTES = ("/predict", "/predict/batch")  # the routes whose failures the rate counts
REQUESTS_QUERY = (
    f'sum by (instance, status) (mlops_http_requests_total{{job="{PREDICTOR_JOB}", '
    f'route=~"{"|".join(PREDICT_ROUTES)}"}})'
)


class NoReplica(RuntimeError):
    """The predictor's host gave no address to ask: nothing of that name is running."""


def reason(exc: BaseException) -> str:
    """What went wrong, in a line: the exception's type and message."""
    return f"{type(exc).__name__}: {str(exc).strip() or 'no message'}"


def a_records(host: str) -> list[str]:
    """Every IPv4 address (A record) of ``host``, in the resolver's order, each once; an IP
    literal is itself. Docker's DNS answers a scaled service's name with one per container."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    found = socket.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


@dataclass(frozen=True)
class Replica:
    """One address behind the predictor's name, reachable directly."""

    address: str  # host:port, as Prometheus' ``instance`` label writes it
    url: str  # the base URL with the address in place of the name
    host_header: str  # the name and port it was found under (the Host header)
    server_name: str  # the name alone (TLS: the certificate's name, sent as SNI)

    def get_args(self, path: str) -> dict[str, Any]:
        """``httpx`` arguments of a GET of ``path`` on this replica (Host and SNI of the name,
        so a replica behind TLS or a virtual host answers as it does under its name)."""
        return {
            "url": f"{self.url.rstrip('/')}{path}",
            "headers": {"Host": self.host_header},
            "extensions": {"sni_hostname": self.server_name},
        }


def replicas(base_url: str, resolve: Resolver = a_records) -> list[Replica]:
    """One :class:`Replica` per address of ``base_url``'s host. Raises :class:`NoReplica` when
    the host does not resolve (on a compose network: no container of that service runs)."""
    url = httpx.URL(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = resolve(url.host)
    except OSError as exc:
        raise NoReplica(f"{url.host} does not resolve ({reason(exc)})") from exc
    if not addresses:
        raise NoReplica(f"{url.host} has no address")
    return [
        Replica(
            address=f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}",
            url=str(url.copy_with(host=ip)),
            host_header=url.netloc.decode("ascii"),
            server_name=url.host,
        )
        for ip in addresses
    ]


Answer = httpx.Response | httpx.HTTPError


def ask_each(
    base_url: str, path: str, timeout: float, resolve: Resolver = a_records
) -> list[tuple[Replica, Answer]]:
    """GET ``path`` of every replica at once; each answer or the error that stood for it.

    For a caller without an event loop (the Streamlit pages): :func:`ask_each_async` run to
    its end on a loop of its own."""

    async def ask_all() -> list[tuple[Replica, Answer]]:
        async with httpx.AsyncClient(timeout=timeout) as client:
            return await ask_each_async(client, base_url, path, resolve)

    return asyncio.run(ask_all())


async def ask_each_async(
    client: httpx.AsyncClient, base_url: str, path: str, resolve: Resolver = a_records
) -> list[tuple[Replica, Answer]]:
    """GET ``path`` of every replica at once with ``client``; each answer or the error that
    stood for it. The resolution runs in a thread: ``getaddrinfo`` blocks."""
    found = await anyio.to_thread.run_sync(replicas, base_url, resolve)

    async def ask(replica: Replica) -> Answer:
        try:
            return await client.get(**replica.get_args(path))
        except httpx.HTTPError as exc:
            return exc

    return list(zip(found, await asyncio.gather(*(ask(r) for r in found)), strict=True))


# --- the error rate -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaCounts:
    """One replica's /predict* answers since it started, and how many were 5xx."""

    address: str
    requests: float
    errors: float


@dataclass(frozen=True)
class Missing:
    """A replica that was asked and did not answer, and why."""

    address: str
    reason: str


@dataclass(frozen=True)
class ErrorRate:
    """The predictor's 5xx answers to /predict and /predict/batch, summed over its replicas.

    ``source`` says where the counts come from (Prometheus or each replica's /metrics);
    ``prometheus_error`` why Prometheus was configured but not used.
    """

    source: str
    answered: tuple[ReplicaCounts, ...]
    missing: tuple[Missing, ...]
    prometheus_error: str | None = None

    @property
    def requests(self) -> float:
        return sum(r.requests for r in self.answered)

    @property
    def errors(self) -> float:
        return sum(r.errors for r in self.answered)

    @property
    def rate(self) -> float | None:
        """errors / requests; None without a request (0/0 is no figure, not 0 %)."""
        return self.errors / self.requests if self.requests else None

    @property
    def replicas(self) -> int:
        return len(self.answered) + len(self.missing)

    def answered_text(self) -> str:
        """ "N of M replicas answered", and which did not and why."""
        text = f"{len(self.answered)} of {plural(self.replicas, 'replica')} answered"
        if self.missing:
            text += "; no answer from " + ", ".join(
                f"{m.address} ({m.reason})" for m in self.missing
            )
        return text

    @property
    def shown(self) -> str:
        """The figure as the page shows it: two decimals of a percent; n/a without a request."""
        return "n/a" if self.rate is None else f"{self.rate:.2%}"

    def summary(self) -> str:
        """What the figure is made of, for the line under it; what produces it when empty."""
        if not self.answered:
            text = (
                f"No data: {self.answered_text()}. The counts are the predictor replicas' own "
                "(`mlops serve api`; compose: the `api` service), from each one's start."
            )
        elif not self.requests:
            text = (
                "No data yet: no /predict or /predict/batch request since the replicas started "
                f"({self.answered_text()}). Requests to /api/predict produce it."
            )
        else:
            text = (
                f"{self.errors:.0f} of {self.requests:.0f} /predict and /predict/batch requests "
                f"answered 5xx since each replica started, summed: {self.answered_text()}."
            )
        text += f" From {self.source}."
        if self.prometheus_error:
            text += f" Not from Prometheus: {self.prometheus_error}."
        return text


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def counts(metrics_text: str) -> tuple[float, float]:
    """(requests, 5xx answers) of /predict and /predict/batch in one /metrics exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    total = errors = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "mlops_http_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("route") in PREDICT_ROUTES:
                total += sample.value
                errors += sample.value if sample.labels.get("status", "").startswith("5") else 0
    return total, errors


def from_replicas(api_url: str, timeout: float, resolve: Resolver = a_records) -> ErrorRate:
    """Every A record of ``api_url``'s host asked for /metrics; the counters summed."""
    answered, missing = [], []
    for replica, answer in ask_each(api_url, "/metrics", timeout, resolve):
        if isinstance(answer, httpx.HTTPError):
            missing.append(Missing(replica.address, reason(answer)))
        elif not answer.is_success:
            missing.append(Missing(replica.address, f"{answer.status_code} from /metrics"))
        else:
            try:
                requests, errors = counts(answer.text)
            except ValueError as exc:  # not Prometheus' text format
                missing.append(Missing(replica.address, f"/metrics unreadable: {reason(exc)}"))
            else:
                answered.append(ReplicaCounts(replica.address, requests, errors))
    return ErrorRate(f"each replica's /metrics ({api_url})", tuple(answered), tuple(missing))


def from_prometheus(prometheus_url: str, timeout: float) -> ErrorRate:
    """The latest scraped counters of every target of the ``predictor`` job, summed by target;
    a target whose last scrape failed is named with Prometheus' error. Raises
    ``httpx.HTTPError`` / :class:`slo.PrometheusError` when Prometheus cannot be asked, and
    :class:`NoReplica` when it has no target in that job (it does not scrape this stack)."""
    base = prometheus_url.rstrip("/")
    with httpx.Client(timeout=timeout) as client:
        targets = slo.api_data(client.get(f"{base}/api/v1/targets", params={"state": "active"}))
        series = slo.api_data(client.get(f"{base}/api/v1/query", params={"query": REQUESTS_QUERY}))
    return from_prometheus_answers(prometheus_url, targets, series)


def from_prometheus_answers(
    prometheus_url: str, targets_data: dict[str, Any], query_data: dict[str, Any]
) -> ErrorRate:
    """The error rate from the ``data`` of /api/v1/targets and of :data:`REQUESTS_QUERY`."""
    jobs = [
        target
        for target in targets_data.get("activeTargets", [])
        if target["labels"].get("job") == PREDICTOR_JOB
    ]
    if not jobs:
        raise NoReplica(f"Prometheus has no target in its {PREDICTOR_JOB!r} job")
    per_target: dict[str, list[float]] = {}
    for sample in query_data.get("result", []):
        found = per_target.setdefault(sample["metric"].get("instance", ""), [0.0, 0.0])
        value = float(sample["value"][1])
        found[0] += value
        found[1] += value if sample["metric"].get("status", "").startswith("5") else 0.0
    answered, missing = [], []
    for target in sorted(jobs, key=lambda t: str(t["labels"]["instance"])):
        address = str(target["labels"]["instance"])
        if target.get("health") == "up":
            requests, errors = per_target.get(address, [0.0, 0.0])
            answered.append(ReplicaCounts(address, requests, errors))
        else:
            why = target.get("lastError") or f"not scraped yet (health {target.get('health')})"
            missing.append(Missing(address, str(why)))
    return ErrorRate(f"Prometheus ({prometheus_url})", tuple(answered), tuple(missing))


def error_rate(
    api_url: str | None,
    prometheus_url: str | None,
    timeout: float = 3.0,
    resolve: Resolver = a_records,
) -> ErrorRate:
    """The predictor's error rate over all its replicas: from Prometheus when it is configured
    and answers about the predictor, else from every A record of ``api_url``'s host.

    Raises :class:`NoReplica` when neither can be read (no URL, or a host that does not
    resolve); the reason Prometheus was passed over is in the message or ``prometheus_error``.
    """
    passed_over = None
    if prometheus_url:
        try:
            return from_prometheus(prometheus_url, timeout)
        except (httpx.HTTPError, slo.PrometheusError, NoReplica) as exc:
            passed_over = f"Prometheus at {prometheus_url}: {reason(exc)}"
    if not api_url:
        raise NoReplica(
            "no predictor URL (MLOPS_DASHBOARD_API_URL)"
            + (f" and {passed_over}" if passed_over else "")
        )
    try:
        found = from_replicas(api_url, timeout, resolve)
    except NoReplica as exc:
        raise NoReplica(f"{exc}; {passed_over}" if passed_over else str(exc)) from exc
    return replace(found, prometheus_error=passed_over)

"""The stack's landing page: is every service up, which champion is served, what is wrong.

nginx proxies ``/`` here (``<base>/status`` of the dashboard's ASGI app, ``dashboard/server.py``);
``<base>/status.json`` is the same in JSON. The page is plain HTML that refreshes itself: no
script, so it works wherever the links do. Everything on it is read when asked, from the
service itself, server-side:

- each service's health from its own endpoint, all probes at once, each bounded by
  ``MLOPS_STATUS_PROBE_TIMEOUT``; the predictor's from every replica behind its name (each A
  record of ``MLOPS_DASHBOARD_API_URL``'s host: "3 of 3 replicas ready"); the worker from
  Prefect (its served deployments report when it last polled), PostgreSQL and Redis by a round
  trip; Prometheus and JupyterLab when a URL for them is configured, "off" when their compose
  profile is not running;
- the champion and its holdout metrics from the registry, the latest monitor run and the open
  alerts from the monitoring database, the SLO alerts from Prometheus.

A part that cannot be read says so and why; nothing is filled in. Results are kept
``CACHE_SECONDS``, so a refreshing tab or a burst of requests costs one round of probes.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio.to_thread
import httpx
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import make_url
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from mlops_stack.dashboard import replicas, slo
from mlops_stack.names import MONITOR_DEPLOYMENT, AlertState
from mlops_stack.settings import Settings

if TYPE_CHECKING:  # imported when the first round runs: MLflow and pandas are 100 MB of an
    from mlops_stack.stack import Stack  # idle dashboard process that nobody looked at yet

CACHE_SECONDS = 5.0
REFRESH_SECONDS = 15  # the page reloads itself this often
State = Literal["up", "degraded", "down", "off", "unknown"]
T = TypeVar("T")

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)

# Where a person reaches each service through nginx (the compose stack's routes.conf).
LINKS = {
    "Predictor": "/api/docs",
    "MLflow": "/mlflow/",
    "Prefect server": "/prefect/",
    "Worker": "/prefect/deployments",
    "Dashboard": "/dashboard/",
    "Prometheus": "/prometheus/",
    "JupyterLab": "/jupyter/",
}


@dataclass(frozen=True)
class Health:
    """One service: its state, why, and where to reach it."""

    name: str
    state: State
    detail: str
    link: str | None = None


@dataclass(frozen=True)
class Part:
    """A part of the page read from a store: its value, or why it could not be read."""

    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class StackStatus:
    """Everything the landing page shows, as plain values (JSON as it is)."""

    checked_at: str
    model_name: str
    services: list[Health]
    champion: Part
    monitor: Part
    alerts: Part
    service_level: Part
    links: dict[str, str] = field(default_factory=lambda: dict(LINKS))

    @property
    def all_up(self) -> bool:
        return all(s.state in ("up", "off") for s in self.services)


# --- probes ---------------------------------------------------------------------------------


def _not_resolved(exc: BaseException) -> bool:
    """The host name does not exist: on a compose network, its container is not running."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _http_probe(
    client: httpx.AsyncClient,
    name: str,
    url: str,
    judge: Callable[[httpx.Response], tuple[State, str]],
    off_reason: str | None = None,
) -> Health:
    """GET ``url``; ``judge`` reads the answer. Unreachable is down, with the reason; an
    unknown host is "off" when the service is optional (``off_reason`` says how to start it)."""
    try:
        answer = await client.get(url)
    except httpx.HTTPError as exc:
        if off_reason is not None and _not_resolved(exc):
            return Health(name, "off", off_reason, LINKS.get(name))
        return Health(name, "down", f"{url}: {replicas.reason(exc)}", LINKS.get(name))
    state, detail = judge(answer)
    return Health(name, state, detail, LINKS.get(name))


def _ok_if_2xx(answer: httpx.Response) -> tuple[State, str]:
    if answer.is_success:
        return "up", f"{answer.status_code} from {answer.url.path}"
    return "down", f"{answer.status_code} from {answer.url.path}"


def _predictor(answer: httpx.Response) -> tuple[State, str]:
    """/ready: 200 serves a champion (its prediction log may be degraded: rows spooled);
    503 answers but is not ready (says why)."""
    try:
        body = answer.json()
    except ValueError:
        return "down", f"{answer.status_code} from /ready, not its JSON"
    version = (body.get("model") or {}).get("version")
    if answer.status_code == 200:
        log = body.get("prediction_log") or {}
        if log.get("ok") is False:
            return "degraded", f"serving v{version}; prediction log: {log.get('detail')}"
        return "up", f"ready, serving v{version}"
    if answer.status_code == 503:
        log = body.get("prediction_log") or {}
        why = "no model served yet" if version is None else f"prediction log: {log.get('detail')}"
        return "degraded", f"answers, not ready: {why}"
    return "down", f"{answer.status_code} from /ready"


async def _predictor_replicas(
    client: httpx.AsyncClient, base_url: str, resolve: replicas.Resolver
) -> Health:
    """/ready of every replica behind the predictor's name: up when all are ready (and log
    well), down when none answers, degraded in between; each one that is not up is named."""
    name, link = "Predictor", LINKS["Predictor"]
    try:
        answers = await replicas.ask_each_async(client, base_url, "/ready", resolve)
    except replicas.NoReplica as exc:
        return Health(name, "down", f"no replica to ask: {exc}", link)
    judged = [
        (
            replica.address,
            answer,
            _predictor(answer)
            if isinstance(answer, httpx.Response)
            else ("down", f"/ready: {replicas.reason(answer)}"),
        )
        for replica, answer in answers
    ]
    ready = [a for _, a, _ in judged if isinstance(a, httpx.Response) and a.status_code == 200]
    served = sorted({_served_version(a) for a in ready})
    detail = f"{len(ready)} of {replicas.plural(len(judged), 'replica')} ready"
    if served:
        detail += ", serving " + ", ".join(f"v{v}" for v in served)
    for address, _, (state, why) in judged:
        if state != "up":
            detail += f"; {address}: {why}"
    states = {state for _, _, (state, _) in judged}
    overall: State = "up" if states == {"up"} else "down" if states == {"down"} else "degraded"
    return Health(name, overall, detail, link)


def _served_version(answer: httpx.Response) -> str:
    """The model version a ready replica names in its /ready answer."""
    try:
        return str((answer.json().get("model") or {}).get("version"))
    except ValueError:
        return "?"


def _worker(answer: httpx.Response) -> tuple[State, str]:
    """The worker serves the deployments: Prefect marks them READY while it polls."""
    if answer.status_code == 404:
        return "unknown", f"no {MONITOR_DEPLOYMENT} deployment: the worker registers it at start"
    if not answer.is_success:
        return "unknown", f"Prefect answered {answer.status_code} about {MONITOR_DEPLOYMENT}"
    body = answer.json()
    status, polled = body.get("status"), body.get("last_polled")
    detail = f"{MONITOR_DEPLOYMENT} {status}, last polled {polled or 'never'}"
    return ("up" if status == "READY" else "down"), detail


async def _in_thread(name: str, call: Callable[[], str], timeout: float) -> Health:
    """A blocking check (a database round trip) in a thread, bounded by ``timeout``."""
    try:
        detail = await asyncio.wait_for(anyio.to_thread.run_sync(call), timeout)
    except TimeoutError:
        return Health(name, "down", f"no answer within {timeout:g} s")
    except Exception as exc:  # any driver error: the reason is what the page shows
        return Health(name, "down", replicas.reason(exc))
    return Health(name, "up", detail)


def _database(stack: Stack, timeout: float) -> Awaitable[Health]:
    """The monitoring database by a round trip: PostgreSQL in the stack, SQLite embedded."""
    url = make_url(stack.settings.resolved_monitoring_db_url)
    name = "PostgreSQL" if url.get_backend_name() == "postgresql" else "Monitoring database"
    where = f"{url.host}:{url.port or 5432}/{url.database}" if url.host else f"{url.database}"

    def ping() -> str:
        stack.monitoring_db.ping()
        return f"SELECT 1 answered ({url.get_backend_name()}, {where})"

    return _in_thread(name, ping, timeout)


async def _redis(url: str | None, timeout: float) -> Health:
    if not url:
        return Health(
            "Redis", "unknown", "not configured (MLOPS_REDIS_URL): no prediction stream to check"
        )
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        await asyncio.wait_for(client.ping(), timeout)
    except TimeoutError:
        return Health("Redis", "down", f"no answer within {timeout:g} s")
    except Exception as exc:  # connection refused, unknown host, auth: the reason shows
        return Health("Redis", "down", replicas.reason(exc))
    finally:
        await client.aclose()
    return Health("Redis", "up", "PING answered")


def _not_configured(name: str, variable: str) -> Awaitable[Health]:
    async def health() -> Health:
        return Health(name, "unknown", f"no server configured ({variable}): embedded")

    return health()


async def services(
    settings: Settings, stack: Stack, resolve: replicas.Resolver = replicas.a_records
) -> list[Health]:
    """Every service's health, probed at once (the predictor: each replica behind its name,
    the addresses from ``resolve``)."""
    timeout = settings.status_probe_timeout
    async with httpx.AsyncClient(timeout=timeout) as client:
        probes: list[Awaitable[Health]] = []
        if settings.dashboard_api_url:
            probes.append(_predictor_replicas(client, settings.dashboard_api_url, resolve))
        else:
            probes.append(_not_configured("Predictor", "MLOPS_DASHBOARD_API_URL"))
        if not settings.embedded_tracking:
            url = f"{settings.resolved_tracking_uri.rstrip('/')}/health"
            probes.append(_http_probe(client, "MLflow", url, _ok_if_2xx))
        else:
            probes.append(_not_configured("MLflow", "MLOPS_TRACKING_URI"))
        if settings.prefect_api_url:
            api = settings.prefect_api_url.rstrip("/")
            probes.append(_http_probe(client, "Prefect server", f"{api}/health", _ok_if_2xx))
            url = f"{api}/deployments/name/{MONITOR_DEPLOYMENT}"
            probes.append(_http_probe(client, "Worker", url, _worker))
        else:
            probes.append(_not_configured("Prefect server", "MLOPS_PREFECT_API_URL"))
            probes.append(_not_configured("Worker", "MLOPS_PREFECT_API_URL"))
        probes.append(_dashboard())
        probes.append(_database(stack, timeout))
        probes.append(_redis(settings.redis_url, timeout))
        if settings.dashboard_prometheus_url:
            url = f"{settings.dashboard_prometheus_url.rstrip('/')}/-/ready"
            off = _not_running("observability")
            probes.append(_http_probe(client, "Prometheus", url, _ok_if_2xx, off))
        if settings.dashboard_jupyter_url:
            url = f"{settings.dashboard_jupyter_url.rstrip('/')}/api"
            off = _not_running("notebooks")
            probes.append(_http_probe(client, "JupyterLab", url, _ok_if_2xx, off))
        return list(await asyncio.gather(*probes))


def _not_running(profile: str) -> str:
    """Why an optional service's host does not resolve on the compose network, and the fix."""
    return (
        f"not running: no such host on the network (its compose profile: "
        f"docker compose --profile {profile} up -d)"
    )


async def _dashboard() -> Health:
    return Health("Dashboard", "up", "serving this page", LINKS["Dashboard"])


# --- the stores' parts ----------------------------------------------------------------------


async def _read(call: Callable[[], T], timeout: float) -> Part:
    """A store read in a thread: its value, or why there is none."""
    try:
        return Part(value=await asyncio.wait_for(anyio.to_thread.run_sync(call), timeout))
    except TimeoutError:
        return Part(error=f"no answer within {timeout:g} s")
    except Exception as exc:  # the store is down or answers an error: say which
        return Part(error=replicas.reason(exc))


def _champion(stack: Stack) -> dict[str, Any] | None:
    info = stack.registry.champion_info()
    return None if info is None else asdict(info)


def _latest_monitor_run(stack: Stack) -> dict[str, Any] | None:
    runs = stack.monitor_store.runs(stack.settings.model_name, limit=1)
    if not runs:
        return None
    run = runs[0]
    return {
        "id": run.id,
        "started_at": run.started_at.isoformat(),
        "status": run.status,
        "reason": run.reason,
        "window_rows": run.window_rows,
    }


def _open_alerts(stack: Stack) -> list[dict[str, Any]]:
    alerts = stack.monitor_store.alerts(state=AlertState.OPEN, model_name=stack.settings.model_name)
    return [
        {
            "condition": a.condition,
            "reason": a.reason,
            "opened_at": a.opened_at.isoformat(),
            "last_seen_at": a.last_seen_at.isoformat(),
        }
        for a in alerts
    ]


def _service_level(settings: Settings) -> Callable[[], dict[str, Any] | None]:
    def read() -> dict[str, Any] | None:
        if not settings.dashboard_prometheus_url:
            return None
        return asdict(slo.read(settings.dashboard_prometheus_url, settings.status_probe_timeout))

    return read


async def collect(stack: Stack, resolve: replicas.Resolver = replicas.a_records) -> StackStatus:
    """One round: the probes and the stores' reads, all at once."""
    settings = stack.settings
    # registry and database reads may take a few round trips each: more than one probe's time
    reads = 3 * settings.status_probe_timeout
    # The monitoring database migrates itself on its first read, with Alembic, whose context is
    # process-global: an embedded MLflow migrating its own file at the same moment (the first
    # registry read) would run on the wrong connection. Migrated first, the reads then run at
    # once. A failure here is not the page's: the reads below fail again and say why.
    await _read(stack.monitoring_db.ensure_schema, reads)
    found = await asyncio.gather(
        services(settings, stack, resolve),
        _read(lambda: _champion(stack), reads),
        _read(lambda: _latest_monitor_run(stack), reads),
        _read(lambda: _open_alerts(stack), reads),
        _read(_service_level(settings), reads),
    )
    return StackStatus(
        checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
        model_name=settings.model_name,
        services=found[0],
        champion=found[1],
        monitor=found[2],
        alerts=found[3],
        service_level=found[4],
    )


def _process_stack() -> Stack:
    from mlops_stack.stack import current_stack

    return current_stack()


class StatusCache:
    """The last round for ``CACHE_SECONDS``; concurrent requests share the round in flight."""

    def __init__(
        self,
        stack: Callable[[], Stack] = _process_stack,
        ttl: float = CACHE_SECONDS,
        resolve: replicas.Resolver = replicas.a_records,
    ):
        self._stack, self._ttl, self._resolve = stack, ttl, resolve
        self._lock = asyncio.Lock()
        self._kept: tuple[float, StackStatus] | None = None

    async def get(self) -> StackStatus:
        async with self._lock:
            if self._kept is None or time.monotonic() - self._kept[0] > self._ttl:
                self._kept = (time.monotonic(), await collect(self._stack(), self._resolve))
            return self._kept[1]


# --- the routes -----------------------------------------------------------------------------


def render(status: StackStatus) -> str:
    """The page: plain HTML that reloads itself every ``REFRESH_SECONDS``."""
    return TEMPLATES.get_template("landing.html").render(
        status=status,
        refresh=REFRESH_SECONDS,
        percent=slo.percent,
        milliseconds=slo.milliseconds,
    )


def routes(base_path: str, cache: StatusCache | None = None) -> list[Route]:
    """``/<base>/status`` (HTML) and ``/<base>/status.json`` for the dashboard's ASGI app."""
    kept = cache or StatusCache()
    prefix = f"/{base_path.strip('/')}" if base_path.strip("/") else ""

    async def page(_request: Request) -> Response:
        return HTMLResponse(render(await kept.get()), headers={"Cache-Control": "no-store"})

    async def as_json(_request: Request) -> Response:
        return JSONResponse(asdict(await kept.get()), headers={"Cache-Control": "no-store"})

    return [
        Route(f"{prefix}/status", page, methods=["GET"]),
        Route(f"{prefix}/status.json", as_json, methods=["GET"]),
    ]

"""The predictor: FastAPI over the registry's champion.

Answers ``/predict`` and ``/predict/batch`` with the version that answered and a request id,
hands every answered row to the prediction log without waiting, takes labels at ``/feedback``,
and reports itself at ``/health``, ``/ready``, ``/model`` and ``/metrics``. Request bodies are
validated against the served model's signature (see ``serving.schema``); the model can change
under the app at any time (see ``serving.model``), so each request reads it exactly once.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlops_stack import registry
from mlops_stack.logs import get_logger
from mlops_stack.monitoring_db import MonitoringDB
from mlops_stack.prediction_log.records import PredictionRecord
from mlops_stack.prediction_log.sinks import PredictionSink, make_sink
from mlops_stack.serving.access import (
    API_KEY_HEADER,
    AccessMiddleware,
    configured_keys,
    make_limiter,
)
from mlops_stack.serving.metrics import PredictorMetrics
from mlops_stack.serving.model import ModelHolder, ServedModel
from mlops_stack.settings import Settings, get_settings

log = get_logger("mlops_stack.api")
ROUTES = ("/predict", "/predict/batch", "/feedback", "/health", "/ready", "/model", "/metrics")
RECENT_KEYS = 100_000
QUIET_ROUTES = frozenset({"/health", "/metrics"})


class FeedbackItem(BaseModel):
    """The true label of one answered row."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=64)
    row: int = Field(0, ge=0, description="Row of a /predict/batch request; 0 for /predict.")
    label: str | int | float | bool


class FeedbackBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[FeedbackItem] = Field(min_length=1)


class NoModel(Exception):
    """No version holds the alias yet; every route that needs a model answers 503."""


class Predictor:
    """The app's state: model holder, log sink, log store, metrics and recent request ids."""

    def __init__(self, settings: Settings, sink: PredictionSink, store: MonitoringDB):
        self.settings = settings
        self.sink = sink
        self.store = store
        self.metrics = PredictorMetrics(queue_depth=sink.depth)
        self.holder = ModelHolder(settings, on_reload=self.metrics.reloaded)
        self.recent: OrderedDict[tuple[str, int], None] = OrderedDict()

    def model(self) -> ServedModel:
        model = self.holder.current
        if model is None:
            raise NoModel
        return model

    def remember(self, request_id: str, rows: int) -> None:
        """Recent answers, so feedback sent before the log writer caught up is still known."""
        for row in range(rows):
            self.recent[(request_id, row)] = None
        while len(self.recent) > RECENT_KEYS:
            self.recent.popitem(last=False)

    def answer(
        self, request_id: str, model: ServedModel, rows: list[dict[str, Any]], started: float
    ) -> list[tuple[Any, dict[str, float] | None]]:
        """Predict, count and log the rows of one request."""
        results = model.predict(rows)
        latency_ms = (time.perf_counter() - started) * 1000
        now = datetime.now(UTC)
        for index, (row, (prediction, proba)) in enumerate(zip(rows, results, strict=True)):
            self.metrics.predictions.labels(model.version, str(prediction)).inc()
            self.sink.submit(
                PredictionRecord(
                    request_id=request_id,
                    row=index,
                    created_at=now,
                    model_name=model.name,
                    model_version=model.version,
                    features=row,
                    prediction=prediction,
                    probabilities=proba,
                    latency_ms=latency_ms,
                )
            )
        self.remember(request_id, len(rows))
        return results


def _validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic errors as FastAPI's 422 detail: where (``loc``), why (``msg``), what kind."""
    return [
        {"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ["body"], "msg": f"body is not valid JSON: {exc}", "type": "json_invalid"}]
        ) from None


def _validate(model_cls: type[BaseModel], body: Any) -> BaseModel:
    try:
        return model_cls.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(_validation_errors(exc)) from None


def _no_model_response(_request: Request, _exc: NoModel) -> JSONResponse:
    """503, not 500: the service works, it has nothing to serve yet."""
    return JSONResponse(
        status_code=503,
        content={
            "detail": "no model is being served yet: `mlops train` registers a champion, "
            "which the predictor loads within MLOPS_RELOAD_POLL_SECONDS"
        },
    )


def create_app(
    settings: Settings | None = None,
    *,
    sink: PredictionSink | None = None,
    store: MonitoringDB | None = None,
) -> FastAPI:
    """Build the predictor app; ``sink`` and ``store`` default to the configured ones."""
    settings = settings or get_settings()
    keys = configured_keys(settings)
    _bound_registry_calls()
    registry.use_tracking(settings)
    store = store or MonitoringDB(settings.resolved_monitoring_db_url)
    state = Predictor(settings, sink or make_sink(settings), store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        try:
            store.migrate()
        except Exception as exc:  # feedback answers 503 until the database is back
            log.error("monitoring_db_unavailable", error=str(exc)[:300])
        state.sink.start()
        state.holder.refresh()
        state.holder.start()
        log.info(
            "predictor_started",
            model=settings.model_name,
            alias=settings.model_alias,
            version=state.holder.version,
        )
        yield
        state.holder.stop()
        state.sink.stop()
        store.dispose()

    app = FastAPI(
        title="mlops-stack predictor",
        description="Predictions from the registry's champion, typed from its signature.",
        version="1",
        lifespan=lifespan,
        root_path=settings.api_root_path,
    )
    app.state.predictor = state
    _add_routes(app, state)
    _add_error_handlers(app)
    app.openapi = lambda: _openapi(app, state, keys.enabled)  # type: ignore[method-assign]
    # added first, so it runs inside the request context: refusals are logged and counted
    app.add_middleware(
        AccessMiddleware,
        keys=keys,
        limiter=make_limiter(settings),
        per_minute=settings.rate_limit_per_minute,
    )
    app.add_middleware(RequestContextMiddleware, state=state)
    return app


def _bound_registry_calls() -> None:
    """Make a registry outage show within seconds, not minutes.

    MLflow's client retries a failing server 7 times with exponential backoff (minutes in
    all) and waits 120 s per request; the predictor would keep serving either way, but /ready
    could not say the registry is down until the retries gave up. Values set by the user win.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def app_from_environment() -> FastAPI:
    """uvicorn factory for worker processes: each sets up its own logging and settings."""
    from mlops_stack.logs import configure_logging

    settings = get_settings()
    settings.prepare_environment()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)


def _add_routes(app: FastAPI, state: Predictor) -> None:
    settings = state.settings

    @app.post("/predict", summary="Predict one row of raw features")
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        model = state.model()
        body = _validate(model.predict_request, await _json_body(request))
        row = body.model_dump(by_alias=True)["features"]
        request_id = request.state.request_id
        [(prediction, proba)] = state.answer(request_id, model, [row], started)
        return JSONResponse(
            {
                "request_id": request_id,
                "model": {"name": model.name, "version": model.version},
                "prediction": prediction,
                "probabilities": proba,
            }
        )

    @app.post("/predict/batch", summary="Predict several rows of raw features")
    async def predict_batch(request: Request) -> Response:
        started = time.perf_counter()
        model = state.model()
        body = _validate(model.batch_request, await _json_body(request))
        rows = body.model_dump(by_alias=True)["rows"]
        request_id = request.state.request_id
        results = state.answer(request_id, model, rows, started)
        return JSONResponse(
            {
                "request_id": request_id,
                "model": {"name": model.name, "version": model.version},
                "predictions": [
                    {"row": i, "prediction": p, "probabilities": proba}
                    for i, (p, proba) in enumerate(results)
                ],
            }
        )

    @app.post("/feedback", summary="Report true labels of earlier predictions")
    async def feedback(request: Request) -> Response:
        body = await _json_body(request)
        is_batch = isinstance(body, dict) and "items" in body
        parsed = _validate(FeedbackBatch if is_batch else FeedbackItem, body)
        items = parsed.items if isinstance(parsed, FeedbackBatch) else [parsed]
        if len(items) > settings.max_feedback_items:
            raise RequestValidationError(
                [
                    {
                        "loc": ["body", "items"],
                        "type": "too_long",
                        "msg": f"at most {settings.max_feedback_items} items per request",
                    }
                ]
            )
        _check_labels(state, items)
        keys = [(item.request_id, item.row) for item in items]
        try:
            known = {k for k in keys if k in state.recent}
            known |= state.store.known_predictions([k for k in keys if k not in known])
            accepted = [
                (i.request_id, i.row, str(i.label)) for i in items if (i.request_id, i.row) in known
            ]
            if accepted:
                state.store.record_feedback(accepted)
        except Exception as exc:
            log.error("feedback_store_unavailable", error=str(exc)[:300])
            return JSONResponse(
                status_code=503,
                content={
                    "detail": "the monitoring database is unavailable; nothing was stored, retry"
                },
            )
        unknown = [{"request_id": r, "row": n} for r, n in keys if (r, n) not in known]
        return JSONResponse(
            status_code=200 if accepted else 404,
            content={"accepted": len(accepted), "unknown": unknown},
        )

    @app.get("/health", summary="The process is alive")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="A model is loaded and the prediction log works")
    async def ready() -> Response:
        model = state.holder.current
        log_ok, log_detail = state.sink.status()
        status = state.holder.registry_status
        ok = model is not None and log_ok
        return JSONResponse(
            status_code=200 if ok else 503,
            content={
                "ready": ok,
                "model": {
                    "name": settings.model_name,
                    "alias": settings.model_alias,
                    "version": model.version if model else None,
                },
                "prediction_log": {
                    "ok": log_ok,
                    "detail": log_detail,
                    "queue_depth": state.sink.depth(),
                },
                "registry": {
                    "reachable": status.reachable,
                    "error": status.error,
                    "unreachable_since": status.since,
                    "last_checked": status.last_checked,
                },
            },
        )

    @app.get("/model", summary="The served model: version, metrics, feature schema")
    async def model_info() -> Response:
        model = state.model()
        return JSONResponse(
            {
                "name": model.name,
                "version": model.version,
                "alias": settings.model_alias,
                "run_id": model.run_id,
                "trained_at": model.trained_at,
                "loaded_at": model.loaded_at,
                "metrics": model.metrics,
                "classes": [str(c) for c in model.classes],
                "features": [
                    {"name": f.name, "type": f.dtype, "nullable": not f.required}
                    for f in model.fields
                ],
            }
        )

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
    async def metrics() -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _check_labels(state: Predictor, items: list[FeedbackItem]) -> None:
    """A label must be one of the classes the served model knows."""
    model = state.holder.current
    if model is None or not model.classes:
        return
    classes = {str(c) for c in model.classes}
    errors = [
        {
            "loc": ["body", *(["items", i] if len(items) > 1 else []), "label"],
            "msg": f"unknown class {item.label!r}; the model's classes are {sorted(classes)}",
            "type": "value_error",
        }
        for i, item in enumerate(items)
        if str(item.label) not in classes
    ]
    if errors:
        raise RequestValidationError(errors)


def _add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(NoModel, _no_model_response)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)
        log.exception("unhandled_error", error=str(exc)[:300])
        return JSONResponse(
            status_code=500, content={"detail": "internal error", "request_id": request_id}
        )


def _openapi(app: FastAPI, state: Predictor, keys_required: bool) -> dict[str, Any]:
    """OpenAPI with the request bodies of the model being served right now."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        servers=app.servers or None,  # FastAPI adds the root path here: /docs behind a proxy
    )
    if keys_required:  # /docs then offers "Authorize" for the key
        schema.setdefault("components", {})["securitySchemes"] = {
            "apiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER}
        }
        schema["security"] = [{"apiKey": []}]
    model = state.holder.current
    if model is None:
        return schema
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, cls in (("/predict", model.predict_request), ("/predict/batch", model.batch_request)):
        body = cls.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[cls.__name__] = body
        schema["paths"][path]["post"]["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{cls.__name__}"}}
            },
        }
    schema["info"]["description"] += f" Serving {model.name} v{model.version}."
    return schema


class BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    """Request id, body size bound, access log and HTTP metrics, as plain ASGI (no overhead
    of a streaming wrapper per request)."""

    def __init__(self, app: ASGIApp, state: Predictor):
        self.app = app
        self.state = state
        self.max_body = state.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = _request_id(headers.get(b"x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = {"code": 500}
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                await _too_large(send_with_id, self.max_body)
            else:
                await self.app(scope, self._bounded(receive), send_with_id)
        except BodyTooLarge:
            await _too_large(send_with_id, self.max_body)
        finally:
            elapsed = time.perf_counter() - started
            metrics = self.state.metrics
            metrics.requests.labels(route, scope["method"], str(status["code"])).inc()
            metrics.latency.labels(route).observe(elapsed)
            # probes (healthchecks every few seconds, Prometheus scrapes) would drown the log
            emit = log.debug if route in QUIET_ROUTES and status["code"] < 400 else log.info
            emit(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status["code"],
                ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()

    def _bounded(self, receive: Receive) -> Receive:
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge
            return message

        return bounded


def _request_id(given: bytes | None) -> str:
    """The caller's X-Request-ID when it is sane, else a new one."""
    if given:
        text = given.decode("latin-1").strip()
        if 0 < len(text) <= 64 and text.isprintable():
            return text
    return uuid.uuid4().hex


async def _too_large(send: Send, limit: int) -> None:
    body = b'{"detail":"request body larger than ' + str(limit).encode() + b' bytes"}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

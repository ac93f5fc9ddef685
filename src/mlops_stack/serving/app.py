"""The predictor: FastAPI over the registry's champion.

Answers ``/predict`` and ``/predict/batch`` with the version that answered and a request id,
answers once every answered row is in the prediction log (durably: the Redis stream or the
spool), takes labels at ``/feedback``,
and reports itself at ``/health``, ``/ready``, ``/model`` and ``/metrics``. Request bodies are
validated against the served model's signature (see ``serving.schema``); the model can change
under the app at any time (see ``serving.model``), so each request reads it exactly once.

This module only assembles: the state (``serving.predictor``), the routes
(``serving.routes``), the error handlers, the OpenAPI document and the middleware. No body
gets a 500 for its shape: a wrong Content-Type is 415, a body nested deeper than
MLOPS_MAX_JSON_DEPTH is 422 before it is parsed, and anything else that does not fit is 422.
"""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from mlops_stack.logs import get_logger
from mlops_stack.prediction_log.sinks import PredictionSink, make_sink
from mlops_stack.serving.access import AccessMiddleware, KeyRing, configured_keys, make_limiter
from mlops_stack.serving.middleware import JsonContentTypeMiddleware, RequestContextMiddleware
from mlops_stack.serving.openapi import openapi_schema
from mlops_stack.serving.predictor import NoModel, Predictor
from mlops_stack.serving.requests import too_deep
from mlops_stack.serving.routes import router
from mlops_stack.settings import get_settings
from mlops_stack.stack import Stack

log = get_logger("mlops_stack.api")


def create_app(stack: Stack, *, sink: PredictionSink | None = None) -> FastAPI:
    """Build the predictor app over a process's stack; ``sink`` defaults to the configured one.

    The app uses the stack's registry (to find and load the champion) and monitoring database
    (feedback; the prediction log when there is no Redis), and closes the stack when it stops.
    """
    settings = stack.settings
    keys = configured_keys(settings)  # first: production without keys stops here
    _bound_registry_calls()
    _ignore_sklearn_delayed_warning()
    predictor = Predictor(stack, sink or make_sink(settings, stack.predictions))
    return assemble(predictor, keys)


def assemble(predictor: Predictor, keys: KeyRing) -> FastAPI:
    """The app around a built state: routes, error handlers, OpenAPI and middleware."""
    settings = predictor.settings
    app = FastAPI(
        title="mlops-stack predictor",
        description="Predictions from the registry's champion, typed from its signature.",
        version="1",
        lifespan=_lifespan(predictor),
        root_path=settings.api_root_path,
        # no 307 from /predict/ to /predict: behind nginx its absolute Location names the
        # container's scheme and port and drops the /api root path; an unknown path is a 404
        redirect_slashes=False,
    )
    app.state.predictor = predictor
    app.include_router(router)
    app.add_exception_handler(NoModel, _no_model)
    app.add_exception_handler(RecursionError, _too_deep)
    app.add_exception_handler(Exception, _unexpected)
    app.openapi = lambda: openapi_schema(app, predictor, keys.enabled)  # type: ignore[method-assign]
    # innermost first: a request meets the request context (id, size, log, errors), then
    # keys and rate limit, then the content type; refusals are logged and counted
    app.add_middleware(JsonContentTypeMiddleware)
    app.add_middleware(
        AccessMiddleware,
        keys=keys,
        limiter=make_limiter(settings),
        per_minute=settings.rate_limit_per_minute,
    )
    app.add_middleware(
        RequestContextMiddleware, metrics=predictor.metrics, max_body=settings.max_body_bytes
    )
    return app


def _lifespan(predictor: Predictor) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the metrics sampler, the log sink, the model's reload loop and the shadow scorer
    with the server, stop them with it (the micro-batcher's queue drained first, so the requests
    it still holds are answered and logged; the scorer before the sink, so its last
    records are flushed too; the metrics last, which takes this worker's queue depths out of
    the sum). ``pid`` in ``predictor_started`` tells the workers of one server apart in the log."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        predictor.metrics.start()
        predictor.sink.start()
        predictor.holder.refresh()
        predictor.holder.start()
        predictor.shadow.start()
        # The imports and the loaded model are a few million long-lived objects; every full
        # collection walked them all, a pause of ~0.1-0.3 s that set p99 at 32 connections
        # (289 -> 64 ms measured with benchmarks/serve.py). Frozen, the collector skips them.
        gc.collect()
        gc.freeze()
        log.info(
            "predictor_started",
            model=predictor.settings.model_name,
            alias=predictor.settings.model_alias,
            version=predictor.holder.version,
            shadow=predictor.holder.shadow_version,
            pid=os.getpid(),
        )
        yield
        await predictor.batcher.aclose()  # queued requests answered before the sink stops
        predictor.holder.stop()
        predictor.shadow.stop()
        await predictor.sink.aclose()
        predictor.sink.stop()
        predictor.metrics.stop()
        predictor.stack.close()

    return lifespan


def _no_model(_request: Request, _exc: Exception) -> JSONResponse:
    """503, not 500: the service works, it has nothing to serve yet."""
    return JSONResponse(
        status_code=503,
        content={
            "detail": "no model is being served yet: `mlops train` registers a champion, "
            "which the predictor loads within MLOPS_RELOAD_POLL_SECONDS"
        },
    )


def _too_deep(request: Request, _exc: Exception) -> JSONResponse:
    """422, not 500: a RecursionError while handling a request comes from a body nested too
    deeply for the parser or the validator (``json_body`` bounds the depth before parsing;
    this is the backstop)."""
    max_depth = request.app.state.predictor.settings.max_json_depth
    error = too_deep(max_depth)
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(error.errors())})


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """500 with the request id to quote. Only for an error outside the request context
    middleware, which answers and logs (once, traceback bounded) everything inside it."""
    request_id: Any = getattr(request.state, "request_id", None)
    log.error("unhandled_error", error=str(exc)[:300], error_type=type(exc).__name__)
    return JSONResponse(
        status_code=500, content={"detail": "internal error", "request_id": request_id}
    )


def _bound_registry_calls() -> None:
    """Make a registry outage show within seconds, not minutes.

    MLflow's client retries a failing server 7 times with exponential backoff (minutes in
    all) and waits 120 s per request; the predictor would keep serving either way, but /ready
    could not say the registry is down until the retries gave up. Values set by the user win.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def _ignore_sklearn_delayed_warning() -> None:
    """Silence scikit-learn's spurious "`sklearn.utils.parallel.delayed` should be used with
    `sklearn.utils.parallel.Parallel`" UserWarning.

    Every ColumnTransformer and forest call goes through sklearn's Parallel (n_jobs=1 too),
    which empties the process-global warning filters for a moment; a call on the other thread
    (the event loop and the shadow scorer both score) that dispatches in that moment captures
    no filters and warns, although nothing is wrong (scikit-learn#32631). Only this message.
    """
    warnings.filterwarnings(
        "ignore", message=r".*sklearn\.utils\.parallel\.delayed", category=UserWarning
    )


def app_from_environment() -> FastAPI:
    """uvicorn factory for worker processes: each sets up its own logging and settings."""
    from mlops_stack.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(Stack(settings))

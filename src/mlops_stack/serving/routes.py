"""The predictor's routes: predictions, feedback, and the service's own status.

Each handler gets the state (and ``/model`` the served model) through dependencies
(``serving.dependencies``) and returns a response model (``serving.responses``), which FastAPI
turns into JSON bytes with pydantic's serializer (measured: about 3 us per request more than the
hand-built ``JSONResponse`` it replaces, model construction included) and documents in
``/openapi.json`` with every status it can answer.
Prediction bodies are validated by hand against the served model's classes (see
``serving.requests``); ``serving.openapi`` puts those classes in the spec.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from mlops_stack.logs import get_logger
from mlops_stack.prediction_log.sinks import LogUnavailable
from mlops_stack.serving.dependencies import ModelDep, PredictorDep
from mlops_stack.serving.model import Answer, ServedModel
from mlops_stack.serving.predictor import Predictor
from mlops_stack.serving.requests import check_labels, feedback_items, json_body, validate_body
from mlops_stack.serving.responses import (
    INVALID,
    NO_MODEL,
    NOT_JSON,
    TOO_LARGE,
    UNAVAILABLE,
    BatchPredictResponse,
    ErrorMessage,
    FeatureInfo,
    FeedbackKey,
    FeedbackResponse,
    Health,
    InferenceInfo,
    ModelInfo,
    ModelRef,
    PredictionLogStatus,
    PredictResponse,
    ReadyModel,
    ReadyResponse,
    RegistryReachability,
    Responses,
    RowPrediction,
    ShadowInfo,
)

log = get_logger("mlops_stack.api")

router = APIRouter()
"""All the routes, on one router: each router an app includes is one more step of route
matching on every request in this FastAPI (about 6 us of CPU, measured)."""
PREDICTION_ERRORS: Responses = {**TOO_LARGE, **NOT_JSON, **INVALID, **UNAVAILABLE}


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Predict one row of raw features",
    tags=["predictions"],
    responses=PREDICTION_ERRORS,
)
async def predict(request: Request, predictor: PredictorDep) -> PredictResponse:
    """The served model's answer for one row, with the version that gave it."""
    started = time.perf_counter()
    model = predictor.model()  # once: what served_model does, without a second Depends
    body = validate_body(
        model.predict_request, await json_body(request, predictor.settings.max_json_depth)
    )
    row = body.model_dump(by_alias=True)["features"]
    request_id: str = request.state.request_id
    answers = await logged_answer(predictor, request_id, model, [row], started)
    [(prediction, proba, unseen)] = answers
    return PredictResponse(
        request_id=request_id,
        model=ModelRef(name=model.name, version=model.version),
        prediction=prediction,
        probabilities=proba,
        warnings=[u.warning for u in unseen],
    )


@router.post(
    "/predict/batch",
    response_model=BatchPredictResponse,
    summary="Predict several rows of raw features",
    tags=["predictions"],
    responses=PREDICTION_ERRORS,
)
async def predict_batch(request: Request, predictor: PredictorDep) -> BatchPredictResponse:
    """One answer per row, all from the same version, under one request id."""
    started = time.perf_counter()
    model = predictor.model()
    body = validate_body(
        model.batch_request, await json_body(request, predictor.settings.max_json_depth)
    )
    rows = body.model_dump(by_alias=True)["rows"]
    request_id: str = request.state.request_id
    results = await logged_answer(predictor, request_id, model, rows, started)
    return BatchPredictResponse(
        request_id=request_id,
        model=ModelRef(name=model.name, version=model.version),
        predictions=[
            RowPrediction(
                row=i, prediction=p, probabilities=proba, warnings=[u.warning for u in unseen]
            )
            for i, (p, proba, unseen) in enumerate(results)
        ],
    )


async def logged_answer(
    predictor: Predictor,
    request_id: str,
    model: ServedModel,
    rows: list[dict[str, Any]],
    started: float,
) -> list[Answer]:
    """The rows' answers once they are logged durably; 503 when the log can take no rows."""
    try:
        return await predictor.answer(request_id, model, rows, started)
    except LogUnavailable:  # the sink logged why, once per outage
        raise HTTPException(
            status_code=503,
            detail="the prediction log is unavailable: neither the Redis stream nor the spool "
            "can take the rows; nothing was logged, retry",
        ) from None


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    summary="Report true labels of earlier predictions",
    tags=["feedback"],
    responses={
        404: {
            "model": FeedbackResponse,
            "description": "No item matches an answered prediction; nothing was stored.",
        },
        **TOO_LARGE,
        **NOT_JSON,
        **INVALID,
        503: {
            "model": ErrorMessage,
            "description": "The monitoring database is unavailable; nothing was stored.",
        },
    },
)
async def post_feedback(
    request: Request, predictor: PredictorDep, response: Response
) -> FeedbackResponse:
    """Labels for answered rows (one item, or ``items``); 404 when none matches an answer."""
    items = feedback_items(
        await json_body(request, predictor.settings.max_json_depth),
        predictor.settings.max_feedback_items,
    )
    items = check_labels(predictor.holder.current, items)
    try:
        outcome = await predictor.feedback(items)
    except Exception as exc:
        log.error("feedback_store_unavailable", error=str(exc)[:300])
        raise HTTPException(
            status_code=503,
            detail="the monitoring database is unavailable; nothing was stored, retry",
        ) from None
    if not outcome.accepted:
        response.status_code = 404
    return FeedbackResponse(
        accepted=outcome.accepted,
        unknown=[FeedbackKey(request_id=rid, row=row) for rid, row in outcome.unknown],
    )


@router.get("/health", response_model=Health, summary="The process is alive", tags=["status"])
async def health() -> Health:
    """Always ok while the process answers: a liveness probe, not a readiness one."""
    return Health()


@router.get(
    "/ready",
    response_model=ReadyResponse,
    summary="Predictions can be answered: a model is served and the log can take rows",
    tags=["status"],
    responses={
        503: {
            "model": ReadyResponse,
            "description": (
                "Not ready: no model is served yet, or the prediction log can take no rows "
                "durably (Redis unreachable and the spool not writable), so /predict would "
                "answer 503. A degraded log path (Redis down, rows spooled) is not a 503: it "
                "answers 200 with prediction_log.ok false."
            ),
        }
    },
)
async def ready(predictor: PredictorDep, response: Response) -> ReadyResponse:
    """Ready when a model is served and answered rows can be made durable (Redis reachable or
    the spool writable). A degraded log path is reported in ``prediction_log`` (and as
    ``mlops_prediction_log_degraded`` in /metrics) with 200; the registry is reported but does
    not count (an outage leaves the current model serving)."""
    report = readiness(predictor)
    if not report.ready:
        response.status_code = 503
    return report


def readiness(predictor: Predictor) -> ReadyResponse:
    """The model, prediction log and registry as /ready reports them."""
    settings, model = predictor.settings, predictor.holder.current
    log_ok, log_detail = predictor.sink.status()
    accepting, why_not = predictor.sink.accepting()
    registry = predictor.holder.registry_status
    return ReadyResponse(
        ready=model is not None and accepting,
        model=ReadyModel(
            name=settings.model_name,
            alias=settings.model_alias,
            version=model.version if model else None,
        ),
        prediction_log=PredictionLogStatus(
            ok=log_ok and accepting,
            detail=log_detail if accepting else f"{why_not}; {log_detail}",
            queue_depth=predictor.sink.depth(),
        ),
        registry=RegistryReachability(
            reachable=registry.reachable,
            error=registry.error,
            unreachable_since=registry.since,
            last_checked=registry.last_checked,
        ),
    )


@router.get(
    "/model",
    response_model=ModelInfo,
    summary="The served model: version, task, metrics, feature schema",
    tags=["status"],
    responses=NO_MODEL,
)
async def model_info(predictor: PredictorDep, model: ModelDep) -> ModelInfo:
    """What is served: version, task, run, training metrics, classes and input features, and
    the challenger scored in shadow."""
    return ModelInfo(
        name=model.name,
        version=model.version,
        alias=predictor.settings.model_alias,
        task=model.task,
        run_id=model.run_id,
        trained_at=model.trained_at,
        loaded_at=model.loaded_at,
        metrics=model.metrics,
        classes=[str(c) for c in model.classes],
        features=[
            FeatureInfo(name=f.name, type=f.dtype, nullable=not f.required) for f in model.fields
        ],
        inference=InferenceInfo.model_validate(model.inference, from_attributes=True),
        shadow=shadow_info(predictor),
    )


def shadow_info(predictor: Predictor) -> ShadowInfo | None:
    """The challenger in shadow and what its scorer did since start; None without one."""
    challenger, scorer = predictor.holder.shadow, predictor.shadow
    if challenger is None:
        return None
    return ShadowInfo(
        version=challenger.version,
        run_id=challenger.run_id,
        trained_at=challenger.trained_at,
        loaded_at=challenger.loaded_at,
        metrics=challenger.metrics,
        queued_rows=scorer.depth(),
        scored_rows=scorer.scored,
        dropped_rows=scorer.dropped,
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics",
    tags=["status"],
)
async def metrics(predictor: PredictorDep) -> Response:
    """The series in the Prometheus text format: this app's, or every worker's summed when
    `mlops serve api` runs several (``serving.metrics``)."""
    return Response(predictor.metrics.render(), media_type=CONTENT_TYPE_LATEST)

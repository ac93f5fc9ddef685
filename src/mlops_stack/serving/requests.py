"""Request bodies, validated by hand against classes chosen per request.

The prediction bodies are pydantic classes built from the served model's signature, and the
model can change between two requests, so they cannot be declared as FastAPI body parameters
(those are fixed when the route is added). The routes read the JSON once and validate it here
against the class of the model they use; errors take the shape of FastAPI's own 422.
``/feedback`` validates by hand too: it takes one item or a batch, and a union body parameter
would report every error once per member of the union.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from mlops_stack.serving.model import ServedModel

M = TypeVar("M", bound=BaseModel)


class FeedbackItem(BaseModel):
    """The true label of one answered row."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=64)
    row: int = Field(0, ge=0, description="Row of a /predict/batch request; 0 for /predict.")
    label: str | int | float | bool


class FeedbackBatch(BaseModel):
    """Several labels in one request (at most MLOPS_MAX_FEEDBACK_ITEMS)."""

    model_config = ConfigDict(extra="forbid")
    items: list[FeedbackItem] = Field(min_length=1)


FEEDBACK_BODY: TypeAdapter[FeedbackItem | FeedbackBatch] = TypeAdapter(FeedbackItem | FeedbackBatch)
"""Only for the OpenAPI description of ``/feedback``'s body; validation goes by ``items``."""


async def json_body(request: Request) -> Any:
    """The parsed JSON body; a body that is not JSON is a 422 like any other bad body."""
    try:
        return await request.json()
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ["body"], "msg": f"body is not valid JSON: {exc}", "type": "json_invalid"}]
        ) from None


def validate_body(model_cls: type[M], body: Any) -> M:
    """``body`` as ``model_cls``, or a 422 listing every problem."""
    try:
        return model_cls.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(_validation_errors(exc)) from None


def _validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic errors as FastAPI's 422 detail: where (``loc``), why (``msg``), what kind."""
    return [
        {"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def feedback_items(body: Any, max_items: int) -> list[FeedbackItem]:
    """The items of a ``/feedback`` body: a batch when it has ``items``, else one item."""
    if isinstance(body, dict) and "items" in body:
        items = validate_body(FeedbackBatch, body).items
    else:
        items = [validate_body(FeedbackItem, body)]
    if len(items) > max_items:
        raise RequestValidationError(
            [
                {
                    "loc": ["body", "items"],
                    "type": "too_long",
                    "msg": f"at most {max_items} items per request",
                }
            ]
        )
    return items


def check_labels(model: ServedModel | None, items: list[FeedbackItem]) -> None:
    """A label must be one of the classes the served model knows (any, while none is served)."""
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

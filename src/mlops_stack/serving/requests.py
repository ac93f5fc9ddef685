"""Request bodies, validated by hand against classes chosen per request.

The prediction bodies are pydantic classes built from the served model's signature, and the
model can change between two requests, so they cannot be declared as FastAPI body parameters
(those are fixed when the route is added). The routes read the JSON once and validate it here
against the class of the model they use; errors take the shape of FastAPI's own 422.
``/feedback`` validates by hand too: it takes one item or a batch, and a union body parameter
would report every error once per member of the union.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeVar

import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from mlops_stack.names import Task
from mlops_stack.serving.model import ServedModel

M = TypeVar("M", bound=BaseModel)


class FeedbackItem(BaseModel):
    """The true label of one answered row."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=64)
    row: int = Field(0, ge=0, description="Row of a /predict/batch request; 0 for /predict.")
    label: str | int | float | bool = Field(
        description="One of the model's classes (classification); a number, or numeric text "
        'such as "151.5" (regression).'
    )


class FeedbackBatch(BaseModel):
    """Several labels in one request (at most MLOPS_MAX_FEEDBACK_ITEMS)."""

    model_config = ConfigDict(extra="forbid")
    items: list[FeedbackItem] = Field(min_length=1)


NUMERIC_TEXT = r"^[ \t\n\r]*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,2})?[ \t\n\r]*$"
"""A regression label given as text: a decimal number, ASCII digits, an exponent of at most two
digits (with :data:`NUMERIC_TEXT_MAX_LENGTH`, always finite). Python's ``re`` and the ECMA
regexes of JSON Schema read it alike."""
NUMERIC_TEXT_MAX_LENGTH = 40
_NUMERIC_TEXT = re.compile(NUMERIC_TEXT)

FEEDBACK_BODY: TypeAdapter[FeedbackItem | FeedbackBatch] = TypeAdapter(FeedbackItem | FeedbackBatch)
"""Only for the OpenAPI description of ``/feedback``'s body; validation goes by ``items``."""


_STEPS = np.zeros(256, dtype=np.int8)
_STEPS[list(b"[{")] = 1
_STEPS[list(b"]}")] = -1
"""What each byte does to the nesting depth: an opener +1, a closer -1, anything else 0."""
_QUOTE = ord('"')


def json_depth(raw: bytes, at_most: int | None = None) -> int:
    """How deeply the arrays and objects of a JSON text nest, without parsing it.

    With ``at_most``, any answer up to it means "not deeper than that": a body with fewer
    openers than ``at_most`` (every /predict body, a small batch) is answered by counting them
    (~1 us). Otherwise escaped backslashes and quotes are dropped, a bracket after an odd
    number of quotes is inside a string and does not count, the rest become +1/-1 and the
    deepest running sum is the depth: vectorised passes over the bytes (milliseconds for a
    2 MB batch), whereas the parser recurses once per level and fails near a thousand.
    """
    openers = raw.count(b"[") + raw.count(b"{")
    if at_most is not None and openers <= at_most:
        return openers
    text = np.frombuffer(raw.replace(b"\\\\", b"").replace(b'\\"', b""), dtype=np.uint8)
    steps = _STEPS[text]  # a new array: writable
    steps[(np.cumsum(text == _QUOTE, dtype=np.int32) & 1) == 1] = 0
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def too_deep(max_depth: int, depth: int | None = None) -> RequestValidationError:
    """The 422 for a body nested deeper than ``max_depth`` (``depth`` when it is known)."""
    found = f"{depth} levels deep" if depth is not None else "too deeply to parse"
    return RequestValidationError(
        [
            {
                "loc": ["body"],
                "msg": f"body nests arrays and objects {found}; at most {max_depth} levels "
                "(MLOPS_MAX_JSON_DEPTH)",
                "type": "json_too_deep",
            }
        ]
    )


async def json_body(request: Request, max_depth: int) -> Any:
    """The parsed JSON body; a body that is not JSON, or nests deeper than ``max_depth``, is a
    422 like any other bad body (the depth is checked before parsing; a RecursionError of the
    parser itself, which a body in another encoding could still reach, is the same 422)."""
    raw = await request.body()
    depth = json_depth(raw, at_most=max_depth)
    if depth > max_depth:
        raise too_deep(max_depth, depth)
    try:
        return json.loads(raw)
    except RecursionError:
        raise too_deep(max_depth) from None
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


def check_labels(model: ServedModel | None, items: list[FeedbackItem]) -> list[FeedbackItem]:
    """The items with labels the served model can be judged on, or a 422 naming each bad one.

    A regression model takes a number (a JSON number or a numeric string; the returned items
    carry it as a float, so the stored text always parses back); a classifier takes one of its
    classes. Any label goes while no model is served.
    """
    if model is None:
        return items
    if model.task is Task.REGRESSION:
        return _numeric_labels(items)
    if model.classes:
        _check_classes({str(c) for c in model.classes}, items)
    return items


def _numeric_labels(items: list[FeedbackItem]) -> list[FeedbackItem]:
    numbers = [_number(item.label) for item in items]
    errors = [
        _label_error(
            items,
            i,
            f"label must be a number for a regression model; got {item.label!r}"
            if number is None
            else f"label must be a finite number for a regression model; got {item.label!r}",
        )
        for i, (item, number) in enumerate(zip(items, numbers, strict=True))
        if number is None or not math.isfinite(number)
    ]
    if errors:
        raise RequestValidationError(errors)
    return [
        item.model_copy(update={"label": number})
        for item, number in zip(items, numbers, strict=True)
    ]


def _number(label: str | int | float | bool) -> float | None:
    """The label as a float; None when it is no number (``true`` is not one).

    Text is a number when it matches :data:`NUMERIC_TEXT` (what the OpenAPI document
    promises, so nothing else passes: not ``"1_0"``, which ``float`` would take); ``"NaN"`` or
    ``"inf"`` come back as the non-finite floats they are, for the error to say so.
    """
    if isinstance(label, bool):
        return None
    if not isinstance(label, str):
        try:
            return float(label)
        except OverflowError:
            return None
    if len(label) <= NUMERIC_TEXT_MAX_LENGTH and _NUMERIC_TEXT.fullmatch(label):
        return float(label)
    try:
        value = float(label)
    except ValueError:
        return None
    return None if math.isfinite(value) else value


def _check_classes(classes: set[str], items: list[FeedbackItem]) -> None:
    errors = [
        _label_error(
            items, i, f"unknown class {item.label!r}; the model's classes are {sorted(classes)}"
        )
        for i, item in enumerate(items)
        if str(item.label) not in classes
    ]
    if errors:
        raise RequestValidationError(errors)


def _label_error(items: list[FeedbackItem], index: int, msg: str) -> dict[str, Any]:
    return {
        "loc": ["body", *(["items", index] if len(items) > 1 else []), "label"],
        "msg": msg,
        "type": "value_error",
    }

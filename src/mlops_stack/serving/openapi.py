"""The OpenAPI document, with the request bodies of the model being served right now.

The prediction bodies are not FastAPI body parameters (see ``serving.requests``), so the spec
FastAPI derives from the routes has none for them: they are patched in here, from the served
model's classes, each time the document is asked for, since the model can change at any time.
The ``/feedback`` body (one item or a batch) is patched in the same way, its ``label`` narrowed
to what the served model takes (one of its classes, or a number).

The answers of access control depend on the configuration and are added here too, so that the
document lists every status a route can give: 400 for a repeated X-API-Key header (any path),
401 and 403 when keys are on, 429 with Retry-After when a rate limit is set (not on the open
paths, which need no key and count against no limit; with keys on they say ``security: []``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from mlops_stack.names import Task
from mlops_stack.serving.access import API_KEY_HEADER, OPEN_PATHS
from mlops_stack.serving.model import ServedModel
from mlops_stack.serving.predictor import Predictor
from mlops_stack.serving.requests import FEEDBACK_BODY, NUMERIC_TEXT, NUMERIC_TEXT_MAX_LENGTH
from mlops_stack.serving.responses import ErrorMessage

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR = {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model="ErrorMessage")}}}


def openapi_schema(app: FastAPI, predictor: Predictor, keys_required: bool) -> dict[str, Any]:
    """The spec of ``app`` with the bodies of the served model, the access-control answers
    and, if keys are on, the key."""
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
    schema.setdefault("components", {}).setdefault("schemas", {})["ErrorMessage"] = (
        ErrorMessage.model_json_schema()
    )
    document_access(schema, keys_required, predictor.settings.rate_limit_per_minute)
    set_body(schema, "/feedback", FEEDBACK_BODY.json_schema(ref_template=REF_TEMPLATE))
    model = predictor.holder.current
    if model is None:
        return schema
    label = schema["components"]["schemas"]["FeedbackItem"]["properties"]["label"]
    label.pop("anyOf", None)
    label.update(label_schema(model))
    for path, cls in (("/predict", model.predict_request), ("/predict/batch", model.batch_request)):
        body = cls.model_json_schema(by_alias=True, ref_template=REF_TEMPLATE)
        set_body(schema, path, body, name=cls.__name__)
    schema["info"]["description"] += f" Serving {model.name} v{model.version}."
    return schema


def set_body(
    schema: dict[str, Any], path: str, body: dict[str, Any], name: str | None = None
) -> None:
    """Declare ``body`` as the required JSON body of ``POST path``.

    Its ``$defs`` go to the document's components, where its references point; with a
    ``name``, the body itself goes there too and the route refers to it (as /docs shows it).
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(body.pop("$defs", {}))
    if name is not None:
        components[name] = body
        body = {"$ref": REF_TEMPLATE.format(model=name)}
    schema["paths"][path]["post"]["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": body}},
    }


def label_schema(model: ServedModel) -> dict[str, Any]:
    """What ``check_labels`` accepts as a label for ``model``: one of its classes, as itself
    or as text; for a regression model a number, or text matching ``NUMERIC_TEXT``."""
    if model.task is Task.REGRESSION:
        return {
            "anyOf": [
                {"type": "number"},
                {"type": "string", "pattern": NUMERIC_TEXT, "maxLength": NUMERIC_TEXT_MAX_LENGTH},
            ]
        }
    classes = [c.item() if hasattr(c, "item") else c for c in model.classes]
    return {"enum": list(dict.fromkeys([*classes, *(str(c) for c in classes)]))}


def document_access(schema: dict[str, Any], keys_required: bool, per_minute: int) -> None:
    """Add the answers of ``AccessMiddleware`` to every operation that can give them."""
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            responses = operation["responses"]
            responses["400"] = {
                "description": f"More than one {API_KEY_HEADER} header.",
                "content": ERROR,
            }
            if path in OPEN_PATHS:
                if keys_required:
                    operation["security"] = []  # no key needed here
                continue
            if keys_required:
                responses["401"] = {
                    "description": f"No {API_KEY_HEADER} header.",
                    "headers": {
                        "WWW-Authenticate": {"required": True, "schema": {"type": "string"}}
                    },
                    "content": ERROR,
                }
                responses["403"] = {"description": "The key is not a valid one.", "content": ERROR}
            if per_minute > 0:
                responses["429"] = {
                    "description": f"More than {per_minute} requests this minute from this "
                    "key (or address, without keys).",
                    "headers": {
                        "Retry-After": {
                            "description": "Seconds until the caller may retry.",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 1},
                        }
                    },
                    "content": ERROR,
                }

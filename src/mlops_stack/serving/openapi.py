"""The OpenAPI document, with the request bodies of the model being served right now.

The prediction bodies are not FastAPI body parameters (see ``serving.requests``), so the spec
FastAPI derives from the routes has none for them: they are patched in here, from the served
model's classes, each time the document is asked for, since the model can change at any time.
The ``/feedback`` body (one item or a batch) is patched in the same way.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from mlops_stack.serving.access import API_KEY_HEADER
from mlops_stack.serving.predictor import Predictor
from mlops_stack.serving.requests import FEEDBACK_BODY

REF_TEMPLATE = "#/components/schemas/{model}"


def openapi_schema(app: FastAPI, predictor: Predictor, keys_required: bool) -> dict[str, Any]:
    """The spec of ``app`` with the bodies of the served model and, if keys are on, the key."""
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
    set_body(schema, "/feedback", FEEDBACK_BODY.json_schema(ref_template=REF_TEMPLATE))
    model = predictor.holder.current
    if model is None:
        return schema
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

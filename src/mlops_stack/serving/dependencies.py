"""What the routes are given: the app's state and the model a request uses.

Routes declare these instead of closing over the state, so they live on a plain router, and a
test or a composition root can swap the state with ``app.dependency_overrides``. Both are
``async def``: FastAPI runs a plain ``def`` dependency in the thread pool, a thread hop per call.

Each dependency costs about 11 us of CPU per request in this FastAPI (solving it builds a cache
key and reads the request's query, headers and cookies, even for a cached one), so the two
prediction routes take only ``PredictorDep`` and read the model themselves, exactly once, as
``served_model`` does.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from mlops_stack.serving.model import ServedModel
from mlops_stack.serving.predictor import Predictor


async def get_predictor(request: Request) -> Predictor:
    """The app's state, set once by ``create_app``."""
    predictor: Predictor = request.app.state.predictor
    return predictor


PredictorDep = Annotated[Predictor, Depends(get_predictor)]


async def served_model(predictor: PredictorDep) -> ServedModel:
    """The model this request uses from start to end, read once (NoModel, so 503, if none).

    A swap in the middle of the request changes nothing for it: the answer, the version it
    reports and the logged row all come from this one object.
    """
    return predictor.model()


ModelDep = Annotated[ServedModel, Depends(served_model)]

"""The compiled inference path: the served pipeline converted to ONNX, verified before use.

Calling a scikit-learn ``Pipeline`` costs milliseconds a call however few rows it gets (the
ColumnTransformer's pandas and validation machinery; a forest's per-tree Python), which is what
caps the predictor. skl2onnx converts the whole pipeline, imputer and scaler included, into one
ONNX graph that onnxruntime runs in tens of microseconds. A converted model is only served once
it is shown to answer like the pipeline: at load time, on the model-loading thread (never on a
request), both paths score the holdout sample logged with the model (or, for a model logged
before holdouts were, its reference sample), as they are and again with a fixed share of numeric
cells missing so the imputer is checked too. Classes must be identical on every row and
probabilities within ``onnx_tolerance``. Anything else (a pipeline that does not convert, a
runtime error, a difference, too slow a check) serves the pipeline, with the reason on /model.

The graph takes one ``[n, 1]`` float32 tensor per raw column (the ColumnTransformer selects by
column name; onnxruntime has no float64 kernel for the imputer). skl2onnx renames inputs
("mean radius" becomes "mean_radius"), so inputs are matched to columns by position.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from mlops_stack.logs import get_logger
from mlops_stack.names import Task
from mlops_stack.serving.schema import FeatureField, rows_to_frame

log = get_logger(__name__)

NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})
COMPILE_SECONDS = 120.0
"""Longest a conversion plus verification may take before the pipeline is served instead: it
runs on the loading thread, and a new version must not wait on it indefinitely."""
MISSING_EVERY = 7
"""In the verification's second pass, one numeric cell in this many is set missing (a fixed
pattern, so a load is reproducible) to exercise the imputer inside the graph."""

VerifiedOn = Literal["holdout", "reference sample"]


@dataclass(frozen=True)
class InferenceChoice:
    """Which path scores requests and why: what /model reports and the log records."""

    path: Literal["onnx", "sklearn"]
    reason: str
    verified_on: VerifiedOn | None = None
    verified_rows: int = 0
    max_abs_diff: float | None = None
    tolerance: float | None = None
    seconds: float = 0.0


class CompiledModel:
    """An onnxruntime session over the converted pipeline and the way rows become its inputs.

    The session is single-threaded: the predictor's parallelism is its workers (processes,
    replicas) and the micro-batcher that hands one call many rows; threads inside onnxruntime
    would only contend with those for the same cores.
    """

    def __init__(self, model_bytes: bytes, fields: Sequence[FeatureField], task: Task) -> None:
        import onnxruntime as ort  # here: only a predictor that compiles pays for the import

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            model_bytes, options, providers=["CPUExecutionProvider"]
        )
        inputs = [i.name for i in self.session.get_inputs()]
        if len(inputs) != len(fields):
            raise ValueError(f"the graph takes {len(inputs)} inputs for {len(fields)} columns")
        numeric = [
            (inp, f.name) for inp, f in zip(inputs, fields, strict=True) if f.dtype in NUMERIC_TYPES
        ]
        self._numeric_inputs = [inp for inp, _ in numeric]
        names = [name for _, name in numeric]
        # one tuple per row in C; a single name would make itemgetter return a scalar
        self._numeric_values: Callable[[dict[str, Any]], Any] = (
            itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
        )
        self._text = [
            (inp, f.name)
            for inp, f in zip(inputs, fields, strict=True)
            if f.dtype not in NUMERIC_TYPES
        ]
        outputs = [o.name for o in self.session.get_outputs()]
        # a classifier's graph answers (label, probabilities) with zipmap off; a regressor one
        self._output = outputs[1] if task is Task.CLASSIFICATION else outputs[0]

    def feed(self, rows: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        """The graph's inputs straight from validated rows: one float32 matrix built in one
        call and cut into columns (None becomes NaN, which the graph's imputer fills)."""
        feed: dict[str, np.ndarray] = {}
        if self._numeric_inputs:
            matrix = np.array(list(map(self._numeric_values, rows)), dtype=np.float32)
            columns = np.ascontiguousarray(matrix.reshape(len(rows), -1).T)
            for name, column in zip(self._numeric_inputs, columns, strict=True):
                feed[name] = column.reshape(-1, 1)
        # text columns: in the stack's pipelines a graph converts only when it drops them (an
        # encoded one is imputed first, which does not convert); were one used, verification
        # compares the "" given for a missing one with the pipeline's NaN on the sample
        for name, field in self._text:
            values = ["" if row[field] is None else str(row[field]) for row in rows]
            feed[name] = np.array(values, dtype=object).reshape(-1, 1)
        return feed

    def run(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """Class probabilities (n x classes) or regression values (n), as float32."""
        (out,) = self.session.run([self._output], self.feed(rows))
        result: np.ndarray = np.asarray(out)
        return result if result.ndim == 2 and result.shape[1] > 1 else result.reshape(-1)


def _sentence(exc: BaseException) -> str:
    """An exception in one short line: its first line, and its cause's (skl2onnx wraps the
    telling error, e.g. protobuf's, in a message that dumps a whole node's attributes)."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0][:160] if lines else ''}"
    cause = exc.__cause__
    return f"{text} (caused by {_sentence(cause)})" if cause is not None else text


class NotCompiled(Exception):
    """Why a model is served through its pipeline: the sentence /model shows."""


def convert(pipeline: Pipeline, fields: Sequence[FeatureField], task: Task) -> CompiledModel:
    """Convert the pipeline to ONNX and open a session on it; NotCompiled when it cannot be."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    unsupported = [f.name for f in fields if f.dtype not in NUMERIC_TYPES | {"string"}]
    if unsupported:
        raise NotCompiled(f"columns of a type the graph does not take: {', '.join(unsupported)}")
    if task is Task.CLASSIFICATION and not hasattr(pipeline, "predict_proba"):
        raise NotCompiled("the classifier has no class probabilities to verify")
    types = [
        (
            f.name,
            FloatTensorType([None, 1]) if f.dtype in NUMERIC_TYPES else StringTensorType([None, 1]),
        )
        for f in fields
    ]
    options = (
        {id(pipeline.steps[-1][1]): {"zipmap": False}} if task is Task.CLASSIFICATION else None
    )
    try:
        model = to_onnx(pipeline, initial_types=types, options=options)
        return CompiledModel(model.SerializeToString(), fields, task)
    except Exception as exc:  # skl2onnx and onnxruntime raise anything from here
        raise NotCompiled(f"conversion failed: {_sentence(exc)}") from exc


def verification_rows(sample: pd.DataFrame, fields: Sequence[FeatureField]) -> list[dict[str, Any]]:
    """The sample as validated rows (None for missing), then the same rows again with one
    numeric cell in ``MISSING_EVERY`` missing (a fixed pattern) so the imputer is exercised."""
    absent = [f.name for f in fields if f.name not in sample.columns]
    if absent:
        raise NotCompiled(f"the verification sample lacks columns: {', '.join(absent[:5])}")
    frame = sample[[f.name for f in fields]]
    rows: list[dict[str, Any]] = frame.astype(object).where(frame.notna(), None).to_dict("records")
    numeric = [f.name for f in fields if f.dtype in NUMERIC_TYPES]
    holed = []
    for i, row in enumerate(rows):
        copy = dict(row)
        for j, name in enumerate(numeric):
            if (i * len(numeric) + j) % MISSING_EVERY == 0:
                copy[name] = None
        holed.append(copy)
    return rows + holed


def verify(
    compiled: CompiledModel,
    pipeline: Pipeline,
    fields: Sequence[FeatureField],
    task: Task,
    rows: list[dict[str, Any]],
    tolerance: float,
) -> float:
    """Score ``rows`` through both paths; the largest absolute difference, or NotCompiled.

    A classifier's served class is the argmax of its probabilities on either path, so classes
    are compared as argmaxes, on every row. A regression value may differ by ``tolerance``
    relative to its size plus ``tolerance`` absolute (float32 keeps about 7 digits).
    """
    frame = rows_to_frame(rows, list(fields))
    try:
        got = compiled.run(rows)
    except Exception as exc:
        raise NotCompiled(f"onnxruntime failed: {_sentence(exc)}") from exc
    if task is Task.REGRESSION:
        expected = np.asarray(pipeline.predict(frame), dtype=np.float64).reshape(-1)
        diff = np.abs(got.astype(np.float64) - expected)
        allowed = tolerance + tolerance * np.abs(expected)
        worst = float(diff.max())
        if not np.all(diff <= allowed):  # also False on NaN
            raise NotCompiled(f"values differ by up to {worst:.3g}, beyond the tolerance", worst)
        return worst
    expected = pipeline.predict_proba(frame)
    if got.shape != expected.shape:
        raise NotCompiled(f"probabilities shaped {got.shape}, the pipeline's {expected.shape}")
    worst = float(np.abs(got.astype(np.float64) - expected).max())
    flipped = int((got.argmax(axis=1) != expected.argmax(axis=1)).sum())
    if flipped:
        raise NotCompiled(f"{flipped} of {len(rows)} rows get another class", worst)
    if not worst <= tolerance:  # also True on NaN
        raise NotCompiled(f"probabilities differ by up to {worst:.3g} > {tolerance:g}", worst)
    return worst


def choose(
    pipeline: Pipeline,
    fields: Sequence[FeatureField],
    task: Task,
    *,
    sample: pd.DataFrame | None,
    verified_on: VerifiedOn,
    tolerance: float,
    timeout: float = COMPILE_SECONDS,
) -> tuple[CompiledModel | None, InferenceChoice]:
    """Compile and verify within ``timeout``; the session to serve (None: the pipeline) and why.

    The work runs on a helper thread joined with a deadline, so a pathological conversion
    cannot hold the loading thread (and every later version) forever; past the deadline its
    result is discarded.
    """
    started = time.perf_counter()
    outcome: list[tuple[CompiledModel | None, InferenceChoice]] = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            _compile_and_verify(pipeline, fields, task, sample, verified_on, tolerance)
        ),
        name="onnx-compile",
        daemon=True,
    )
    worker.start()
    worker.join(timeout)
    seconds = time.perf_counter() - started
    if not outcome:
        why = f"compiling and verifying took over {timeout:g} s"
        return None, InferenceChoice("sklearn", why, tolerance=tolerance, seconds=seconds)
    compiled, choice = outcome[0]
    return compiled, replace(choice, seconds=seconds)


def _compile_and_verify(
    pipeline: Pipeline,
    fields: Sequence[FeatureField],
    task: Task,
    sample: pd.DataFrame | None,
    verified_on: VerifiedOn,
    tolerance: float,
) -> tuple[CompiledModel | None, InferenceChoice]:
    compared: list[dict[str, Any]] = []  # the rows both paths scored, once they did
    try:
        if sample is None or sample.empty:
            raise NotCompiled("no holdout or reference sample to verify against")
        rows = verification_rows(sample, fields)
        compiled = convert(pipeline, fields, task)
        compared = rows
        worst = verify(compiled, pipeline, fields, task, rows, tolerance)
    except NotCompiled as exc:
        diff = exc.args[1] if len(exc.args) > 1 and not math.isnan(exc.args[1]) else None
        on = verified_on if compared else None
        why = str(exc.args[0])
        return None, InferenceChoice("sklearn", why, on, len(compared), diff, tolerance)
    except Exception as exc:  # the pipeline itself failed on the sample: serve it untouched
        why = f"verification failed: {_sentence(exc)}"
        return None, InferenceChoice("sklearn", why, tolerance=tolerance)
    return compiled, InferenceChoice("onnx", "verified", verified_on, len(rows), worst, tolerance)

"""One streamed pass over a monitor window: a uniform sample for drift, counts over every row.

Why one pass: a window of a million logged rows does not fit in memory as Python objects, and
neither the drift tests nor the quality counts need it to. As the window's chunks go by (from
``MonitorStore.window_chunks``), a seeded reservoir keeps a uniform random sample of at most
``max_rows`` rows for the drift tests, :class:`~mlops_stack.monitoring.quality.QualityCounter`
counts missing, out-of-range and unseen values over every row (a handful of bad rows must not be
sampled away), a classifier's :class:`~mlops_stack.monitoring.estimate.EstimateCounter` sums
the expected confusion counts of every row's probabilities (performance estimated before labels
arrive), and the labelled rows are kept, in compact form, for model quality. Memory is bounded by
the chunk, the sample and the labelled rows, never the window.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from mlops_stack.data import DatasetSchema
from mlops_stack.monitoring.checks import WholeWindow
from mlops_stack.monitoring.estimate import (
    EstimateCounter,
    EstimatedQuality,
    estimate_quality,
    probability_frame,
)
from mlops_stack.monitoring.quality import (
    ModelQuality,
    QualityCounter,
    model_quality,
    regression_rows,
)
from mlops_stack.monitoring_db import WindowExtent, window_frames
from mlops_stack.names import Task

# What the pass needs of each row besides its features (MonitorStore.window_chunks(columns=...)).
COLUMNS = ("created_at", "prediction", "probabilities", "label")


class Reservoir:
    """A seeded uniform random sample, without replacement, of at most ``size`` streamed rows.

    Every row draws an independent uniform key and the ``size`` smallest keys are kept: that is
    a uniform sample of the stream whatever its length, chosen with vectorised operations per
    chunk, and the same stream with the same seed gives the same sample. Candidates pile up to
    twice ``size`` before they are cut back, so each row is copied a bounded number of times.
    """

    def __init__(self, size: int, seed: int) -> None:
        if size < 1:
            raise ValueError(f"a sample needs at least one row, not {size}")
        self.size = size
        self.seen = 0
        self._rng = np.random.default_rng(seed)
        self._frames: list[pd.DataFrame] = []
        self._keys: list[np.ndarray] = []
        self._held = 0
        self._bound = 1.0  # a key at or above it can no longer make the sample

    def add(self, chunk: pd.DataFrame) -> None:
        keys = self._rng.random(len(chunk))
        self.seen += len(chunk)
        candidates = keys < self._bound
        if candidates.any():
            self._frames.append(chunk[candidates])
            self._keys.append(keys[candidates])
            self._held += int(candidates.sum())
        if self._held > 2 * self.size:
            self._cut()

    def sample(self) -> pd.DataFrame | None:
        """The sample in stream order (by index); None when the stream had no rows."""
        self._cut()
        return self._frames[0].sort_index() if self._frames else None

    def _cut(self) -> None:
        """Keep the ``size`` rows with the smallest keys; raise the bar to the largest kept."""
        if len(self._frames) <= 1 and self._held <= self.size:
            return
        frame = pd.concat(self._frames)
        keys = np.concatenate(self._keys)
        if len(keys) > self.size:
            kept = np.argpartition(keys, self.size - 1)[: self.size]
            frame, keys = frame.iloc[kept], keys[kept]
            self._bound = float(keys.max())
        self._frames, self._keys, self._held = [frame], [keys], len(keys)


@dataclass(frozen=True)
class Window:
    """A monitor window as read in one pass: its extent, a sample of it, whole-window counts."""

    extent: WindowExtent
    features: pd.DataFrame  # the sample's feature columns, named as in the schema
    predictions: pd.Series  # the sample's predictions: classes as text, a regressor's numbers
    whole: WholeWindow  # data quality over every row, model quality over every labelled row


def read_window(
    chunks: Iterable[pd.DataFrame], schema: DatasetSchema, *, max_rows: int, seed: int
) -> Window:
    """Sample, count and collect labelled rows over the chunks of ``MonitorStore.window_chunks``.

    A feature missing from a chunk's rows altogether counts as missing there.
    """
    reservoir = Reservoir(max_rows, seed)
    quality = QualityCounter(schema)
    estimate = _estimate_counter(schema)
    labelled: list[pd.DataFrame] = []
    start = end = None
    with _cyclic_gc_paused():
        for chunk in chunks:
            if chunk.empty:
                continue
            quality.add(_features(chunk, schema))
            if estimate is not None:
                estimate.add(probability_frame(chunk["probabilities"], estimate.classes))
            reservoir.add(chunk)
            labelled.append(_labelled(chunk, schema))
            first, last = chunk["created_at"].min(), chunk["created_at"].max()
            start = first if start is None else min(start, first)
            end = last if end is None else max(end, last)
    rows = reservoir.seen
    sample = reservoir.sample()
    if sample is None:
        sample = pd.DataFrame({"prediction": pd.Series(dtype=object)})
    note = (
        f"analysed a uniform random sample of {len(sample)} of {rows} rows (seed {seed})"
        if rows > len(sample)
        else f"analysed all {rows} rows"
    )
    labelled_rows = _concat(labelled)
    whole = WholeWindow(
        rows=rows,
        quality=quality.results(),
        model_quality=_model_quality(labelled_rows, schema),
        note=note,
        regression_rows=(
            None
            if labelled_rows is None
            else regression_rows(labelled_rows["label"], labelled_rows["prediction"], schema)
        ),
        estimated=estimate.result() if estimate is not None else None,
        estimated_labelled=_labelled_estimate(labelled_rows, schema),
    )
    return Window(
        extent=WindowExtent(rows, _moment(start), _moment(end)),
        features=_features(sample, schema),
        predictions=_predictions(sample["prediction"], schema),
        whole=whole,
    )


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while the window streams by; collected once afterwards.

    Why: the read allocates tens of millions of short-lived tuples, dicts and floats. Each
    allocation burst triggers the cyclic collector, whose older generations walk every live
    object (the sample included) again and again: about 30 % of the read time, measured on
    200,000 rows, for no cycle to find. Reference counting still frees every chunk.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()


def _features(chunk: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """The schema's feature columns of a store frame, named as in the schema."""
    return window_frames.features(chunk, schema.feature_names)


def _predictions(values: pd.Series, schema: DatasetSchema) -> pd.Series:
    """Predictions as the checks compare them: a classifier's classes as text, a regressor's
    numbers as floats (the store gives back JSON numbers)."""
    if schema.task is Task.REGRESSION:
        return pd.to_numeric(values, errors="coerce").astype(float)
    return values.astype(str)


def _labelled(chunk: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """A chunk's labelled rows as label, prediction and, for a classifier, one column per class.

    Compact on purpose: floats instead of the per-row probability dicts, so that a window whose
    rows are all labelled still fits. A regressor has no probabilities.
    """
    part = chunk.loc[chunk["label"].notna()]
    if schema.task is Task.REGRESSION:
        return pd.DataFrame(
            {"label": part["label"], "prediction": _predictions(part["prediction"], schema)},
            index=part.index,
        )
    probabilities = pd.DataFrame.from_records([p or {} for p in part["probabilities"]])
    probabilities = probabilities.set_axis(part.index).astype(float)
    probabilities.columns = [f"p:{c}" for c in probabilities.columns]
    classes = pd.DataFrame(
        {"label": part["label"], "prediction": part["prediction"].astype(str)}, index=part.index
    )
    return classes.join(probabilities)


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame | None:
    """The labelled rows of every chunk in one frame; None when none came back."""
    parts = [p for p in parts if len(p)]
    return pd.concat(parts) if parts else None


def _model_quality(rows: pd.DataFrame | None, schema: DatasetSchema) -> ModelQuality | None:
    """Model quality over every labelled row of the window; None when none came back."""
    if rows is None:
        return None
    return model_quality(
        rows["label"], rows["prediction"], _probabilities(rows), schema.classes, schema
    )


def _estimate_counter(schema: DatasetSchema) -> EstimateCounter | None:
    """A classifier's estimate over every row; None for a regressor (no probabilities)."""
    if schema.task is Task.REGRESSION or len(schema.classes) < 2:
        return None
    return EstimateCounter(schema.classes)


def _labelled_estimate(rows: pd.DataFrame | None, schema: DatasetSchema) -> EstimatedQuality | None:
    """The estimate over the labelled rows only: the rows the realised figures come from."""
    if rows is None or schema.task is Task.REGRESSION:
        return None
    return estimate_quality(_probabilities(rows), schema.classes)


def _probabilities(rows: pd.DataFrame) -> pd.DataFrame:
    """The ``p:<class>`` columns of the labelled rows, named by class again."""
    probabilities = rows[[c for c in rows.columns if c.startswith("p:")]]
    return probabilities.set_axis([c.removeprefix("p:") for c in probabilities.columns], axis=1)


def _moment(value: pd.Timestamp | None) -> datetime | None:
    """A pandas timestamp as a datetime (what the results table stores)."""
    return None if value is None or pd.isna(value) else value.to_pydatetime()

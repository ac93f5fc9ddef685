"""Window rows as pandas frames: the columns a window carries and how its JSON is parsed.

Pure functions shared by the monitor's reads (:mod:`~mlops_stack.monitoring_db.monitor`) and the
dashboard's (:mod:`~mlops_stack.monitoring_db.dashboard`): which columns a window selects, how
a chunk of rows becomes a frame with one column per feature, and how a shadow-pairs row becomes
compact float columns. Kept apart so that the stores hold queries and this module holds shapes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd
from sqlalchemy import String, Text, cast, type_coerce

from mlops_stack.monitoring_db.tables import FEEDBACK, PREDICTIONS

# Columns of a window frame before the expanded features.
FRAME_COLUMNS = (
    "request_id",
    "row",
    "created_at",
    "model_name",
    "model_version",
    "prediction",
    "probabilities",
    "latency_ms",
    "label",
    "received_at",
)
# Rows per chunk of a streamed window: about 20 MB of JSON text and its parsed frame at a time.
CHUNK_ROWS = 20_000


def feature_column(name: str) -> str:
    """Where a window frame puts a feature: prefixed when its name clashes with a row column.

    Callers take features through :func:`features`, which undoes it.
    """
    return f"feature.{name}" if name in FRAME_COLUMNS else name


def features(frame: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """The named features of a window frame, named as given (absent ones all missing).

    A feature may share its name with a row column (a feature called ``label``); the frame
    keeps both apart internally, and this is the one way to read features back.
    """
    columns = [feature_column(name) for name in names]
    return frame.reindex(columns=columns).set_axis(list(names), axis=1)


@dataclass(frozen=True)
class Answers:
    """One version's answers on the compared rows: predictions (JSON values: classes or
    numbers) and, for a classifier, one float column of probability per class (else None)."""

    predictions: pd.Series
    probabilities: pd.DataFrame | None


@dataclass(frozen=True)
class ShadowPairs:
    """The champion's and the challenger's answers on the same labelled rows, row for row.

    ``shadow_rows`` counts every window row the challenger answered, labelled or not.
    """

    shadow_rows: int
    labels: pd.Series
    champion: Answers
    challenger: Answers

    @property
    def labelled_rows(self) -> int:
        return len(self.labels)


def stream_columns(names: Sequence[str]) -> list[Any]:
    """What :meth:`MonitorStore.window_chunks` selects: ``names`` of FRAME_COLUMNS, features.

    JSON columns are selected as text: parsing it with orjson is several times faster than the
    drivers' own JSON decoding. Times skip :class:`UTCDateTime`'s per-row conversion (SQLite's
    text, PostgreSQL's datetimes as the driver gives them): pandas converts a whole column at
    once, about a tenth of the cost on a million rows.
    """
    columns: list[Any] = []
    for name in names:
        table = FEEDBACK if name in ("label", "received_at") else PREDICTIONS
        if name in ("prediction", "probabilities"):
            columns.append(cast(table.c[name], Text).label(name))
        elif name in ("created_at", "received_at"):
            columns.append(type_coerce(table.c[name], String).label(name))
        else:
            columns.append(table.c[name])
    columns.append(cast(PREDICTIONS.c.features, Text).label("features"))
    return columns


def parse_json(value: str | None) -> Any:
    """Parse JSON text with orjson; the standard library for what orjson refuses (huge ints)."""
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return json.loads(value)


def chunk_frame(rows: Sequence[Any], start: int, names: Sequence[str]) -> pd.DataFrame:
    """Rows of :func:`stream_columns` as a frame indexed from ``start``, features expanded."""
    index = pd.RangeIndex(start, start + len(rows))
    columns = list(zip(*rows, strict=True)) if rows else [()] * (len(names) + 1)
    values: dict[str, Any] = dict(zip((*names, "features"), columns, strict=True))
    parsed = [parse_json(text) or {} for text in values.pop("features")]
    for name in ("prediction", "probabilities"):
        if name in values:
            values[name] = [parse_json(text) for text in values[name]]
    frame = pd.DataFrame(values, index=index)
    for name in ("created_at", "received_at"):
        if name in values:  # SQLite's text is UTC without an offset; utc=True reads it so
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    # from_records is the fastest way from dicts; given ``index=`` it reads it as field names
    expanded = pd.DataFrame.from_records(parsed).set_axis(index)
    expanded.columns = [feature_column(str(name)) for name in expanded.columns]
    return pd.concat([frame, expanded], axis=1)


PAIR_COLUMNS = (
    "label",
    "champion_prediction",
    "champion_probabilities",
    "challenger_prediction",
    "challenger_probabilities",
)


def pairs_frame(rows: Sequence[Any]) -> pd.DataFrame:
    """Rows of :meth:`MonitorStore.shadow_pairs` as label, predictions and probability columns
    ``<side>:p:<class>`` (floats: a dict per row would cost ten times the memory)."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(PAIR_COLUMNS)
    values = dict(zip(PAIR_COLUMNS, columns, strict=True))
    frame = pd.DataFrame(
        {
            "label": pd.Series(values["label"], dtype=object),
            "champion": pd.Series(
                [parse_json(v) for v in values["champion_prediction"]], dtype=object
            ),
            "challenger": pd.Series(
                [parse_json(v) for v in values["challenger_prediction"]], dtype=object
            ),
        }
    )
    for side in ("champion", "challenger"):
        parsed = [parse_json(v) or {} for v in values[f"{side}_probabilities"]]
        if any(parsed):
            probabilities = pd.DataFrame.from_records(parsed).astype(float)
            probabilities.columns = [f"{side}:p:{c}" for c in probabilities.columns]
            frame = pd.concat([frame, probabilities.set_axis(frame.index)], axis=1)
    return frame


def answers(frame: pd.DataFrame, side: str) -> Answers:
    """One side's predictions and probability columns (named by class) of a pairs frame."""
    prefix = f"{side}:p:"
    columns = [c for c in frame.columns if str(c).startswith(prefix)]
    probabilities = None
    if columns:
        probabilities = frame[columns].set_axis([c.removeprefix(prefix) for c in columns], axis=1)
    return Answers(frame[side], probabilities)

"""One logged prediction row, and its JSON form on the stream and in the spool.

The record is the unit every hop of the log path agrees on: the predictor builds it, the Redis
stream and the spool files carry its JSON, the database stores its fields. ``(request_id, row)``
identifies it everywhere, which is what lets every hop retry freely: a record delivered twice is
still stored once.

It lives with the database rather than with the prediction log's sinks because both sides use
it: the sinks and the stream writer (higher up) build and carry records, and the database's
writes (lower down) store them; here both import it without an arrow running upwards.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Prediction = str | int | float | bool


def json_safe(value: Any) -> Any:
    """``value`` with only what strict JSON (and PostgreSQL's JSONB) accepts.

    NaN and infinities become None (JSONB rejects them); NumPy scalars become Python ones; tuples
    become lists; anything else unknown becomes its text, so that logging never fails on a value
    the model itself accepted.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    item = getattr(value, "item", None)  # NumPy scalars, without importing NumPy
    if callable(item):
        try:
            return json_safe(item())
        except (TypeError, ValueError):
            pass
    return str(value)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class PredictionRecord:
    """One prediction as logged: ``(request_id, row)`` is unique across the whole log."""

    request_id: str
    row: int
    created_at: datetime
    model_name: str
    model_version: str
    features: dict[str, Any]
    prediction: Prediction
    probabilities: dict[str, float] | None
    latency_ms: float
    # True: the challenger's answer for the champion's row, scored in shadow (stored in
    # shadow_predictions, without features); the client never saw it
    shadow: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return (self.request_id, self.row)

    def to_row(self) -> dict[str, Any]:
        """The record's fields as the database stores them: UTC time, strict-JSON values.

        A shadow record has no ``features`` column (``shadow_predictions``): its row's features
        are the champion's record's.
        """
        row = {
            "request_id": self.request_id,
            "row": int(self.row),
            "created_at": as_utc(self.created_at),
            "model_name": self.model_name,
            "model_version": str(self.model_version),
            "features": json_safe(self.features),
            "prediction": json_safe(self.prediction),
            "probabilities": json_safe(self.probabilities),
            # NaN is no JSON: it becomes null, which the NOT NULL column then rejects (loudly).
            "latency_ms": json_safe(float(self.latency_ms)),
        }
        if self.shadow:
            del row["features"]
        return row

    def to_json(self) -> str:
        row = self.to_row()
        row["created_at"] = row["created_at"].isoformat()
        if self.shadow:
            row["shadow"] = True
            row["features"] = {}
        return json.dumps(row, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> PredictionRecord:
        """Parse :meth:`to_json` output; any malformed input raises ``ValueError``."""
        try:
            data = json.loads(text)
            latency = data["latency_ms"]
            return cls(
                request_id=str(data["request_id"]),
                row=int(data["row"]),
                created_at=as_utc(datetime.fromisoformat(data["created_at"])),
                model_name=str(data["model_name"]),
                model_version=str(data["model_version"]),
                features=dict(data["features"]),
                prediction=data["prediction"],
                probabilities=data.get("probabilities"),
                latency_ms=float("nan") if latency is None else float(latency),
                shadow=bool(data.get("shadow", False)),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a prediction record: {exc!r}") from exc

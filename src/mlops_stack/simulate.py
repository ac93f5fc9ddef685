"""A traffic simulator: the demo's stand-in for real users, and a tool to test a deployment.

It sends rows of the held-out data (the same stratified, seeded split training used, so the
model never saw them) to the predictor over HTTP at a given rate, optionally with covariate
drift on chosen features, and sends each row's true label to ``/feedback`` after a delay. It
talks HTTP only, so it works against the embedded predictor, the compose stack's nginx, or any
deployment of it.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import httpx
import numpy as np
import pandas as pd

from mlops_stack.logs import get_logger

log = get_logger(__name__)

PendingLabel = tuple[float, str, object]  # (when it is due, request id, label)


@dataclass(frozen=True)
class Drift:
    """One change applied to one feature of every sent row.

    ``shift``: add ``value`` standard deviations; ``scale``: multiply by ``value``;
    ``mix``: replace the category with ``category`` in a share ``value`` of the rows.
    """

    feature: str
    kind: Literal["shift", "scale", "mix"]
    value: float
    category: str | None = None

    @classmethod
    def parse(cls, text: str) -> Drift:
        """``"mean radius:shift=2"``, ``"income:scale=1.5"``, ``"plan:mix=premium@0.8"``."""
        try:
            feature, change = text.rsplit(":", 1)
            kind, argument = change.split("=", 1)
            if kind == "mix":
                category, _, share = argument.partition("@")
                return cls(feature, "mix", float(share or 1.0), category)
            if kind == "shift":
                return cls(feature, "shift", float(argument))
            if kind == "scale":
                return cls(feature, "scale", float(argument))
        except ValueError:
            pass
        raise ValueError(
            f"cannot read drift {text!r}: use FEATURE:shift=STDS, FEATURE:scale=FACTOR or "
            "FEATURE:mix=CATEGORY@SHARE"
        )


def apply_drift(
    rows: pd.DataFrame, drifts: list[Drift], reference: pd.DataFrame, seed: int
) -> pd.DataFrame:
    """The rows with every drift applied; standard deviations come from ``reference``."""
    rng = np.random.default_rng(seed)
    rows = rows.copy()
    for drift in drifts:
        if drift.feature not in rows.columns:
            raise ValueError(f"no feature {drift.feature!r} to drift; have {list(rows.columns)}")
        column = rows[drift.feature]
        if drift.kind == "shift":
            rows[drift.feature] = column + drift.value * float(reference[drift.feature].std())
        elif drift.kind == "scale":
            rows[drift.feature] = column * drift.value
        else:
            picked = rng.random(len(rows)) < drift.value
            rows[drift.feature] = column.astype(object).where(~picked, drift.category)
    return rows


@dataclass
class SimulationReport:
    """What happened: requests sent and answered, labels delivered, versions that answered."""

    sent: int = 0
    answered: int = 0
    failed: int = 0
    labels_sent: int = 0
    labels_unknown: int = 0
    versions: Counter[str] = field(default_factory=Counter)  # model version -> answers
    errors: Counter[str] = field(default_factory=Counter)  # error kind -> occurrences
    seconds: float = 0.0


def _json_value(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


class Simulator:
    """Sends rows at ``rate`` per second and their labels ``label_delay`` seconds later."""

    def __init__(
        self,
        base_url: str,
        rows: pd.DataFrame,
        labels: pd.Series | None,
        *,
        rate: float,
        label_delay: float = 0.0,
        timeout: float = 10.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.rows = rows.reset_index(drop=True)
        self.labels = None if labels is None else labels.reset_index(drop=True)
        self.rate = rate
        self.label_delay = label_delay
        self.timeout = timeout

    def run(self, count: int, max_seconds: float | None = None) -> SimulationReport:
        """Send ``count`` rows (cycling through the data), then the labels still due."""
        report = SimulationReport()
        pending: list[PendingLabel] = []
        started = time.monotonic()
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            for i in range(count):
                if max_seconds is not None and time.monotonic() - started > max_seconds:
                    break
                self._pace(started, i)
                request_id = self._send(client, i % len(self.rows), report)
                if request_id is not None and self.labels is not None:
                    label = _json_value(self.labels.iloc[i % len(self.labels)])
                    pending.append((time.monotonic() + self.label_delay, request_id, label))
                pending = self._send_due_labels(client, pending, report, flush=False)
            self._send_due_labels(client, pending, report, flush=True)
        report.seconds = time.monotonic() - started
        return report

    def _pace(self, started: float, index: int) -> None:
        """Hold the rate: row ``index`` leaves no earlier than ``index / rate`` seconds in."""
        if self.rate > 0:
            wait = started + index / self.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)

    def _send(self, client: httpx.Client, index: int, report: SimulationReport) -> str | None:
        features = {k: _json_value(v) for k, v in self.rows.iloc[index].items()}
        report.sent += 1
        try:
            response = client.post("/predict", json={"features": features})
        except httpx.HTTPError as exc:
            report.failed += 1
            report.errors[type(exc).__name__] += 1
            return None
        if response.status_code != 200:
            report.failed += 1
            report.errors[str(response.status_code)] += 1
            return None
        body = response.json()
        report.answered += 1
        report.versions[str(body["model"]["version"])] += 1
        return str(body["request_id"])

    def _send_due_labels(
        self,
        client: httpx.Client,
        pending: list[PendingLabel],
        report: SimulationReport,
        *,
        flush: bool,
    ) -> list[PendingLabel]:
        if flush and pending:
            wait = pending[-1][0] - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the last labels' delay, as real users would take
        now = time.monotonic()
        due = [p for p in pending if flush or p[0] <= now]
        if not due:
            return pending
        for start in range(0, len(due), 500):
            items = [
                {"request_id": rid, "label": label} for _, rid, label in due[start : start + 500]
            ]
            try:
                response = client.post("/feedback", json={"items": items})
                if response.status_code in (200, 404):
                    body = response.json()
                    report.labels_sent += body["accepted"]
                    report.labels_unknown += len(body["unknown"])
                else:
                    report.errors[f"feedback {response.status_code}"] += 1
            except httpx.HTTPError as exc:
                report.errors[f"feedback {type(exc).__name__}"] += 1
        return [p for p in pending if not (flush or p[0] <= now)]

"""The monitor's side of the monitoring database: its window, its results and alerts, shadow pairs.

:class:`MonitorStore` is what the monitor and retrain flows use: stream the window of logged
predictions with their labels, count it, pair the champion's and the challenger's answers on the
same labelled rows, store a run with its per-feature drift, and open, refresh or resolve alerts.
The frame shapes of the window live in :mod:`~mlops_stack.monitoring_db.window_frames`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Select, Text, and_, cast, func, select
from sqlalchemy.orm import Session

from mlops_stack.monitoring_db.engine import Database
from mlops_stack.monitoring_db.records import as_utc
from mlops_stack.monitoring_db.tables import (
    FEEDBACK,
    PREDICTIONS,
    SHADOW_PREDICTIONS,
    AlertRow,
    FeatureDriftRow,
    MonitorRunRow,
)
from mlops_stack.monitoring_db.window_frames import (
    CHUNK_ROWS,
    FRAME_COLUMNS,
    ShadowPairs,
    answers,
    chunk_frame,
    pairs_frame,
    stream_columns,
)
from mlops_stack.names import AlertChangeKind, AlertState


@dataclass(frozen=True)
class WindowExtent:
    """How many rows a window holds and the time span they cover (None when empty)."""

    rows: int
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class AlertChange:
    """What a monitor run did to an alert: ``opened``, ``resolved`` or ``ongoing``."""

    change: AlertChangeKind
    alert_id: int
    condition: str
    reason: str


def window_query(
    since: datetime | None,
    limit: int | None,
    model_name: str | None,
    labelled_only: bool,
    columns: Sequence[Any],
) -> Select[Any]:
    """The window's SELECT: filters in SQL before the limit, newest first with a limit.

    ``since`` keeps rows created at or after it; ``model_name`` the rows of one model;
    ``labelled_only`` the rows that have a label; ``limit`` keeps the most recent ``limit`` of
    those. The filters run before the limit, so a window is N rows of that model, not N rows
    of the table filtered afterwards.
    """
    query = select(*columns).select_from(
        PREDICTIONS.outerjoin(
            FEEDBACK,
            and_(
                FEEDBACK.c.request_id == PREDICTIONS.c.request_id,
                FEEDBACK.c.row == PREDICTIONS.c.row,
            ),
        )
    )
    if since is not None:
        query = query.where(PREDICTIONS.c.created_at >= as_utc(since))
    if model_name is not None:
        query = query.where(PREDICTIONS.c.model_name == model_name)
    if labelled_only:
        query = query.where(FEEDBACK.c.label.is_not(None))
    if limit is not None:
        query = query.order_by(PREDICTIONS.c.created_at.desc(), PREDICTIONS.c.id.desc())
        return query.limit(limit)
    return query.order_by(PREDICTIONS.c.created_at, PREDICTIONS.c.id)


class MonitorStore:
    """The window, the shadow pairs, the stored runs and the alerts of the monitoring flows."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # --- the window ---------------------------------------------------------------------------
    def window_chunks(
        self,
        since: datetime | None = None,
        limit: int | None = None,
        *,
        model_name: str | None = None,
        labelled_only: bool = False,
        chunk_rows: int = CHUNK_ROWS,
        columns: Sequence[str] = FRAME_COLUMNS,
    ) -> Iterator[pd.DataFrame]:
        """Logged predictions with their label where one was reported, in frames of ``chunk_rows``.

        Why streamed: a monitor window may hold a million rows, whose JSON features expanded
        into Python objects at once would take gigabytes. Here one chunk is in memory at a time:
        PostgreSQL streams through a server-side cursor, SQLite steps through the file.
        Columns: ``columns`` of :data:`FRAME_COLUMNS` (times as UTC timestamps,
        ``received_at`` NaT without feedback), then one per feature (read them with
        :func:`~mlops_stack.monitoring_db.window_frames.features`); every column left out saves
        a million Python objects on a million rows. Filters as :func:`window_query`. The order
        is the query's, newest first when ``limit`` is given, else oldest first, and each
        frame's index continues the previous one's. One statement, so a consistent snapshot
        even while the predictor keeps writing.
        """
        self.database.ensure_schema()
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
        unknown = [name for name in columns if name not in FRAME_COLUMNS]
        if unknown:
            raise ValueError(f"not columns of the window: {', '.join(unknown)}")
        names = [name for name in FRAME_COLUMNS if name in columns]
        query = window_query(since, limit, model_name, labelled_only, stream_columns(names))
        with self.database.engine.connect() as connection:
            streaming = connection.execution_options(stream_results=True, yield_per=chunk_rows)
            position = 0
            for rows in streaming.execute(query).partitions():
                yield chunk_frame(rows, position, names)
                position += len(rows)

    def predictions_with_feedback(
        self,
        since: datetime | None = None,
        limit: int | None = None,
        *,
        model_name: str | None = None,
        labelled_only: bool = False,
    ) -> pd.DataFrame:
        """The rows of :meth:`window_chunks` in one frame, oldest first.

        Everything is in memory at once: a large window is read with :meth:`window_chunks`.
        """
        chunks = list(
            self.window_chunks(since, limit, model_name=model_name, labelled_only=labelled_only)
        )
        if not chunks:
            return chunk_frame([], 0, FRAME_COLUMNS)
        frame = pd.concat(chunks) if len(chunks) > 1 else chunks[0]
        if limit is not None:  # streamed newest first
            frame = frame.iloc[::-1]
        return frame.reset_index(drop=True)

    def window_extent(
        self,
        since: datetime | None = None,
        limit: int | None = None,
        *,
        model_name: str | None = None,
    ) -> WindowExtent:
        """Size and time span of the window :meth:`window_chunks` would stream, without its rows.

        Why: a monitor run with nothing to check (no champion) still records what it saw,
        and counting in SQL is much cheaper than reading the rows.
        """
        self.database.ensure_schema()
        window = window_query(
            since, limit, model_name, False, [PREDICTIONS.c.created_at]
        ).subquery()
        query = select(func.count(), func.min(window.c.created_at), func.max(window.c.created_at))
        with self.database.engine.connect() as connection:
            rows, start, end = connection.execute(query).one()
        return WindowExtent(rows, start, end)

    # --- the champion against the challenger ----------------------------------------------------
    def shadow_pairs(
        self,
        since: datetime | None,
        limit: int | None,
        *,
        model_name: str,
        challenger_version: str,
        champion_version: str | None = None,
        chunk_rows: int = CHUNK_ROWS,
    ) -> ShadowPairs:
        """The labelled rows of the monitor's window that ``challenger_version`` also answered.

        Why one join: the champion and the challenger must be scored on exactly the same rows,
        or a difference in their figures may only be a difference in their rows. The window is
        :meth:`window_chunks`'s (the newest ``limit`` rows of the model, or those since
        ``since``), so the comparison covers the rows the monitor judged; its shadow answers
        are found through the unique ``(request_id, row, model_version)`` index. Streamed in
        chunks of ``chunk_rows`` and kept compact (probabilities as float columns), like the
        window's own labelled rows. ``champion_version`` keeps the window rows that version
        served: a window spanning a change of champion holds an older version's answers too,
        and those are no answers of the champion in question.
        """
        self.database.ensure_schema()
        window = window_query(
            since,
            limit,
            model_name,
            False,
            [
                PREDICTIONS.c.request_id,
                PREDICTIONS.c.row,
                PREDICTIONS.c.model_version,
                cast(PREDICTIONS.c.prediction, Text).label("champion_prediction"),
                cast(PREDICTIONS.c.probabilities, Text).label("champion_probabilities"),
                FEEDBACK.c.label,
            ],
        ).subquery()
        joined = window.join(
            SHADOW_PREDICTIONS,
            and_(
                SHADOW_PREDICTIONS.c.request_id == window.c.request_id,
                SHADOW_PREDICTIONS.c.row == window.c.row,
                SHADOW_PREDICTIONS.c.model_version == str(challenger_version),
            ),
        )
        served = (
            [window.c.model_version == str(champion_version)]
            if champion_version is not None
            else []
        )
        counted = select(func.count()).select_from(joined).where(*served)
        query = (
            select(
                window.c.label,
                window.c.champion_prediction,
                window.c.champion_probabilities,
                cast(SHADOW_PREDICTIONS.c.prediction, Text).label("challenger_prediction"),
                cast(SHADOW_PREDICTIONS.c.probabilities, Text).label("challenger_probabilities"),
            )
            .select_from(joined)
            .where(window.c.label.is_not(None), *served)
        )
        parts: list[pd.DataFrame] = []
        with self.database.engine.connect() as connection:
            answered = connection.execute(counted).scalar_one()
            streaming = connection.execution_options(stream_results=True, yield_per=chunk_rows)
            for rows in streaming.execute(query).partitions():
                parts.append(pairs_frame(rows))
        frame = pd.concat(parts, ignore_index=True) if parts else pairs_frame([])
        return ShadowPairs(
            shadow_rows=int(answered),
            labels=frame["label"],
            champion=answers(frame, "champion"),
            challenger=answers(frame, "challenger"),
        )

    def latest_comparison(self, model_name: str) -> tuple[MonitorRunRow, dict[str, Any]] | None:
        """The newest monitor run of the model that stored a champion-challenger comparison,
        and that comparison; None when no run has one yet."""
        self.database.ensure_schema()
        query = (
            select(MonitorRunRow)
            .where(MonitorRunRow.model_name == model_name, MonitorRunRow.challenger.is_not(None))
            .order_by(MonitorRunRow.id.desc())
            .limit(20)  # a JSON null (not SQL NULL) passes IS NOT NULL: skip those few
        )
        with Session(self.database.engine, expire_on_commit=False) as session:
            for run in session.scalars(query):
                if isinstance(run.challenger, dict):
                    return run, dict(run.challenger)
        return None

    # --- runs and alerts -------------------------------------------------------------------------
    def save_run(self, run: MonitorRunRow, features: Sequence[FeatureDriftRow]) -> int:
        """Store a run and its per-feature drift in one transaction; returns the run id."""
        self.database.ensure_schema()
        with Session(self.database.engine) as session, session.begin():
            session.add(run)
            session.flush()
            for feature in features:
                feature.run_id = run.id
                session.add(feature)
            return run.id

    def runs(self, model_name: str | None = None, limit: int = 100) -> list[MonitorRunRow]:
        """The most recent runs, newest first."""
        self.database.ensure_schema()
        query = select(MonitorRunRow).order_by(MonitorRunRow.id.desc()).limit(limit)
        if model_name:
            query = query.where(MonitorRunRow.model_name == model_name)
        with Session(self.database.engine, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def feature_drift(self, run_id: int) -> list[FeatureDriftRow]:
        """One run's per-feature drift, drifted features first."""
        self.database.ensure_schema()
        query = select(FeatureDriftRow).where(FeatureDriftRow.run_id == run_id)
        with Session(self.database.engine, expire_on_commit=False) as session:
            return sorted(session.scalars(query), key=lambda f: (not f.drifted, f.feature))

    def alerts(
        self, state: AlertState | None = None, model_name: str | None = None
    ) -> list[AlertRow]:
        """Alerts, oldest first, optionally of one state and one model."""
        self.database.ensure_schema()
        query = select(AlertRow).order_by(AlertRow.id)
        if state:
            query = query.where(AlertRow.state == state)
        if model_name:
            query = query.where(AlertRow.model_name == model_name)
        with Session(self.database.engine, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def update_alerts(
        self, model_name: str, seen: dict[str, str], run_id: int
    ) -> list[AlertChange]:
        """Open, refresh or resolve alerts for the conditions this run saw.

        ``seen`` maps each condition present now (e.g. ``drift``) to its reason. A condition
        that already has an open alert does not open another: it is one alert until it clears.
        """
        self.database.ensure_schema()
        now = datetime.now(UTC)
        changes: list[AlertChange] = []
        with Session(self.database.engine, expire_on_commit=False) as session, session.begin():
            query = (
                select(AlertRow)
                .where(AlertRow.model_name == model_name, AlertRow.state == AlertState.OPEN)
                .with_for_update()
            )
            open_alerts = {a.condition: a for a in session.scalars(query)}
            for condition, alert in open_alerts.items():
                if condition in seen:
                    alert.last_seen_at, alert.reason = now, seen[condition]
                    changes.append(
                        AlertChange(AlertChangeKind.ONGOING, alert.id, condition, alert.reason)
                    )
                else:
                    alert.state, alert.resolved_at = AlertState.RESOLVED, now
                    alert.resolved_by_run, alert.notified = run_id, False
                    changes.append(
                        AlertChange(AlertChangeKind.RESOLVED, alert.id, condition, alert.reason)
                    )
            for condition, reason in seen.items():
                if condition not in open_alerts:
                    alert = AlertRow(
                        model_name=model_name,
                        condition=condition,
                        state=AlertState.OPEN,
                        reason=reason,
                        opened_at=now,
                        last_seen_at=now,
                        opened_by_run=run_id,
                        notified=False,
                    )
                    session.add(alert)
                    session.flush()
                    changes.append(AlertChange(AlertChangeKind.OPENED, alert.id, condition, reason))
        return changes

    def mark_notified(self, alert_id: int) -> None:
        """Remember that the webhook took an alert's latest change."""
        self.database.ensure_schema()
        with Session(self.database.engine) as session, session.begin():
            alert = session.get(AlertRow, alert_id)
            if alert is not None:
                alert.notified = True

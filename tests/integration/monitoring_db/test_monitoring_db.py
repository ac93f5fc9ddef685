"""The prediction log against real PostgreSQL, Redis and SQLite: store, sinks, stream, outages.

Needs the servers of `infrastructure/ci/services.sh`. Outages are real: the script stops the
server and starts it again while records flow; the tests then check that every record arrived
exactly once.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from mlops_stack.monitoring_db import MonitorRunRow, WindowExtent, write_isolating
from mlops_stack.monitoring_db import features as window_features
from mlops_stack.monitoring_db.engine import VERSION_TABLE, alembic_config
from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.monitoring_db.tables import Base
from mlops_stack.prediction_log.sinks import DatabaseSink, RedisStreamSink, make_sink
from mlops_stack.prediction_log.stream import StreamWriter
from tests.support.monitoring import Monitoring
from tests.support.servers import wait_for

FAST = {"prediction_log_flush_seconds": "0.05", "prediction_log_batch_rows": "50"}


def record(i: int, request_id: str | None = None, **changes) -> PredictionRecord:
    fields = {
        "request_id": request_id or f"req-{i}",
        "row": 0,
        "created_at": datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=i),
        "model_name": "churn",
        "model_version": "3",
        "features": {"age": 30 + i % 50, "city": "paris" if i % 2 else None},
        "prediction": "yes" if i % 3 else "no",
        "probabilities": {"no": 0.25, "yes": 0.75},
        "latency_ms": 1.5,
    }
    return PredictionRecord(**{**fields, **changes})


def records(n: int, prefix: str = "req") -> list[PredictionRecord]:
    return [record(i, request_id=f"{prefix}-{i}") for i in range(n)]


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path):
    """A migrated store on each dialect."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    log_store = Monitoring(url)
    log_store.migrate()
    yield log_store
    log_store.dispose()


def test_record_json_round_trip_keeps_values_and_makes_them_strict_json():
    original = record(1, features={"x": 1.5, "missing": None, "n": np.int64(7)})
    parsed = PredictionRecord.from_json(original.to_json())
    assert parsed.features == {"x": 1.5, "missing": None, "n": 7}
    assert parsed.created_at == original.created_at and parsed.created_at.tzinfo is not None
    assert (parsed.prediction, parsed.probabilities) == ("yes", {"no": 0.25, "yes": 0.75})
    # JSONB rejects NaN: a NaN feature is logged as null rather than failing the write.
    assert PredictionRecord.from_json(
        record(2, features={"x": float("nan")}).to_json()
    ).features == {"x": None}
    with pytest.raises(ValueError):
        PredictionRecord.from_json(b'{"request_id": "only"}')


def assert_schema_matches_models(log_store: Monitoring) -> None:
    assert log_store.monitoring_db.revision() == head_revision()
    with log_store.monitoring_db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, Base.metadata) == []


def test_migrate_twice_on_sqlite(tmp_path: Path):
    log_store = Monitoring(f"sqlite:///{tmp_path / 'new' / 'monitoring.db'}")
    assert log_store.monitoring_db.revision() is None
    log_store.migrate()
    log_store.migrate()
    assert_schema_matches_models(log_store)
    assert log_store.predictions.count_predictions() == 0
    log_store.dispose()


def test_migrate_concurrently_and_twice_on_postgres(postgres_url: str):
    """Two processes starting together both migrate; the advisory lock makes that safe."""
    stores = [Monitoring(postgres_url) for _ in range(2)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def migrate(log_store: Monitoring) -> None:
        barrier.wait()
        try:
            log_store.migrate()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    stores[0].migrate()
    assert_schema_matches_models(stores[0])
    for log_store in stores:
        log_store.dispose()


def test_rows_logged_before_the_features_became_json_read_the_same(postgres_url: str):
    """Migration 0003 (jsonb -> json) on a database that already holds predictions."""
    log_store = Monitoring(postgres_url)
    with log_store.monitoring_db.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0002")
    written = records(3, prefix="old")
    log_store.predictions.write_predictions(written)
    log_store.migrate()
    assert_schema_matches_models(log_store)
    frame = log_store.monitor_store.predictions_with_feedback()
    assert list(frame["request_id"]) == [r.request_id for r in written]
    for name, value in written[0].features.items():
        assert frame.loc[0, name] == value
    log_store.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> str:
    """An empty database on each dialect, not migrated yet."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'monitoring.db'}"
    return request.getfixturevalue("postgres_url")


def test_runs_stored_before_tasks_become_classification_runs_with_metrics(database_url: str):
    """Migration 0004 on a database that already holds monitor runs (from before tasks)."""
    log_store = Monitoring(database_url)
    with log_store.monitoring_db.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0003")
        old_runs = sa.table(
            "monitor_runs",
            *(sa.column(name) for name in ("started_at", "finished_at", "model_name")),
            *(sa.column(name) for name in ("window_rows", "analysed_rows", "status", "reason")),
            *(sa.column(name) for name in ("labelled_rows", "accuracy", "f1", "roc_auc")),
        )
        when = datetime(2025, 1, 1, tzinfo=UTC)
        common = {"started_at": when, "finished_at": when, "model_name": "churn"}
        common |= {"window_rows": 300, "analysed_rows": 300, "reason": "r"}
        connection.execute(
            old_runs.insert(),
            [
                common | {"status": "ok", "labelled_rows": 80, "accuracy": 0.9, "f1": 0.8},
                common | {"status": "skipped", "labelled_rows": 0, "accuracy": None, "f1": None},
            ],
        )
    assert log_store.monitoring_db.revision() == "0003"
    log_store.migrate()
    assert_schema_matches_models(log_store)
    labelled, unlabelled = sorted(log_store.monitor_store.runs("churn"), key=lambda run: run.id)
    assert (labelled.task, unlabelled.task) == ("classification", "classification")
    assert labelled.metrics == {"accuracy": 0.9, "f1": 0.8, "roc_auc": None}
    assert unlabelled.metrics is None
    assert (labelled.accuracy, labelled.f1, labelled.roc_auc) == (0.9, 0.8, None)
    with log_store.monitoring_db.engine.begin() as connection:  # and back down, the runs kept
        command.downgrade(alembic_config(connection), "0003")
        columns = {c["name"] for c in sa.inspect(connection).get_columns("monitor_runs")}
        assert not {"task", "metrics"} & columns and "accuracy" in columns
        count = connection.execute(sa.text("SELECT count(*) FROM monitor_runs")).scalar_one()
        assert count == 2
    log_store.dispose()


def test_a_regression_run_stores_its_task_and_metrics_by_name(store: Monitoring):
    when = datetime(2025, 1, 1, tzinfo=UTC)
    metrics = {"rmse": 54.2, "mae": 43.1, "r2": 0.48, "error_bias": -1.5}
    run_id = store.monitor_store.save_run(
        MonitorRunRow(
            started_at=when,
            finished_at=when,
            model_name="diabetes",
            window_rows=300,
            analysed_rows=300,
            status="ok",
            reason="r",
            labelled_rows=120,
            task="regression",
            metrics=metrics,
        ),
        [],
    )
    [run] = store.monitor_store.runs("diabetes")
    assert run.id == run_id and run.task == "regression" and run.metrics == metrics
    assert (run.accuracy, run.f1, run.roc_auc) == (None, None, None)


def test_feature_drift_stores_each_tests_effect(store: Monitoring):
    """The effect next to the p-value; infinity (a constant reference that moved) and None (a
    run stored before migration 0005) read back as themselves."""
    from mlops_stack.monitoring_db import FeatureDriftRow

    when = datetime(2025, 1, 1, tzinfo=UTC)
    run = MonitorRunRow(
        started_at=when, finished_at=when, model_name="m", window_rows=300, analysed_rows=300,
        status="warning", reason="r", labelled_rows=0,
    )  # fmt: skip
    threshold = 0.05 / 31
    rows = [
        FeatureDriftRow(
            feature=name,
            kind="numeric",
            method="K-S p_value",
            threshold=threshold,
            score=score,
            drifted=drifted,
            effect=effect,
        )  # fmt: skip
        for name, score, drifted, effect in (
            ("a", 1e-9, True, 0.42),
            ("b", 1e-12, True, float("inf")),
            ("c", 0.5, False, None),
        )
    ]
    run_id = store.monitor_store.save_run(run, rows)
    frame = store.dashboard_reads.feature_drift_frame(run_id).set_index("feature")
    assert list(frame.columns) == ["kind", "method", "threshold", "score", "drifted", "effect"]
    assert frame.loc["a", "effect"] == pytest.approx(0.42)
    assert frame.loc["b", "effect"] == float("inf")
    assert pd.isna(frame.loc["c", "effect"])
    assert (frame["threshold"] == threshold).all()


def test_write_predictions_is_idempotent(store: Monitoring):
    batch = records(20)
    assert store.predictions.write_predictions(batch) == 20
    assert store.predictions.write_predictions(batch) == 0
    assert store.predictions.write_predictions(batch[15:] + records(5, prefix="new")) == 5
    assert store.predictions.write_predictions([]) == 0
    assert store.predictions.count_predictions() == 25
    assert store.predictions.known_predictions([("req-3", 0), ("req-3", 1), ("nope", 0)]) == {
        ("req-3", 0)
    }


def test_a_record_the_database_refuses_is_set_aside_not_blocking(store: Monitoring):
    bad = record(1, request_id="bad", latency_ms=float("nan"))  # NOT NULL latency gets null
    inserted, rejected = write_isolating(store.predictions, [*records(3), bad])
    assert (inserted, rejected) == (3, [bad])
    assert store.predictions.count_predictions() == 3


def test_feedback_upserts_and_joins_predictions(store: Monitoring):
    rows = [
        record(0, request_id="batch", row=n, features={"age": n, "label": "f"}) for n in range(3)
    ]
    store.predictions.write_predictions(rows + [record(10)])
    store.predictions.record_feedback(
        [("batch", 0, "no"), ("batch", 1, "yes"), ("batch", 0, "yes")]
    )
    store.predictions.record_feedback([("batch", 1, "no"), ("not-yet-logged", 0, "yes")])

    frame = store.monitor_store.predictions_with_feedback()
    assert list(frame.columns[:10]) == [
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
    ]
    # a feature named like a row column ('label') is kept apart, and read back by its name
    features = window_features(frame, ["age", "city", "label"])
    assert list(features["label"].iloc[:3]) == ["f", "f", "f"] and features["label"].iloc[3] != "f"
    assert list(features["age"].iloc[:3]) == [0, 1, 2]
    labels = dict(zip(zip(frame.request_id, frame.row, strict=True), frame.label, strict=True))
    assert labels[("batch", 0)] == "yes" and labels[("batch", 1)] == "no"  # later label wins
    assert labels[("batch", 2)] is None and frame.received_at.isna().sum() == 2
    assert str(frame.created_at.dt.tz) == "UTC" and frame.created_at.is_monotonic_increasing
    assert frame.loc[frame.row == 2, "age"].item() == 2
    assert frame.probabilities.iloc[0] == {"no": 0.25, "yes": 0.75}

    newest = store.monitor_store.predictions_with_feedback(limit=2)
    assert list(newest.request_id) == ["batch", "req-10"]  # the most recent two, oldest first
    since = store.monitor_store.predictions_with_feedback(since=record(10).created_at)
    assert list(since.request_id) == ["req-10"]


def test_window_filters_apply_before_the_limit(store: Monitoring):
    mine = [record(i, model_name="churn") for i in range(5)]
    theirs = [record(i, request_id=f"other-{i}", model_name="fraud") for i in range(5, 10)]
    store.predictions.write_predictions(mine + theirs)  # the other model's rows are the newest
    store.predictions.record_feedback([("req-1", 0, "yes"), ("other-6", 0, "no")])
    window = store.monitor_store.predictions_with_feedback(limit=3, model_name="churn")
    assert list(window.request_id) == ["req-2", "req-3", "req-4"]
    labelled = store.monitor_store.predictions_with_feedback(model_name="churn", labelled_only=True)
    assert list(labelled.request_id) == ["req-1"] and list(labelled.label) == ["yes"]
    assert len(store.monitor_store.predictions_with_feedback(labelled_only=True)) == 2


def test_window_streams_in_chunks_that_add_up_to_the_whole_read(store: Monitoring):
    mine = [record(i) for i in range(25)]
    store.predictions.write_predictions(mine + [record(99, request_id="other", model_name="fraud")])
    store.predictions.record_feedback([("req-3", 0, "yes"), ("req-20", 0, "no")])

    chunks = list(store.monitor_store.window_chunks(limit=20, model_name="churn", chunk_rows=7))
    assert [len(c) for c in chunks] == [7, 7, 6]
    streamed = pd.concat(chunks)
    assert list(streamed.index) == list(range(20))  # positions in the stream
    assert list(streamed.request_id) == [f"req-{i}" for i in range(24, 4, -1)]  # newest first
    whole = store.monitor_store.predictions_with_feedback(limit=20, model_name="churn")
    pd.testing.assert_frame_equal(streamed.iloc[::-1].reset_index(drop=True), whole)
    assert streamed.set_index("request_id").label.dropna().to_dict() == {"req-20": "no"}
    assert str(streamed.created_at.dt.tz) == "UTC"

    since = pd.concat(store.monitor_store.window_chunks(since=record(22).created_at, chunk_rows=2))
    assert list(since.request_id) == ["req-22", "req-23", "req-24", "other"]  # oldest first
    assert list(store.monitor_store.window_chunks(since=record(500).created_at)) == []

    [lean] = store.monitor_store.window_chunks(
        limit=3, model_name="churn", columns=("label", "created_at")
    )
    assert list(lean.columns) == ["created_at", "label", "age", "city"]  # window order, features
    with pytest.raises(ValueError, match="features"):
        list(store.monitor_store.window_chunks(columns=("features",)))


def test_window_extent_counts_in_sql(store: Monitoring):
    store.predictions.write_predictions([record(i) for i in range(10)])
    extent = store.monitor_store.window_extent(limit=4, model_name="churn")
    assert (extent.rows, extent.start, extent.end) == (
        4,
        record(6).created_at,
        record(9).created_at,
    )
    assert store.monitor_store.window_extent(model_name="fraud") == WindowExtent(0, None, None)


def test_database_sink_on_sqlite_writes_every_record(stack):
    settings = stack(**FAST)
    sink = make_sink(settings)
    assert isinstance(sink, DatabaseSink)
    sink.start()
    batch = records(1000)

    def submit(part: list[PredictionRecord]) -> None:
        for item in part:
            sink.submit(item)

    threads = [threading.Thread(target=submit, args=(batch[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    log_store = Monitoring(settings.resolved_monitoring_db_url)
    log_store.migrate()  # while the sink's thread migrates too: both must get through
    wait_for(lambda: log_store.predictions.count_predictions() == 1000, 20, "1000 rows in SQLite")
    wait_for(lambda: sink.depth() == 0, 5, "an empty queue")
    assert sink.status()[0], sink.status()
    sink.stop()
    assert log_store.predictions.count_predictions() == 1000
    log_store.dispose()


def drain(writer: StreamWriter, log_store: Monitoring, expected: int, timeout: float = 20):
    """Run the writer until the table holds ``expected`` rows."""

    def written() -> bool:
        writer.run_once(block_ms=100)
        return log_store.predictions.count_predictions() >= expected

    wait_for(written, timeout, f"{expected} rows written by the stream writer")


def pending(client: redis.Redis, settings) -> int:
    return client.xpending(settings.prediction_stream, settings.stream_group)["pending"]


def test_redis_sink_and_stream_writer_into_postgres(stack, postgres_url, stream_name, services):
    settings = stack(
        redis_url=services.redis_url,
        prediction_stream=stream_name,
        monitoring_db_url=postgres_url,
        **FAST,
    )
    sink = make_sink(settings)
    assert isinstance(sink, RedisStreamSink)
    sink.start()
    for item in records(300):
        sink.submit(item)
    writer = StreamWriter(settings, consumer="writer-1")
    log_store = Monitoring(postgres_url)
    drain(writer, log_store, 300)
    sink.stop()

    client = redis.Redis.from_url(services.redis_url)
    assert log_store.predictions.count_predictions() == 300
    assert pending(client, settings) == 0
    assert client.xlen(stream_name) == 0  # written entries are deleted: the stream stays small
    writer.close()
    log_store.dispose()
    client.close()


def test_postgres_outage_while_records_flow(stack, postgres_url, stream_name, services):
    settings = stack(
        redis_url=services.redis_url,
        prediction_stream=stream_name,
        monitoring_db_url=postgres_url,
        **FAST,
    )
    client = redis.Redis.from_url(services.redis_url)
    log_store = Monitoring(postgres_url)
    sink = RedisStreamSink(settings, max_backoff=0.2)
    sink.start()
    writer = StreamWriter(settings, consumer="writer-1")
    batch = records(400)
    for item in batch[:100]:
        sink.submit(item)
    drain(writer, log_store, 100)

    with services.outage("pg") as restart_postgres:
        for item in batch[100:]:
            sink.submit(item)
        wait_for(lambda: sink.depth() == 0, 10, "the sink to hand everything to Redis")
        assert client.xlen(stream_name) == 300
        assert writer.run_once(block_ms=100) == 0  # database down: nothing written ...
        assert writer.failing
        assert (
            pending(client, settings) == settings.prediction_log_batch_rows
        )  # ... nor acknowledged
        assert writer.run_once(block_ms=100) == 0  # the same batch again, still pending
        assert pending(client, settings) == settings.prediction_log_batch_rows
        restart_postgres()

    drain(writer, log_store, 400)
    assert not writer.failing
    assert log_store.predictions.count_predictions() == 400
    keys = [item.key for item in batch]
    assert log_store.predictions.known_predictions(keys) == set(keys)
    assert pending(client, settings) == 0 and client.xlen(stream_name) == 0
    sink.stop()
    writer.close()
    log_store.dispose()
    client.close()


def spooled_rows(settings) -> int:
    spool = Path(settings.data_dir) / "spool"
    return sum(len(path.read_text().splitlines()) for path in spool.glob("*-*-*"))


def test_redis_outage_buffers_then_spools_and_delivers_everything(stack, stream_name, services):
    settings = stack(
        redis_url=services.redis_url,
        prediction_stream=stream_name,
        prediction_log_buffer_rows="100",
        **FAST,
    )
    client = redis.Redis.from_url(services.redis_url)
    sink = RedisStreamSink(settings, max_backoff=0.2)
    sink.start()
    batch = records(350)
    for item in batch[:50]:
        sink.submit(item)
    wait_for(lambda: client.xlen(stream_name) == 50, 10, "50 entries in the stream")

    with services.outage("redis") as restart_redis:
        for item in batch[50:]:
            sink.submit(item)  # never blocks, never raises
        wait_for(lambda: not sink.status()[0], 10, "the sink to report itself degraded")
        assert "degraded" in sink.status()[1]
        assert sink.depth() == 300
        # Memory holds 100 (plus the batch being retried, put back over the bound): the rest
        # went to the spool.
        assert 200 - settings.prediction_log_batch_rows <= spooled_rows(settings) <= 200
        restart_redis()
        wait_for(lambda: sink.depth() == 0, 20, "the sink to deliver everything")

    assert sink.status()[0], sink.status()
    assert spooled_rows(settings) == 0
    sink.stop()
    writer = StreamWriter(settings, consumer="writer-1")  # into the embedded SQLite store
    log_store = Monitoring(settings.resolved_monitoring_db_url)
    drain(writer, log_store, 350)
    assert log_store.predictions.count_predictions() == 350
    keys = [item.key for item in batch]
    assert log_store.predictions.known_predictions(keys) == set(keys)
    writer.close()
    log_store.dispose()
    client.close()


def test_stop_while_database_down_keeps_records_in_spool_for_next_start(
    stack, postgres_url, services
):
    settings = stack(monitoring_db_url=postgres_url, prediction_log_buffer_rows="100", **FAST)
    log_store = Monitoring(postgres_url)
    log_store.migrate()
    batch = records(300)
    with services.outage("pg") as restart_postgres:
        sink = DatabaseSink(settings, max_backoff=0.2)
        sink.start()
        for item in batch:
            sink.submit(item)
        wait_for(lambda: not sink.status()[0], 10, "the sink to report itself degraded")
        assert sink.depth() == 300
        sink.stop(timeout=2)
        assert spooled_rows(settings) == 300  # memory too went to the spool at stop
        restart_postgres()

    sink = DatabaseSink(settings, max_backoff=0.2)  # the predictor restarted
    sink.start()
    assert sink.depth() == 300
    wait_for(
        lambda: log_store.predictions.count_predictions() == 300, 20, "300 rows from the spool"
    )
    wait_for(lambda: sink.depth() == 0, 5, "an empty spool")
    assert spooled_rows(settings) == 0
    keys = [item.key for item in batch]
    assert log_store.predictions.known_predictions(keys) == set(keys)
    sink.stop()
    log_store.dispose()


def test_writer_takes_over_entries_a_dead_writer_left_pending(stack, stream_name, services):
    settings = stack(redis_url=services.redis_url, prediction_stream=stream_name)
    client = redis.Redis.from_url(services.redis_url)
    client.xgroup_create(stream_name, settings.stream_group, id="0", mkstream=True)
    for item in records(10):
        client.xadd(stream_name, {"record": item.to_json()})
    client.xreadgroup(settings.stream_group, "crashed", {stream_name: ">"}, count=100)
    assert pending(client, settings) == 10

    writer = StreamWriter(settings, consumer="survivor", claim_idle_ms=0)
    log_store = Monitoring(settings.resolved_monitoring_db_url)
    drain(writer, log_store, 10)
    assert pending(client, settings) == 0
    writer.close()
    log_store.dispose()
    client.close()


def test_writer_sets_aside_entries_it_cannot_store(stack, postgres_url, stream_name, services):
    """Garbage, or a record the database refuses, goes to '<stream>:dead' instead of blocking."""
    settings = stack(
        redis_url=services.redis_url, prediction_stream=stream_name, monitoring_db_url=postgres_url
    )
    client = redis.Redis.from_url(services.redis_url)
    client.xadd(stream_name, {"record": "not json"})
    client.xadd(stream_name, {"something": "else"})
    client.xadd(stream_name, {"record": record(1, request_id="x" * 65).to_json()})  # too long
    for item in records(3):
        client.xadd(stream_name, {"record": item.to_json()})
    writer = StreamWriter(settings, consumer="writer-1")
    assert writer.run_once(block_ms=100) == 4  # rows handled: 3 written, 1 set aside
    assert writer.store.count_predictions() == 3
    assert client.xlen(f"{stream_name}:dead") == 3
    assert pending(client, settings) == 0
    writer.close()
    client.close()

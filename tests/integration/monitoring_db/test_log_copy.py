"""The prediction log's COPY path into PostgreSQL, against the INSERT path it replaces.

``PredictionStore.write_record_json`` stores the stream's record JSON as it is (COPY, then
``json_to_record`` in SQL); ``PredictionStore.insert_records`` is the SQLAlchemy INSERT every row
used to take. A row must read back the same whichever way it came, a batch written twice must
be stored once, and a bad entry must be set aside without losing the good ones around it.
Real PostgreSQL and Redis (``infrastructure/ci/services.sh``).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
import redis
from sqlalchemy.engine import make_url

from mlops_stack.monitoring_db import DashboardReads, Database, NotCanonical
from mlops_stack.monitoring_db.records import PredictionRecord
from mlops_stack.prediction_log.stream import StreamWriter
from tests.support.monitoring import Monitoring
from tests.support.servers import wait_for

COLUMNS = (
    "row",
    "created_at",
    "model_name",
    "model_version",
    "features",
    "prediction",
    "probabilities",
    "latency_ms",
)


def record(request_id: str, **changes: Any) -> PredictionRecord:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "row": 0,
        "created_at": datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
        "model_name": "breast_cancer",
        "model_version": "3",
        "features": {f"feature {i}": 10.5 + i / 7 for i in range(30)},
        "prediction": 1,
        "probabilities": {"0": 0.125, "1": 0.875},
        "latency_ms": 1.25,
    }
    return PredictionRecord(**{**fields, **changes})


# Records whose every column has something to get wrong on the way through COPY and SQL.
VARIANTS: dict[str, dict[str, Any]] = {
    "classifier": {},
    "regressor": {"prediction": 12.75, "probabilities": None},
    "class names": {"prediction": "yes", "probabilities": {"no": 0.25, "yes": 0.75}},
    "awkward text": {
        "features": {
            "city": 'Zürich \\ "old town"\n\ttab',
            "emoji": "🙂",
            "missing": None,
            "nan": float("nan"),
            "int": np.int64(7),
            "flag": True,
            "big": 10**18,
            "tiny": 1e-300,
        },
        "model_name": "churn / v2 \\ 'quoted'",
    },
    "other time zone": {
        "created_at": datetime(2025, 3, 1, 23, 59, tzinfo=timezone(timedelta(hours=5)))
    },
    "naive time": {"created_at": datetime(2025, 3, 1, 7, 0, 0)},
    "second row": {"row": 41},
    "shadow": {"shadow": True, "model_version": "4"},
}


def stored(database: Database, table: str, request_id: str) -> dict[str, Any]:
    """One stored row as PostgreSQL holds it: values, SQL types, JSON as parsed values."""
    columns = [c for c in COLUMNS if table == "predictions" or c != "features"]
    select = ", ".join(f'"{c}", pg_typeof("{c}")::text, ("{c}" IS NULL)' for c in columns)
    with database.engine.connect() as connection:
        row = connection.exec_driver_sql(
            f"SELECT {select} FROM {table} WHERE request_id = %(id)s", {"id": request_id}
        ).one()
    out: dict[str, Any] = {}
    for i, column in enumerate(columns):
        value, sql_type, is_null = row[3 * i : 3 * i + 3]
        out[column] = (value, sql_type, is_null)
    return out


@pytest.fixture
def store(postgres_url: str):
    log_store = Monitoring(postgres_url)
    log_store.migrate()
    yield log_store
    log_store.dispose()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_copied_row_reads_back_as_the_inserted_row_column_by_column(
    store: Monitoring, variant: str
):
    changes = VARIANTS[variant]
    old, new = record("old", **changes), record("new", **changes)
    assert store.predictions.insert_records([old]) == 1
    assert store.predictions.write_record_json([new.to_json()]) == 1
    table = "shadow_predictions" if old.shadow else "predictions"
    assert stored(store.monitoring_db, table, "new") == stored(store.monitoring_db, table, "old")
    # and through the reads the monitor and the dashboard use
    frame = store.monitor_store.predictions_with_feedback().drop(columns="request_id")
    if not old.shadow:
        assert frame.iloc[0].to_dict() == frame.iloc[1].to_dict()


def test_naive_times_are_utc_whatever_the_session_time_zone(postgres_url: str):
    """A naive created_at is UTC on the old path (as_utc); COPY must not read it as local."""
    url = make_url(postgres_url).update_query_dict({"options": "-c timezone=America/New_York"})
    log_store = Monitoring(url.render_as_string(hide_password=False))
    naive = record("naive", created_at=datetime(2025, 3, 1, 7, 0, 0))
    payload = json.loads(naive.to_json())
    payload["created_at"] = "2025-03-01T07:00:00"  # no offset, as a hand-made entry might say
    log_store.predictions.write_record_json([json.dumps(payload)])
    frame = log_store.monitor_store.predictions_with_feedback()
    assert frame["created_at"].iloc[0] == datetime(2025, 3, 1, 7, 0, 0, tzinfo=UTC)
    log_store.dispose()


def test_the_same_batch_twice_is_stored_once(store: Monitoring):
    batch = [record(f"r-{i}") for i in range(20)]
    shadows = [record(f"r-{i}", shadow=True, model_version="4") for i in range(5)]
    payloads = [r.to_json() for r in batch + shadows]
    assert store.predictions.write_record_json(payloads) == 25
    assert store.predictions.write_record_json(payloads) == 0
    more = [record(f"new-{i}").to_json() for i in range(3)]
    assert store.predictions.write_record_json(payloads[15:] + more) == 3
    assert store.predictions.count_predictions() == 23
    assert store.dashboard_reads.shadow_rows("breast_cancer", "4") == 5
    # a second challenger version of the same rows is stored beside the first
    again = [record(f"r-{i}", shadow=True, model_version="5").to_json() for i in range(5)]
    assert store.predictions.write_record_json(again) == 5
    assert store.predictions.write_record_json([]) == 0


@pytest.mark.parametrize(
    "change",
    [
        {"created_at": "now"},  # PostgreSQL would read it; Python would not
        {"request_id": 12},  # str(12) on the old path; fine, but not what to_json writes
        {"shadow": "no"},  # bool("no") is True on the old path
        {"latency_ms": "NaN"},
        {"features": [["a", 1]]},
        {"prediction": None},  # JSON null is stored as null, like SQLAlchemy does
    ],
    ids=["time", "id", "shadow", "latency", "features", "null-prediction"],
)
def test_records_not_as_to_json_writes_them_are_refused_whole(store: Monitoring, change):
    good = [record(f"g-{i}").to_json() for i in range(3)]
    odd = {**json.loads(record("odd").to_json()), **change}
    if change == {"prediction": None}:  # canonical: stored, prediction JSON null
        assert store.predictions.write_record_json([*good, json.dumps(odd)]) == 4
        with store.monitoring_db.engine.connect() as connection:
            text = connection.exec_driver_sql(
                "SELECT prediction::text FROM predictions WHERE request_id = 'odd'"
            ).scalar_one()
        assert text == "null"
        return
    with pytest.raises(NotCanonical):
        store.predictions.write_record_json([*good, json.dumps(odd)])
    assert (
        store.predictions.count_predictions() == 0
    )  # rolled back: the caller parses the batch instead


def pending(client: redis.Redis, stream: str, group: str) -> int:
    return client.xpending(stream, group)["pending"]


def test_writer_stores_good_rows_and_dead_letters_the_rest_of_a_mixed_batch(
    stack, postgres_url, stream_name, services
):
    settings = stack(
        redis_url=services.redis_url, prediction_stream=stream_name, monitoring_db_url=postgres_url
    )
    client = redis.Redis.from_url(services.redis_url)
    good = [record(f"good-{i}") for i in range(40)] + [
        record("good-0", shadow=True, model_version="4")
    ]
    bad = [
        {"record": b"not json"},
        {"record": record("x" * 65).to_json()},  # too long for request_id: PostgreSQL refuses
        {"record": json.dumps({**json.loads(record("odd").to_json()), "shadow": "no"})},
        {"something": b"else"},
    ]
    entries = (
        [{"record": r.to_json()} for r in good[:20]]
        + bad
        + [{"record": r.to_json()} for r in good[20:]]
    )
    for fields in entries:
        client.xadd(stream_name, fields)
    writer = StreamWriter(settings, consumer="writer-1")
    assert writer.run_once(block_ms=100) == len(entries) - 2  # all but the two non-records
    assert writer.store.count_predictions() == 40
    assert DashboardReads(writer.store.database).shadow_rows("breast_cancer", "4") == 1
    # "odd" went the parsing path and was stored as it always was: bool("no") is True
    assert DashboardReads(writer.store.database).shadow_rows("breast_cancer", "3") == 1
    dead = client.xrange(f"{stream_name}:dead")
    assert [fields.get(b"record", b"")[:8] for _, fields in dead] == [
        b"not json",
        b"",
        record("x" * 65).to_json().encode()[:8],
    ]
    assert pending(client, stream_name, settings.stream_group) == 0
    assert client.xlen(stream_name) == 0

    # delivered again (a writer died after the commit, before the ack): still once each
    for fields in entries[:20]:
        client.xadd(stream_name, fields)
    assert writer.run_once(block_ms=100) == 20
    assert writer.store.count_predictions() == 40
    assert client.xlen(f"{stream_name}:dead") == 3
    writer.close()
    client.close()


def test_writer_rows_match_the_old_paths_rows(stack, postgres_url, stream_name, services):
    """Through the stream: the same records, once via COPY and once via the parsing path."""
    settings = stack(
        redis_url=services.redis_url, prediction_stream=stream_name, monitoring_db_url=postgres_url
    )
    client = redis.Redis.from_url(services.redis_url)
    for name, changes in VARIANTS.items():
        client.xadd(stream_name, {"record": record(f"copy {name}", **changes).to_json()})
    writer = StreamWriter(settings, consumer="writer-1")
    assert writer.run_once(block_ms=100) == len(VARIANTS)
    for name, changes in VARIANTS.items():
        old = record(f"old {name}", **changes)
        writer.store.insert_records([PredictionRecord.from_json(old.to_json())])
        table = "shadow_predictions" if old.shadow else "predictions"
        assert stored(writer.store.database, table, f"copy {name}") == stored(
            writer.store.database, table, f"old {name}"
        ), name
    writer.close()
    client.close()


def test_a_trickle_of_entries_is_written_in_one_commit(stack, postgres_url, stream_name, services):
    """Rows arriving one request at a time gather for MLOPS_PREDICTION_LOG_WRITER_WAIT_MS, then
    one write."""
    settings = stack(
        redis_url=services.redis_url,
        prediction_stream=stream_name,
        monitoring_db_url=postgres_url,
        prediction_log_writer_wait_ms="3000",
    )
    client = redis.Redis.from_url(services.redis_url)
    writer = StreamWriter(settings, consumer="writer-1")
    writer.run_once(block_ms=1)  # creates the group; nothing to write yet
    client.xadd(stream_name, {"record": record("first").to_json()})
    handled: list[int] = []
    thread = threading.Thread(target=lambda: handled.append(writer.run_once(block_ms=1000)))
    thread.start()
    wait_for(lambda: pending(client, stream_name, settings.stream_group) == 1, 5, "first read")
    for i in range(4):  # while the writer waits for more
        client.xadd(stream_name, {"record": record(f"later-{i}").to_json()})
    thread.join(10)
    assert handled == [5]
    assert writer.store.count_predictions() == 5
    assert pending(client, stream_name, settings.stream_group) == 0
    writer.close()
    client.close()

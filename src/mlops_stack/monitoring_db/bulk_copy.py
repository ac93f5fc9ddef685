"""The prediction log's COPY path into PostgreSQL: the SQL and the COPY text it feeds.

Why a module of its own: parsing each record in Python and binding its values costs the log
writer about as much CPU as the predictor spends answering. Instead the records' JSON text goes
to PostgreSQL as it is (``COPY`` into a temporary staging table), and one ``INSERT ... SELECT ...
ON CONFLICT DO NOTHING`` per table takes the fields apart with ``json_to_record``. This is that
SQL, kept apart from :class:`~mlops_stack.monitoring_db.predictions.PredictionStore`, which
decides when to use it (PostgreSQL, canonical records) and falls back to the parsing path.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError

STAGE = "prediction_log_stage"
# Per connection, emptied at every commit: a temporary table is no schema, so no migration.
CREATE_STAGE = f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} (record json) ON COMMIT DELETE ROWS"
# What PredictionRecord.to_json writes for created_at (isoformat of a UTC time), and a bit more;
# without an offset the time is UTC (as_utc), whatever the session's time zone says.
ISO_TIME = r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d{1,6})?([+-]\d\d:\d\d)?$"
SERVED_COLUMNS = (
    'request_id, "row", created_at, model_name, model_version, features, prediction, '
    "probabilities, latency_ms"
)
SHADOW_COLUMNS = SERVED_COLUMNS.replace(" features,", "")
# ``canonical``: the record reads the same here as through PredictionRecord.from_json + to_row
# (text fields are JSON strings, the time is ISO, the features an object, the flag a boolean,
# the latency finite or null, the prediction present); a batch with any other record is rolled
# back and parsed in Python. A JSON null becomes SQL NULL in json_to_record: prediction and
# probabilities take JSON null back, as SQLAlchemy's JSON type stores None.
STAGE_INSERT = rf"""
WITH staged AS (
    SELECT j.request_id #>> '{{}}' AS request_id, j."row",
        CASE WHEN j.created_at ~ '[+-]\d\d:\d\d$' THEN j.created_at::timestamptz
            ELSE j.created_at::timestamp AT TIME ZONE 'UTC' END AS created_at,
        j.model_name #>> '{{}}' AS model_name, j.model_version #>> '{{}}' AS model_version,
        j.features, coalesce(j.prediction, 'null'::jsonb) AS prediction,
        coalesce(j.probabilities, 'null'::jsonb) AS probabilities, j.latency_ms,
        coalesce(j.shadow::text = 'true', false) AS shadow,
        coalesce(json_typeof(j.request_id) = 'string' AND json_typeof(j.model_name) = 'string'
            AND json_typeof(j.model_version) = 'string'
            AND j.created_at ~ '{ISO_TIME}' AND json_typeof(j.features) = 'object'
            AND coalesce(json_typeof(j.shadow) = 'boolean', true)
            AND coalesce(j.latency_ms NOT IN ('NaN', 'Infinity', '-Infinity'), true)
            AND (j.prediction IS NOT NULL OR s.record -> 'prediction' IS NOT NULL), false)
            AS canonical
    FROM {STAGE} AS s,
        json_to_record(s.record) AS j(request_id json, "row" integer, created_at text,
            model_name json, model_version json, features json, prediction jsonb,
            probabilities jsonb, latency_ms double precision, shadow json)
), served AS (
    INSERT INTO predictions ({SERVED_COLUMNS})
    SELECT {SERVED_COLUMNS} FROM staged WHERE canonical AND NOT shadow
    ON CONFLICT (request_id, "row") DO NOTHING RETURNING 1
), shadowed AS (
    INSERT INTO shadow_predictions ({SHADOW_COLUMNS})
    SELECT {SHADOW_COLUMNS} FROM staged WHERE canonical AND shadow
    ON CONFLICT (request_id, "row", model_version) DO NOTHING RETURNING 1
)
SELECT (SELECT count(*) FROM served) + (SELECT count(*) FROM shadowed),
    (SELECT count(*) FROM staged WHERE NOT canonical)
"""
# COPY's text format: backslash escapes, one line per record (JSON text has no raw tab or
# newline unless written with indentation; escaped, they stay JSON whitespace).
COPY_ESCAPES = ((b"\\", b"\\\\"), (b"\n", b"\\n"), (b"\r", b"\\r"), (b"\t", b"\\t"))


def copy_text(payloads: Sequence[str | bytes]) -> bytes:
    """The payloads as COPY text-format input: one escaped line each."""
    lines = []
    for payload in payloads:
        line = payload.encode() if isinstance(payload, str) else payload
        for char, escaped in COPY_ESCAPES:
            if char in line:
                line = line.replace(char, escaped)
        lines.append(line)
    lines.append(b"")
    return b"\n".join(lines)


def copy_in(dbapi_connection: Any, data: bytes, dbapi_error: type[Exception]) -> None:
    """COPY ``data`` into the stage on the transaction's own (psycopg2) connection.

    psycopg2's errors are raised as SQLAlchemy's (DataError for a payload that is not JSON or
    not UTF-8), as if the statement had gone through SQLAlchemy.
    """
    statement = f"COPY {STAGE} (record) FROM STDIN"
    with dbapi_connection.cursor() as cursor:
        try:
            cursor.copy_expert(statement, io.BytesIO(data))
        except dbapi_error as exc:
            raise DBAPIError.instance(statement, None, exc, dbapi_error) from exc

"""Messy columns decided before training, readable validation errors, reading hints, the task.

Every table here is built by the test; files are real files in ``tmp_path``. A messy table
trained through the real train flow is tests/integration/data/test_columns.py.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from mlops_stack.data import (
    MAX_STORED_CATEGORIES,
    SHOWN_PROBLEMS,
    ColumnAction,
    Dataset,
    DataValidationError,
    Problem,
    infer_schema,
    infer_task,
    load_dataset,
    validate_dataset,
)
from mlops_stack.names import Task
from mlops_stack.preprocessing import build_preprocessor
from tests.support.tables import mixed_table


def messy_table(rows: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """What a user's export looks like: keys, free text, dates, booleans, ~2,000 codes, a
    mostly-numeric text column, a constant, an empty column and missing values."""
    rng = np.random.default_rng(seed)
    vocabulary = "the a quick slow brown red fox dog cat jumps runs over under lazy happy late"
    words = np.array(vocabulary.split(" "))
    comment = [
        " ".join(words[p]) + f" (ticket {i})"
        for i, p in enumerate(rng.integers(0, len(words), (rows, 6)))
    ]
    age = rng.integers(18, 80, rows).astype(float)
    plan = rng.choice(["basic", "plus", "premium"], rows, p=[0.5, 0.3, 0.2])
    member = rng.random(rows) < 0.4
    zips = np.array([f"z{n:05d}" for n in rng.choice(100_000, 2000, replace=False)])
    score = (age - 50) / 15 + (plan == "premium") * 1.5 + member * 1.0
    signup = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**7, rows), "s")
    frame = pd.DataFrame(
        {
            "customer_id": 100_000 + rng.permutation(rows),
            "uuid": [str(uuid.UUID(bytes=rng.bytes(16))) for _ in range(rows)],
            "comment": comment,
            "signup": signup.astype(str),
            "is_member": member,
            "zip": zips[rng.integers(0, 2000, rows)],
            "age": age,
            "income": rng.lognormal(10, 0.5, rows),
            "amount": rng.normal(100, 20, rows).round(2).astype(object),
            "plan": plan,
            "country": "fr",
            "empty": np.nan,
            "churn": np.where(score + rng.normal(0, 0.7, rows) > 0, "yes", "no"),
        }
    )
    frame.loc[rng.choice(rows, 300, replace=False), "income"] = np.nan
    frame.loc[rng.choice(rows, 200, replace=False), "plan"] = None
    frame.loc[rng.choice(rows, 40, replace=False), "amount"] = "unknown"
    return frame


MESSY_ACTIONS = {
    "customer_id": "dropped",
    "uuid": "dropped",
    "comment": "dropped",
    "signup": "dropped",
    "is_member": "categorical",
    "zip": "bounded-categorical",
    "age": "numeric",
    "income": "numeric",
    "amount": "numeric",
    "plan": "categorical",
    "country": "dropped",
    "empty": "dropped",
}


def _treatments(frame: pd.DataFrame, target: str = "churn", **kw) -> dict[str, tuple[str, str]]:
    schema = infer_schema(Dataset(frame, target, "test"), **kw)
    return {c.name: (c.action, c.reason) for c in schema.columns}


def _problems(frame: pd.DataFrame, target: str = "churn", **kw) -> list[Problem]:
    with pytest.raises(DataValidationError) as caught:
        validate_dataset(
            Dataset(frame, target, "test"),
            task=kw.pop("task", Task.CLASSIFICATION),
            min_rows=50,
            min_class_rows=10,
        )
    return caught.value.problems


@pytest.fixture
def data_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The data module's log lines (its logger may not propagate once logging is set up)."""
    logger = logging.getLogger("mlops_stack.data")
    logger.addHandler(caplog.handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(previous)


# --- each column rule ------------------------------------------------------------------------


def test_id_like_columns_are_dropped_and_a_unique_measurement_is_kept():
    frame = mixed_table()
    rng = np.random.default_rng(1)
    frame["customer_id"] = rng.choice(10**6, len(frame), replace=False)  # named like a key
    frame["row"] = np.arange(len(frame)) + 1  # consecutive whole numbers: a row number
    frame["uuid"] = [str(uuid.UUID(int=int(n))) for n in rng.integers(0, 2**62, len(frame))]
    frame["income_cents"] = rng.choice(10**7, len(frame), replace=False)  # unique, a measure
    treated = _treatments(frame)
    for name in ("customer_id", "row", "uuid"):
        assert treated[name][0] == "dropped"
        assert treated[name][1].startswith("ID-like")
    assert treated["uuid"][1].startswith("ID-like: 400 distinct values in 400 rows")
    assert treated["income_cents"] == ("numeric", "")
    # a retrain's table: rows logged without the key still leave it a key
    frame.loc[:99, ["customer_id", "uuid"]] = None
    assert frame["customer_id"].dtype == float
    retreated = _treatments(frame)
    assert retreated["customer_id"][0] == retreated["uuid"][0] == "dropped"
    schema = infer_schema(Dataset(frame, "churn", "test"))
    assert schema.feature_names == ["age", "income", "city", "plan", "income_cents"]
    assert schema.dropped == ["customer_id", "row", "uuid"]


def test_free_text_is_dropped_saying_it_needs_its_own_encoding():
    frame = messy_table(rows=2000)[["comment", "age", "churn"]]
    action, reason = _treatments(frame)["comment"]
    assert action == "dropped"
    assert reason.startswith("free text: 2000 distinct values")
    assert "own encoding" in reason


def test_high_cardinality_categorical_is_one_hot_encoded_with_a_bound():
    rng = np.random.default_rng(2)
    rows = 12_000
    codes = np.array([f"z{n:05d}" for n in range(3000)])  # each once, the first 200 often
    frame = pd.DataFrame(
        {
            "zip": rng.permutation(np.concatenate([codes, rng.choice(codes[:200], rows - 3000)])),
            "x": rng.normal(size=rows),
            "label": rng.choice(["a", "b"], rows),
        }
    )
    dataset = Dataset(frame, "label", "test")
    schema = infer_schema(dataset, max_categories=30)
    (zip_column,) = [c for c in schema.columns if c.name == "zip"]
    assert zip_column.action == ColumnAction.BOUNDED_CATEGORICAL
    assert zip_column.reason.startswith("3000 distinct values: one-hot of at most the 29 most")
    assert "MLOPS_MAX_CATEGORIES=30" in zip_column.reason
    spec = schema.features[0]
    assert spec.max_categories == 30
    # the training categories stay known (capped), so serving can count unseen values
    assert len(spec.categories or []) == MAX_STORED_CATEGORIES
    preprocessor = build_preprocessor(schema, scale=False)
    started = time.perf_counter()
    matrix = preprocessor.fit_transform(dataset.features)
    assert time.perf_counter() - started < 5
    assert matrix.shape == (rows, 1 + 30)  # x, then 29 frequent zips and one "infrequent"
    unseen = preprocessor.transform(pd.DataFrame({"zip": ["never-seen"], "x": [0.0]}))
    assert unseen.shape == (1, 31) and unseen[0, 1:].sum() == 1  # one-hot of "infrequent"


def test_few_categories_keep_the_plain_one_hot():
    treated = _treatments(mixed_table())
    assert treated == {
        "age": ("numeric", ""),
        "income": ("numeric", ""),
        "city": ("categorical", ""),
        "plan": ("categorical", ""),
    }


def test_constant_and_empty_columns_are_dropped_with_plain_values_in_the_reason():
    frame = mixed_table()
    frame["version"] = np.int64(7)
    frame["country"] = "fr"
    frame["empty"] = np.nan
    frame["blank"] = pd.Series([None] * len(frame), dtype=object)
    treated = _treatments(frame)
    assert treated["version"] == ("dropped", "constant: every value is 7")
    assert treated["country"] == ("dropped", "constant: every value is 'fr'")
    assert treated["empty"] == ("dropped", "empty: every value is missing")
    assert treated["blank"] == ("dropped", "empty: every value is missing")
    _validate_passes(frame)


def _validate_passes(frame: pd.DataFrame, target: str = "churn", task=Task.CLASSIFICATION):
    validate_dataset(Dataset(frame, target, "test"), task=task, min_rows=50, min_class_rows=10)


def test_datetime_columns_are_dropped_and_a_datetime_dtype_becomes_iso_text():
    frame = mixed_table()
    rows = len(frame)
    when = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(rows) * 3600, "s")
    frame["created"] = when  # a datetime dtype (Parquet, a DataFrame)
    frame["day"] = when.strftime("%d/%m/%Y")  # text that parses as dates
    frame["month"] = np.resize(["March", "April", "May"], rows)  # words: categories
    dataset = Dataset(frame, "churn", "test")
    assert dataset.frame["created"].iloc[1] == "2026-01-01T01:00:00"
    treated = _treatments(frame)
    for name in ("created", "day"):
        assert treated[name][0] == "dropped"
        assert treated[name][1].startswith("dates/times:")
        assert "weekday" in treated[name][1]
    assert treated["month"] == ("categorical", "")
    _validate_passes(frame)


def test_booleans_are_categories_with_or_without_missing_values():
    frame = mixed_table()
    frame["member"] = np.arange(len(frame)) % 3 == 0
    frame["opted_in"] = pd.Series(frame["member"].to_numpy(), dtype=object)
    frame.loc[:9, "opted_in"] = None
    treated = _treatments(frame)
    assert treated["member"] == ("categorical", "true/false: encoded as two categories")
    assert treated["opted_in"] == ("categorical", "true/false: encoded as two categories")
    schema = infer_schema(Dataset(frame, "churn", "test"))
    by_name = {f.name: f for f in schema.features}
    assert by_name["member"].categories == ["False", "True"]
    assert by_name["opted_in"].missing_in_training == 10


def test_mostly_numeric_text_becomes_numbers_and_the_count_is_reported():
    frame = mixed_table()
    frame["amount"] = [str(i) for i in range(len(frame))]
    frame.loc[3, "amount"] = "n/a?"
    frame.loc[7, "amount"] = "twelve"
    dataset = Dataset(frame, "churn", "test")
    assert dataset.frame["amount"].dtype == float
    assert dataset.frame["amount"].isna().sum() == 2 and dataset.frame["amount"].iloc[8] == 8
    action, reason = _treatments(frame)["amount"]
    assert action == "numeric"
    assert reason.startswith("mostly numbers: 2 value(s) that are not ('n/a?', 'twelve')")
    _validate_passes(frame)


def test_durations_become_seconds_and_objects_of_mixed_types_become_text():
    frame = mixed_table()
    frame["wait"] = pd.to_timedelta(np.arange(len(frame)) % 5, "min")
    frame["grade"] = pd.Series(np.resize([1, "A", "B", "C"], len(frame)).tolist(), dtype=object)
    frame["grade"] = frame["grade"].map(lambda v: 1 if v == "1" else v)  # a Python int among str
    dataset = Dataset(frame, "churn", "test")
    assert dataset.frame["wait"].tolist()[:3] == [0.0, 60.0, 120.0]
    assert set(dataset.frame["grade"]) == {"1", "A", "B", "C"}
    treated = _treatments(frame)
    assert treated["wait"] == ("numeric", "durations: as seconds")
    assert treated["grade"] == ("categorical", "")
    schema = infer_schema(dataset)
    preprocessor = build_preprocessor(schema, scale=True).fit(dataset.features)
    names = list(preprocessor.get_feature_names_out())
    assert [n for n in names if n.startswith(("wait", "grade"))] == [
        "wait",
        "grade_1",
        "grade_A",
        "grade_B",
        "grade_C",
    ]


def test_a_table_with_no_usable_feature_is_refused_clearly():
    frame = pd.DataFrame(
        {
            "id": np.arange(100),
            "note": [f"free text number {i} of the export" for i in range(100)],
            "label": ["a", "b"] * 50,
        }
    )
    (problem,) = _problems(frame, target="label")
    assert problem.column is None
    assert problem.message.startswith("no usable feature column: every one is dropped (id:")


# --- validation errors a person reads --------------------------------------------------------


def test_a_long_list_of_problems_is_summarised_and_kept_whole():
    frame = mixed_table()
    labels = [f"class{i}" for i in range(12)]
    frame["churn"] = np.resize(labels, len(frame))
    frame.loc[: len(frame) - 14, "churn"] = "class0"  # 11 classes of one or two rows
    with pytest.raises(DataValidationError) as caught:
        validate_dataset(
            Dataset(frame, "churn", "test"),
            task=Task.CLASSIFICATION,
            min_rows=50,
            min_class_rows=10,
        )
    problems = caught.value.problems
    assert len(problems) == 11
    message = str(caught.value)
    assert message.startswith("dataset failed validation (11 problem(s)):")
    assert message.count("\n  - ") == SHOWN_PROBLEMS
    assert message.endswith(f"  ... and {11 - SHOWN_PROBLEMS} more")


def test_a_numeric_target_validated_as_classes_names_regression_once():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(442, 3)), columns=["bmi", "bp", "s1"])
    frame["target"] = rng.integers(25, 346, 442).astype(float)  # like diabetes: ~214 values
    problems = _problems(frame, target="target")
    assert len(problems) == 1
    assert problems[0].column == "target"
    assert "regression" in problems[0].message
    assert "--task regression (MLOPS_TASK=regression)" in problems[0].message
    # the same table is fine as a regression: no class counts for a numeric target
    _validate_passes(frame, target="target", task=Task.REGRESSION)


def test_a_text_target_for_regression_is_refused_clearly():
    (problem,) = _problems(mixed_table(), task=Task.REGRESSION)
    assert problem.column == "churn"
    assert problem.message.startswith("regression needs a numeric target, this one holds text")
    assert "--task classification" in problem.message


def test_integer_class_labels_read_plainly_in_messages():
    frame = mixed_table()
    frame["churn"] = np.resize(np.array([0, 1], dtype=np.int64), len(frame))
    frame.loc[:2, "churn"] = 3
    (problem,) = _problems(frame)
    assert problem.message == "class 3 has 3 row(s); each class needs 10"


# --- reading hints ---------------------------------------------------------------------------


def test_numbers_read_from_a_csv_are_the_floats_their_text_names(tmp_path):
    """A client parsing the same file with Python (csv, JSON) sends exactly what training saw:
    training's ranges and few-valued columns must not be one unit in the last place off."""
    import csv

    from sklearn.datasets import load_diabetes

    table = tmp_path / "diabetes.csv"
    load_diabetes(as_frame=True).frame.to_csv(table, index=False)
    with table.open() as file:
        rows = list(csv.reader(file))
    as_python = np.array([[float(v) for v in row] for row in rows[1:]])
    loaded = load_dataset(table, "target").frame
    assert list(loaded.columns) == rows[0]
    assert int((loaded.to_numpy() != as_python).sum()) == 0


def test_semicolon_file_with_decimal_commas_is_read_as_meant(tmp_path, data_log):
    frame = mixed_table().round(2)
    path = tmp_path / "excel.csv"
    frame.to_csv(path, sep=";", decimal=",", index=False)
    loaded = load_dataset(path, "churn").frame
    pd.testing.assert_frame_equal(loaded, frame, check_dtype=False)
    assert "excel.csv: reading as ';'-delimited with decimal commas (detected)" in data_log.text


def test_tab_file_is_read_and_a_comma_file_with_semicolons_in_text_stays_comma(tmp_path, data_log):
    frame = mixed_table()
    frame.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    assert load_dataset(tmp_path / "t.tsv", "churn").frame.shape == (400, 5)
    assert "t.tsv: reading as tab-delimited (detected)" in data_log.text
    frame["note"] = "first; second; third"
    frame.to_csv(tmp_path / "c.csv", index=False)
    loaded = load_dataset(tmp_path / "c.csv", "churn").frame
    assert loaded.shape == (400, 6) and loaded["note"].iloc[0] == "first; second; third"


def test_a_one_column_table_hints_at_the_delimiter():
    frame = pd.DataFrame({"a;b;churn": ["1;2;yes"] * 60})
    (problem,) = _problems(frame)
    assert problem.message.endswith("(one column: the file looks ';'-delimited)")


def test_a_cp1252_file_is_read_with_a_fallback_encoding_and_said_so(tmp_path, data_log):
    frame = mixed_table()
    frame["city"] = frame["city"].replace({"paris": "paris-café", "lyon": "lyon €"})
    path = tmp_path / "latin.csv"
    frame.to_csv(path, index=False, encoding="cp1252")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    loaded = load_dataset(path, "churn").frame
    assert set(loaded["city"].dropna()) == {"paris-café", "lyon €", "nantes", "lille"}
    assert "latin.csv: not UTF-8; reading it as cp1252 (detected)" in data_log.text
    frame.to_csv(tmp_path / "bom.csv", index=False, encoding="utf-8-sig")
    assert list(load_dataset(tmp_path / "bom.csv", "churn").frame.columns)[0] == "age"


def test_a_file_turning_cp1252_after_its_head_is_still_read(tmp_path, data_log):
    lines = ["x,label"] + [f"{i % 97},{'ab'[i % 2]}" for i in range(20_000)] + ["5,caf\xe9"]
    path = tmp_path / "late.csv"
    path.write_bytes("\n".join(lines).encode("cp1252"))
    assert path.stat().st_size > 64 * 1024
    labels = load_dataset(path, "label").frame["label"]
    assert len(labels) == 20_001 and labels.iloc[-1] == "caf\xe9"
    assert "late.csv: not UTF-8 after its first 64 KiB; reading it as cp1252" in data_log.text


def test_a_ragged_file_is_refused_with_a_delimiter_hint(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("x,label\n1,a\n2,b,c,d\n")
    with pytest.raises(DataValidationError) as caught:
        load_dataset(path, "label")
    (problem,) = caught.value.problems
    assert "as ','-delimited utf-8 text" in problem.message
    assert problem.message.endswith("Check the delimiter (',' ';' or tab) and the quoting")


# --- the task --------------------------------------------------------------------------------


def test_task_is_inferred_from_the_target_and_overridden_by_the_setting(monkeypatch):
    from sklearn.datasets import load_diabetes

    from mlops_stack.flows.parameters import TrainParameters
    from mlops_stack.settings import Settings

    diabetes = load_diabetes(as_frame=True).frame["target"]
    assert infer_task(diabetes) is Task.REGRESSION
    assert infer_task(pd.Series([0, 1, 1, 0] * 10)) is Task.CLASSIFICATION
    assert infer_task(pd.Series(["setosa", "virginica", "versicolor"] * 10)) is Task.CLASSIFICATION
    assert infer_task(pd.Series(np.arange(100) % 7)) is Task.CLASSIFICATION  # 7 whole numbers
    monkeypatch.setenv("MLOPS_TASK", "classification")
    params = TrainParameters.from_settings(Settings())
    assert infer_task(pd.Series(np.arange(100) % 30), params.task) is Task.CLASSIFICATION
    monkeypatch.setenv("MLOPS_TASK", "regression")
    params = TrainParameters.from_settings(Settings())
    assert infer_task(pd.Series([0, 1] * 20), params.task) is Task.REGRESSION
    schema = infer_schema(Dataset(mixed_table(), "churn", "test"), Task.CLASSIFICATION)
    assert schema.task is Task.CLASSIFICATION and schema.classes == ["no", "yes"]


# --- what `mlops train` prints ---------------------------------------------------------------


def test_train_prints_one_line_per_column_not_kept_as_it_came(capsys):
    from mlops_stack.cli.training import _print_columns

    schema = infer_schema(Dataset(messy_table(rows=1000), "churn", "test"))
    _print_columns(schema.columns)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "columns (9 of 12 not kept as they came):"
    assert max(len(line) for line in lines) <= 80  # wrapped, the rest of an item indented
    printed = {line.strip().split(":")[0] for line in lines[1:] if not line.startswith("    ")}
    assert printed == set(MESSY_ACTIONS) - {"age", "income", "plan"}
    assert "  zip: bounded-categorical (" in "\n".join(lines)

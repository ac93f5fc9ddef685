"""Loading, schema inference and validation of training tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_stack.data import (
    BUILTIN_DATASET,
    DataValidationError,
    fingerprint,
    infer_schema,
    load_dataset,
    validate_dataset,
)
from mlops_stack.names import Task
from tests.support.tables import mixed_table


def _validate(frame: pd.DataFrame, target: str = "churn", **kw) -> None:
    from mlops_stack.data import Dataset

    validate_dataset(
        Dataset(frame, target, "test"),
        task=kw.get("task", Task.CLASSIFICATION),
        min_rows=kw.get("min_rows", 50),
        min_class_rows=kw.get("min_class_rows", 10),
    )


def _problems(frame: pd.DataFrame, target: str = "churn", **kw) -> list[tuple[str | None, str]]:
    with pytest.raises(DataValidationError) as caught:
        _validate(frame, target, **kw)
    return [(p.column, p.message) for p in caught.value.problems]


def test_builtin_table_is_breast_cancer_with_30_numeric_features():
    dataset = load_dataset(None, "target")
    assert dataset.source == BUILTIN_DATASET
    assert dataset.frame.shape == (569, 31)
    schema = infer_schema(dataset)
    assert len(schema.numeric) == 30 and schema.categorical == []
    assert schema.classes == ["0", "1"]


def test_csv_and_parquet_load_the_same_table(tmp_path):
    frame = mixed_table()
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    from_csv = load_dataset(tmp_path / "t.csv", "churn").frame
    from_parquet = load_dataset(tmp_path / "t.parquet", "churn").frame
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_dtype=False)


def test_schema_records_kinds_ranges_categories_and_missing():
    from mlops_stack.data import Dataset

    frame = mixed_table()
    schema = infer_schema(Dataset(frame, "churn", "test"))
    by_name = {f.name: f for f in schema.features}
    assert schema.numeric == ["age", "income"]
    assert schema.categorical == ["city", "plan"]
    assert by_name["income"].missing_in_training == 25
    assert by_name["city"].missing_in_training == 20
    assert by_name["plan"].categories == ["basic", "plus", "premium"]
    assert by_name["age"].min == frame["age"].min() and by_name["age"].max == frame["age"].max()
    assert schema.classes == ["no", "yes"]


def test_valid_table_passes():
    _validate(mixed_table())


def test_missing_target_column_names_it():
    problems = _problems(mixed_table(), target="label")
    assert problems[0][0] == "label"
    assert "target column is missing" in problems[0][1]


def test_missing_target_values_are_counted():
    frame = mixed_table()
    frame.loc[:4, "churn"] = None
    assert _problems(frame) == [
        ("churn", "target has 5 missing value(s); label or drop those rows")
    ]


def test_single_class_and_rare_class_are_refused():
    frame = mixed_table()
    frame["churn"] = "no"
    assert "at least 2 are needed" in _problems(frame)[0][1]
    frame.loc[:2, "churn"] = "yes"
    assert _problems(frame) == [("churn", "class 'yes' has 3 row(s); each class needs 10")]


def test_too_few_rows():
    problems = _problems(mixed_table(rows=400).head(40), min_class_rows=2)
    assert (None, "only 40 rows; at least 50 are needed") in problems


def test_ambiguous_mixed_type_column_is_refused_by_name_and_infinite_values_too():
    """Text of which 50 to 80 % are numbers is ambiguous (empty, constant and mostly-numeric
    columns are dropped or coerced instead: tests/unit/data/test_columns.py)."""
    frame = mixed_table()
    frame["amount"] = [str(i) if i % 3 else f"code{i}" for i in range(len(frame))]
    frame.loc[0, "age"] = np.inf
    problems = dict(_problems(frame))
    assert set(problems) == {"amount", "age"}
    assert problems["amount"].startswith("wrong type: mostly numbers but 134 of 400 value(s)")
    assert "'code0'" in problems["amount"] and "'code3'" in problems["amount"]
    assert problems["age"] == "column holds infinite values"


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(DataValidationError, match="dataset file not found"):
        load_dataset(tmp_path / "nope.csv", "y")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DataValidationError, match="unsupported file type '.xlsx'"):
        load_dataset(tmp_path / "t.xlsx", "y")


def test_fingerprint_changes_with_any_value_and_not_otherwise():
    frame = mixed_table()
    same = mixed_table()
    changed = mixed_table()
    changed.loc[10, "age"] += 1
    assert fingerprint(frame) == fingerprint(same)
    assert fingerprint(frame) != fingerprint(changed)

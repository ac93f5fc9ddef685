"""The retrain's training table: fresh labelled rows weigh as much as the original table."""

from __future__ import annotations

import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes

from mlops_stack.flows.retrain import training_table
from mlops_stack.names import Task


def _table() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def test_the_original_is_sampled_down_to_the_fresh_rows_keeping_class_shares():
    original = _table()
    fresh = original.sample(300, random_state=1).assign(target=0)  # a moved concept
    table = training_table(
        original, fresh, target="target", task=Task.CLASSIFICATION, floor=100, seed=42
    )
    old = table.iloc[: len(table) - len(fresh)]
    assert abs(len(old) - 300) <= 2  # per-class rounding
    assert table.iloc[len(old) :].reset_index(drop=True).equals(fresh.reset_index(drop=True))
    share, kept = original["target"].mean(), old["target"].mean()
    assert abs(share - kept) < 0.01, (share, kept)


def test_few_fresh_rows_keep_the_floor_of_original_rows():
    original = _table()
    fresh = original.head(20)
    table = training_table(
        original, fresh, target="target", task=Task.CLASSIFICATION, floor=100, seed=42
    )
    assert 98 <= len(table) - 20 <= 102


def test_more_fresh_rows_than_the_original_keep_all_of_it():
    original = _table()
    fresh = pd.concat([original, original], ignore_index=True)
    table = training_table(
        original, fresh, target="target", task=Task.CLASSIFICATION, floor=100, seed=42
    )
    assert len(table) == len(original) + len(fresh)


def test_a_regressors_original_is_sampled_without_classes():
    original = load_diabetes(as_frame=True).frame
    fresh = original.head(150)
    table = training_table(
        original, fresh, target="target", task=Task.REGRESSION, floor=100, seed=7
    )
    assert len(table) == 300

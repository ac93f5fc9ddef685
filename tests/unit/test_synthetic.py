"""The fresh-row generator: never repeats, keeps each column's spread, shifts along correlations,
and moves a class boundary only where it says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from mlops_stack.synthetic import ConceptShift, RowGenerator


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def test_rows_are_fresh_and_keep_each_columns_spread(table):
    rows = RowGenerator.fit(table, "target").sample(5000, seed=1)
    assert not rows.drop(columns="target").duplicated().any()
    ratio = rows.drop(columns="target").std() / table.drop(columns="target").std()
    assert ratio.between(0.85, 1.15).all(), ratio.sort_values()
    assert set(rows["target"]) == set(table["target"])


def test_a_shift_moves_the_feature_and_its_correlates_only(table):
    generator = RowGenerator.fit(table, "target")
    plain = generator.sample(4000, seed=2)
    shifted = generator.sample(4000, seed=2, shifts={"mean radius": 2.0})
    moved = (shifted.mean() - plain.mean()).drop("target") / table.std().drop("target")
    correlation = generator.correlation("mean radius")
    assert moved["mean radius"] == pytest.approx(2.0, abs=0.05)
    # every feature moves by 2 * its correlation with mean radius, nothing else
    assert np.allclose(moved, 2.0 * correlation[moved.index], atol=0.05)
    assert (moved[correlation.abs() < 0.05].abs() < 0.1).all()


def test_a_concept_shift_relabels_only_the_band_between_the_cuts(table):
    concept = ConceptShift.fit(table, "target", "worst radius", 1.0)
    assert concept.high_class == 0  # malignant tumours are the larger ones
    rows = RowGenerator.fit(table, "target").sample(3000, seed=3)
    relabelled = concept.relabel(rows, rows["target"])
    changed = relabelled != rows["target"]
    x = rows["worst radius"]
    assert changed.sum() > 100
    assert x[changed].between(concept.threshold, concept.new_threshold).all()
    assert (rows["target"][changed] == 0).all() and (relabelled[changed] == 1).all()
    assert "moved from" in concept.describe()


def test_unknown_or_categorical_features_cannot_be_shifted(table):
    generator = RowGenerator.fit(table, "target")
    with pytest.raises(ValueError, match="not a column"):
        generator.sample(3, seed=0, shifts={"nope": 1.0})
    with pytest.raises(ValueError, match="the target"):
        generator.sample(3, seed=0, shifts={"target": 1.0})

"""The traffic simulator against a real predictor, and what the monitor makes of its traffic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_stack.cli import app
from mlops_stack.simulate import Drift, DriftError, apply_drift, plan_traffic
from mlops_stack.training import Split

SHIFTED = [
    "mean radius",
    "mean perimeter",
    "mean area",
    "worst radius",
    "worst perimeter",
    "worst area",
    "mean concavity",
    "worst concavity",
    "mean texture",
    "worst texture",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mean radius:shift=2", Drift("mean radius", "shift", 2.0)),
        ("income:scale=1.5", Drift("income", "scale", 1.5)),
        ("plan:mix=premium@0.8", Drift("plan", "mix", 0.8, "premium")),
        ("plan:mix=premium", Drift("plan", "mix", 1.0, "premium")),
    ],
)
def test_drift_specs_parse(text, expected):
    assert Drift.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("mean radius", "cannot read drift"),
        ("x:tilt=2", "unknown kind 'tilt'"),
        ("x:shift=far", "not a number"),
        ("x:scale=inf", "must be finite"),
        ("plan:mix=premium@1.5", "share must be within 0 and 1"),
        ("plan:mix=@0.5", "name the category"),
    ],
)
def test_bad_drift_specs_say_what_is_wrong_and_what_is_expected(text, reason):
    with pytest.raises(DriftError, match=reason) as caught:
        Drift.parse(text)
    assert "\n" not in str(caught.value)
    assert "FEATURE:shift=STDS" in str(caught.value)


def penguins_like(rows: int = 344, seed: int = 0) -> pd.DataFrame:
    """A small public-style table: 3 string classes, 5 numeric and 2 categorical features."""
    rng = np.random.default_rng(seed)
    species = rng.choice(["Adelie", "Chinstrap", "Gentoo"], rows, p=[0.44, 0.2, 0.36])
    offset = pd.Series(species).map({"Adelie": 0.0, "Chinstrap": 1.0, "Gentoo": 2.0}).to_numpy()
    island = np.where(
        species == "Gentoo", "Biscoe", rng.choice(["Biscoe", "Dream", "Torgersen"], rows)
    )
    frame = pd.DataFrame(
        {
            "species": species,
            "island": island,
            "bill_length_mm": 39 + 5 * offset + rng.normal(0, 2.5, rows),
            "bill_depth_mm": 18.5 - 1.5 * offset + rng.normal(0, 1.0, rows),
            "flipper_length_mm": 190 + 12 * offset + rng.normal(0, 6, rows),
            "body_mass_g": 3700 + 700 * offset + rng.normal(0, 400, rows),
            "sex": rng.choice(["male", "female"], rows),
            "year": rng.choice([2007, 2008, 2009], rows),
        }
    )
    frame.loc[rng.choice(rows, 2, replace=False), "bill_length_mm"] = np.nan
    frame.loc[rng.choice(rows, 11, replace=False), "sex"] = None
    return frame


def test_a_categorical_feature_takes_mix_and_refuses_shift_and_scale_by_name():
    table = penguins_like()
    for kind in ("shift", "scale"):
        with pytest.raises(DriftError) as caught:
            apply_drift(table, [Drift("island", kind, 2.0)], table, seed=0)  # type: ignore[arg-type]
        message = str(caught.value)
        assert f"cannot {kind} 'island': it is a categorical feature" in message
        assert "FEATURE:mix=CATEGORY@SHARE" in message and "--drift 'island:mix=" in message
        assert "\n" not in message
    drifted = apply_drift(table, [Drift("island", "mix", 0.5, "Torgersen")], table, seed=0)
    changed = drifted["island"] != table["island"]
    assert set(drifted.loc[changed, "island"]) == {"Torgersen"}
    # half of the rows were picked; those already on Torgersen do not count as changed
    picked_share = (drifted["island"] == "Torgersen").mean()
    assert 0.5 < picked_share < 0.7, picked_share
    assert (table["island"] == "Torgersen").mean() < 0.25
    pd.testing.assert_frame_equal(
        drifted.drop(columns="island"), table.drop(columns="island")
    )  # the other columns are untouched


def test_a_numeric_feature_mixes_only_a_number():
    table = penguins_like()
    with pytest.raises(DriftError, match="'body_mass_g': it is a numeric feature; numeric"):
        apply_drift(table, [Drift("body_mass_g", "mix", 0.5, "heavy")], table, seed=0)
    drifted = apply_drift(table, [Drift("body_mass_g", "mix", 1.0, "0")], table, seed=0)
    assert drifted["body_mass_g"].dtype == float and (drifted["body_mass_g"] == 0.0).all()


def _split(table: pd.DataFrame, holdout: int) -> Split:
    features, labels = table.drop(columns="species"), table["species"]
    train, held = slice(holdout, None), slice(None, holdout)
    return Split(features.iloc[train], features.iloc[held], labels.iloc[train], labels.iloc[held])


def test_a_small_holdout_is_topped_up_with_unlabelled_rows_of_the_table_not_repeated():
    table = penguins_like().assign(row_id=lambda f: np.arange(len(f)))
    split = _split(table, holdout=69)
    traffic = plan_traffic(split, 500, seed=3)
    assert (traffic.held_out, traffic.extra) == (69, 431)
    assert len(traffic.features) == len(traffic.labels) == 500
    # the holdout first, each row once, with its label
    first = traffic.features.iloc[:69]
    assert set(first["row_id"]) == set(range(69))
    assert list(traffic.labels.iloc[:69]) == list(
        table.set_index("row_id").loc[first["row_id"], "species"]
    )
    # then no row repeats until every row of the table has gone once; none of those has a label
    assert traffic.features["row_id"].iloc[:344].nunique() == 344
    assert traffic.labels.iloc[69:].isna().all()
    assert "the holdout has 69 rows; the other 431" in traffic.note

    enough = plan_traffic(split, 50, seed=3)
    assert (enough.held_out, enough.extra, enough.note) == (69, 0, "")
    assert enough.labels.notna().all()


def test_apply_drift_changes_only_the_named_features():
    reference = pd.DataFrame({"a": [0.0, 2.0, 4.0], "b": [1.0, 1.0, 1.0], "c": ["x", "y", "z"]})
    rows = reference.copy()
    drifted = apply_drift(
        rows,
        [Drift("a", "shift", 1.0), Drift("b", "scale", 3.0), Drift("c", "mix", 1.0, "w")],
        reference,
        seed=0,
    )
    assert list(drifted["a"]) == [2.0, 4.0, 6.0]  # + one std (2.0)
    assert list(drifted["b"]) == [3.0, 3.0, 3.0]
    assert list(drifted["c"]) == ["w", "w", "w"]
    pd.testing.assert_frame_equal(rows, reference)  # the input is left alone
    with pytest.raises(ValueError, match="no feature 'd'"):
        apply_drift(rows, [Drift("d", "shift", 1.0)], reference, seed=0)


def test_simulated_drifted_traffic_with_labels_is_logged_and_detected(stack):
    # imported here: the rest of this module is unit tests, which need neither MLflow nor Prefect
    from mlops_stack.flows.monitor import monitor_flow
    from mlops_stack.flows.train import train_flow
    from mlops_stack.monitoring_db import MonitoringDB
    from mlops_stack.serving.app import create_app
    from mlops_stack.stack import Stack

    from .servers import serving

    settings = stack(
        candidates="logistic_regression",
        monitor_window_rows="300",
        monitor_min_rows="100",
        log_flush_seconds="2",  # a partial batch waits 2 s: simulate must wait it out
    )
    train_flow()
    args = ["--rows", "300", "--rate", "0", "--label-delay", "0.2"]
    for feature in SHIFTED:
        args += ["--drift", f"{feature}:shift=2"]
    store = MonitoringDB(settings.resolved_monitoring_db_url)
    with serving(create_app(Stack(settings))) as base:
        result = CliRunner().invoke(app, ["simulate", "--url", base, *args])
        # read while the predictor still runs: simulate returns once every answer is logged,
        # so a monitor run started right after it counts them all
        frame = store.predictions_with_feedback()
    assert result.exit_code == 0, result.output
    assert "sent 300" in result.output and "300 answered, 0 failed" in result.output
    # the built-in table holds out 114 rows: the other 186 are unlabelled rows of the table
    assert "the holdout has 114 rows; the other 186" in result.output
    assert "labels accepted 114, unknown 0" in result.output
    assert "not logged yet" not in result.output
    assert len(frame) == 300 and frame["label"].notna().sum() == 114
    store.dispose()
    summary = monitor_flow()
    assert summary.status in {"drift", "degraded"}, summary.reason
    assert set(SHIFTED) <= set(summary.drifted_features)
    assert summary.labelled_rows == 114


def test_simulate_refuses_a_bad_drift_spec(stack):
    stack()
    result = CliRunner().invoke(app, ["simulate", "--drift", "nonsense"])
    assert result.exit_code == 2 and "cannot read drift 'nonsense'" in result.output


def test_simulate_names_the_kinds_a_categorical_feature_takes(stack, tmp_path):
    stack()
    table = tmp_path / "penguins.csv"
    penguins_like().to_csv(table, index=False)
    base = ["simulate", "--data", str(table), "--target", "species", "--url", "http://127.0.0.1:9"]
    result = CliRunner().invoke(app, [*base, "--drift", "island:shift=3"])
    assert result.exit_code == 2, result.output
    assert "cannot shift 'island': it is a categorical feature" in result.output
    assert "FEATURE:mix=CATEGORY@SHARE" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, [*base, "--drift", "beak:shift=3"])
    assert result.exit_code == 2 and "no feature 'beak' to drift" in result.output
    result = CliRunner().invoke(app, [*base[:-2], "--target", "kind"])
    assert result.exit_code == 2 and "no column 'kind' (the target)" in result.output


def test_clean_traffic_from_a_small_table_raises_no_drift(stack, prefect_server, tmp_path):
    """344 rows hold out 69: the rest of the 500 sent rows must not be repeats of those."""
    from mlops_stack.flows.monitor import monitor_flow
    from mlops_stack.flows.train import train_flow
    from mlops_stack.serving.app import create_app
    from mlops_stack.stack import Stack

    from .servers import serving

    table = tmp_path / "penguins.csv"
    penguins_like().to_csv(table, index=False)
    settings = stack(
        dataset_path=str(table),
        target_column="species",
        candidates="logistic_regression",
        log_flush_seconds="0.05",
    )
    assert settings.monitor_min_rows == 200  # the default the 69 held-out rows are below
    train_flow()
    with serving(create_app(Stack(settings))) as base:
        result = CliRunner().invoke(app, ["simulate", "--url", base, "--rate", "0"])
    assert result.exit_code == 0, result.output
    assert "sent 500" in result.output and "500 answered, 0 failed" in result.output
    assert "the holdout has 69 rows; the other 431" in result.output
    assert "labels accepted 69, unknown 0" in result.output

    summary = monitor_flow()
    assert summary.window_rows == 500 and summary.labelled_rows == 69
    assert summary.drifted_features == [], summary.reason
    assert summary.status == "ok", summary.reason


def houses(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """A regression table nobody here wrote: a price from size, rooms, age and a district."""
    rng = np.random.default_rng(seed)
    size = rng.normal(90, 25, rows).clip(20)
    rooms = np.maximum(1, np.round(size / 25 + rng.normal(0, 0.7, rows)))
    age = rng.integers(0, 80, rows).astype(float)
    district = rng.choice(["north", "south", "centre", "harbour"], rows)
    premium = pd.Series(district).map({"north": 0, "south": -20, "centre": 60, "harbour": 30})
    price = 2.5 * size + 8 * rooms - 0.6 * age + premium.to_numpy() + rng.normal(0, 15, rows)
    frame = pd.DataFrame(
        {"size_m2": size, "rooms": rooms, "age": age, "district": district, "price": price}
    )
    frame.loc[rng.choice(rows, 20, replace=False), "age"] = np.nan
    return frame


def test_regression_traffic_sends_numbers_and_drifts_numeric_and_categorical_features(
    stack, prefect_server, tmp_path
):
    """A regressor on a table with a categorical feature: numeric labels, all three kinds."""
    from mlops_stack.flows.train import train_flow
    from mlops_stack.monitoring_db import MonitoringDB
    from mlops_stack.serving.app import create_app
    from mlops_stack.stack import Stack

    from .servers import serving

    table = tmp_path / "houses.csv"
    frame = houses()
    frame.to_csv(table, index=False)
    settings = stack(
        dataset_path=str(table),
        target_column="price",
        candidates="linear",
        log_flush_seconds="0.05",
    )
    trained = train_flow()
    assert "rmse" in trained.metrics  # the task was inferred: a regressor
    drifts = ["district:mix=harbour@0.9", "size_m2:shift=2", "age:scale=1.5"]
    args = ["--rows", "150", "--rate", "0", *(a for d in drifts for a in ("--drift", d))]
    with serving(create_app(Stack(settings))) as base:
        result = CliRunner().invoke(app, ["simulate", "--url", base, *args])
    assert result.exit_code == 0, result.output
    assert "150 answered, 0 failed" in result.output
    assert "the holdout has 120 rows; the other 30" in result.output
    assert "labels accepted 120, unknown 0" in result.output  # the whole holdout (20 % of 600)

    store = MonitoringDB(settings.resolved_monitoring_db_url)
    logged = store.predictions_with_feedback()
    store.dispose()
    assert len(logged) == 150
    assert all(isinstance(p, float) for p in logged["prediction"])
    labels = pd.to_numeric(logged["label"].dropna())  # stored as text, sent as numbers
    assert len(labels) == 120
    gaps = np.abs(labels.to_numpy()[:, None] - frame["price"].to_numpy()[None, :]).min(axis=1)
    assert gaps.max() < 1e-9  # each one a true price of the table
    assert (logged["district"] == "harbour").mean() > 0.85  # mixed in 90 % of the rows
    assert logged["size_m2"].mean() > frame["size_m2"].mean() + 1.5 * frame["size_m2"].std()
    assert logged["age"].max() > frame["age"].max()  # scaled by 1.5

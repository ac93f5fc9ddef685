"""The traffic simulator against a real predictor, and what the monitor makes of its traffic."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_stack.cli import app
from mlops_stack.data import Dataset
from mlops_stack.simulate import (
    Concept,
    Drift,
    DriftError,
    SimulationError,
    apply_drift,
    fresh_traffic,
)
from mlops_stack.training import Split

SIZE = ["mean radius", "mean perimeter", "mean area", "worst radius", "worst perimeter"]
"""Features that a shift of mean radius moves most (correlations 0.97-1 with it)."""


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


def _dataset(table: pd.DataFrame, target: str) -> Dataset:
    return Dataset(table, target, "test")


def _held_out(table: pd.DataFrame, target: str, rows: pd.Series) -> Split:
    """A split whose holdout is the rows where ``rows`` is true."""
    features, labels = table.drop(columns=target), table[target]
    return Split(features[~rows], features[rows], labels[~rows], labels[rows])


def test_fresh_traffic_never_repeats_a_row_and_labels_only_rows_drawn_from_the_holdout():
    table = penguins_like()
    gentoo = table["species"] == "Gentoo"  # the holdout: every Gentoo row (all on Biscoe)
    held = _held_out(table, "species", gentoo)
    traffic = fresh_traffic(_dataset(table, "species"), held, 2000, seed=4)
    sent = traffic.features
    assert len(sent) == len(traffic.labels) == 2000
    assert list(sent.columns) == list(table.drop(columns="species").columns)
    numbers = ["bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    assert not sent.duplicated(subset=numbers).any()  # no row sent twice
    assert not sent[numbers].round(9).isin(table[numbers].round(9)).all(axis=1).any()  # all new
    labelled = traffic.labels.notna()
    assert set(traffic.labels[labelled]) == {"Gentoo"}  # only rows drawn from held-out rows
    assert (sent.loc[labelled, "island"] == "Biscoe").all()
    assert abs(labelled.mean() - gentoo.mean()) < 0.04, labelled.mean()
    assert traffic.labelled == int(labelled.sum()) and traffic.concept is None
    # a discrete number (3 years) is copied from the source row, not jittered to 2008.3
    assert set(sent["year"]) == {2007, 2008, 2009} and sent["year"].dtype == table["year"].dtype
    assert fresh_traffic(_dataset(table, "species"), held, 50, seed=4).features.equals(
        fresh_traffic(_dataset(table, "species"), held, 50, seed=4).features
    )  # the seed decides everything


def correlated(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    """x; y follows x (corr about 0.9); z and the class have nothing to do with either."""
    rng = np.random.default_rng(seed)
    x = rng.normal(10, 2, rows)
    return pd.DataFrame(
        {
            "x": x,
            "y": 0.5 * x + rng.normal(0, 0.5, rows),
            "z": rng.normal(0, 1, rows),
            "label": rng.choice(["a", "b"], rows),
        }
    )


def test_a_shift_moves_the_feature_and_its_correlates_and_nothing_else():
    table = correlated()
    held = _held_out(table, "label", pd.Series(True, index=table.index))
    drifts = [Drift("x", "shift", 2.0), Drift("z", "scale", 3.0)]
    traffic = fresh_traffic(_dataset(table, "label"), held, 3000, seed=1, drifts=drifts)
    sent, stds = traffic.features, table[["x", "y", "z"]].std()
    moved = (sent[["x", "y", "z"]].mean() - table[["x", "y", "z"]].mean()) / stds
    corr = table["x"].corr(table["y"])
    assert moved["x"] == pytest.approx(2.0, abs=0.08)
    assert moved["y"] == pytest.approx(2.0 * corr, abs=0.08) and corr > 0.85
    assert abs(moved["z"]) < 0.1  # uncorrelated: not moved (only scaled, around 0)
    assert sent["z"].std() == pytest.approx(3.0 * stds["z"], rel=0.08)
    listed = dict(traffic.movements())
    assert set(listed) == {"x", "y"} and listed["x"] == 2.0  # z moves less than 0.1 std
    assert set(traffic.labels) == {"a", "b"}  # every row held out: all labelled, as drawn


def test_a_concept_shift_relabels_the_rows_between_the_two_cuts():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, 4000)
    table = pd.DataFrame({"x": x, "w": rng.normal(0, 1, 4000), "label": np.where(x > 0, 1, 0)})
    held = _held_out(table, "label", pd.Series(True, index=table.index))
    dataset = _dataset(table, "label")
    concept = Concept.parse("x:threshold=0.5").fit(dataset)
    assert concept.threshold == pytest.approx(0.0, abs=0.01) and concept.high_class == 1
    traffic = fresh_traffic(dataset, held, 3000, seed=5, concept=concept)
    sent, labels = traffic.features["x"], traffic.labels.astype(int)
    band = (sent > concept.threshold) & (sent <= concept.new_threshold)
    assert (labels[band] == 0).all()  # were 1 above the old cut: now below the boundary
    assert (labels[sent > concept.new_threshold + 0.4] == 1).all()  # jitter: 0.1 std
    assert (labels[sent <= concept.threshold - 0.4] == 0).all()
    # those of the band drawn from rows above the old cut (a few came from below it: jitter)
    assert 0.8 * band.sum() < traffic.relabelled <= band.sum()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("x", "cannot read concept 'x'"),
        ("x:shift=1", "use FEATURE:threshold=STDS"),
        ("x:threshold=far", "not a number"),
        ("x:threshold=nan", "must be finite"),
    ],
)
def test_bad_concept_specs_say_what_is_wrong(text, reason):
    with pytest.raises(SimulationError, match=reason):
        Concept.parse(text)


def test_a_concept_on_a_feature_the_table_lacks_or_cannot_cut_is_refused_by_name():
    table = penguins_like()
    dataset = _dataset(table, "species")
    with pytest.raises(SimulationError, match="no feature 'beak' for --concept"):
        Concept("beak", 1.0).fit(dataset)
    with pytest.raises(SimulationError, match="'island': not a numeric feature"):
        Concept("island", 1.0).fit(dataset)


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
        prediction_log_flush_seconds="2",  # a partial batch waits 2 s: simulate must wait it out
    )
    train_flow()
    args = ["--rows", "300", "--rate", "0", "--label-delay", "0.2"]
    args += ["--drift", "mean radius:shift=2", "--concept", "worst radius:threshold=2"]
    store = MonitoringDB(settings.resolved_monitoring_db_url)
    with serving(create_app(Stack(settings))) as base:
        result = CliRunner().invoke(app, ["simulate", "--url", base, *args])
        # read while the predictor still runs: simulate returns once every answer is logged,
        # so a monitor run started right after it counts them all
        frame = store.predictions_with_feedback()
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # as read, whatever the terminal wrapped
    assert "300 fresh rows (none repeated)" in out
    assert "sent 300" in out and "300 answered (v1 300), 0 failed" in out
    # rows drawn from the 114 held-out rows of 569 carry labels: about a fifth
    labelled = int(re.search(r"labels: (\d+) of 300 rows \(those drawn from held-out", out)[1])
    assert 40 <= labelled <= 80, out
    assert f"labels accepted {labelled}, unknown 0" in out
    # the population moves along mean radius's correlations: its size features by about 2 std
    assert "population shift:" in out and "mean radius +2.00, mean perimeter +2.00" in out, out
    assert re.search(
        r"concept shift: the boundary on 'worst radius' moved from 16\.8 to 26\.\d+ \(\+2 std\)",
        out,
    )
    assert int(re.search(r"(\d+) changed by the concept\)", out)[1]) >= 1
    assert "not logged yet" not in out
    assert len(frame) == 300 and frame["label"].notna().sum() == labelled
    assert not frame.duplicated(subset=SIZE).any()
    # the moved concept: no labelled row between the two cuts is malignant (0) any more
    radius = frame["worst radius"].astype(float)
    between = frame["label"].notna() & (radius > 16.8) & (radius <= 26.4)
    assert between.sum() >= 10 and set(frame.loc[between, "label"].astype(str)) == {"1"}
    store.dispose()
    summary = monitor_flow()
    assert summary.status in {"drift", "degraded"}, summary.reason
    assert set(SIZE) <= set(summary.drifted_features)
    assert summary.labelled_rows == labelled


def test_simulate_refuses_a_bad_drift_spec(stack):
    stack()
    result = CliRunner().invoke(app, ["simulate", "--drift", "nonsense"])
    assert result.exit_code == 2 and "cannot read drift 'nonsense'" in result.output
    result = CliRunner().invoke(app, ["simulate", "--concept", "worst radius:threshold=x"])
    assert result.exit_code == 2 and "cannot read concept" in result.output
    result = CliRunner().invoke(app, ["simulate", "--concept", "radius:threshold=1"])
    assert result.exit_code == 2 and "no feature 'radius' for --concept" in result.output
    assert "Traceback" not in result.output


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
    """500 fresh rows of a 344-row table: no repeats, so no drift read into them."""
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
        prediction_log_flush_seconds="0.05",
    )
    assert settings.monitor_min_rows == 200  # the default the 69 held-out rows are below
    train_flow()
    with serving(create_app(Stack(settings))) as base:
        result = CliRunner().invoke(app, ["simulate", "--url", base, "--rate", "0"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # as read, whatever the terminal wrapped
    assert "sent 500" in out and "500 answered (v1 500), 0 failed" in out
    assert "population shift" not in out and "concept shift" not in out
    labelled = int(re.search(r"labels accepted (\d+), unknown 0", out)[1])
    assert 70 <= labelled <= 130  # 69 of 344 rows held out: about a fifth of 500

    summary = monitor_flow()
    assert summary.window_rows == 500 and summary.labelled_rows == labelled
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
        prediction_log_flush_seconds="0.05",
    )
    trained = train_flow()
    assert "rmse" in trained.metrics  # the task was inferred: a regressor
    drifts = ["district:mix=harbour@0.9", "size_m2:shift=2", "age:scale=1.5"]
    args = ["--rows", "150", "--rate", "0", *(a for d in drifts for a in ("--drift", d))]
    with serving(create_app(Stack(settings))) as base:
        result = CliRunner().invoke(app, ["simulate", "--url", base, *args])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # as read, whatever the terminal wrapped
    assert "150 answered (v1 150), 0 failed" in out
    labelled = int(re.search(r"labels accepted (\d+), unknown 0", out)[1])
    assert 15 <= labelled <= 45  # rows drawn from the holdout (20 % of 600)
    # rooms follows size; age is unrelated, but its sample correlation with size moves it a bit
    corr = frame[["size_m2", "rooms", "age"]].corr()["size_m2"]
    assert corr["rooms"] > 0.7 and abs(corr["age"]) < 0.1
    moved = rf"size_m2 \+2\.00, rooms \+{2 * corr['rooms']:.2f}"
    assert re.search(moved, result.output), result.output

    store = MonitoringDB(settings.resolved_monitoring_db_url)
    logged = store.predictions_with_feedback()
    store.dispose()
    assert len(logged) == 150
    assert all(isinstance(p, float) for p in logged["prediction"])
    labels = pd.to_numeric(logged["label"].dropna())  # stored as text, sent as numbers
    assert len(labels) == labelled
    gaps = np.abs(labels.to_numpy()[:, None] - frame["price"].to_numpy()[None, :]).min(axis=1)
    assert gaps.max() < 1e-9  # each one a true price of the table
    assert (logged["district"] == "harbour").mean() > 0.85  # mixed in 90 % of the rows
    assert logged["size_m2"].mean() > frame["size_m2"].mean() + 1.5 * frame["size_m2"].std()
    assert logged["age"].max() > frame["age"].max()  # scaled by 1.5

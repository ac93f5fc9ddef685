"""Can you trust a drift alarm? False alarms, power and the flagged set, measured.

On the built-in breast-cancer table, fresh rows come from ``mlops_stack.synthetic.RowGenerator``
fitted on the whole table, so that "clean" is exactly clean: the champion's training table and
every monitored window are independent draws from one distribution, and no row is ever sent
twice. Champions are trained in-process with the project's own code (the ``linear``
candidate, a logistic regression, on a synthetic table of the real table's size, split as
``mlops train`` splits it); a champion's reference is its training rows, as ``modelstore`` logs
them. Ten champions, each on its own training draw, take the runs in turn: a reference is itself
a sample, and one reference's luck must not decide the figures. Each run draws a new window,
scores it with its champion, and goes through the monitor's real checks
(``monitoring.checks.check_window``, drift tests only) and status (``monitoring.status
.classify``), with the thresholds of the settings (``MLOPS_*``, defaults unless set):

  - false alarms: the share of clean runs whose status is ``warning`` or worse, at windows of
    200, 1,000 and 5,000 rows, with a 95 % (Clopper-Pearson) interval;
  - power and delay: one important feature (``worst radius``) and a group of correlated ones
    (mean radius, perimeter and area, each moved by about d standard deviations) shifted by
    0.5, 1 and 2 standard deviations: the share of runs that flag the shifted feature(s) and
    the smallest window of a grid that flags it in at least 90 % of runs;
  - the flagged set on a single-feature shift: under the generator a shift of X by d stds
    moves every Y by d * corr(X, Y) stds, so Y is *expected to move* when |d * corr| is at least
    ``MLOPS_DRIFT_MIN_EFFECT``; *borderline* when it moves by at least half of that (the
    reference's own sampling error, about 1 / sqrt(455) = 0.05 std on its mean, can add the
    other half); *unrelated* below: a flagged unrelated feature is a false alarm of the rule;
  - the error of the estimated accuracy and F1 (``monitoring.estimate``, confidence-based
    performance estimation from the champion's probabilities) against the realised figures,
    on clean windows and on windows whose labels follow a moved class boundary
    (``synthetic.ConceptShift``).

    python benchmarks/drift.py [--quick] [--sections false-alarms,power,estimate]

``--quick`` runs a few runs on three window sizes (a smoke test, under a minute). Prints markdown
tables and the time taken;
record them in docs/monitoring.md ("Can you trust a drift alarm?").
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.datasets import load_breast_cancer
from sklearn.pipeline import Pipeline

from mlops_stack import training
from mlops_stack.data import Dataset, DatasetSchema, infer_schema
from mlops_stack.logs import configure_logging
from mlops_stack.monitoring.checks import CheckResult, Current, Reference, check_window
from mlops_stack.monitoring.quality import classification_quality
from mlops_stack.monitoring.status import Thresholds, classify
from mlops_stack.names import ACCURACY, F1, MonitorStatus
from mlops_stack.settings import Settings
from mlops_stack.synthetic import ConceptShift, RowGenerator

TARGET = "target"
WINDOWS = (200, 1_000, 5_000)  # the window sizes
GRID = (20, 50, 100, 200, 500, 1_000, 5_000)  # where the rows needed for 90 % are looked for
SECTIONS = ("false-alarms", "power", "estimate")
CHAMPIONS = 10  # champions (training draws, so references) the runs go round
SHIFTS = (0.5, 1.0, 2.0)  # standard deviations
FEATURE = "worst radius"  # one important feature (the largest coefficient family of the model)
GROUP = ("mean radius", "mean perimeter", "mean area")  # a group of correlated features
CONCEPT = ("worst concave points", 1.0)  # the class boundary that moves, and by how many stds
POWER_TARGET = 0.9
ALARM = {MonitorStatus.WARNING, MonitorStatus.DRIFT, MonitorStatus.DEGRADED}


@dataclass(frozen=True)
class Champion:
    """A model trained as ``mlops train`` trains, and what the monitor compares against."""

    pipeline: Pipeline
    schema: DatasetSchema
    reference: Reference
    classes: list[str]


@dataclass(frozen=True)
class Bench:
    generator: RowGenerator
    champions: list[Champion]
    settings: Settings
    limits: Thresholds

    def window(self, rows: int, seed: int, shifts: dict[str, float] | None = None) -> pd.DataFrame:
        return self.generator.sample(rows, seed=seed, shifts=shifts)

    def champion(self, seed: int) -> Champion:
        """The champion of the run with ``seed``: the runs go round the champions."""
        return self.champions[seed % len(self.champions)]

    def check(self, window: pd.DataFrame, seed: int) -> tuple[CheckResult, MonitorStatus]:
        """The monitor's checks and status on ``window`` (drift; no labels)."""
        champion = self.champion(seed)
        features = window[champion.schema.feature_names]
        predicted = pd.Series(champion.pipeline.predict(features)).astype(str)
        result = check_window(
            champion.reference,
            Current(features, predictions=predicted),
            champion.schema,
            build_report=False,
            drift_alpha=self.settings.drift_alpha,
            drift_min_effect=self.settings.drift_min_effect,
        )
        return result, classify(result, {}, self.limits).status


def train_champion(generator: RowGenerator, settings: Settings, rows: int, seed: int) -> Champion:
    """The ``linear`` candidate fitted on a fresh synthetic table, split as training splits."""
    table = generator.sample(rows, seed=seed)
    dataset = Dataset(frame=table, target=TARGET, source="synthetic")
    schema = infer_schema(dataset, max_categories=settings.max_categories)
    split = training.split_data(
        dataset.features,
        dataset.labels,
        test_size=settings.test_size,
        seed=settings.random_seed,
        task=schema.task,
    )
    pipeline = training.build_candidates(schema, settings.random_seed, ["linear"])["linear"]
    pipeline.fit(split.X_train, split.y_train)
    reference = split.X_train.reset_index(drop=True)
    predicted = pd.Series(pipeline.predict(reference)).astype(str)
    classes = [str(c) for c in pipeline.classes_]
    return Champion(pipeline, schema, Reference(reference, predicted), classes)


def seeds(block: int, runs: int) -> Iterable[int]:
    """Distinct seeds per experiment block: no two windows of the benchmark share rows."""
    return range(1_000_000 * block + 1, 1_000_000 * block + runs + 1)


def interval(hits: int, runs: int) -> str:
    low, high = stats.binomtest(hits, runs).proportion_ci(confidence_level=0.95)
    return f"{hits / runs:.1%} [{low:.1%}, {high:.1%}]"


# --- false alarms ------------------------------------------------------------------------------


def false_alarms(bench: Bench, runs: int) -> list[str]:
    lines = [
        "| window rows | runs | status warning or worse (95 % CI) | status drift | "
        "mean flagged columns | largest effect flagged |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for block, rows in enumerate(WINDOWS, start=1):
        alarms = drifts = flagged = 0
        largest = 0.0
        for seed in seeds(block, runs):
            result, status = bench.check(bench.window(rows, seed), seed)
            alarms += status in ALARM
            drifts += status == MonitorStatus.DRIFT
            columns = [f for f in result.features if f.drifted]
            if result.prediction_drift is not None and result.prediction_drift.drifted:
                columns.append(result.prediction_drift)
            flagged += len(columns)
            largest = max([largest, *(f.effect or 0.0 for f in columns)])
        lines.append(
            f"| {rows:,} | {runs} | {interval(alarms, runs)} | {drifts / runs:.1%} | "
            f"{flagged / runs:.3f} | {largest:.3f} |"
        )
    return lines


# --- power -------------------------------------------------------------------------------------


def group_shifts(generator: RowGenerator, stds: float) -> dict[str, float]:
    """Shifts of the group's features that move each of them by about ``stds`` on average:
    correlated features move each other, so each is shifted by a share of ``stds``."""
    unit = generator.movement(dict.fromkeys(GROUP, 1.0))
    scale = stds / float(unit[list(GROUP)].mean())
    return dict.fromkeys(GROUP, scale)


@dataclass
class Cell:
    runs: int = 0
    hits: int = 0  # the shifted feature (any of the group) flagged
    alarms: int = 0  # status warning or worse
    extra: Counter[str] | None = None  # features flagged besides the shifted one
    borderline_runs: int = 0  # runs flagging a feature that moved by floor/2 to floor
    unrelated_runs: int = 0  # runs flagging a feature that moved by less than floor/2


def power(bench: Bench, runs: int, grid: tuple[int, ...]) -> dict[tuple[str, float, int], Cell]:
    """Every (target, shift, window) cell of the power grid."""
    cells: dict[tuple[str, float, int], Cell] = {}
    block = 10
    for target in ("single", "group"):
        shifted = [FEATURE] if target == "single" else list(GROUP)
        for stds in SHIFTS:
            shifts = {FEATURE: stds} if target == "single" else group_shifts(bench.generator, stds)
            expected = expected_to_move(bench, shifts)
            near = expected_to_move(bench, shifts, share=0.5)
            for rows in grid:
                block += 1
                cell = Cell(extra=Counter())
                for seed in seeds(block, runs):
                    result, status = bench.check(bench.window(rows, seed, shifts), seed)
                    drifted = set(result.drifted_features())
                    cell.runs += 1
                    cell.hits += bool(drifted & set(shifted))
                    cell.alarms += status in ALARM
                    assert cell.extra is not None
                    cell.extra.update(drifted - set(shifted))
                    cell.borderline_runs += bool((drifted & near) - expected - set(shifted))
                    cell.unrelated_runs += bool(drifted - near - set(shifted))
                cells[(target, stds, rows)] = cell
    return cells


def expected_to_move(bench: Bench, shifts: dict[str, float], share: float = 1.0) -> set[str]:
    """Features the generator moves by at least ``share`` of the effect floor (|sum d * corr|)."""
    moved = bench.generator.movement(shifts).abs()
    return set(moved[moved >= share * bench.settings.drift_min_effect].index)


def power_table(cells: dict[tuple[str, float, int], Cell], grid: tuple[int, ...]) -> list[str]:
    lines = [
        "| shifted | shift (stds) | "
        + " | ".join(f"flagged at {rows:,} rows" for rows in WINDOWS)
        + f" | rows for {POWER_TARGET:.0%} |",
        "|---|---:|" + "---:|" * (len(WINDOWS) + 1),
    ]
    for target, label in (("single", FEATURE), ("group", " + ".join(GROUP))):
        for stds in SHIFTS:
            shares = [
                f"{cells[(target, stds, rows)].hits / cells[(target, stds, rows)].runs:.0%}"
                if (target, stds, rows) in cells
                else "—"
                for rows in WINDOWS
            ]
            enough = [
                rows
                for rows in grid
                if cells[(target, stds, rows)].hits
                >= POWER_TARGET * cells[(target, stds, rows)].runs
            ]
            needed = f"{min(enough):,}" if enough else f"> {max(grid):,}"
            lines.append(f"| {label} | {stds:g} | " + " | ".join(shares) + f" | {needed} |")
    return lines


def flagged_set_table(
    bench: Bench, cells: dict[tuple[str, float, int], Cell], grid: tuple[int, ...]
) -> list[str]:
    """Per shift of the single feature: how many features the rule expects to move, how many
    runs flagged a borderline or an unrelated one, and the features flagged outside the
    expected set with their population move (d * corr, in stds)."""
    floor = bench.settings.drift_min_effect
    lines = [
        f"| shift of {FEATURE} (stds) | expected to move (move >= {floor:g}) | "
        f"borderline ({floor / 2:g} to {floor:g}) | runs | runs flagging a borderline feature | "
        "runs flagging an unrelated feature | flagged outside the expected set "
        "(runs, move in stds) |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for stds in SHIFTS:
        moved = bench.generator.movement({FEATURE: stds}).abs()
        expected = expected_to_move(bench, {FEATURE: stds}) - {FEATURE}
        near = expected_to_move(bench, {FEATURE: stds}, share=0.5) - expected - {FEATURE}
        runs = borderline = unrelated = 0
        outside: Counter[str] = Counter()
        for rows in grid:
            cell = cells[("single", stds, rows)]
            runs += cell.runs
            borderline += cell.borderline_runs
            unrelated += cell.unrelated_runs
            assert cell.extra is not None
            outside.update({f: n for f, n in cell.extra.items() if f not in expected})
        named = ", ".join(f"{f} ({n}, {moved[f]:.3f})" for f, n in outside.most_common()) or "none"
        lines.append(
            f"| {stds:g} | {len(expected)} of {len(moved) - 1} | {len(near)} | {runs} | "
            f"{borderline} | {unrelated} | {named} |"
        )
    return lines


def flagged_detail(bench: Bench, cells: dict[tuple[str, float, int], Cell], rows: int) -> str:
    """Which features a 1-std shift of the feature flags besides it, at ``rows``, by share."""
    cell = cells[("single", 1.0, rows)]
    corr = bench.generator.correlation(FEATURE)
    assert cell.extra is not None
    named = ", ".join(
        f"{f} {n / cell.runs:.0%} ({corr[f]:+.2f})" for f, n in cell.extra.most_common()
    )
    return (
        f"Flagged besides {FEATURE} on a 1-std shift at {rows:,} rows (share of {cell.runs} "
        f"runs, corr with {FEATURE}): {named or 'nothing'}."
    )


# --- the estimate ------------------------------------------------------------------------------


def estimate_error(bench: Bench, runs: int) -> list[str]:
    """Mean absolute error of the estimated accuracy / F1 against the realised ones."""
    try:
        from mlops_stack.monitoring.estimate import estimate_quality
    except ImportError:
        return ["estimate: not available (mlops_stack.monitoring.estimate is not installed)"]
    feature, stds = CONCEPT
    concept = ConceptShift.fit(bench.generator.table, TARGET, feature, stds)
    lines = [
        f"Concept shift: {concept.describe()}.",
        "",
        "| window | window rows | runs | realised accuracy (mean) | MAE accuracy | "
        "realised F1 (mean) | MAE F1 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    block = 100
    # (no covariate-shift case: the generator's shifted rows keep their source row's label, so
    # P(label | features) changes with them and no estimate from probabilities could follow)
    cases: list[tuple[str, dict[str, float] | None, Any]] = [
        ("clean", None, None),
        ("concept shift", None, concept.relabel),
    ]
    for name, shifts, relabel in cases:
        for rows in WINDOWS:
            block += 1
            errors: dict[str, list[float]] = {ACCURACY: [], F1: []}
            realised: dict[str, list[float]] = {ACCURACY: [], F1: []}
            for seed in seeds(block, runs):
                window, champion = bench.window(rows, seed, shifts), bench.champion(seed)
                labels = window[TARGET]
                if relabel is not None:
                    labels = relabel(window, labels)
                features = window[champion.schema.feature_names]
                proba = pd.DataFrame(
                    champion.pipeline.predict_proba(features), columns=champion.classes
                )
                predicted = pd.Series(champion.pipeline.predict(features)).astype(str)
                truth = classification_quality(
                    labels.astype(str), predicted, proba, champion.classes, champion.schema
                )
                estimate = estimate_quality(proba, champion.classes)
                if truth is None or estimate is None:
                    continue
                for metric in (ACCURACY, F1):
                    now, guess = truth.metrics[metric], estimate.metrics[metric]
                    if now is not None and guess is not None:
                        errors[metric].append(abs(guess - now))
                        realised[metric].append(now)
            lines.append(
                f"| {name} | {rows:,} | {len(errors[ACCURACY])} | "
                f"{_mean(realised[ACCURACY])} | {_mean(errors[ACCURACY])} | "
                f"{_mean(realised[F1])} | {_mean(errors[F1])} |"
            )
    return lines


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.3f}" if values else "—"


# --- main --------------------------------------------------------------------------------------


def timed(name: str, timings: dict[str, float], work: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    out = work()
    timings[name] = time.perf_counter() - started
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the runs (smoke test)")
    parser.add_argument("--far-runs", type=int, default=None, help="clean runs per window size")
    parser.add_argument("--power-runs", type=int, default=None, help="runs per power cell")
    parser.add_argument("--estimate-runs", type=int, default=None, help="runs per estimate cell")
    parser.add_argument(
        "--train-rows", type=int, default=569, help="synthetic training table (the real one's)"
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated, of {', '.join(SECTIONS)} (default: all)",
    )
    args = parser.parse_args()
    sections = {name.strip() for name in args.sections.split(",") if name.strip()}
    if unknown := sections - set(SECTIONS):
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {SECTIONS}")
    configure_logging("WARNING")
    far_runs = args.far_runs or (10 if args.quick else 200)
    power_runs = args.power_runs or (5 if args.quick else 50)
    estimate_runs = args.estimate_runs or (10 if args.quick else 50)
    grid = (200, 1_000, 5_000) if args.quick else GRID

    started, cpu = time.perf_counter(), time.process_time()
    timings: dict[str, float] = {}
    settings = Settings()
    frame = load_breast_cancer(as_frame=True).frame
    generator = RowGenerator.fit(frame, target=TARGET)
    champions = [
        train_champion(generator, settings, args.train_rows, seed) for seed in range(CHAMPIONS)
    ]
    limits = Thresholds(
        settings.drift_warning_share,
        settings.drift_share,
        settings.quality_drop,
        settings.monitor_min_labelled,
        settings.quality_error_rise,
    )
    bench = Bench(generator, champions, settings, limits)
    tests = len(champions[0].schema.features) + 1
    print("## Drift alarms on fresh rows (benchmarks/drift.py)\n")
    print(
        f"{CHAMPIONS} champions: `linear`, each on its own {args.train_rows} synthetic rows; "
        f"reference = its {len(champions[0].reference.features)} training rows. Each "
        "column's test at "
        f"MLOPS_DRIFT_ALPHA {settings.drift_alpha:g} / {tests} columns = "
        f"{settings.drift_alpha / tests:.2g}; MLOPS_DRIFT_MIN_EFFECT "
        f"{settings.drift_min_effect:g}; MLOPS_DRIFT_WARNING_SHARE "
        f"{settings.drift_warning_share:g}; MLOPS_DRIFT_SHARE {settings.drift_share:g}. "
        "Windows carry no labels (the drift alarm alone).\n",
        flush=True,
    )

    if "false-alarms" in sections:
        print("### False alarms on clean windows\n")
        print("\n".join(timed("false alarms", timings, lambda: false_alarms(bench, far_runs))))
        print(flush=True)
    if "power" in sections:
        report_power(bench, timings, power_runs, grid)
    if "estimate" in sections:
        print("### Estimated vs realised quality (no labels needed for the estimate)\n")
        print("\n".join(timed("estimate", timings, lambda: estimate_error(bench, estimate_runs))))
        print()
    spent = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())
    print(
        f"Time: {time.perf_counter() - started:.0f} s wall ({spent}), "
        f"{time.process_time() - cpu:.0f} s CPU."
    )


def report_power(
    bench: Bench, timings: dict[str, float], power_runs: int, grid: tuple[int, ...]
) -> None:
    cells = timed("power", timings, lambda: power(bench, power_runs, grid))
    print(f"### Power: share of {power_runs} runs flagging the shifted feature(s)\n")
    print(
        f"Rows for {POWER_TARGET:.0%}: the smallest window of {', '.join(map(str, grid))} "
        f"rows that flags it in at least {POWER_TARGET:.0%} of runs.\n"
    )
    print("\n".join(power_table(cells, grid)))
    print()
    print("### The flagged set on a single-feature shift (every window size of the grid)\n")
    print("\n".join(flagged_set_table(bench, cells, grid)))
    print()
    print(flagged_detail(bench, cells, 1_000))
    print(flush=True)


if __name__ == "__main__":
    main()

"""``mlops simulate``: fresh rows of a table sent to the predictor over HTTP, optionally
shifted, with their labels; what it sends is printed first."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlops_stack.cli.defaults import _from_setting
from mlops_stack.cli.runtime import _fail, _prepare, console
from mlops_stack.settings import Settings
from mlops_stack.terminal import wrapped

if TYPE_CHECKING:
    from mlops_stack.simulate import Traffic


def simulate(
    url: Annotated[
        str | None,
        typer.Option(
            help="Predictor base URL",
            show_default="from MLOPS_API_HOST and MLOPS_API_PORT, else "
            f"http://{Settings.model_fields['api_host'].default}:"
            f"{Settings.model_fields['api_port'].default}",
        ),
    ] = None,
    rows: Annotated[int, typer.Option(help="Requests to send", min=1, metavar="N")] = 500,
    rate: Annotated[float, typer.Option(help="Requests per second (0: as fast as possible)")] = 20,
    drift: Annotated[
        list[str] | None,
        typer.Option(
            help="Covariate drift, repeatable: FEATURE:shift=STDS, FEATURE:scale=FACTOR or "
            "FEATURE:mix=CATEGORY@SHARE (see above)",
            metavar="SPEC",
            show_default="none: the table's population",
        ),
    ] = None,
    concept: Annotated[
        str | None,
        typer.Option(
            help="Concept shift: FEATURE:threshold=STDS (see above)",
            metavar="SPEC",
            show_default="none: the table's labels",
        ),
    ] = None,
    label_delay: Annotated[
        float, typer.Option(help="Seconds before each row's true label goes to /feedback")
    ] = 0.0,
    labels: Annotated[bool, typer.Option(help="Send the true labels to /feedback")] = True,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Table the rows come from",
            show_default=_from_setting("dataset_path", "the built-in table"),
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(help="Label column", show_default=_from_setting("target_column")),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the fresh rows, their order and category mixing")
    ] = 0,
) -> None:
    """Send fresh rows of the table to the predictor over HTTP, optionally shifted, with labels.

    Every row is new: drawn from the whole table with a small jitter (a smoothed bootstrap), so
    none repeats. Only rows drawn from the holdout of the split training makes carry a label
    (the model has not seen them; labels of rows near training rows would flatter its
    quality). --drift shifts the population, --concept moves the relationship between a
    feature and the label; both are printed before anything is sent.

    --drift FEATURE:shift=STDS moves the population: FEATURE by STDS standard deviations and
    every numeric feature correlated with it in proportion (corr x STDS of its own);
    FEATURE:scale=FACTOR multiplies one numeric feature; FEATURE:mix=CATEGORY@SHARE sets that
    share of rows to CATEGORY. Labels stay the source rows': the shift is in what is measured,
    the true outcome is unchanged.

    --concept FEATURE:threshold=STDS moves the class boundary on FEATURE (the best single cut
    of it in the table) by STDS standard deviations, and the sent rows between the two cuts
    change class; for a numeric target, FEATURE's effect on it grows by STDS target stds per
    std of FEATURE.
    """
    settings = _prepare()
    from mlops_stack.data import DataValidationError, load_dataset
    from mlops_stack.simulate import (
        Concept,
        SimulationError,
        Simulator,
        fresh_traffic,
        parse_drifts,
        split_like_training,
    )

    try:
        drifts = parse_drifts(drift or [])
        wanted = Concept.parse(concept) if concept else None
        dataset = load_dataset(data or settings.dataset_path, target or settings.target_column)
        held_out = split_like_training(dataset, settings)
        moved = wanted.fit(dataset) if wanted else None
        traffic = fresh_traffic(dataset, held_out, rows, seed=seed, drifts=drifts, concept=moved)
    except (SimulationError, DataValidationError) as exc:
        raise _fail(str(exc), code=2) from None
    _print_traffic(traffic, labels)
    base = url or f"http://{settings.api_host}:{settings.api_port}"
    simulator = Simulator(
        base,
        traffic.features,
        traffic.labels if labels else None,
        rate=rate,
        label_delay=label_delay,
    )
    report = simulator.run(rows)
    versions = ", ".join(f"v{version} {count}" for version, count in report.versions.items())
    # two short lines: scripts read these figures, a wrap inside one would break them
    wrapped(
        console,
        f"sent {report.sent} in {report.seconds:.1f}s: {report.answered} answered "
        f"({versions or 'none'}), {report.failed} failed",
    )
    wrapped(console, f"labels accepted {report.labels_sent}, unknown {report.labels_unknown}")
    if report.unlogged:
        wrapped(
            console,
            f"note: {report.unlogged} answered rows were not logged yet after 30 s "
            "(GET /ready: prediction_log); a monitor run now would not count them",
        )
    if report.errors:
        wrapped(console, f"errors: {dict(report.errors)}")
    if report.failed:
        raise typer.Exit(1)


def _print_traffic(traffic: Traffic, labels: bool) -> None:
    """What the traffic is, before it is sent: fresh rows, what moved, the concept, labels."""
    rows = len(traffic.features)
    wrapped(console, f"{rows} fresh rows (none repeated)")
    if len(traffic.moved):
        moved = traffic.movements()
        listed = ", ".join(f"{feature} {stds:+.2f}" for feature, stds in moved)
        wrapped(
            console,
            f"population shift: {len(moved)} of {len(traffic.moved)} numeric features move by "
            f"0.1 std or more (in stds): {listed}",
        )
    if traffic.concept is not None:
        wrapped(console, f"concept shift: {traffic.concept.describe()}")
    if labels:
        changed = f", {traffic.relabelled} changed by the concept" if traffic.concept else ""
        wrapped(
            console,
            f"labels: {traffic.labelled} of {rows} rows (those drawn from held-out rows{changed})",
        )

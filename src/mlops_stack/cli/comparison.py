"""The champion-challenger comparison on live rows, in one line: ``mlops monitor`` prints its
run's, ``mlops models`` the latest run's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_stack.cli.runtime import console
from mlops_stack.terminal import wrapped

if TYPE_CHECKING:
    from mlops_stack.stack import Stack


def _print_live_comparison(stack: Stack) -> None:
    """The latest monitor run's champion-challenger comparison on live rows, in one line; no
    line when there is none, or when the monitoring database cannot be read (the registry
    listing above stands on its own)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        found = stack.monitor_store.latest_comparison(stack.settings.model_name)
    except SQLAlchemyError:
        return
    if found is None:
        return
    run, comparison = found
    wrapped(console, f"live (monitor run {run.id}): {_comparison_line(comparison)}")


def _comparison_line(comparison: dict[str, Any]) -> str:
    """A stored champion-challenger comparison in words and figures, on one line."""
    metric = comparison.get("metric", "")
    figures = [(comparison.get(side) or {}).get(metric) for side in ("challenger", "champion")]
    versus = " vs ".join("n/a" if v is None else f"{v:.4f}" for v in figures)
    return (
        f"v{comparison.get('version')} vs champion v{comparison.get('champion_version')} on "
        f"{comparison.get('labelled_rows')} labelled rows, {metric} {versus}: "
        f"{comparison.get('decision')}"
    )

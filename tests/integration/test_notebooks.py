"""The notebooks in notebooks/ run headless against the embedded stack, as a user runs them."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.paths import REPO

NOTEBOOKS = REPO / "notebooks"


def _execute(name: str) -> str:
    """Run every cell in a fresh kernel (it inherits this test's MLOPS_* environment)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": "."}}
    )
    client.execute()
    return "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


def test_every_notebook_is_tested():
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == {"exploration.ipynb", "experiment.ipynb"}


def test_exploration_notebook_runs_embedded(stack):
    stack()
    text = _execute("exploration.ipynb")
    assert "built-in" in text or "breast" in text
    assert "valid: the train flow will accept this table" in text
    assert "no data yet: predictions appear here" in text  # an empty monitoring database


def test_experiment_notebook_logs_runs_to_the_configured_tracking(stack):
    settings = stack()
    text = _execute("experiment.ipynb")
    assert f"tracking to {settings.resolved_tracking_uri}" in text

    import mlflow

    mlflow.set_tracking_uri(settings.resolved_tracking_uri)
    runs = mlflow.search_runs(experiment_names=["notebook-experiments"])
    assert sorted(runs["params.C"]) == ["0.01", "0.1", "1.0"]
    assert runs["metrics.roc_auc"].min() > 0.9


@pytest.mark.parametrize("name", ["exploration.ipynb", "experiment.ipynb"])
def test_notebooks_are_stored_without_outputs(name):
    """Outputs belong to a run, not to the repository (and would go stale)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")

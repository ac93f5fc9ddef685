"""Settings for an embedded stack of a test's own, and a champion trained on them.

Tests that serve, shadow or monitor a model need a registry with a champion. They used to build
it through ``MLOPS_*`` environment variables and ``get_settings.cache_clear()``, each module in
its own way; here it is two functions of values: :func:`embedded_settings` makes a ``Settings``
that reads nothing from the environment (so a variable a developer or another test set cannot
leak in), and :func:`train_champion` runs the stack's own train flow under a stack built from
those settings, installed only while it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from mlops_stack.settings import Settings

# What every test stack wants unless it says otherwise: one fast candidate, a short latency
# sample, a log writer that flushes at once.
FAST = {
    "candidates": "logistic_regression",
    "latency_samples": 10,
    "prediction_log_flush_seconds": 0.05,
}


class IsolatedSettings(Settings):
    """``Settings`` from the arguments and the defaults only: no environment, no ``.env``."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def embedded_settings(root: Path, **options: Any) -> Settings:
    """Embedded settings whose MLflow, artifacts and monitoring database live under ``root``.

    ``options`` are settings fields (``model_name="wine"``); :data:`FAST` fills the ones not
    given.
    """
    return IsolatedSettings(**{"data_dir": root / "mlops-data", **FAST, **options})


@contextmanager
def installed(settings: Settings) -> Iterator[Any]:
    """A stack built from ``settings``, the process's stack for the block (flows use it)."""
    from mlops_stack.stack import Stack, install

    stack = Stack(settings)
    previous = install(stack)
    try:
        yield stack
    finally:
        install(previous)
        stack.close()


def table_path(settings: Settings) -> Path:
    """Where :func:`train_champion` writes the table it trains on (a CSV, as a user's is)."""
    return settings.data_dir / f"{settings.model_name}.csv"


def features_of(settings: Settings, target: str) -> pd.DataFrame:
    """The feature columns of the table the champion was trained on, read back as the train
    flow read them (so missing values and dtypes are the CSV's)."""
    return pd.read_csv(table_path(settings)).drop(columns=[target])


def train_champion(
    settings: Settings,
    table: pd.DataFrame | None = None,
    target: str | None = None,
    *,
    versions: int = 1,
) -> list[Any]:
    """Train ``versions`` times on ``table`` with the settings' options; the train results.

    Without a table, the settings' own dataset (the built-in one by default). The first run
    registers v1 as champion; a later run on the same table ties it, so the gate keeps it and
    registers the new version as challenger.
    """
    from mlops_stack.flows.parameters import TrainParameters
    from mlops_stack.flows.train import train_flow

    params = TrainParameters.from_settings(settings)
    if table is not None:
        path = table_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        params = params.model_copy(update={"data_path": str(path), "target": target or "target"})
    with installed(settings):
        return [train_flow(params) for _ in range(versions)]

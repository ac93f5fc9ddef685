"""The flows' options, as pydantic models whose defaults come from the settings.

A Prefect flow's parameters are where its options belong: Prefect validates them, shows them as
a form in its UI and records them with every run. So the flows take these models rather than
reading the environment: ``mlops train`` and the worker's deployments fill them from the
settings (:meth:`from_settings`), the demo and the tests pass their own values. Where the stack's
servers are (tracking URI, databases, Redis) is not an option of a run: that is the process's
composition root (:mod:`mlops_stack.stack`).

Each field's description and static default are the setting's own, so the two cannot disagree.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlops_stack.settings import Settings


def _setting(name: str, **overrides: Any) -> Any:
    """A field with the default and description of setting ``name``."""
    field = Settings.model_fields[name]
    return Field(
        default=overrides.pop("default", field.default),
        description=f"{field.description} (MLOPS_{name.upper()})",
        **overrides,
    )


class _Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateParameters(_Parameters):
    """What a candidate must clear to become champion (see :mod:`mlops_stack.gate`)."""

    metric: str = _setting("gate_metric")
    floors: dict[str, float] = Field(
        default_factory=lambda: Settings.model_construct().gate_thresholds,
        description="Absolute floor per metric (MLOPS_GATE_MIN_*).",
    )
    min_improvement: float = _setting("gate_min_improvement", ge=0)

    @classmethod
    def from_settings(cls, settings: Settings) -> GateParameters:
        return cls(
            metric=settings.gate_metric,
            floors=settings.gate_thresholds,
            min_improvement=settings.gate_min_improvement,
        )


class TrainParameters(_Parameters):
    """One train run: which table, how to split and score it, which candidates, the gate."""

    data_path: str | None = Field(
        default=None,
        description="CSV or Parquet table; empty: MLOPS_DATASET_PATH or the built-in one.",
    )
    target: str = _setting("target_column")
    evaluation_path: str | None = Field(
        default=None,
        description=(
            "Labelled rows kept out of training on which the gate compares the candidate with "
            "the champion instead of the holdout (the retrain flow's fresh rows)."
        ),
    )
    trigger: str = Field(
        default="manual", description="Who started the run: manual, bootstrap, retrain."
    )
    min_rows: int = _setting("min_rows", ge=2)
    min_class_rows: int = _setting("min_class_rows", ge=2)
    test_size: float = _setting("test_size", gt=0, lt=1)
    random_seed: int = _setting("random_seed")
    candidates: list[str] = Field(
        default_factory=lambda: Settings.model_construct().candidate_names,
        min_length=1,
        description="Candidate models to train (MLOPS_CANDIDATES).",
    )
    cv_folds: int = _setting("cv_folds", ge=2)
    latency_samples: int = _setting("latency_samples", ge=10)
    reference_sample_rows: int = _setting("reference_sample_rows", ge=10)
    gate: GateParameters = Field(default_factory=lambda: GateParameters())

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TrainParameters:
        values: dict[str, Any] = {
            "data_path": str(settings.dataset_path) if settings.dataset_path else None,
            "target": settings.target_column,
            "min_rows": settings.min_rows,
            "min_class_rows": settings.min_class_rows,
            "test_size": settings.test_size,
            "random_seed": settings.random_seed,
            "candidates": settings.candidate_names,
            "cv_folds": settings.cv_folds,
            "latency_samples": settings.latency_samples,
            "reference_sample_rows": settings.reference_sample_rows,
            "gate": GateParameters.from_settings(settings),
        }
        return cls(**(values | overrides))


class RetrainParameters(_Parameters):
    """One retrain: when it may run, how many labels it needs, and the train run it starts."""

    trigger_reason: str = Field(
        default="requested by hand", description="Why the retrain was asked for."
    )
    cooldown_minutes: float = _setting("retrain_cooldown_minutes", ge=0)
    min_labelled: int = _setting("retrain_min_labelled", ge=10)
    train: TrainParameters = Field(default_factory=lambda: TrainParameters())

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RetrainParameters:
        values: dict[str, Any] = {
            "cooldown_minutes": settings.retrain_cooldown_minutes,
            "min_labelled": settings.retrain_min_labelled,
            "train": TrainParameters.from_settings(settings),
        }
        return cls(**(values | overrides))


class MonitorParameters(_Parameters):
    """One monitor run: the window, the thresholds, and whether an alert starts a retrain."""

    window_rows: int = _setting("monitor_window_rows", ge=1)
    window_minutes: float | None = _setting("monitor_window_minutes", gt=0)
    min_rows: int = _setting("monitor_min_rows", ge=10)
    max_rows: int = _setting("monitor_max_rows", ge=100)
    drift_warning_share: float = _setting("drift_warning_share", ge=0, le=1)
    drift_share: float = _setting("drift_share", ge=0, le=1)
    quality_drop: float = _setting("quality_drop", ge=0, le=1)
    min_labelled: int = _setting("monitor_min_labelled", ge=1)
    random_seed: int = _setting("random_seed")
    retrain_enabled: bool = _setting("retrain_enabled")
    retrain: RetrainParameters = Field(default_factory=lambda: RetrainParameters())

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> MonitorParameters:
        values: dict[str, Any] = {
            "window_rows": settings.monitor_window_rows,
            "window_minutes": settings.monitor_window_minutes,
            "min_rows": settings.monitor_min_rows,
            "max_rows": settings.monitor_max_rows,
            "drift_warning_share": settings.drift_warning_share,
            "drift_share": settings.drift_share,
            "quality_drop": settings.quality_drop,
            "min_labelled": settings.monitor_min_labelled,
            "random_seed": settings.random_seed,
            "retrain_enabled": settings.retrain_enabled,
            "retrain": RetrainParameters.from_settings(settings),
        }
        return cls(**(values | overrides))

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

import os
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlops_stack.settings import Settings

SETTING = "setting"
"""Key of a field's ``json_schema_extra`` naming the setting (or settings property) it mirrors."""


def _setting(name: str, **constraints: Any) -> Any:
    """A field mirroring setting ``name``: its default, its description, and its value in
    :meth:`_Parameters.from_settings`."""
    field = Settings.model_fields[name]
    return Field(
        default=field.default,
        description=f"{field.description} (MLOPS_{name.upper()})",
        json_schema_extra={SETTING: name},
        **constraints,
    )


def _derived(name: str, description: str, **constraints: Any) -> Any:
    """A field mirroring a property of the settings (a list or table several settings make)."""
    return Field(
        default_factory=lambda: getattr(Settings.model_construct(), name),
        description=description,
        json_schema_extra={SETTING: name},
        **constraints,
    )


class _Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Self:
        """These options as ``settings`` set them (nested options too), with ``overrides``.

        Derived from the fields themselves: a field declared with :func:`_setting` or
        :func:`_derived` takes the setting it names, a nested options model its own
        ``from_settings``; the rest keep their defaults.
        """
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra
            if isinstance(extra, dict) and SETTING in extra:
                values[name] = getattr(settings, str(extra[SETTING]))
            elif isinstance(field.annotation, type) and issubclass(field.annotation, _Parameters):
                values[name] = field.annotation.from_settings(settings)
        return cls(**(values | overrides))

    def as_run_parameters(self) -> dict[str, Any]:
        """What a deployment or a flow run created through Prefect's API takes: the flows'
        one argument, ``params``, as JSON."""
        return {"params": self.model_dump(mode="json")}


class GateParameters(_Parameters):
    """What a candidate must clear to become champion (see :mod:`mlops_stack.gate`).

    ``metric`` may be ``auto`` (the task's default); the train flow resolves it once the task
    is known. ``bounds`` holds both tasks' bounds; the gate applies the candidate's task's.
    """

    metric: str = _setting("gate_metric")
    bounds: dict[str, float] = _derived(
        "gate_thresholds",
        "Absolute bound per metric: a minimum for higher-better metrics (MLOPS_GATE_MIN_*), "
        "a maximum for lower-better ones (MLOPS_GATE_MAX_*).",
    )
    min_improvement: float = _setting("gate_min_improvement", ge=0)


class TrainParameters(_Parameters):
    """One train run: which table, how to split and score it, which candidates, the gate."""

    data_path: str | None = _setting("dataset_path")
    target: str = _setting("target_column")
    task: str = _setting("task")
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
    max_categories: int = _setting("max_categories", ge=2)
    test_size: float = _setting("test_size", gt=0, lt=1)
    random_seed: int = _setting("random_seed")
    candidates: list[str] = _derived(
        "candidate_names", "Candidate models to train (MLOPS_CANDIDATES).", min_length=1
    )
    cv_folds: int = _setting("cv_folds", ge=2)
    selection_max_rows: int = _setting("selection_max_rows", ge=100)
    latency_samples: int = _setting("latency_samples", ge=10)
    reference_sample_rows: int = _setting("reference_sample_rows", ge=10)
    gate: GateParameters = Field(default_factory=lambda: GateParameters())

    @field_validator("data_path", "evaluation_path", mode="before")
    @classmethod
    def _path_as_text(cls, value: object) -> object:
        """A path (``MLOPS_DATASET_PATH`` is one) travels as text: run parameters are JSON."""
        return os.fspath(value) if isinstance(value, os.PathLike) else value


class RetrainParameters(_Parameters):
    """One retrain: when it may run, how many labels it needs, and the train run it starts."""

    trigger_reason: str = Field(
        default="requested by hand", description="Why the retrain was asked for."
    )
    cooldown_minutes: float = _setting("retrain_cooldown_minutes", ge=0)
    min_labelled: int = _setting("retrain_min_labelled", ge=10)
    train: TrainParameters = Field(default_factory=lambda: TrainParameters())


class MonitorParameters(_Parameters):
    """One monitor run, as an operator may change it from one run to the next (Prefect's run
    form shows these): the window, the thresholds, and whether an alert starts a retrain.

    What else a run needs is the stack's, not a run's, and is read from the run's settings
    (``current_stack().settings``) when it runs: the window's floor and sample size
    (``MLOPS_MONITOR_MIN_ROWS``, ``MLOPS_MONITOR_MAX_ROWS``), the seed, the live promotion of a
    shadow challenger (:class:`LivePromotionOptions`) and the retrain's own options
    (:class:`RetrainParameters`). A form holding those too showed 38 options, the gate's metric
    and the seed twice (the retrain's train run has them as well).
    """

    window_rows: int = _setting("monitor_window_rows", ge=1)
    window_minutes: float | None = _setting("monitor_window_minutes", gt=0)
    drift_alpha: float = _setting("drift_alpha", gt=0, lt=1)
    drift_min_effect: float = _setting("drift_min_effect", ge=0)
    drift_warning_share: float = _setting("drift_warning_share", ge=0, le=1)
    drift_share: float = _setting("drift_share", ge=0, le=1)
    quality_drop: float = _setting("quality_drop", ge=0, le=1)
    quality_error_rise: float = _setting("quality_error_rise", ge=0)
    min_labelled: int = _setting("monitor_min_labelled", ge=1)
    retrain_enabled: bool = _setting("retrain_enabled")


class LivePromotionOptions(_Parameters):
    """How a monitor run judges the shadow challenger against the champion on live labelled
    rows (the gate's metric and minimum improvement), and whether it promotes a winner.

    Not a run parameter: a monitor run reads these from its settings
    (:meth:`from_settings`) each time it runs.
    """

    enabled: bool = _setting("live_promotion_enabled")
    min_labelled: int = _setting("live_promotion_min_labelled", ge=10)
    metric: str = _setting("gate_metric")
    min_improvement: float = _setting("gate_min_improvement", ge=0)


class RetentionParameters(_Parameters):
    """One retention pass: how many days of rows the monitoring database keeps (0: all of
    them) and how many rows one of its transactions deletes at most."""

    days: int = _setting("retention_days", ge=0)
    batch_rows: int = _setting("retention_batch_rows", ge=1)

"""Sections of what follows serving: monitoring, retraining, the shadow challenger and its live
promotion, retention of the monitoring database's rows."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, model_validator

from mlops_stack.settings.fields import OptionalFloat, OptionalText


class MonitoringSettings(BaseModel):
    """Monitoring: the window a monitor run checks, its thresholds, its alerts and schedule."""

    monitor_window_rows: int = Field(
        5000, ge=1, description="Monitor window: the last N logged predictions."
    )
    monitor_window_minutes: OptionalFloat = Field(
        None, gt=0, description="If set, the window is the last T minutes instead of N rows."
    )
    monitor_min_rows: int = Field(
        200, ge=10, description="Fewer rows in the window than this: the run says not enough data."
    )
    monitor_max_rows: int = Field(
        50_000, ge=100, description="Rows analysed at most; larger windows are sampled (stated)."
    )
    drift_alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description=(
            "Chance that a monitor run of clean traffic flags any column at all (family-wise "
            "false-alarm rate): each column's test runs at MLOPS_DRIFT_ALPHA divided by the "
            "number of columns tested (Bonferroni), docs/monitoring.md."
        ),
    )
    drift_min_effect: float = Field(
        0.1,
        ge=0,
        description=(
            "Least movement that counts as drift, next to a significant test: the Wasserstein "
            "distance in reference standard deviations (numbers) or the total variation "
            "distance (categories). Large windows make tiny, harmless moves significant."
        ),
    )
    drift_warning_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description=(
            "Share of drifted features from which status is warning; 0: any feature that "
            "drifted (tests are corrected for testing every column at once)."
        ),
    )
    drift_share: float = Field(
        0.3, ge=0, le=1, description="Share of drifted features from which status is drift."
    )
    quality_drop: float = Field(
        0.05,
        ge=0,
        le=1,
        description=(
            "Drop of accuracy, F1 or ROC AUC on labelled rows below the "
            "champion's holdout figure from which status is degraded."
        ),
    )
    quality_error_rise: float = Field(
        0.25,
        ge=0,
        description=(
            "Rise of a regressor's RMSE or MAE on labelled rows over the champion's holdout "
            "figure, relative to it (0.25 = 25 %), from which status is degraded."
        ),
    )
    monitor_min_labelled: int = Field(
        50,
        ge=1,
        description=(
            "Fewest labelled rows in the window from which a quality drop counts as degraded; "
            "below it quality is shown but not judged."
        ),
    )
    alert_webhook_url: OptionalText = Field(
        None, description="Slack-compatible webhook that alerts are POSTed to; empty: none."
    )
    monitor_interval_minutes: float = Field(
        10.0, gt=0, description="How often the worker's scheduled monitor deployment runs."
    )
    monitoring_experiment: str = Field(
        "mlops-monitoring", description="MLflow experiment holding monitor runs and HTML reports."
    )

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> Self:
        if self.drift_warning_share > self.drift_share:
            raise ValueError("MLOPS_DRIFT_WARNING_SHARE must not exceed MLOPS_DRIFT_SHARE")
        return self


class RetrainSettings(BaseModel):
    """Retraining: whether an alerting monitor run retrains, and how often it may."""

    retrain_enabled: bool = Field(
        False,
        description=(
            "Retrain when a monitor run finds drift or degradation: the original data plus "
            "the labelled rows, gated on fresh labelled rows."
        ),
    )
    retrain_cooldown_minutes: float = Field(
        60.0, ge=0, description="Least time between two retrains, against retrain storms."
    )
    retrain_min_labelled: int = Field(
        100, ge=10, description="Fewest labelled rows a retrain needs; fewer: skipped."
    )


class ChallengerSettings(BaseModel):
    """The shadow challenger and its live promotion on labelled live rows."""

    shadow_enabled: bool = Field(
        True,
        description=(
            "The predictor also scores every answered row with the `challenger` version, off "
            "the request path, and logs it, so the monitor compares both on the same live rows."
        ),
    )
    shadow_queue_rows: int = Field(
        10_000,
        ge=1,
        description=(
            "Rows waiting for shadow scoring at most; beyond it rows are not shadow-scored "
            "(counted in /metrics): the challenger never slows or blocks the champion."
        ),
    )
    live_promotion_enabled: bool = Field(
        True,
        description=(
            "The monitor promotes a shadow challenger that beats the champion on the same "
            "labelled live rows by more than MLOPS_GATE_MIN_IMPROVEMENT (gate metric)."
        ),
    )
    live_promotion_min_labelled: int = Field(
        200,
        ge=10,
        description="Fewest labelled live rows both models answered before a live promotion.",
    )


class RetentionSettings(BaseModel):
    """Retention: how long the monitoring database keeps its rows."""

    retention_days: int = Field(
        90,
        ge=0,
        description=(
            "Days the monitoring database keeps predictions, shadow predictions, feedback and "
            "monitor results (runs, their per-feature drift, resolved alerts); older rows are "
            "deleted by the worker's hourly retention/retention deployment (or `mlops "
            "retention`). 0 keeps everything for ever."
        ),
    )
    retention_batch_rows: int = Field(
        5000,
        ge=1,
        description=(
            "Rows one retention transaction deletes at most: short transactions, so the log "
            "writer's inserts never wait long behind a large deletion."
        ),
    )

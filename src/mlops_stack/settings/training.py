"""Sections of what a train run does: the data, the training, the promotion gate."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from mlops_stack.settings.fields import OptionalFloat, OptionalPath


class DataSettings(BaseModel):
    """Data: the table trained on, its target and task, what it must hold."""

    dataset_path: OptionalPath = Field(
        None,
        description="CSV or Parquet file to train on; empty means the built-in breast cancer data.",
    )
    target_column: str = Field("target", description="Name of the label column in the dataset.")
    task: Literal["auto", "classification", "regression"] = Field(
        "auto",
        description=(
            "What the model predicts: auto infers it from the target (numbers with a fraction "
            "or more than 20 distinct whole numbers: regression; else classification)."
        ),
    )
    min_rows: int = Field(50, ge=2, description="Fewest rows a dataset may have to be trained on.")
    min_class_rows: int = Field(
        10, ge=2, description="Fewest rows each class needs (stratified split and CV need some)."
    )
    max_categories: int = Field(
        50,
        ge=2,
        description=(
            "Most one-hot columns a categorical feature gets: a column with more distinct values "
            "keeps its most frequent ones and groups the rest, so training time and memory stay "
            "bounded."
        ),
    )
    reference_sample_rows: int = Field(
        5000, ge=10, description="Rows of training features kept as the drift reference sample."
    )


class TrainingSettings(BaseModel):
    """Training: the split, the candidates, how the best one is chosen."""

    test_size: float = Field(0.2, gt=0, lt=1, description="Share of rows held out for evaluation.")
    random_seed: int = Field(42, description="Seed for the split, CV folds and the estimators.")
    candidates: str = Field(
        "linear,random_forest,hist_gradient_boosting",
        description=(
            "Comma-separated candidate models to train (a subset trains faster): linear "
            "(logistic regression for classes, ridge for numbers; logistic_regression is "
            "accepted too), random_forest, hist_gradient_boosting."
        ),
    )
    cv_folds: int = Field(
        5, ge=2, description="Cross-validation folds used to choose the best candidate."
    )
    latency_samples: int = Field(
        200, ge=10, description="Single-row predictions timed for the latency p50/p95 metrics."
    )
    selection_max_rows: int = Field(
        20_000,
        ge=100,
        description=(
            "Largest training split cross-validated whole. Above it, every candidate is "
            "cross-validated and fitted on a seeded (stratified) sample of this many rows, and "
            "only the winner is refit on all training rows (a random forest's trees then draw "
            "this many rows each): model selection on a large table stays within minutes."
        ),
    )

    @field_validator("candidates")
    @classmethod
    def _known_candidates(cls, value: str) -> str:
        """Known names, aliases resolved (``logistic_regression`` is ``linear``), no repeats."""
        from mlops_stack.training import CANDIDATE_ALIASES, CANDIDATE_NAMES

        names = [n.strip() for n in value.split(",") if n.strip()]
        known = [*CANDIDATE_NAMES, *CANDIDATE_ALIASES]
        unknown = sorted(set(names) - set(known))
        if not names or unknown:
            raise ValueError(f"unknown candidate(s) {unknown}; choose from {known}")
        canonical = [CANDIDATE_ALIASES.get(n, n) for n in names]
        return ",".join(dict.fromkeys(canonical))

    @property
    def candidate_names(self) -> list[str]:
        return self.candidates.split(",")


class GateSettings(BaseModel):
    """The promotion gate: what a candidate must clear to become champion."""

    gate_metric: str = Field(
        "auto",
        description=(
            "Metric the gate compares: auto (roc_auc for classification, rmse for regression), "
            "or accuracy, f1, roc_auc, precision, recall (classification), rmse, mae, r2 "
            "(regression). Lower is better for rmse and mae."
        ),
    )
    gate_min_accuracy: float = Field(
        0.80, ge=0, le=1, description="Classification: absolute floor for accuracy."
    )
    gate_min_f1: float = Field(
        0.80, ge=0, le=1, description="Classification: absolute floor for F1."
    )
    gate_min_roc_auc: float = Field(
        0.85, ge=0, le=1, description="Classification: absolute floor for ROC AUC."
    )
    gate_min_r2: OptionalFloat = Field(
        0.0,
        le=1,
        description=(
            "Regression: absolute floor for R^2; the default 0 refuses a model worse than "
            "predicting the mean. Empty: no floor."
        ),
    )
    gate_max_rmse: OptionalFloat = Field(
        None, ge=0, description="Regression: absolute ceiling for RMSE (target units). Empty: none."
    )
    gate_max_mae: OptionalFloat = Field(
        None, ge=0, description="Regression: absolute ceiling for MAE (target units). Empty: none."
    )
    gate_min_improvement: float = Field(
        0.0,
        ge=0,
        description=(
            "A candidate replaces the champion only if its gate metric beats the champion's by "
            "MORE than this on the same evaluation data; a tie keeps the champion."
        ),
    )

    @field_validator("gate_metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        """Any metric of either task; whether it fits the trained model's task is checked at
        train time (``gate.resolve_metric``), when the task is known."""
        from mlops_stack.gate import AUTO_METRIC
        from mlops_stack.names import HOLDOUT_METRICS, REGRESSION_HOLDOUT_METRICS

        allowed = [AUTO_METRIC, *HOLDOUT_METRICS, *REGRESSION_HOLDOUT_METRICS]
        if value not in allowed:
            raise ValueError(f"must be one of {allowed}")
        return value

    @property
    def gate_thresholds(self) -> dict[str, float]:
        """Absolute bounds a candidate must stay within, by metric name: a minimum for a
        higher-better metric, a maximum for a lower-better one (``names.higher_is_better``).
        The gate applies those of the metrics the candidate's task reports."""
        bounds: dict[str, float | None] = {
            "accuracy": self.gate_min_accuracy,
            "f1": self.gate_min_f1,
            "roc_auc": self.gate_min_roc_auc,
            "r2": self.gate_min_r2,
            "rmse": self.gate_max_rmse,
            "mae": self.gate_max_mae,
        }
        return {name: bound for name, bound in bounds.items() if bound is not None}

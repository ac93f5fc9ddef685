"""Model quality: once true labels arrive, is the model as good as its holdout promised?

What is shown follows the task of the judged model (the version filter's, else the champion):

- classification: accuracy and F1 per monitor run against the holdout figures; the accuracy
  and F1 each run estimated from the champion's own probabilities before labels came
  (``monitoring.estimate``), next to the realised figures on the same labelled rows; and the
  confusion matrix of the labelled predictions in the chosen window (with more than two
  classes, also each class's precision and recall);
- regression: RMSE and MAE per monitor run against the holdout figures (lower is better), and
  for the labelled predictions in the window their error figures, predicted vs actual, the
  error per time bucket and the error distribution.

Every figure comes from the monitoring database (monitor runs, predictions joined to their
labels) or from the registry (holdout metrics, task); none is made up for an empty store.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from mlops_stack.dashboard import cache, filters, queries, widgets
from mlops_stack.monitoring.estimate import LABELLED, ROWS
from mlops_stack.names import ACCURACY, ERROR_BIAS, MAE, R2, RMSE, Task, higher_is_better

settings = cache.settings()
chosen = filters.current()
st.title("Model quality")
judged, task = widgets.judged_model(chosen.version)
st.caption(
    f"Model `{settings.model_name}` · {filters.describe(chosen)} · "
    f"judged: {f'v{judged}' if judged else 'no champion'} · task: **{task}**"
)
METRICS = ("accuracy", "f1")
ERROR_METRICS = (RMSE, MAE)
SCATTER_POINTS = 5_000  # predicted-vs-actual draws at most this many rows (a uniform sample)
BUCKET_TEXT = {"5min": "5 minutes", "1h": "hour", "1D": "day"}
LABEL = {RMSE: "RMSE", MAE: "MAE", ERROR_BIAS: "Error bias", R2: "R²"}


def quality_chart(
    scored: pd.DataFrame, metrics: tuple[str, ...], holdout: dict[str, float], y_title: str
) -> alt.LayerChart:
    """Each metric per monitor run, and the holdout figure it is judged against (dashed)."""
    long = (
        scored.assign(when=filters.local(scored["started_at"]))
        .melt(
            id_vars=["id", "when", "labelled_rows"],
            value_vars=list(metrics),
            var_name="metric",
            value_name="value",
        )
        .dropna(subset=["value"])
    )
    x = alt.X("when:T", title=f"monitor run ({filters.zone()})", axis=filters.TIME_AXIS)
    lines = (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("value:Q", title=y_title, scale=alt.Scale(zero=False)),
            color="metric:N",
            tooltip=["id", "when:T", "metric", "value", "labelled_rows"],
        )
    )
    rules = pd.DataFrame({"metric": list(holdout), "value": list(holdout.values())})
    holdout_lines = (
        alt.Chart(rules)
        .mark_rule(strokeDash=[6, 4])
        .encode(y="value:Q", color="metric:N", tooltip=["metric", "value"])
    )
    return alt.LayerChart(layer=[lines, holdout_lines])


def run_holdout(run: pd.Series, metrics: tuple[str, ...]) -> dict[str, float]:
    """The holdout figures a run compared with (its stored baseline), else the judged
    version's as the registry has them."""
    baseline = run["baseline"] if isinstance(run.get("baseline"), dict) else {}
    stored = {m: float(baseline[m]) for m in metrics if baseline.get(m) is not None}
    if stored:
        return stored
    return {m: v for m, v in version_holdout().items() if m in metrics}


def version_holdout() -> dict[str, float]:
    versions = widgets.read("MLflow registry", cache.versions)
    return queries.holdout_of(versions, judged) if versions is not None else {}


def per_run_section(runs: pd.DataFrame, metrics: tuple[str, ...], title: str, y_title: str) -> None:
    """The latest run's figures against the holdout, and the chart of every run in scope."""
    st.subheader(title)
    scored = runs.dropna(subset=[metrics[0]]) if metrics[0] in runs and not runs.empty else None
    if scored is None or scored.empty:
        widgets.no_data(
            "no monitor run in this window scored labelled predictions", widgets.LABEL_HINT
        )
        return
    last = scored.iloc[-1]
    holdout = run_holdout(last, metrics)
    cols = st.columns(len(metrics) + 2)
    for col, metric in zip(cols, metrics, strict=False):
        delta = last[metric] - holdout[metric] if metric in holdout else None
        col.metric(
            f"Latest {metric}",
            f"{last[metric]:.3f}",
            delta=None if delta is None else f"{delta:+.3f} vs holdout",
            delta_color="normal" if higher_is_better(metric) else "inverse",
        )
    cols[-2].metric("Labelled rows (latest run)", int(last["labelled_rows"]))
    if task is Task.CLASSIFICATION:
        cols[-1].metric(
            "Judged below",
            f"holdout − {settings.quality_drop:.2f}",
            help="MLOPS_QUALITY_DROP: further below the holdout is 'degraded'",
        )
    else:
        cols[-1].metric(
            "Judged above",
            f"holdout × {1 + settings.quality_error_rise:.2f}",
            help="MLOPS_QUALITY_ERROR_RISE: an RMSE or MAE this far above the holdout figure "
            "is 'degraded' (lower is better)",
        )
    st.altair_chart(quality_chart(scored, metrics, holdout, y_title), use_container_width=True)
    st.caption("Dashed: the holdout figure of the model each run compared with.")


def labelled_rows() -> pd.DataFrame | None:
    """The labelled predictions in scope; None after the page said there are none to show."""
    rows = widgets.read(
        "Monitoring database",
        lambda: cache.labelled(settings.model_name, chosen.since, chosen.version),
    )
    if rows is not None and rows.empty:
        widgets.no_data("no labelled prediction in this window", widgets.LABEL_HINT)
        return None
    return rows


# --- classification ---------------------------------------------------------------------------
ESTIMATE_NOTE = (
    "Estimated from the champion's own probabilities over every row of the window, labelled "
    "or not (confidence-based performance estimation, the method of NannyML's CBPE): expected "
    "accuracy is the mean probability of the predicted class. It assumes calibrated "
    "probabilities, used as the model gives them (a random forest's tend to be estimated too "
    "low, gradient boosting's too high), and cannot see a change in how labels follow the "
    "features: only labels show that. Solid: realised on labelled rows; dashed and dotted: "
    "estimated."
)
SERIES = {
    queries.ESTIMATED: "estimated, whole window",
    queries.ESTIMATED + LABELLED: "estimated, labelled rows",
    "": "realised, labelled rows",
}
DASHES = [[6, 4], [2, 2], [1, 0]]  # estimated: dashed, dotted; realised: solid


def estimate_chart(runs: pd.DataFrame) -> alt.FacetChart:
    """Per run and metric: the estimate over the window and over the labelled rows, and the
    realised figure; one panel per metric."""
    parts = [
        pd.DataFrame(
            {
                "id": runs["id"],
                "when": filters.local(runs["started_at"]),
                "metric": metric,
                "series": series,
                "value": runs.get(prefix + metric, np.nan),
            }
        )
        for metric in METRICS
        for prefix, series in SERIES.items()
    ]
    long = pd.concat(parts, ignore_index=True).dropna(subset=["value"])
    series = list(SERIES.values())
    legend = alt.Legend(title=None, orient="bottom")
    chart = (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("when:T", title=f"monitor run ({filters.zone()})", axis=filters.TIME_AXIS),
            y=alt.Y("value:Q", title="score", scale=alt.Scale(zero=False)),
            color=alt.Color("series:N", scale=alt.Scale(domain=series), legend=legend),
            strokeDash=alt.StrokeDash(
                "series:N", scale=alt.Scale(domain=series, range=DASHES), legend=legend
            ),
            tooltip=["id", "when:T", "metric", "series", alt.Tooltip("value:Q", format=".3f")],
        )
    )
    faceted: alt.FacetChart = chart.properties(width=320, height=260).facet(
        column=alt.Column("metric:N", title=None)
    )
    return faceted


def estimate_section(runs: pd.DataFrame) -> None:
    """The latest run's estimate, its realised figures if labels came, and the chart of runs."""
    st.subheader("Estimated before labels, realised after")
    frame = queries.with_estimates(runs)
    estimated = frame.dropna(subset=[queries.ESTIMATED + ACCURACY])
    if estimated.empty:
        widgets.no_data(
            "no monitor run in this window estimated accuracy and F1 from the champion's "
            "probabilities (a classifier's runs do, labelled or not)",
            widgets.MONITOR_HINT,
        )
        return
    last = estimated.iloc[-1]
    cols = st.columns(len(METRICS) * 2 + 1)
    for i, metric in enumerate(METRICS):
        cols[i].metric(f"Estimated {metric}", f"{last[queries.ESTIMATED + metric]:.3f}")
        realised = last.get(metric)
        same_rows = last.get(queries.ESTIMATED + LABELLED + metric)
        labelled = realised is not None and pd.notna(realised)
        cols[len(METRICS) + i].metric(
            f"Realised {metric}",
            f"{realised:.3f}" if labelled else "n/a",
            delta=(
                f"{realised - same_rows:+.3f} vs estimated"
                if labelled and same_rows is not None and pd.notna(same_rows)
                else None
            ),
            delta_color="off",
            help=(
                "the difference is to the estimate over the same labelled rows"
                if labelled
                else "no labelled row in this run's window yet"
            ),
        )
    cols[-1].metric("Rows estimated (latest run)", int(last[queries.ESTIMATED + ROWS]))
    st.altair_chart(estimate_chart(estimated), use_container_width=True)
    st.caption(ESTIMATE_NOTE)


def confusion_section() -> None:
    st.subheader("Confusion matrix")
    rows = labelled_rows()
    if rows is None:
        return
    matrix = queries.confusion(rows)
    accuracy = (rows["label"].astype(str) == rows["prediction"].astype(str)).mean()
    st.caption(
        f"{len(rows)} labelled predictions, {filters.describe(chosen)}; "
        f"{accuracy:.1%} correct. Rows: true class; columns: predicted class."
    )
    st.table(matrix)
    if len(matrix) > 2:
        st.subheader("Per class")
        st.caption(
            "Precision: of the rows predicted as the class, the share that were; recall: of "
            "the rows of the class, the share predicted as it."
        )
        st.table(queries.per_class_scores(rows).round(3))


# --- regression -------------------------------------------------------------------------------
def scatter_chart(rows: pd.DataFrame) -> alt.LayerChart:
    """Predicted against actual, one point per labelled row, and the line of perfect answers."""
    shown = rows.sample(SCATTER_POINTS, random_state=0) if len(rows) > SCATTER_POINTS else rows
    points = (
        alt.Chart(shown.assign(when=filters.local(shown["created_at"])))
        .mark_circle(size=40, opacity=0.5)
        .encode(
            x=alt.X("label:Q", title="actual (label)", scale=alt.Scale(zero=False)),
            y=alt.Y("prediction:Q", title="predicted", scale=alt.Scale(zero=False)),
            tooltip=["when:T", "model_version", "label", "prediction", "error"],
        )
    )
    low = float(min(rows["label"].min(), rows["prediction"].min()))
    high = float(max(rows["label"].max(), rows["prediction"].max()))
    diagonal = (
        alt.Chart(pd.DataFrame({"label": [low, high], "prediction": [low, high]}))
        .mark_line(strokeDash=[6, 4], color="#90a4ae")
        .encode(x="label:Q", y="prediction:Q")
    )
    return alt.LayerChart(layer=[points, diagonal])


def buckets_chart(buckets: pd.DataFrame) -> alt.Chart:
    long = buckets.assign(when=filters.local(buckets["bucket"])).melt(
        id_vars=["when", "rows"], value_vars=list(ERROR_METRICS), var_name="metric"
    )
    chart: alt.Chart = (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("when:T", title=f"created ({filters.zone()})", axis=filters.TIME_AXIS),
            y=alt.Y("value:Q", title="error (lower is better)"),
            color="metric:N",
            tooltip=["when:T", "metric", alt.Tooltip("value:Q", format=".3f"), "rows"],
        )
    )
    return chart


def histogram_chart(errors: pd.Series) -> alt.Chart:
    """The distribution of prediction − label over every labelled row (binned here)."""
    counts, edges = np.histogram(errors.to_numpy(float), bins=min(40, max(1, len(errors))))
    bins = pd.DataFrame({"start": edges[:-1], "end": edges[1:], "rows": counts})
    chart: alt.Chart = (
        alt.Chart(bins)
        .mark_bar()
        .encode(
            x=alt.X("start:Q", title="prediction − label", bin="binned"),
            x2="end:Q",
            y=alt.Y("rows:Q", title="labelled rows"),
            tooltip=[
                alt.Tooltip("start:Q", format=".2f"),
                alt.Tooltip("end:Q", format=".2f"),
                "rows",
            ],
        )
    )
    return chart


def regression_section() -> None:
    st.subheader("Labelled predictions in the window")
    raw = labelled_rows()
    if raw is None:
        return
    rows = queries.regression_rows(raw)
    dropped = len(raw) - len(rows)
    if rows.empty:
        widgets.no_data(
            f"none of the {len(raw)} labelled predictions has a numeric label and prediction",
            "post numeric labels to /api/feedback for this regression model",
        )
        return
    scores = queries.regression_scores(rows)
    holdout = version_holdout()
    cols = st.columns(5)
    for col, metric in zip(cols, (RMSE, MAE, ERROR_BIAS, R2), strict=False):
        value = scores[metric]  # None: undefined on these rows (R² of one row)
        then = holdout.get(metric)
        col.metric(
            LABEL[metric],
            "n/a" if value is None else f"{value:.3f}",
            delta=None if then is None or value is None else f"{value - then:+.3f} vs holdout",
            delta_color="normal" if higher_is_better(metric) else "inverse",
            help="mean of prediction − label: above 0 the model over-predicts"
            if metric == ERROR_BIAS
            else None,
        )
    cols[4].metric("Labelled rows", len(rows))
    note = f"; {dropped} with a label or prediction that is no number left out" if dropped else ""
    st.caption(f"{len(rows)} labelled predictions, {filters.describe(chosen)}{note}.")

    st.subheader("Predicted vs actual")
    st.altair_chart(scatter_chart(rows), use_container_width=True)
    sampled = (
        f" ({SCATTER_POINTS} of {len(rows)} rows drawn at random)"
        if len(rows) > SCATTER_POINTS
        else ""
    )
    st.caption(f"Dashed: predicted = actual{sampled}. Above the line the model over-predicts.")

    created = pd.to_datetime(rows["created_at"], utc=True)
    freq = queries.bucket_size(created.max() - created.min())
    buckets = queries.error_buckets(rows, freq)
    st.subheader("Error over time")
    st.altair_chart(buckets_chart(buckets), use_container_width=True)
    st.caption(
        f"RMSE and MAE of the labelled predictions per {BUCKET_TEXT.get(freq, freq)} "
        f"({len(buckets)} buckets, by the time of the prediction)."
    )
    st.subheader("Error distribution")
    st.altair_chart(histogram_chart(rows["error"]), use_container_width=True)


runs = widgets.read(
    "Monitoring database", lambda: cache.runs(settings.model_name, chosen.since, chosen.version)
)
if runs is not None:
    if task is Task.REGRESSION:
        per_run_section(
            runs, ERROR_METRICS, "RMSE and MAE per monitor run", "error on labelled rows"
        )
        regression_section()
    else:
        per_run_section(runs, METRICS, "Accuracy and F1 per monitor run", "score on labelled rows")
        estimate_section(runs)
        confusion_section()

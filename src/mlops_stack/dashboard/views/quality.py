"""Model quality: once true labels arrive, is the champion as good as its holdout promised?

Accuracy and F1 per monitor run against the champion's holdout figures, and the confusion
matrix of the labelled predictions in the chosen window.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from mlops_stack.dashboard import cache, filters, queries, widgets

settings = cache.settings()
chosen = filters.current()
st.title("Model quality")
st.caption(f"Model `{settings.model_name}` · {filters.describe(chosen)}")
METRICS = ("accuracy", "f1")


def quality_chart(scored: pd.DataFrame, holdout: dict[str, float]) -> alt.LayerChart:
    """Each metric per monitor run, and the holdout figure it is judged against (dashed)."""
    long = (
        scored.assign(when=filters.local(scored["started_at"]))
        .melt(
            id_vars=["id", "when", "labelled_rows"],
            value_vars=list(METRICS),
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
            y=alt.Y("value:Q", title="score on labelled rows", scale=alt.Scale(zero=False)),
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


def over_time_section(runs: pd.DataFrame) -> None:
    st.subheader("Accuracy and F1 per monitor run")
    scored = runs.dropna(subset=["accuracy"]) if not runs.empty else runs
    if scored.empty:
        widgets.no_data(
            "no monitor run in this window had labelled predictions", widgets.LABEL_HINT
        )
        return
    last = scored.iloc[-1]
    baseline = last["baseline"] if isinstance(last["baseline"], dict) else {}
    holdout = {m: float(baseline[m]) for m in METRICS if m in baseline}
    cols = st.columns(4)
    for i, metric in enumerate(METRICS):
        delta = last[metric] - holdout[metric] if metric in holdout else None
        cols[i].metric(
            f"Latest {metric}",
            f"{last[metric]:.3f}",
            delta=None if delta is None else f"{delta:+.3f} vs holdout",
        )
    cols[2].metric("Labelled rows (latest run)", int(last["labelled_rows"]))
    cols[3].metric(
        "Judged below",
        f"holdout − {settings.quality_drop:.2f}",
        help="MLOPS_QUALITY_DROP: further below the holdout is 'degraded'",
    )
    st.altair_chart(quality_chart(scored, holdout), use_container_width=True)
    st.caption("Dashed: the holdout figure of the champion each run compared with.")


def confusion_section() -> None:
    st.subheader("Confusion matrix")
    rows = widgets.read(
        "Monitoring database",
        lambda: cache.labelled(settings.model_name, chosen.since, chosen.version),
    )
    if rows is None:
        return
    if rows.empty:
        widgets.no_data("no labelled prediction in this window", widgets.LABEL_HINT)
        return
    matrix = queries.confusion(rows)
    accuracy = (rows["label"] == rows["prediction"]).mean()
    st.caption(
        f"{len(rows)} labelled predictions, {filters.describe(chosen)}; "
        f"{accuracy:.1%} correct. Rows: true label; columns: prediction."
    )
    st.table(matrix)


runs = widgets.read(
    "Monitoring database", lambda: cache.runs(settings.model_name, chosen.since, chosen.version)
)
if runs is not None:
    over_time_section(runs)
    confusion_section()

"""Drift: is the data the champion sees still like the data it learned from?

Drift share per monitor run against the thresholds; the categories the latest run saw that
training never did; one run's per-feature tests, most drifted first, each with its p-value, the
corrected threshold, its effect and the effect floor (a column drifts when both say so: see
``monitoring.drift.DriftRule``); one feature's reference and current distributions; the run's
Evidently report.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from mlops_stack.dashboard import cache, filters, queries, widgets
from mlops_stack.names import MonitorStatus

settings = cache.settings()
chosen = filters.current()
st.title("Drift")
st.caption(f"Model `{settings.model_name}` · {filters.describe(chosen)}")


def share_chart(measured: pd.DataFrame) -> alt.LayerChart:
    """One point per monitor run, coloured by its status, and the two threshold lines."""
    points = measured.assign(
        when=filters.local(measured["started_at"]), status_colour=measured["status"]
    )
    scale = alt.Scale(
        domain=list(widgets.STATUS_COLOUR), range=list(widgets.STATUS_COLOUR.values())
    )
    line = (
        alt.Chart(points)
        .mark_line(color="#90a4ae")
        .encode(
            x=alt.X("when:T", title=f"monitor run ({filters.zone()})", axis=filters.TIME_AXIS),
            y=alt.Y(
                "drift_share:Q", title="share of drifted features", scale=alt.Scale(domain=[0, 1])
            ),
        )
    )
    dots = line.mark_circle(size=90).encode(
        color=alt.Color("status:N", scale=scale),
        tooltip=["id", "when:T", "status", alt.Tooltip("drift_share:Q", format=".2f"), "reason"],
    )
    thresholds = pd.DataFrame(
        {
            "threshold": [MonitorStatus.WARNING, MonitorStatus.DRIFT],
            "share": [settings.drift_warning_share, settings.drift_share],
        }
    )
    rules = (
        alt.Chart(thresholds)
        .mark_rule(strokeDash=[6, 4])
        .encode(
            y="share:Q",
            color=alt.Color(
                "threshold:N",
                scale=alt.Scale(
                    domain=[MonitorStatus.WARNING, MonitorStatus.DRIFT],
                    range=[
                        widgets.STATUS_COLOUR[MonitorStatus.WARNING],
                        widgets.STATUS_COLOUR[MonitorStatus.DRIFT],
                    ],
                ),
                legend=None,
            ),
            tooltip=["threshold", "share"],
        )
    )
    chart: alt.LayerChart = alt.layer(line, dots, rules).resolve_scale(color="independent")
    return chart


def warning_line() -> str:
    """What the warning line means: any drifted feature (share 0) or a share of them."""
    if settings.drift_warning_share <= 0:
        return "MLOPS_DRIFT_WARNING_SHARE 0: any drifted feature warns"
    return f"MLOPS_DRIFT_WARNING_SHARE {settings.drift_warning_share:.2f}"


def history_section(runs: pd.DataFrame) -> pd.DataFrame | None:
    st.subheader("Drift share per monitor run")
    measured = runs.dropna(subset=["drift_share"])
    if measured.empty:
        widgets.no_data(
            "no monitor run in this window measured drift (it needs "
            "MLOPS_MONITOR_MIN_ROWS logged rows)",
            widgets.MONITOR_HINT,
        )
        return None
    last = measured.iloc[-1]
    cols = st.columns(3)
    cols[0].metric(
        "Latest drift share", f"{last['drift_share']:.2f}", help=f"monitor run #{last['id']}"
    )
    warning = (
        "any feature"
        if settings.drift_warning_share <= 0
        else f"{settings.drift_warning_share:.2f}"
    )
    cols[1].metric("Warning threshold", warning, help="MLOPS_DRIFT_WARNING_SHARE")
    cols[2].metric("Drift threshold", f"{settings.drift_share:.2f}", help="MLOPS_DRIFT_SHARE")
    above = measured[measured["drift_share"] >= settings.drift_share]
    st.caption(
        f"{len(measured)} measured runs, {len(above)} at or above the drift threshold "
        f"(MLOPS_DRIFT_SHARE); warning line: {warning_line()}. Each feature's test is "
        "corrected for testing every column at once "
        f"(MLOPS_DRIFT_ALPHA {settings.drift_alpha:g} over the columns tested), so a single "
        "drifted feature is news, not noise."
    )
    st.altair_chart(share_chart(measured), use_container_width=True)
    return measured


def unseen_section(latest: pd.Series) -> None:
    """Categories training never saw, per feature, in the window of the latest run that checked
    its data (a skipped run did not).

    The model learned nothing about such a value (its encoding has no category for it), yet
    answers anyway, often confidently: worth naming even when the drift tests stay quiet.
    """
    run_id = int(latest["id"])
    st.subheader(f"Unseen categories, latest checked run #{run_id}")
    quality = widgets.read("Monitoring database", lambda: cache.run_data_quality(run_id))
    if quality is None:
        return
    if not quality:
        widgets.no_data("this run stored no per-feature data quality", widgets.MONITOR_HINT)
        return
    rows = int(latest["window_rows"]) if pd.notna(latest["window_rows"]) else None
    unseen = queries.unseen_categories(quality, rows)
    if unseen.empty:
        st.caption(
            f"No categorical feature of run #{run_id} received a value training never saw "
            f"({len(quality)} features checked over {rows} rows)."
        )
        return
    named = ", ".join(
        f"{feature} ({count} rows)"
        for feature, count in zip(unseen["feature"], unseen["unseen rows"], strict=True)
    )
    st.warning(f"{len(unseen)} feature(s) received values training never saw: {named}.")
    shown = unseen.assign(**{"share of window": unseen["share of window"].map("{:.1%}".format)})
    st.table(shown.set_index("feature"))
    st.caption(
        "Counted over every row of the run's window; examples: the most frequent unseen "
        "values (up to five)."
    )


def pick_run(measured: pd.DataFrame) -> dict[str, Any]:
    labels = {
        int(r.id): f"#{r.id} · {filters.local_text(r.started_at)} · {r.status} · "
        f"share {r.drift_share:.2f}"
        for r in measured.itertuples()
    }
    run_id = st.selectbox("Monitor run", list(labels)[::-1], format_func=lambda i: labels[i])
    run: dict[str, Any] = measured[measured["id"] == run_id].iloc[0].to_dict()
    return run


def features_section(run: dict[str, Any]) -> pd.DataFrame | None:
    st.subheader(f"Per-feature drift, run #{run['id']}")
    features = widgets.read("Monitoring database", lambda: cache.feature_drift(int(run["id"])))
    if features is None or features.empty:
        widgets.no_data("this run stored no per-feature scores", widgets.MONITOR_HINT)
        return None
    st.table(feature_table(features).set_index("feature"))
    st.caption(
        "Most drifted first. A feature drifted when its test is significant (p-value at or "
        "below the corrected threshold: MLOPS_DRIFT_ALPHA divided by the number of columns "
        "tested, the prediction included) and it moved by at least the min effect "
        f"(MLOPS_DRIFT_MIN_EFFECT, now {settings.drift_min_effect:g}): the Wasserstein distance "
        "in reference standard deviations for numbers, the total variation distance of the "
        "category shares for categories. 🟡: significant, but too small a move to matter (large "
        "windows make tiny moves significant). Runs stored before the correction show "
        "Evidently's own score and no effect."
    )
    return features


def feature_table(features: pd.DataFrame) -> pd.DataFrame:
    """The stored tests as shown: status, p-value, corrected threshold, effect, min effect."""
    from mlops_stack.monitoring.drift import P_VALUE_METHODS, FeatureDrift  # imports Evidently

    significant = [
        FeatureDrift(*row).significant
        for row in features[
            ["feature", "kind", "method", "threshold", "score", "drifted"]
        ].itertuples(index=False)
    ]
    status = [
        "🔴 drifted" if drifted else "🟡 small effect" if sig else "🟢 stable"
        for drifted, sig in zip(features["drifted"], significant, strict=True)
    ]
    effect = features["effect"] if "effect" in features else pd.Series(None, index=features.index)
    return pd.DataFrame(
        {
            "feature": features["feature"],
            "status": status,
            "p-value": [
                f"{score:.3g}" if method in P_VALUE_METHODS else f"score {score:.3g}"
                for score, method in zip(features["score"], features["method"], strict=True)
            ],
            "corrected threshold": features["threshold"].map("{:.3g}".format),
            "effect": effect.map(lambda e: "—" if pd.isna(e) else f"{e:.3f}"),
            "min effect": f"{settings.drift_min_effect:g}",
            "method": features["method"],
            "kind": features["kind"],
        }
    )


def distribution_chart(reference: pd.Series, current: pd.Series, kind: str) -> alt.Chart:
    """Histogram (numbers) or bars (categories) of both samples, each as shares of its rows."""
    both = pd.concat(
        [
            pd.DataFrame({"value": reference.dropna(), "sample": "reference (training)"}),
            pd.DataFrame({"value": current.dropna(), "sample": "current (run window)"}),
        ]
    )
    if kind == "numeric":
        both["value"] = pd.to_numeric(both["value"], errors="coerce")
        x = alt.X("value:Q", bin=alt.Bin(maxbins=40), title=str(reference.name))
    else:
        both["value"] = both["value"].astype(str)
        x = alt.X("value:N", title=str(reference.name), sort="-y")
    chart: alt.Chart = (
        alt.Chart(both)
        .transform_joinaggregate(rows="count()", groupby=["sample"])
        .transform_calculate(share="1 / datum.rows")
        .mark_bar(opacity=0.55)
        .encode(
            x=x,
            y=alt.Y("sum(share):Q", title="share of rows", stack=None),
            color=alt.Color(
                "sample:N",
                scale=alt.Scale(
                    domain=["reference (training)", "current (run window)"],
                    range=["#78909c", "#ef6c00"],
                ),
            ),
            tooltip=["sample", alt.Tooltip("sum(share):Q", format=".1%")],
        )
    )
    return chart


def distribution_section(run: dict[str, Any], features: pd.DataFrame) -> None:
    st.subheader("Reference vs current")
    feature = st.selectbox("Feature", list(features["feature"]), key="drift_feature")
    kind = features.loc[features["feature"] == feature, "kind"].iloc[0]
    if not run.get("model_version"):
        widgets.no_data("this run names no model version", widgets.MONITOR_HINT)
        return
    reference = widgets.read(
        "MLflow reference sample",
        lambda: cache.reference_values(str(run["model_version"]), feature),
    )
    current = widgets.read(
        "Monitoring database",
        lambda: cache.current_values(
            settings.model_name, run["window_start"], run["window_end"], feature
        ),
    )
    if reference is None or current is None:
        return
    if current.dropna().empty:
        widgets.no_data("no logged value of this feature in the run's window", widgets.TRAFFIC_HINT)
        return
    st.altair_chart(distribution_chart(reference, current, kind), use_container_width=True)
    st.caption(
        f"Reference: the sample logged with v{run['model_version']} "
        f"({len(reference)} rows). Current: the run's window "
        f"({len(current)} rows, newest first up to 5,000)."
    )


def report_section(run: dict[str, Any]) -> None:
    st.subheader("Evidently report")
    if not run.get("report_uri"):
        widgets.no_data("this run logged no Evidently report", widgets.MONITOR_HINT)
        return
    st.caption(f"Logged to MLflow with the run: `{run['report_uri']}`")
    if st.toggle("Show the report", key=f"report_{run['id']}"):
        html = widgets.read("MLflow artifact store", lambda: cache.report_html(run["report_uri"]))
        if html is not None:
            components.html(html, height=900, scrolling=True)


runs = widgets.read(
    "Monitoring database", lambda: cache.runs(settings.model_name, chosen.since, chosen.version)
)
if runs is not None:
    if runs.empty:
        widgets.no_data("no monitor run in this window", widgets.MONITOR_HINT)
    else:
        measured = history_section(runs)
        if measured is not None:
            unseen_section(measured.iloc[-1])
            run = pick_run(measured)
            features = features_section(run)
            if features is not None:
                distribution_section(run, features)
            report_section(run)

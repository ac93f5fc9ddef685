"""Models: the registry's versions, and the two actions a person takes on them.

Versions with aliases, task (classification or regression), the holdout metrics of their task
and the gate's recorded decision; then the champion and the challenger side by side, with
their live figures on the same labelled rows (the latest monitor comparison) and "Promote" for
the challenger. "Start a retrain" creates a flow run of the worker's retrain
deployment in Prefect; "Roll back" moves the champion alias back to the version it replaced.
Each asks for confirmation first, shows what it did, and is disabled, with the reason, where
this dashboard may not act.
"""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from mlops_stack.dashboard import actions, cache, filters, queries, widgets
from mlops_stack.names import Alias, Task, quality_metrics

settings = cache.settings()
st.title("Models")
st.caption(
    f"Registered model `{settings.model_name}` (the model-version filter does not "
    "apply here: this page lists them all)"
)


def versions_section(versions: pd.DataFrame) -> None:
    tasks = list(dict.fromkeys(versions["task"])) if "task" in versions else [Task.CLASSIFICATION]
    metrics = dict.fromkeys(m for task in tasks for m in quality_metrics(task))
    columns = ["version", "aliases", "task", "created_at", "candidate", *metrics]
    columns += ["decision", "reason"]
    shown = filters.localise(versions.reindex(columns=columns), ["created_at"]).fillna("")
    shown["version"] = "v" + shown["version"].astype(str)
    st.table(shown.set_index("version"))


def champion_and_challenger_section(versions: pd.DataFrame) -> None:
    """The served version and the one scored in shadow, side by side: their holdout figures,
    their live figures on the same labelled rows (the latest monitor comparison), and why the
    gate did not promote the challenger."""
    st.subheader("Champion and challenger")
    st.caption(
        "The challenger answers live traffic in shadow (the client only ever sees the "
        "champion's answer); each monitor run scores both on the same labelled rows of its "
        "window, and promotes a challenger that wins by the gate's metric "
        f"(MLOPS_LIVE_PROMOTION_ENABLED={str(settings.live_promotion_enabled).lower()})."
    )
    roles = {
        "champion": queries.version_with_alias(versions, settings.model_alias),
        "challenger": queries.version_with_alias(versions, Alias.CHALLENGER),
    }
    name = settings.model_name
    live = widgets.read("Monitoring database", partial(cache.live_comparison, name))
    shadow = {
        role: widgets.read("Monitoring database", partial(cache.shadow_rows, name, version))
        for role, version in roles.items()
        if version is not None
    }
    if any(roles.values()):
        trained = filters.localise(versions, ["created_at"])  # "trained at" in the viewer's zone
        st.table(queries.side_by_side(trained, roles, live, shadow))
    if roles["challenger"] is None:
        widgets.no_data(
            "no challenger",
            "a retrain the gate refuses leaves one (`mlops retrain`, or the retrain an alert "
            "starts with MLOPS_RETRAIN_ENABLED=true)",
        )
    live_comparison_caption(live, roles)
    promote_section(roles["challenger"])


def live_comparison_caption(
    live: queries.LiveComparison | None, roles: dict[str, str | None]
) -> None:
    """The latest comparison's verdict, or what it takes to get one."""
    needed = settings.live_promotion_min_labelled
    if live is None or not live.comparison.get("labelled_rows"):
        widgets.no_data(
            "no live comparison yet",
            "needs labelled rows both answered: the predictor scores the challenger in shadow "
            "(MLOPS_SHADOW_ENABLED), labels come to /api/feedback, and the monitor compares "
            f"the two; a live decision needs {needed} of them "
            f"(MLOPS_LIVE_PROMOTION_MIN_LABELLED)",
        )
        return
    found = live.comparison
    when = filters.local_text(live.started_at)
    about = (
        ""
        if live.covers(roles["champion"], roles["challenger"])
        else " (about versions that no longer hold these roles)"
    )
    st.markdown(
        f"**Latest live comparison**{about}: monitor run {live.run_id} at {when}, "
        f"v{found.get('version')} against champion v{found.get('champion_version')} on "
        f"{found.get('labelled_rows')} labelled rows both answered, by "
        f"{found.get('metric')}: {found.get('decision')}"
    )


def promote_section(challenger: str | None) -> None:
    """Promote the challenger by hand (recorded as such), as ``mlops promote`` does."""
    label = f"Promote v{challenger}" if challenger else "Promote the challenger"
    permission = actions.promote_permission(settings, challenger)
    if confirmed_button(label, "promote", permission) and challenger is not None:
        try:
            previous = actions.promote(cache.stack(), challenger)
        except Exception as exc:  # registry down, or the version vanished meanwhile
            st.session_state["promote_result"] = ("error", f"Promotion failed: {exc}")
        else:
            st.session_state["promote_result"] = (
                "ok",
                f"v{challenger} is champion (replacing v{previous or 'none'}), promoted by hand.",
            )
        cache.clear()
        st.rerun()
    show_result("promote_result")


def confirmed_button(label: str, key: str, permission: actions.Permission) -> bool:
    """A button that acts only after its confirmation box is ticked; disabled with a reason."""
    if not permission.allowed:
        st.button(label, key=key, disabled=True, help=permission.reason)
        st.caption(f"🔒 {permission.reason}")
        return False
    sure = st.checkbox(f"Yes, {label.lower()}", key=f"{key}_confirm")
    return st.button(label, key=key, disabled=not sure, type="primary")


def retrain_section() -> None:
    st.subheader("Retrain")
    st.caption(
        "Trains on the original data plus the labelled rows; the gate decides on fresh "
        "rows whether the new version becomes champion."
    )
    if confirmed_button("Start a retrain", "retrain", actions.retrain_permission(settings)):
        try:
            run = actions.start_retrain(cache.stack(), reason="requested from the dashboard")
        except Exception as exc:  # Prefect down, or no worker deployment yet
            st.session_state["retrain_result"] = ("error", f"Could not start a retrain: {exc}")
        else:
            link = actions.run_link(settings, run)
            follow = (
                f"[Follow it in Prefect]({link})" if link else "Follow it in Prefect's UI (Runs)"
            )
            st.session_state["retrain_result"] = (
                "ok",
                f"Started flow run **{run.name}** (id `{run.id}`) of deployment "
                f"`{run.deployment}`, state {run.state}. {follow}.",
            )
        cache.clear()
    show_result("retrain_result")


def rollback_section() -> None:
    st.subheader("Roll back")
    info = widgets.read("MLflow registry", cache.champion)
    if info is None:
        st.caption("No champion: nothing to roll back.")
        return
    target = f"v{info.previous}" if info.previous else "none"
    st.caption(
        f"Moves `champion` from v{info.version} back to the version it replaced "
        f"({target}). The predictors are told at once (Redis), or see it at their next poll."
    )
    permission = actions.rollback_permission(settings, info.previous)
    if confirmed_button("Roll back the champion", "rollback", permission):
        try:
            done = actions.roll_back(cache.stack())
        except Exception as exc:  # registry down, or the history changed meanwhile
            st.session_state["rollback_result"] = ("error", f"Rollback failed: {exc}")
        else:
            st.session_state["rollback_result"] = (
                "ok",
                f"Champion moved from v{done.from_version} back to v{done.to_version}.",
            )
        cache.clear()
        st.rerun()
    show_result("rollback_result")


def show_result(key: str) -> None:
    """The last action's outcome stays on the page until the next one replaces it."""
    if key in st.session_state:
        kind, text = st.session_state[key]
        (st.success if kind == "ok" else st.error)(text)


versions = widgets.model_versions()
if versions is not None:
    versions_section(versions)
    champion_and_challenger_section(versions)
left, right = st.columns(2)
with left:
    retrain_section()
with right:
    rollback_section()

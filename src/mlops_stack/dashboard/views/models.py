"""Models: the registry's versions, and the two actions a person takes on them.

Versions with aliases, task (classification or regression), the holdout metrics of their task
and the gate's recorded decision. "Start a retrain" creates a flow run of the worker's retrain
deployment in Prefect; "Roll back" moves the champion alias back to the version it replaced.
Each asks for confirmation first, shows what it did, and is disabled, with the reason, where
this dashboard may not act.
"""

from __future__ import annotations

import streamlit as st

from mlops_stack.dashboard import actions, cache, filters, widgets
from mlops_stack.names import Task, quality_metrics

settings = cache.settings()
st.title("Models")
st.caption(
    f"Registered model `{settings.model_name}` (the model-version filter does not "
    "apply here: this page lists them all)"
)


def versions_section() -> None:
    versions = widgets.model_versions()
    if versions is None:
        return
    tasks = list(dict.fromkeys(versions["task"])) if "task" in versions else [Task.CLASSIFICATION]
    metrics = dict.fromkeys(m for task in tasks for m in quality_metrics(task))
    columns = ["version", "aliases", "task", "created_at", "candidate", *metrics]
    columns += ["decision", "reason"]
    shown = filters.localise(versions.reindex(columns=columns), ["created_at"]).fillna("")
    shown["version"] = "v" + shown["version"].astype(str)
    st.table(shown.set_index("version"))


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


versions_section()
left, right = st.columns(2)
with left:
    retrain_section()
with right:
    rollback_section()

"""The dashboard's section: what its buttons may do, which services it links and probes."""

from __future__ import annotations

from pydantic import BaseModel, Field

from mlops_stack.settings.fields import OptionalText


class DashboardSettings(BaseModel):
    """Dashboard: its buttons, the services it links to and probes."""

    dashboard_actions_enabled: bool = Field(
        True,
        description=(
            "Dashboard: the retrain and rollback buttons act. false shows them disabled with "
            "the reason (a read-only dashboard); nginx basic auth guards who reaches it at all."
        ),
    )
    dashboard_prefect_ui_url: OptionalText = Field(
        None,
        description=(
            "Dashboard: Prefect's UI as the browser reaches it (compose: /prefect), to link a "
            "started retrain run; empty shows the run's id and name without a link."
        ),
    )
    dashboard_api_url: OptionalText = Field(
        None,
        description=(
            "Dashboard: the predictor's base URL. Every address its host resolves to (one A "
            "record per replica: compose --scale, MLOPS_API_REPLICAS) is asked: /metrics for "
            "the error rate, summed, and /ready for the landing page's 'N of M replicas "
            "ready'. Empty leaves both out (the predictor logs no failed request elsewhere)."
        ),
    )
    dashboard_prometheus_url: OptionalText = Field(
        None,
        description=(
            "Dashboard: Prometheus' base URL (compose, profile observability: "
            "http://prometheus:9090/prometheus). The Overview and the landing page show the "
            "predictor's SLO figures it records (availability and p99 over 5 min and 1 h, "
            "burn-rate alerts) and the error rate summed over its predictor targets; empty or "
            "unreachable, the error rate comes from every replica of MLOPS_DASHBOARD_API_URL "
            "and the page says so."
        ),
    )
    dashboard_jupyter_url: OptionalText = Field(
        None,
        description=(
            "Landing page: JupyterLab's base URL to probe (compose, profile notebooks: "
            "http://jupyter:8888/jupyter); empty leaves JupyterLab out of the service list."
        ),
    )
    status_probe_timeout: float = Field(
        2.0,
        gt=0,
        le=30,
        description=(
            "Landing page: seconds each service's health probe may take (they run at once); "
            "one that takes longer shows as down with the timeout as its reason."
        ),
    )

"""Retention in the running prod stack: the worker serves the hourly deployment, and a pass by
hand runs against the stack's PostgreSQL as the worker's user, with its secrets."""

from __future__ import annotations

from tests.e2e_prod.conftest import compose, psql

DEPLOYMENT = "http://prefect-server:4200/prefect/api/deployments/name/retention/retention"


def test_the_worker_serves_the_hourly_retention_deployment():
    found = compose("exec", "-T", "worker", "python", "-m", "mlops_stack.probe", DEPLOYMENT)
    assert found.stdout.startswith("200 "), found.stdout


def test_a_retention_pass_keeps_what_is_newer_than_the_retention():
    rows = int(psql("SELECT count(*) FROM predictions"))
    done = compose("exec", "-T", "worker", "mlops", "retention", timeout=180)
    said = " ".join(done.stdout.split())  # the terminal's wrapping undone
    assert "deleted rows older than" in said, done.stdout + done.stderr
    assert "UTC: predictions 0, shadow_predictions 0," in said  # all minutes old: kept
    assert int(psql("SELECT count(*) FROM predictions")) >= rows

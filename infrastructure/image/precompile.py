"""Write the bytecode (.pyc) of the third-party modules the services import, and only those.

Why not all of it: compiling every installed module (pip's default) adds about 340 MB of .pyc
to the image, most of it for modules no service ever imports. Why not none: the production
containers have a read-only root filesystem, so Python cannot cache what it compiles, and
every process start (each service, each Prefect flow run) would compile its imports again:
measured in this image, in CPU seconds, importing MLflow's server takes 3.2 s with .pyc and
7.5 s without, Prefect's server 3.6 / 6.3, the worker's flows 7.9 / 15.1 (docs/dependencies.md,
"The image"). So the build imports what the services import, which makes Python write their
.pyc next to the sources; a module left out still works, it is compiled in memory when first
imported. The servers the stack runs (MLflow, Prefect, Streamlit) and Evidently import much of
themselves lazily, per request or per report: they are compiled whole (about 40 MB). Plotly
imports a validator module per figure attribute when a report is drawn (200 modules for the
drift report): the build draws one, as the monitor flow does. The stack's own package is
compiled whole by the Dockerfile.

Run by infrastructure/Dockerfile in the build stage, after the dependencies are installed with
`--no-compile` (and before `mlops_stack` is: this layer is then reused on a code change).
"""

import compileall
import importlib
import importlib.util
import os
import sys
import tempfile

# Compiled whole: servers and report builders that import their modules lazily.
WHOLE_PACKAGES = ("mlflow", "prefect", "streamlit", "evidently")

# Per service, the modules its command imports at start or on its first request/flow run
# (mlops_stack's own imports of third-party packages included). Keep in step with src/.
MODULES = {
    "mlflow server": ["mlflow.server", "mlflow.server.handlers", "mlflow.server.fastapi_app"],
    "prefect server": ["prefect.server.api.server", "prefect.main", "prefect.cli"],
    "worker (flows, runner)": [
        "prefect",
        "prefect.cache_policies",
        "prefect.client.orchestration",
        "prefect.deployments",
        "prefect.flow_engine",
        "prefect.runner",
        "prefect.task_engine",
        "evidently",
        "evidently.metrics",
        "evidently.presets",
        "evidently.legacy.core",
        "evidently.legacy.calculations.stattests.registry",
        "scipy.stats",
        "plotly.graph_objs",
        "plotly.io",
        "sklearn.compose",
        "sklearn.datasets",
        "sklearn.ensemble",
        "sklearn.impute",
        "sklearn.linear_model",
        "sklearn.metrics",
        "sklearn.model_selection",
        "sklearn.pipeline",
        "sklearn.preprocessing",
        "mlflow.sklearn",
        "mlflow.data.pandas_dataset",
        "skops.io",
        "alembic.config",
        "alembic.command",
        "alembic.op",
    ],
    "api (predictor)": [
        "fastapi",
        "uvicorn",
        "uvicorn.loops.uvloop",
        "uvicorn.protocols.http.httptools_impl",
        "uvicorn.protocols.websockets.websockets_impl",
        "mlflow.pyfunc",
        "redis.asyncio",
        "prometheus_client",
        "orjson",
        "structlog",
    ],
    "dashboard": ["streamlit", "streamlit.web.bootstrap", "streamlit.components.v1", "altair"],
    "every service (settings, database)": [
        "pydantic_settings",
        "sqlalchemy.dialects.postgresql.psycopg2",
        "sqlalchemy.dialects.postgresql.asyncpg",
        "sqlalchemy.dialects.sqlite",
        "typer",
        "rich.console",
        "rich.table",
        "httpx",
    ],
}


def compile_whole() -> bool:
    """Compile every module of WHOLE_PACKAGES; True when all compiled."""
    ok = True
    for name in WHOLE_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            print(f"precompile: {name} is not an installed package", file=sys.stderr)
            ok = False
            continue
        for location in spec.submodule_search_locations:
            ok = compileall.compile_dir(location, quiet=1) and ok
    return ok


def draw_reports() -> None:
    """Draw and save the Evidently reports the monitor flow draws (drift, regression quality),
    on a small seeded table: this imports the plotly and narwhals modules they load lazily."""
    import numpy as np
    import pandas as pd
    from evidently import DataDefinition, Dataset, Regression, Report
    from evidently.presets import DataDriftPreset, RegressionPreset

    rng = np.random.default_rng(0)

    def table(shift: float) -> pd.DataFrame:
        frame = pd.DataFrame(rng.normal(shift, size=(200, 3)), columns=["a", "b", "target"])
        frame["kind"] = rng.choice(["x", "y", "z"], size=len(frame))
        frame["prediction"] = frame["target"] + rng.normal(size=len(frame))
        return frame

    definition = DataDefinition(
        numerical_columns=["a", "b", "target", "prediction"],
        categorical_columns=["kind"],
        regression=[Regression(target="target", prediction="prediction")],
    )
    reference, current = (Dataset.from_pandas(table(s), data_definition=definition) for s in (0, 1))
    with tempfile.TemporaryDirectory() as folder:
        for preset in (DataDriftPreset(), RegressionPreset()):
            snapshot = Report([preset], include_tests=True).run(current, reference)
            snapshot.save_html(os.path.join(folder, "report.html"))


def main() -> int:
    """Compile WHOLE_PACKAGES, import MODULES, draw the reports; fail the build on an error."""
    if sys.dont_write_bytecode:
        print("precompile: PYTHONDONTWRITEBYTECODE is set: nothing to write", file=sys.stderr)
        return 2
    whole_ok = compile_whole()
    # the libraries' import-time side effects (Prefect's home, analytics) stay in this stage
    os.environ.setdefault("DO_NOT_TRACK", "1")
    failed = []
    for service, modules in MODULES.items():
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as error:  # noqa: BLE001 - report every failure, then fail
                failed.append(f"import {name} ({service}): {type(error).__name__}: {error}")
    try:
        draw_reports()
    except Exception as error:  # noqa: BLE001 - same: report, then fail
        failed.append(f"the Evidently reports: {type(error).__name__}: {error}")
    for line in failed:
        print(f"precompile: failed: {line}", file=sys.stderr)
    print(f"precompile: {len(sys.modules)} modules imported, their .pyc written")
    return 1 if failed or not whole_ok else 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``mlops`` command tree: the root app, its ``serve`` and ``api-key`` groups, and which
function each command runs. ``mlops --help`` lists the commands in the order they are added
here; the commands themselves live in one module per group."""

from __future__ import annotations

from typing import Literal

import typer

from mlops_stack.cli import api_keys, demo, monitoring, services, traffic, training

# Markdown: a docstring's paragraphs are wrapped in the source and re-flowed by Rich to the
# terminal's width (Typer's "rich" mode keeps the source's line breaks and wraps them again).
HELP_MARKUP: Literal["markdown"] = "markdown"

app = typer.Typer(
    name="mlops",
    help=(
        "The local-first MLOps stack: train, register and gate models in MLflow, and run the "
        "stack's services. Every option is also an MLOPS_* environment variable "
        "(see .env.example)."
    ),
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# the commands, in the order `mlops --help` lists them (groups come after the commands)
app.command()(training.train)
app.command()(training.models)
app.command()(training.promote)
app.command()(training.rollback)
app.command()(monitoring.monitor)
app.command()(monitoring.retrain)
app.command()(monitoring.retention)
app.command()(traffic.simulate)
app.command()(demo.demo)
app.command("log-writer")(services.log_writer)
app.command()(services.worker)

serve_app = typer.Typer(
    help="Run a stack service in the foreground (each is one process of the one image).",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
)
app.add_typer(serve_app, name="serve")
serve_app.command("api")(services.serve_api)
serve_app.command("dashboard")(services.serve_dashboard)

api_key_app = typer.Typer(
    help="Predictor API keys (MLOPS_API_KEYS).", no_args_is_help=True, rich_markup_mode=HELP_MARKUP
)
app.add_typer(api_key_app, name="api-key")
api_key_app.command("new")(api_keys.api_key_new)


def main() -> None:
    """Console-script entry point."""
    app()

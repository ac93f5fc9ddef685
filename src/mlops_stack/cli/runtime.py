"""What every command runs with: valid settings (or exit code 2 naming each bad one), the
logging and Prefect environment they set up, the process's ``Stack``, the consoles, and the
exit that names a failure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console

from mlops_stack.settings import Settings, get_settings, variable_of

if TYPE_CHECKING:
    from mlops_stack.stack import Stack

console = Console()
err = Console(stderr=True)


def _prepare() -> Settings:
    """Settings with the process environment (logging, Prefect home) set up from them."""
    from pydantic import ValidationError

    from mlops_stack.logs import configure_logging

    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = "\n".join(f"  - {variable_of(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise _fail(f"invalid settings:\n{problems}", code=2) from None
    except ValueError as exc:  # a MLOPS_*_FILE that cannot be read
        raise _fail(f"invalid settings: {exc}", code=2) from None
    settings.prepare_environment()
    configure_logging(settings.log_level, settings.log_json)
    return settings


def _stack() -> Stack:
    """The process's composition root, built from valid settings and installed for the flows."""
    return _installed(_prepare())


def _installed(settings: Settings) -> Stack:
    from mlops_stack.stack import Stack, install

    stack = Stack(settings)
    install(stack)
    return stack


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)

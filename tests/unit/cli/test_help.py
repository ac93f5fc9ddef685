"""`mlops ... --help` on an 80-column terminal: wrapped once, defaults shown (unit tier)."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from mlops_stack.cli import app

WIDTH = 80
BOX = "│"


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the CLI, groups included: (), ("train",), ("serve", "api")...

    (Typer has its own copy of click: a group is what has ``commands``.)
    """
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner(env={"COLUMNS": str(WIDTH)}).invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def _text_start(line: str) -> int:
    """Column where a line's text starts, after a panel's left border and its padding."""
    body = line[1:] if line.startswith(BOX) else line
    return len(line) - len(body.lstrip())


def _text_end(line: str) -> int:
    """Column just after a line's last character of text, before a panel's right border."""
    body = line.rstrip()
    body = body[:-1].rstrip() if body.endswith(BOX) else body
    return len(body)


def ragged_lines(output: str) -> list[str]:
    """Lines that end a paragraph line too early: the next line continues the same text at
    the same column, and its first word would have fitted after this line's last one.

    That is what wrapping twice leaves (a paragraph wrapped in the source, then again by the
    terminal's width); text wrapped once, greedily, never has such a line. In panels a
    continuation is a row whose columns left of the text are empty; Typer's own
    ``[default: ...]`` / ``[required]`` line after an option's help is not a continuation.
    """
    lines = output.splitlines()
    found = []
    for line, after in zip(lines, lines[1:], strict=False):
        if not line.strip(" " + BOX) or not after.strip(" " + BOX):
            continue
        start = _text_start(after)
        panel = after.startswith(BOX)
        if line.startswith(BOX) != panel or start >= len(line) or (panel and start == 2):
            continue  # not the same block, or a panel's next row (an option, a command)
        # ``after`` continues ``line``'s text in the same column (a cell or a paragraph)
        if line[start] == " " or line[start - 1] not in (" ", BOX):
            continue
        word = after[start:].split()[0]
        if word.startswith(("[default:", "[required]")):
            continue
        limit = WIDTH - 2 if line.startswith(BOX) else WIDTH - 1  # border and padding
        if _text_end(line) + 1 + len(word) <= limit:
            found.append(f"{line.rstrip()!r} <- {word!r}")
    return found


def test_the_ragged_line_check_finds_a_paragraph_wrapped_twice():
    # what Typer's rich mode printed for `mlops train --help` before: source breaks kept
    twice = (
        " Runs the Prefect train flow: validate the data and decide each column, infer   \n"
        " the task                                                                       \n"
        " (or take --task), split it (seeded; stratified for classes), train and         \n"
    )
    assert len(ragged_lines(twice)) == 1
    once = (
        " Runs the Prefect train flow: validate the data and decide each column, infer   \n"
        " the task (or take --task), split it (seeded; stratified for classes), train    \n"
    )
    assert ragged_lines(once) == []
    cell = (
        "│ --task          <str>   auto, classification or regression;                  │\n"
        "│                         auto infers it from the target                       │\n"
    )
    assert len(ragged_lines(cell)) == 1


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "mlops")
def test_help_fits_80_columns_and_is_wrapped_once(path):
    output = _help(path)
    assert "Usage: mlops" in output
    too_long = [line for line in output.splitlines() if len(line) > WIDTH]
    assert too_long == [], output
    assert ragged_lines(output) == [], output
    assert "…" not in output, output  # nothing cut off to fit a column


def _option_blocks(output: str) -> dict[str, str]:
    """Each option's panel rows, joined, by its long name."""
    blocks: dict[str, str] = {}
    current = None
    for line in output.splitlines():
        cells = line.strip(" " + BOX)
        if line.startswith(BOX) and cells.startswith("--"):
            current = cells.split()[0]
            blocks[current] = ""
        elif not line.startswith(BOX):
            current = None
        if current is not None:
            blocks[current] += " " + cells
    return blocks


@pytest.mark.parametrize("path", [p for p in COMMANDS if p], ids=" ".join)
def test_every_option_shows_its_default(path):
    blocks = _option_blocks(_help(path))
    for option, text in blocks.items():
        if option != "--help":
            assert "[default:" in text or "[required]" in text, (option, text)


def test_serve_api_shows_each_default_and_the_setting_it_comes_from():
    text = " ".join(_option_blocks(_help(("serve", "api"))).values())
    text = " ".join(text.split())
    assert "[default: (MLOPS_API_HOST, else 127.0.0.1)]" in text
    assert "[default: (MLOPS_API_PORT, else 8000)]" in text
    assert "[default: (MLOPS_API_WORKERS, else 1)]" in text

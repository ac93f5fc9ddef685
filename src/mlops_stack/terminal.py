"""What the CLI prints, at the terminal's width: tables where they fit, records where not.

A Rich table wider than the terminal is squeezed column by column: headers and values wrap
inside narrow cells, a word longer than its cell is cut, and one record spreads over many short
lines. So a table is printed only when its natural width fits (:func:`fits`), and
otherwise the same records are printed one block each (:func:`records`): the record's key in a
narrow column, its fields wrapped beside it. Prose lines wrap at word boundaries with a hanging
indent (:func:`wrapped`) instead of running past the edge or losing their indent.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

UNBOUNDED = 10_000
"""A width no table here reaches: measuring within it gives a table's natural width."""


def fits(console: Console, renderable: RenderableType) -> bool:
    """Whether ``renderable`` shows at its natural width, nothing squeezed, on ``console``."""
    options = console.options.update_width(UNBOUNDED)
    return Measurement.get(console, options, renderable).maximum <= console.width


Line = str | Sequence[str]
"""A line of a record: text (wrapped at words), or items kept whole, packed ``; ``-separated."""

GAP = 2
"""Spaces between a record's key and its lines."""


def records(
    console: Console, rows: Sequence[tuple[str, Sequence[Line]]], spaced: bool = False
) -> Table:
    """One block per record: its key, then its lines beside it; ``spaced`` puts a blank line
    between blocks (of several lines each). A line of items breaks only between items, so a
    name is never left without its value at the end of a line."""
    width = console.width - max((len(key) for key, _ in rows), default=0) - GAP
    grid = Table.grid(padding=(0, GAP))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(ratio=1, overflow="fold")
    for number, (key, lines) in enumerate(rows):
        if spaced and number:
            grid.add_row()  # a blank line (a grid has no box to draw Table's ``leading``)
        text = [line if isinstance(line, str) else pack(line, width) for line in lines]
        grid.add_row(Text(key), Text("\n".join(text)))
    return grid


def pack(items: Sequence[str], width: int, separator: str = "; ") -> str:
    """``items`` joined by ``separator`` on lines of at most ``width``, breaking only between
    items (an item longer than a line gets a line of its own)."""
    lines: list[str] = []
    mark = separator.rstrip()  # ends every line but the last
    for item in items:
        if lines and len(lines[-1]) + len(separator) + len(item) + len(mark) <= width:
            lines[-1] += separator + item
        else:
            if lines:
                lines[-1] += mark
            lines.append(item)
    return "\n".join(lines)


def fields(names: Sequence[str], values: Sequence[str]) -> list[str]:
    """A record's fields, ``name value`` each, empty values left out."""
    return [f"{name} {value}" for name, value in zip(names, values, strict=True) if value]


def table_or_records(console: Console, table: Table, rows: Sequence[Sequence[str]]) -> None:
    """``table`` (whose cells are ``rows``) when it fits; else its title and one record per
    row: the first cell as the key, the others as ``header value`` fields."""
    if fits(console, table):
        console.print(table)
        return
    if table.title:
        console.print(Text(str(table.title), style="italic"))
    headers = [str(column.header) for column in table.columns[1:]]
    console.print(records(console, [(row[0], [fields(headers, row[1:])]) for row in rows]))


def wrapped(console: Console, text: str, indent: int = 0, hanging: int = 2) -> None:
    """Print ``text`` wrapped at word boundaries to the terminal's width: the first line
    indented ``indent``, the lines it wraps onto ``indent + hanging``, so that a wrapped item
    still reads as one. A word longer than a line (a path, a URL) stays whole, to be copied."""
    console.print(
        textwrap.fill(
            text,
            width=console.width,
            initial_indent=" " * indent,
            subsequent_indent=" " * (indent + hanging),
            break_long_words=False,
            break_on_hyphens=False,
        ),
        markup=False,
        highlight=False,
        soft_wrap=True,  # wrapped here already; Rich would fold a long word mid-way
    )

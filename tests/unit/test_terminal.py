"""CLI output at the terminal's width: a table where it fits, one block per record where not."""

from __future__ import annotations

import io
import re

from rich.console import Console
from rich.table import Table

from mlops_stack.terminal import pack, table_or_records, wrapped

HEADERS = ("phase", "rows", "status", "drift share", "accuracy (labels)", "retrain", "after")
ROWS = [
    ["clean traffic", "600", "ok", "0%", "0.960", "", "v1"],
    ["concept shift", "600", "degraded", "0%", "0.701", "promoted", "v2"],
]


def _console(width: int) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, color_system=None), out


def _print(width: int) -> list[str]:
    console, out = _console(width)
    table = Table(title="what the loop did")
    for header in HEADERS:
        table.add_column(header)
    for row in ROWS:
        table.add_row(*row)
    table_or_records(console, table, ROWS)
    return out.getvalue().splitlines()


def test_a_table_that_fits_is_a_table_with_one_line_per_record():
    lines = _print(120)
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 2 and "concept shift" in rows[1] and "promoted" in rows[1]
    assert all(header in lines[2] for header in ("drift share", "accuracy (labels)"))


def test_a_table_too_wide_becomes_one_block_per_record_with_every_field_named():
    lines = _print(60)
    assert max(len(line) for line in lines) <= 60
    assert not any(line.startswith(("│", "┃", "┏")) for line in lines)  # no squeezed table
    text = " ".join(" ".join(lines).split())
    assert "clean traffic rows 600; status ok; drift share 0%; accuracy (labels) 0.960" in text
    assert "retrain promoted; after v2" in text
    assert "retrain ;" not in text  # an empty field is left out, not shown blank


def test_wrapped_text_indents_its_continuation_and_keeps_a_long_word_whole():
    console, out = _console(40)
    uri = "file:///" + "x" * 60 + "/drift_report.html"
    wrapped(console, f"monitor: degraded - quality dropped on the labelled rows {uri}", indent=3)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("   monitor: degraded") and len(lines[0]) <= 40
    assert all(line.startswith("     ") for line in lines[1:])  # indent + hanging
    assert lines[-1].strip() == uri  # longer than a line: on its own, not cut


def test_a_record_line_of_items_breaks_between_items_only():
    items = [f"{name} 0.{n}000" for n, name in enumerate(("accuracy", "precision", "recall") * 3)]
    lines = pack(items, 30).splitlines()
    assert all(len(line) <= 30 for line in lines)
    assert " ".join(" ".join(lines).split()) == "; ".join(items)  # nothing lost or reordered
    for line in lines:  # each line ends on a value, never on a name left without it
        assert re.fullmatch(r"([a-z]+ 0\.\d{4}; )*[a-z]+ 0\.\d{4};?", line), line

"""docs/architecture.md's package map names every module of the tree, and only those.

The map is the one place a newcomer reads to find where a thing lives (README links to it), so
it must not fall behind the code: a module added, moved or deleted without its line fails here.
Each line of the map's code block that starts at the first column names one module by its path
under ``src/mlops_stack`` (the Alembic revisions by their folder); indented lines continue the
description. README stays a front door, short enough to read: at most ``README_MAX_LINES``.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "mlops_stack"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
README = ROOT / "README.md"
README_MAX_LINES = 150
FOLDERS_NAMED_WHOLE = ("monitoring_db/migrations/versions/",)
"""Folders whose modules the map names by the folder (the migrations' numbered revisions)."""


def modules() -> set[str]:
    """Every module of the package, by its path under src/mlops_stack, as the map names it."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py":
            continue
        folder = next((f for f in FOLDERS_NAMED_WHOLE if relative.startswith(f)), None)
        found.add(folder or relative)
    return found


def map_entries() -> list[str]:
    """The first word of each unindented line of the code block under "## Package map"."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = re.search(r"^## Package map\n(.*?)^## ", text, re.M | re.S)
    assert section, "docs/architecture.md has no '## Package map' section"
    block = re.search(r"^```[^\n]*\n(.*?)^```", section.group(1), re.M | re.S)
    assert block, "the package map section has no code block"
    return [line.split()[0] for line in block.group(1).splitlines() if line[:1].strip()]


def test_every_module_is_in_the_package_map():
    missing = sorted(modules() - set(map_entries()))
    assert not missing, f"modules missing from docs/architecture.md's package map: {missing}"


def test_the_package_map_names_no_module_that_is_gone():
    stale = sorted(entry for entry in map_entries() if not (PACKAGE / entry).exists())
    assert not stale, f"docs/architecture.md's package map names what src/ no longer has: {stale}"


def test_each_module_has_one_line():
    entries = map_entries()
    twice = sorted({entry for entry in entries if entries.count(entry) > 1})
    assert not twice, f"named more than once in the package map: {twice}"


def test_the_readme_is_a_front_door():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, at most {README_MAX_LINES}"

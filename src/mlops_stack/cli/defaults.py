"""How an option's help shows a default that comes from a setting (``[default: ...]``)."""

from __future__ import annotations

from mlops_stack.settings import Settings


def _from_setting(name: str, unset: object | None = None) -> str:
    """An option's shown default when its default is a setting: the setting's variable, and
    what applies when that is not set either (the setting's own default, or ``unset``)."""
    default = Settings.model_fields[name].default if unset is None else unset
    return f"MLOPS_{name.upper()}, else {default}"

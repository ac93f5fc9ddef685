"""What the sections' fields share: the variables a setting is read from, and "empty is unset".

A field ``name`` is set by the variable ``MLOPS_<NAME>`` (:func:`variable`). A field that was
renamed keeps reading the variable it had before (:func:`formerly`), so no user's ``.env`` breaks;
its own variable wins when both are set. Those are the only names: the ``.env.example``
renderer, the secret files (``<variable>_FILE``) and the CLI's error messages take them from
here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, BeforeValidator
from pydantic.fields import FieldInfo

PREFIX = "MLOPS_"


def variable(name: str) -> str:
    """The variable that sets field ``name``: ``MLOPS_`` and the name in capitals."""
    return f"{PREFIX}{name.upper()}"


def formerly(name: str, *old: str) -> AliasChoices:
    """The variables renamed field ``name`` reads: its own first (it wins when both are set),
    then ``old``, the variables it was read from before the rename."""
    return AliasChoices(variable(name), *old)


def variable_names(name: str, field: FieldInfo) -> list[str]:
    """Every variable that sets field ``name``, the one that wins first."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    return [variable(name)]


def former_names(name: str, field: FieldInfo) -> list[str]:
    """The variables field ``name`` still reads from before it was renamed (none: never was)."""
    return variable_names(name, field)[1:]


def variable_of(location: tuple[int | str, ...]) -> str:
    """The variable a settings validation error is about: pydantic places an error of a renamed
    field under its variable (the alias), of any other field under the field's name."""
    name = "_".join(map(str, location)).upper()
    return name if name.startswith(PREFIX) else f"{PREFIX}{name}"


def _empty_is_unset(value: object) -> object:
    """``MLOPS_X=`` (as in .env.example) means "use the default", not "the path ''"."""
    return None if isinstance(value, str) and not value.strip() else value


EMPTY_IS_UNSET = BeforeValidator(_empty_is_unset)
OptionalText = Annotated[str | None, EMPTY_IS_UNSET]
OptionalPath = Annotated[Path | None, EMPTY_IS_UNSET]
OptionalFloat = Annotated[float | None, EMPTY_IS_UNSET]

"""The validation vocabulary: a problem, and the error listing every problem of a table.

Apart from :mod:`~mlops_stack.data.validate` because the loader raises the same error (a file
not found, unreadable, of an unsupported type) before any table exists to validate, and the
loader must not depend on the checks that come after it.
"""

from __future__ import annotations

from dataclasses import dataclass

SHOWN_PROBLEMS = 5
"""Problems a validation error's message lists; ``problems`` keeps them all."""


@dataclass(frozen=True)
class Problem:
    """One validation finding; ``column`` is None when it concerns the whole table."""

    column: str | None
    message: str

    def __str__(self) -> str:
        return f"column '{self.column}': {self.message}" if self.column else self.message


class DataValidationError(ValueError):
    """The dataset cannot be trained on; ``problems`` lists every reason, each with its column.

    The message shows the count and the first :data:`SHOWN_PROBLEMS`: a person reads it.
    """

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = [f"  - {p}" for p in problems[:SHOWN_PROBLEMS]]
        if len(problems) > SHOWN_PROBLEMS:
            lines.append(f"  ... and {len(problems) - SHOWN_PROBLEMS} more")
        body = "\n".join(lines)
        super().__init__(f"dataset failed validation ({len(problems)} problem(s)):\n{body}")

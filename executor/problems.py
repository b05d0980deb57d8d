"""One problem found before launch: which input, what is wrong, what to change.

Shared by the dataset loader, pre-flight and plans so that every check reports in
the same shape (and ``PreflightError`` can list them all). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

__all__ = ["Problem", "ERROR", "WARNING", "errors_only", "warnings_only"]

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """``input`` names what the user set (``models.dit``, ``datasets[0].source_fps``,
    ``options.blocks_to_swap``, ``extra_args``); ``fix`` says what to change."""

    input: str
    message: str
    fix: str = ""
    level: str = ERROR

    @property
    def is_error(self) -> bool:
        return self.level == ERROR

    def __str__(self) -> str:
        text = f"{self.input}: {self.message}"
        if self.fix:
            text += f" -> fix: {self.fix}"
        return text if self.is_error else f"warning: {text}"

    def to_dict(self) -> dict[str, str]:
        return {"input": self.input, "message": self.message, "fix": self.fix, "level": self.level}


def errors_only(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.is_error]


def warnings_only(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if not p.is_error]

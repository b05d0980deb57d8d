"""The pack's exceptions: what went wrong, and what the user should change.

    TrainerError                  message, hint, reference (kebab-case)
    ├── SetupError                raised before launch; nothing was run
    │   ├── ConfigError           bad settings file, node inputs or dataset
    │   ├── TrainerNotFound       venv python, musubi checkout or script missing
    │   └── PreflightError        several problems found at once (.problems)
    └── RunError                  the process started; carries .result
        ├── TrainerFailed         non-zero exit (or a failure signature); .kind
        ├── OutOfMemory           CUDA / host out of memory
        ├── MissingModule         ModuleNotFoundError / ImportError in the child
        ├── TimedOut              wall-clock limit reached
        ├── Stalled               no output for the stall limit
        ├── Cancelled             the user cancelled
        └── ReaderError           reading the child's output failed

``str(error)`` is what a ComfyUI user sees: one line saying what happened,
the exit code, the last lines of output, and ``hint:`` with what to change.
This module imports only the standard library and ``parsers``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:  # only a type here; importing parsers would slow the pack's import
    from parsers.events import Progress

__all__ = [
    "RunResult", "TrainerError", "SetupError", "ConfigError", "TrainerNotFound",
    "PreflightError", "RunError", "TrainerFailed", "OutOfMemory", "MissingModule",
    "TimedOut", "Stalled", "Cancelled", "ReaderError", "describe_exit_code",
]

TAIL_LINES_SHOWN = 20


@dataclass
class RunResult:
    """What a finished (or killed) child left behind."""

    argv: list[str]
    exit_code: Optional[int]
    duration: float
    tail: list[str] = field(default_factory=list)
    last_progress: Optional[Progress] = None
    log_path: Optional[str] = None
    cancelled: bool = False
    timed_out: bool = False
    stalled: bool = False
    failure_kind: Optional[str] = None
    failure_hint: Optional[str] = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.exit_code == 0 and not (self.cancelled or self.timed_out or self.stalled)
                and self.failure_kind is None)


# Windows NTSTATUS crash codes seen as unsigned exit codes.
_WINDOWS_CODES = {
    0xC0000005: "access violation (0xC0000005)",
    0xC0000409: "stack buffer overrun (0xC0000409)",
    0xC000013A: "interrupted by Ctrl+C / console closed (0xC000013A)",
    0xC0000017: "out of memory (0xC0000017)",
    0xC00000FD: "stack overflow (0xC00000FD)",
    0xC0000135: "a DLL was not found (0xC0000135)",
    0xC000001D: "illegal instruction (0xC000001D)",
    0xC0000142: "a DLL failed to initialise (0xC0000142)",
}


def describe_exit_code(code: Optional[int]) -> str:
    """``exit code 1``, ``killed by signal SIGKILL (-9)``, or a Windows crash name."""
    if code is None:
        return "no exit code"
    if code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name} ({code})"
    if code in _WINDOWS_CODES:
        return f"exit code {code}: {_WINDOWS_CODES[code]}"
    if code == 0xFFFFFFFF:
        return "exit code -1 (4294967295)"
    return f"exit code {code}"


_KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class TrainerError(Exception):
    """Base of every error the pack raises on purpose."""

    reference = "trainer-error"

    def __init__(self, message: str, *, hint: str = "", **context: Any) -> None:
        super().__init__(message)
        assert _KEBAB.match(self.reference), self.reference
        self.message = message
        self.hint = hint
        self.context = context

    def __str__(self) -> str:
        parts = [self.message]
        parts.extend(self._details())
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)

    def _details(self) -> list[str]:
        return []


class SetupError(TrainerError):
    """Raised before anything is launched."""

    reference = "setup-error"


class ConfigError(SetupError):
    reference = "config-error"


class TrainerNotFound(SetupError):
    reference = "trainer-not-found"


class PreflightError(SetupError):
    """Several problems found before launch, all reported at once."""

    reference = "preflight-failed"

    def __init__(self, problems: Sequence[Any], *, hint: str = "") -> None:
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} found before launch; nothing was run",
                         hint=hint)

    def _details(self) -> list[str]:
        return [f"  - {p}" for p in self.problems]


class RunError(TrainerError):
    """The process ran and did not succeed; ``result`` says how it ended."""

    reference = "run-error"

    def __init__(self, message: str, *, result: RunResult, hint: str = "",
                 kind: Optional[str] = None) -> None:
        super().__init__(message, hint=hint)
        self.result = result
        self.kind = kind or result.failure_kind

    @property
    def exit_code(self) -> Optional[int]:
        return self.result.exit_code

    @property
    def tail(self) -> list[str]:
        return self.result.tail

    @property
    def last_progress(self) -> Optional[Progress]:
        return self.result.last_progress

    @property
    def command(self) -> list[str]:
        return self.result.argv

    def _details(self) -> list[str]:
        out = [describe_exit_code(self.result.exit_code)]
        tail = self.result.tail[-TAIL_LINES_SHOWN:]
        if tail:
            out.append(f"[{len(tail)} lines of output]")
            out.extend(tail)
            out.append("[end of output]")
        if self.result.log_path:
            out.append(f"full log: {self.result.log_path}")
        return out


class TrainerFailed(RunError):
    reference = "trainer-failed"


class OutOfMemory(RunError):
    reference = "out-of-memory"


class MissingModule(RunError):
    reference = "missing-module"


class TimedOut(RunError):
    reference = "timed-out"


class Stalled(RunError):
    reference = "stalled"


class Cancelled(RunError):
    reference = "cancelled"


class ReaderError(RunError):
    reference = "reader-error"

"""How the executor's errors reach ComfyUI: a cancelled run becomes ComfyUI's quiet
InterruptProcessingException; any other TrainerError a RuntimeError named ``musubi_tuner.<Kind>``
(ComfyUI shows ``module.qualname``, which for a class defined in a custom node would be the pack's
file-system path) whose message is ``str(error)``: what happened, exit code, output tail, hint.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from typing import TYPE_CHECKING

from . import host

if TYPE_CHECKING:
    from ..executor.errors import TrainerError

_TYPES: dict[str, type] = {}


class MusubiTunerError(RuntimeError):
    """Base of the errors a node raises; ``.error`` is the executor's original error."""

    error: Optional[TrainerError] = None

    def __init__(self, message: str, error: Optional[TrainerError] = None) -> None:
        super().__init__(message)
        self.error = error


MusubiTunerError.__module__ = "musubi_tuner"


def error_type(name: str) -> type:
    """``MusubiTunerError`` subclass named ``name`` (e.g. ``OutOfMemory``), made once."""
    cls = _TYPES.get(name)
    if cls is None:
        cls = type(name, (MusubiTunerError,), {"__module__": "musubi_tuner"})
        _TYPES[name] = cls
    return cls


def node_error(error: TrainerError) -> MusubiTunerError:
    return error_type(type(error).__name__)(str(error), error)


def user_error(message: str, hint: str = "") -> MusubiTunerError:
    """A problem with the node's inputs found by the node itself."""
    text = f"{message}\nhint: {hint}" if hint else message
    return error_type("ConfigError")(text)


@contextmanager
def reported(on_failure: Optional[Callable[[str], None]] = None) -> Iterator[None]:
    """Translate executor errors raised inside the block for ComfyUI.

    ``on_failure`` receives the message (e.g. to show it on the node) before the error is
    raised; it is not called for a cancel.
    """
    from ..executor.errors import Cancelled, TrainerError

    try:
        yield
    except Cancelled:
        host.raise_interrupt()
    except TrainerError as error:
        if on_failure is not None:
            on_failure(str(error))
        raise node_error(error) from error

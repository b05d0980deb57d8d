"""The executor's catalogue for the nodes, imported on first use instead of at ComfyUI's start.

Building the catalogue (its dataclasses, the architecture table and the error tree it imports)
is over half of the pack's import time, and registering the nodes does not need it. ``catalogue``
stands in for the module: each attribute access imports it through the import system (a dict
lookup once loaded, and thread-safe: ComfyUI's HTTP and execution threads may both be first).
"""

from __future__ import annotations

from typing import Any, Callable


class DeferredModule:
    """A module object that is imported when one of its attributes is first read."""

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load = load

    def __getattr__(self, name: str) -> Any:
        return getattr(self._load(), name)


def _load_catalogue() -> Any:
    from ..executor.musubi import catalogue

    return catalogue


catalogue: Any = DeferredModule(_load_catalogue)

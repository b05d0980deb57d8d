"""Event values produced by the parsers.

Every event is a frozen dataclass with a ``type`` tag so it can be written as
one JSON object per line (``to_dict``). This module is pure: no I/O, no
threads, no imports outside the standard library.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Union


@dataclass(frozen=True)
class Progress:
    """One tqdm frame. ``total``/``rate`` are None when tqdm printed ``?``.

    ``rate`` is always in items per second (``s/it`` frames are inverted),
    ``elapsed``/``remaining`` are seconds, ``percent`` is tqdm's own rounded
    percentage (None for bars without a total).
    """

    desc: str
    n: float
    total: Optional[float]
    rate: Optional[float] = None
    unit: str = "it"
    elapsed: Optional[float] = None
    remaining: Optional[float] = None
    postfix: dict[str, str] = field(default_factory=dict)
    percent: Optional[float] = None
    type: str = field(default="progress", init=False)


@dataclass(frozen=True)
class LogLine:
    """A line that is not a progress frame. ``level``/``logger`` are filled
    for Python logging lines (``INFO:name:message``); ``text`` is the whole line."""

    text: str
    stream: str = "stdout"
    level: Optional[str] = None
    logger: Optional[str] = None
    type: str = field(default="log", init=False)


@dataclass(frozen=True)
class Epoch:
    n: int
    total: int
    type: str = field(default="epoch", init=False)


@dataclass(frozen=True)
class Checkpoint:
    """``saving checkpoint: <path>`` — a LoRA file is about to be written."""

    path: str
    type: str = field(default="checkpoint", init=False)


@dataclass(frozen=True)
class ModelSaved:
    """``model saved.`` — the last line of a successful training run."""

    type: str = field(default="model_saved", init=False)


@dataclass(frozen=True)
class ItemsFound:
    """``found N images`` / ``loaded N videos``: dataset items musubi will use."""

    count: int
    kind: str  # "images" or "videos"
    type: str = field(default="items_found", init=False)


@dataclass(frozen=True)
class TotalBatches:
    count: int
    type: str = field(default="total_batches", init=False)


@dataclass(frozen=True)
class TotalSteps:
    """``total optimization steps / ...: N`` from the ``running training`` block."""

    count: int
    type: str = field(default="total_steps", init=False)


@dataclass(frozen=True)
class Phase:
    """A coarse stage of the run: ``loading_model``, ``caching``,
    ``training``, ``saving``, ``sampling``, ``loading_dataset``, ..."""

    name: str
    detail: str = ""
    type: str = field(default="phase", init=False)


@dataclass(frozen=True)
class CacheRemoved:
    """``Removed old cache file: <path>``."""

    path: str
    type: str = field(default="cache_removed", init=False)


@dataclass(frozen=True)
class Failure:
    """A known failure signature matched in the output."""

    kind: str
    hint: str
    message: str = ""
    type: str = field(default="failure", init=False)


Event = Union[
    Progress, LogLine, Epoch, Checkpoint, ModelSaved, ItemsFound, TotalBatches,
    TotalSteps, Phase, CacheRemoved, Failure,
]


def to_dict(event: Event) -> dict[str, Any]:
    """The JSON-ready form of an event, ``type`` first."""
    data = asdict(event)
    return {"type": data.pop("type"), **data}

"""One non-frame line of musubi-tuner output -> LogLine plus phase events.

The texts matched here are musubi-tuner v0.3.4's own messages (training/
trainer_base.py, the cache scripts, dataset/): ``print`` lines on stdout and
``LEVEL:logger:message`` logging lines on stderr. Pure: standard library only.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from .events import (
    CacheRemoved,
    Checkpoint,
    Epoch,
    Event,
    ItemsFound,
    LogLine,
    ModelSaved,
    Phase,
    TotalBatches,
    TotalSteps,
)

__all__ = ["parse_line", "split_log_prefix", "PHASES"]

# logging.basicConfig() without a format: `INFO:musubi_tuner.training.trainer_base:message`.
_LOG_PREFIX = re.compile(r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):(?P<logger>[^:\s]+):(?P<message>.*)", re.S)

_Builder = Callable[["re.Match[str]"], Event]

# message pattern -> the event it announces; every pattern is anchored at the
# message start, and the first match wins.
_EVENTS: list[tuple[re.Pattern[str], _Builder]] = [
    (re.compile(r"epoch (\d+)/(\d+)$"), lambda m: Epoch(int(m[1]), int(m[2]))),
    (re.compile(r"saving checkpoint: (.+)$"), lambda m: Checkpoint(m[1].strip())),
    (re.compile(r"model saved\.$"), lambda m: ModelSaved()),
    (re.compile(r"(?:found|loaded) (\d+) (images|videos)$"), lambda m: ItemsFound(int(m[1]), m[2])),
    (re.compile(r"total batches: (\d+)$"), lambda m: TotalBatches(int(m[1]))),
    # `  total optimization steps / 学習ステップ数: 6` (the Japanese part varies)
    (re.compile(r"\s*total optimization steps\b[^:]*:\s*(\d+)$"), lambda m: TotalSteps(int(m[1]))),
    (re.compile(r"Removed old cache file: (.+)$"), lambda m: CacheRemoved(m[1].strip())),
]

# Phase names, in the order a full pipeline normally passes through them.
PHASES = ("loading_dataset", "loading_model", "caching", "training", "sampling", "saving")

_PHASE_MARKERS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Load dataset config from "), "loading_dataset"),
    (re.compile(
        r"Loading (?:DiT model|high noise (?:DiT )?model|VAE model|VAE|AE model|Z-Image VAE|Ideogram 4 VAE"
        r"|3D VAE model|image encoder|T5|BYT5|Qwen2\.5-VL|Qwen3 text encoder|text encoder|HiDream-O1 model"
        r"|Krea 2 text encoder)\b"
        r"|loading (?:text encoder|T5|CLIP)\b"
    ), "loading_model"),
    (re.compile(r"Encoding (?:dataset \[\d+\]|with |prompts with )"), "caching"),
    (re.compile(r"running training\b"), "training"),
    (re.compile(r"generating sample images at step\b"), "sampling"),
    (re.compile(r"saving checkpoint: |saving state at (?:epoch|step) \d+|saving last state\."), "saving"),
]


def split_log_prefix(text: str) -> tuple[Optional[str], Optional[str], str]:
    """``INFO:name:msg`` -> ``("INFO", "name", "msg")``; other lines -> ``(None, None, text)``."""
    match = _LOG_PREFIX.match(text)
    if match is None:
        return None, None, text
    return match["level"], match["logger"], match["message"]


def parse_line(text: str, stream: str = "stdout") -> list[Event]:
    """The events of one line that is not a progress frame.

    The first event is always the :class:`LogLine` itself (with ``level`` and
    ``logger`` split off Python logging lines); musubi milestones found in the
    message follow (``Epoch``, ``Checkpoint``, ``Phase``, ...).
    """
    text = text.rstrip()
    level, logger, message = split_log_prefix(text)
    events: list[Event] = [LogLine(text=text, stream=stream, level=level, logger=logger)]
    message = message.strip()
    for pattern, phase in _PHASE_MARKERS:
        if pattern.match(message):
            events.append(Phase(phase, message))
            break
    for pattern, build in _EVENTS:
        match = pattern.match(message)
        if match is not None:
            events.append(build(match))
            break
    return events

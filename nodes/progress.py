"""Parser events -> ComfyUI progress: the node's bar and the text on it, rate-limited.
``StepReporter.on_event``/``should_cancel`` are the callbacks ``executor.process.run`` calls on the
node's execution thread (ComfyUI's ProgressBar hook raises the interrupt in the calling thread, so a
reader thread must never touch it). ComfyUI is reached through ``host``; tests inject fakes.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional

from typing import TYPE_CHECKING

from . import host

if TYPE_CHECKING:
    from ..parsers.events import Progress

PHASE_LABELS = {
    "loading_model": "loading model",
    "loading_dataset": "loading dataset",
    "caching": "caching",
    "training": "training",
    "saving": "saving",
    "sampling": "sampling",
    "converting": "converting",
    "delivering": "delivering",
}


def format_duration(seconds: Optional[float]) -> str:
    """``MM:SS`` or ``H:MM:SS`` like tqdm; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def format_rate(rate: Optional[float], unit: str = "it") -> str:
    """Training is usually slower than one step a second, so show ``s/it`` then, as tqdm does."""
    if not rate or rate <= 0 or not math.isfinite(rate):
        return ""
    if rate < 1:
        return f"{1 / rate:.2f} s/{unit}"
    return f"{rate:.2f} {unit}/s"


class RateLimiter:
    """Lets a call through at most once per ``interval`` seconds (pip's spinner idea)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = max(0.0, interval)
        self._clock = clock
        self._last: Optional[float] = None

    def ready(self) -> bool:
        return self._last is None or self._clock() - self._last >= self.interval

    def mark(self) -> None:
        self._last = self._clock()


class StepReporter:
    """Progress of one step node.

    Training: the ``steps`` bar drives the node's bar (value/max = optimizer steps).
    Caching: musubi's caching bar has no total and counts bucket batches, one bar per
    dataset; the node's bar shows the batches done over the batches expected from the
    dataset's item counts (``expected``), falling back to the ``found N images`` counts.
    Bar updates and text are rate-limited; the first update, the last one (value == max)
    and phase changes always go out. ``finish``/``fail`` flush the final state.
    """

    def __init__(self, node_id: Optional[str], *, step: str, interval: float = 0.5,
                 expected: Optional[int] = None, title: str = "",
                 bar_factory: Callable[[int, Optional[str]], Any] = host.progress_bar,
                 send_text: Callable[[str, Optional[str]], None] = host.send_text,
                 interrupted: Callable[[], bool] = host.interrupted,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.node_id = node_id
        self.step = step
        self.title = title
        self._bar_factory = bar_factory
        self._send_text = send_text
        self._interrupted = interrupted
        self._bar_limit = RateLimiter(interval, clock)
        self._text_limit = RateLimiter(interval, clock)
        self._bar: Any = None
        self._bar_sent: Optional[tuple[int, int]] = None
        self.value = 0
        self.total: Optional[int] = None
        self.expected = expected if expected and expected > 0 else None
        self.phase = ""
        self.detail = ""
        self.epoch: Optional[tuple[int, int]] = None
        self.progress: Optional[Progress] = None
        self.loss: Optional[str] = None
        self._items_found = 0
        self._cache_done = 0  # batches of caching bars that already finished
        self._cache_bar_n = 0
        self._text_sent: Optional[str] = None
        self.texts_sent = 0

    # --- callbacks for executor.process.run ----------------------------------------------

    def should_cancel(self) -> bool:
        return bool(self._interrupted())

    def on_event(self, event: Any) -> None:
        # Events are told apart by their ``type`` tag (parsers/events.py), so importing
        # the pack does not import the parsers.
        kind = getattr(event, "type", None)
        force = False
        if kind == "progress":
            self._on_progress(event)
        elif kind == "total_steps":
            if self.step != "train":
                return
            self.total = int(event.count)
            force = True
        elif kind == "epoch":
            self.epoch = (event.n, event.total)
            self._set_phase("training")
            force = True
        elif kind == "phase":
            force = self._set_phase(event.name, event.detail)
        elif kind == "checkpoint":
            force = self._set_phase("saving", event.path)
        elif kind == "model_saved":
            force = self._set_phase("saving", "model saved")
        elif kind == "items_found":
            self._items_found += int(event.count)
            if self.step != "train" and self.expected is None:
                self.total = max(self._items_found, self.total or 0)
        elif kind == "total_batches":
            if self.step != "train" and self.expected is None:
                self.total = max(int(event.count), self.total or 0)
        else:
            return
        self._publish(force=force)

    # --- start / end ---------------------------------------------------------------------

    def start(self, text: str) -> None:
        """First text on the node (before the child prints anything)."""
        if self.step != "train" and self.expected:
            self.total = self.expected
        self.phase = "starting"
        self.detail = text
        self._publish(force=True)

    def finish(self, text: str = "done") -> None:
        if self.total:
            self.value = self.total
        self.phase = "done"
        self.detail = text
        self._publish(force=True)

    def fail(self, text: str) -> None:
        self.phase = "failed"
        self.detail = text
        self._publish(force=True, bar=False)

    # --- internals -----------------------------------------------------------------------

    def _set_phase(self, name: str, detail: str = "") -> bool:
        changed = name != self.phase
        self.phase = name
        self.detail = detail
        return changed

    def _on_progress(self, p: Progress) -> None:
        if p.desc == "steps":
            self.progress = p
            if p.total:
                self.total = int(p.total)
            self.value = int(p.n)
            loss = p.postfix.get("avr_loss") if p.postfix else None
            if loss is not None:
                self.loss = loss
            if self.phase in ("", "starting", "loading_model", "loading_dataset"):
                self.phase = "training"
            return
        if self.step != "train" and not p.desc and p.total is None:
            # musubi's caching bar: a new bar (n went back) means the next dataset started
            if p.n < self._cache_bar_n:
                self._cache_done += self._cache_bar_n
            self._cache_bar_n = int(p.n)
            self.value = self._cache_done + self._cache_bar_n
            if self.total is not None and self.value > self.total:
                self.total = self.value
            self.progress = p
            if self.phase != "caching":
                self.phase = "caching"
            return
        # any other bar (model loading, sampling): only the text mentions it
        if p.desc.startswith("Loading") and self.phase not in ("training", "caching"):
            self.phase = "loading_model"
        self.detail = _bar_detail(p)

    def _publish(self, *, force: bool, bar: bool = True) -> None:
        if bar and self.total:
            self._update_bar(force)
        text = self.text()
        if text != self._text_sent and (force or self._text_limit.ready()):
            self._send_text(text, self.node_id)
            self._text_limit.mark()
            self._text_sent = text
            self.texts_sent += 1

    def _update_bar(self, force: bool) -> None:
        total = int(self.total or 0)
        value = min(int(self.value), total)
        state = (value, total)
        if state == self._bar_sent:
            return
        last = value >= total
        if not (force or last or self._bar_sent is None or self._bar_limit.ready()):
            return
        if self._interrupted():
            # Leave the Cancel to the executor's next poll of should_cancel: it ends the run
            # as "cancelled" (result.json says so) instead of through the bar hook's exception.
            return
        if self._bar is None:
            self._bar = self._bar_factory(total, self.node_id)
        # The hook raises InterruptProcessingException when ComfyUI's Cancel was pressed;
        # it must propagate through executor.run, which kills the tree first.
        self._bar.update_absolute(value, total)
        self._bar_limit.mark()
        self._bar_sent = state

    def text(self) -> str:
        """The progress text shown on the node."""
        label = PHASE_LABELS.get(self.phase, self.phase.replace("_", " "))
        head = f"{self.title}: {label}" if self.title else label
        parts = [head]
        if self.epoch and self.step == "train":
            parts.append(f"epoch {self.epoch[0]}/{self.epoch[1]}")
        if self.total:
            unit = "step" if self.step == "train" else "batch"
            parts.append(f"{unit} {min(self.value, self.total)}/{self.total}")
        p = self.progress
        if p is not None and self.phase in ("training", "caching"):
            rate = format_rate(p.rate, p.unit or "it")
            if rate:
                parts.append(rate)
            if p.remaining is not None:
                parts.append(f"ETA {format_duration(p.remaining)}")
        if self.loss is not None:
            parts.append(f"avr_loss {self.loss}")
        line = " · ".join(parts)
        if self.detail:
            line += "\n" + self.detail
        return line


def _bar_detail(p: Progress) -> str:
    if p.total:
        return f"{p.desc or 'working'}: {int(p.n)}/{int(p.total)}"
    return f"{p.desc or 'working'}: {int(p.n)}"

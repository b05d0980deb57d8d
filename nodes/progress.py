"""Parser events -> ComfyUI progress: the node's bar (and its preview image), the text on it with
a tail of the log, and the ``musubi_tuner.progress`` websocket event, all rate-limited.
``StepReporter.on_event``/``should_cancel`` are the callbacks ``executor.process.run.run`` calls on the
node's execution thread (ComfyUI's ProgressBar hook raises the interrupt in the calling thread, so a
reader thread must never touch it). ComfyUI is reached through ``host``; tests inject fakes.
Rate and ETA come from the pack's own step times (executor/runs/speed.py), not from musubi's bar.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
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
EVENT = "musubi_tuner.progress"  # the custom websocket event (docs/watching-training.md)
TAIL_LINES = 12
TAIL_WIDTH = 160
PREVIEW_MAX = 768  # longest side of a preview image sent over the websocket


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
    The bar and the text are one picture: the text names the step the bar shows (the last
    bar update sent), and a bar update takes the text with it at once, so a user never sees the
    bar at step n beside a text that says another step, whichever of them is rate-limited or
    waiting. Bar moves and text-only changes (log lines) are rate-limited separately; the first
    bar update, the last one (value == max) and phase changes go out at once (a bar move that
    ComfyUI's own throttle would drop waits for the next event or poll). ``finish``/``fail``
    flush the final state.
    """

    def __init__(self, node_id: Optional[str], *, step: str, interval: float = 0.5,
                 expected: Optional[int] = None, title: str = "",
                 bar_factory: Callable[[int, Optional[str]], Any] = host.progress_bar,
                 send_text: Callable[[str, Optional[str]], None] = host.send_text,
                 interrupted: Callable[[], bool] = host.interrupted,
                 send_event: Callable[[str, dict], None] = host.send_event,
                 prompt_id: Callable[[], Optional[str]] = host.prompt_id,
                 clock: Callable[[], float] = time.monotonic,
                 bar_throttle: Callable[[], tuple[float, float]] = host.bar_throttle) -> None:
        from ..executor.runs.history import LossRecorder
        from ..executor.runs.speed import StepRate

        self.node_id = node_id
        self.step = step
        self.title = title
        self._bar_factory = bar_factory
        self._send_text = send_text
        self._interrupted = interrupted
        self._clock = clock
        self._bar_limit = RateLimiter(interval, clock)
        self._text_limit = RateLimiter(interval, clock)
        self._bar_at: Optional[float] = None  # when the bar was last sent
        # Newer ComfyUI's ProgressBar silently drops an update within its minimum interval of
        # the last one or smaller than its minimum percent (first, final and preview updates
        # excepted): such a move is not sent at all, so the text never names a step the bar
        # was not given. A little more than the interval keeps clock jitter out of it.
        interval_min, self._bar_min_percent = bar_throttle()
        self._bar_gap = interval_min * 1.5
        self._bar: Any = None
        self._bar_sent: Optional[tuple[int, int]] = None
        self.value = 0
        self.total: Optional[int] = None
        self.expected = expected if expected and expected > 0 else None
        self.phase = ""
        self.detail = ""
        self.epoch: Optional[tuple[int, int]] = None
        self.progress: Optional[Progress] = None
        self.speed = StepRate()  # steps (caching: batches) per second, from when each was first seen
        self.loss: Optional[str] = None
        self._items_found = 0
        self._cache_done = 0  # batches of caching bars that already finished
        self._cache_bar_n = 0
        self._text_sent: Optional[str] = None
        self.texts_sent = 0
        self._send_event = send_event
        self._prompt_id = prompt_id
        self._event_limit = RateLimiter(interval, clock)
        self._event_sent: Optional[dict] = None
        self.events_sent = 0
        self.previews_sent = 0
        self.run_dir: Optional[str] = None  # set when the run starts; its name is the event's run_id
        self.watch: Any = None  # a watch.TrainWatch: previews from the sample folder or the loss curve
        self.latest_sample: Optional[str] = None  # file name of the newest sample (set by the watch)
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        # the loss points of this run, for the live curve (execute_plan writes them to loss.jsonl)
        self.history = LossRecorder() if step == "train" else None

    # --- callbacks for executor.process.run.run ----------------------------------------------

    def should_cancel(self) -> bool:
        if self._interrupted():
            return True
        # Also called while the child is silent: the time to send what had to wait (the bar's
        # gap, the rate limit) and to look for new sample images.
        self._publish(force=False)
        self._tick()
        return False

    def on_event(self, event: Any) -> None:
        # Events are told apart by their ``type`` tag (parsers/events.py), so importing
        # the pack does not import the parsers.
        kind = getattr(event, "type", None)
        force = False
        if self.history is not None:
            self.history.feed(event)
        if kind == "log":
            line = event.text.strip()
            if not line:
                return
            self.tail.append(line if len(line) <= TAIL_WIDTH else line[:TAIL_WIDTH - 1] + "…")
        elif kind == "progress":
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
        self._tick()

    def _tick(self) -> None:
        if self.watch is not None:
            self.watch.tick(self)

    def refresh(self) -> None:
        """Send text and event now (e.g. a new sample appeared), if they changed."""
        self._publish(force=True)

    def send_preview(self, image: Any) -> bool:
        """Show a PIL image as the node's progress preview; False when there is no bar yet
        (total unknown) or Cancel was pressed (left to the executor's poll, as for the bar)."""
        total = int(self.total or 0)
        if total <= 0 or self._interrupted():
            return False
        if self._bar is None:
            self._bar = self._bar_factory(total, self.node_id)
        # The preview keeps the bar where it is: ComfyUI encodes the image between sending the
        # bar and anything sent after it (tens of ms, far more on a busy machine), so a bar moved
        # with a preview would stand beside the old step's text all that time. Bar moves go with
        # their text (_publish).
        value, total = self._bar_sent or (min(int(self.value), total), total)
        # ComfyUI scales a preview to max_size, also up: a small sample keeps its size
        self._bar.update_absolute(value, total, ("JPEG", image, min(PREVIEW_MAX, max(image.size))))
        self._bar_at = self._clock()
        self._bar_sent = (value, total)
        self.previews_sent += 1
        self._send_text_now(self.text())  # the first bar may have come with this preview
        return True

    # --- start / end ---------------------------------------------------------------------

    def start(self, text: str) -> None:
        """First text on the node (before the child prints anything)."""
        if self.step != "train" and self.expected:
            self.total = self.expected
        self.phase = "starting"
        self.detail = text
        self._publish(force=True)

    def finish(self, text: str = "done") -> None:
        if self.history is not None:
            self.history.close()  # the last step's loss is final now
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
        # a new detail in the same phase (the LoRA's save after the state's) is shown at once
        # too: musubi may say nothing more while it writes
        changed = name != self.phase or bool(detail and detail != self.detail)
        self.phase = name
        self.detail = detail
        return changed

    def _on_progress(self, p: Progress) -> None:
        if p.desc == "steps":
            self.progress = p
            if p.total:
                self.total = int(p.total)
            moved = int(p.n) != self.value
            self.value = int(p.n)
            self.speed.add(self.value, self._clock())
            loss = p.postfix.get("avr_loss") if p.postfix else None
            if loss is not None:
                self.loss = loss
            if self.phase in ("", "starting", "loading_model", "loading_dataset") \
                    or (moved and self.phase in ("sampling", "saving")):
                if self.phase in ("sampling", "saving"):
                    self.detail = ""
                self.phase = "training"  # the bar moving again ends sampling/saving
            return
        if self.step != "train" and not p.desc and p.total is None:
            # musubi's caching bar: a new bar (n went back) means the next dataset started
            if p.n < self._cache_bar_n:
                self._cache_done += self._cache_bar_n
            self._cache_bar_n = int(p.n)
            self.value = self._cache_done + self._cache_bar_n
            self.speed.add(self.value, self._clock())
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
        state = self._bar_state() if bar else None
        moved = False
        if state is not None and state != self._bar_sent:
            first, last = self._bar_sent is None, state[0] >= state[1]
            if force or first or last or self._bar_limit.ready():
                moved = self._send_bar(state)
        text = self.text()  # it names the step the bar shows, so it may go out on its own
        if text != self._text_sent and (force or moved or self._text_limit.ready()):
            self._send_text_now(text)
            self._text_limit.mark()
        if self.node_id is None:
            return
        event = self.event()
        if event != self._event_sent and (force or self._event_limit.ready()):
            self._send_event(EVENT, event)
            self._event_limit.mark()
            self._event_sent = event
            self.events_sent += 1

    def event(self) -> dict[str, Any]:
        """The ``musubi_tuner.progress`` event: ``step`` and ``loss`` (the last optimizer step
        whose avr_loss musubi reported, and that loss; when caching, batches done and no loss),
        ``total``, phase, epoch, ``rate`` (steps per second) and ``eta`` (seconds left for the
        whole run; both from the second step on), the newest sample's file name."""
        step = min(int(self.value), int(self.total)) if self.total else None
        loss = None
        if self.history is not None and self.history.points:
            last = self.history.points[-1]
            step, loss = last["step"], last["avr_loss"]
        return {
            "prompt_id": self._prompt_id(), "node": self.node_id,
            "run_id": os.path.basename(os.path.normpath(self.run_dir)) if self.run_dir else None,
            "phase": self.phase,
            "step": step,
            "total": int(self.total) if self.total else None,
            "epoch": self.epoch[0] if self.epoch else None, "epochs": self.epoch[1] if self.epoch else None,
            "loss": loss,
            "rate": _number(self.speed.rate) if self._timed() else None,
            "eta": _number(self.speed.remaining(self.total)) if self._timed() else None,
            "latest_sample": self.latest_sample,
        }

    def _bar_state(self) -> Optional[tuple[int, int]]:
        """(value, total) the bar shows now, or None before the total is known."""
        total = int(self.total or 0)
        return (min(int(self.value), total), total) if total > 0 else None

    def _send_bar(self, state: tuple[int, int]) -> bool:
        """Send the bar now; False when it has to wait (and so does the text)."""
        value, total = state
        first, last = self._bar_sent is None, value >= total
        if not (first or last) and self._bar_sent is not None:
            if self._bar_at is not None and self._clock() - self._bar_at < self._bar_gap:
                return False  # ComfyUI would drop it; the next event or poll sends it
            if (value - self._bar_sent[0]) * 100 < self._bar_min_percent * total:
                return False  # too small a move for ComfyUI; it goes with a later one
        if self._interrupted():
            # Leave the Cancel to the executor's next poll of should_cancel: it ends the run
            # as "cancelled" (result.json says so) instead of through the bar hook's exception.
            return False
        if self._bar is None:
            self._bar = self._bar_factory(total, self.node_id)
        # The hook raises InterruptProcessingException when ComfyUI's Cancel was pressed;
        # it must propagate through executor.run, which kills the tree first.
        self._bar.update_absolute(value, total)
        self._bar_at = self._clock()
        self._bar_limit.mark()
        self._bar_sent = state
        return True

    def _timed(self) -> bool:
        return self.phase in ("training", "caching")

    def _send_text_now(self, text: str) -> None:
        if text != self._text_sent:
            self._send_text(text, self.node_id)
            self._text_sent = text
            self.texts_sent += 1

    def text(self) -> str:
        """The progress text shown on the node."""
        label = PHASE_LABELS.get(self.phase, self.phase.replace("_", " "))
        head = f"{self.title}: {label}" if self.title else label
        parts = [head]
        if self.epoch and self.step == "train":
            parts.append(f"epoch {self.epoch[0]}/{self.epoch[1]}")
        shown = self._bar_sent or self._bar_state()  # the step the bar shows, once there is one
        if shown:
            unit = "step" if self.step == "train" else "batch"
            parts.append(f"{unit} {shown[0]}/{shown[1]}")
        if self._timed():
            p = self.progress
            rate = format_rate(self.speed.rate, (p.unit if p is not None else "") or "it")
            left = self.speed.remaining(self.total)
            if rate:
                parts.append(rate)
            if rate and left is not None:
                parts.append(f"ETA {format_duration(left)}")
        if self.loss is not None:
            parts.append(f"avr_loss {self.loss}")
        line = " · ".join(parts)
        if self.detail:
            line += "\n" + self.detail
        if self.tail and self.phase not in ("done", "failed"):
            line += "\n\n" + "\n".join(self.tail)
        return line


def _number(value: Any) -> Optional[float]:
    """A finite float, or None (JSON has no NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _bar_detail(p: Progress) -> str:
    if p.total:
        return f"{p.desc or 'working'}: {int(p.n)}/{int(p.total)}"
    return f"{p.desc or 'working'}: {int(p.n)}"

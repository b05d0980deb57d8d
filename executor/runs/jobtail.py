"""Following a background job: its run.log read from a byte offset through the same parsers as a
foreground run (``OutputParser``; every step's loss into loss.jsonl through ``LossRecorder``),
the progress and the log tail its row shows, and, once its wrapper ended, the verdict a
foreground run would have reached (``process.run.decide``) and the result.json it would have
written (``execute.record_run``).

After a restart the tail is rebuilt by replaying the log up to the stored offset without
re-emitting anything, so the failure classification sees the same lines, the loss history
continues without duplicates and the progress continues where it was.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Optional

from ..errors import RunResult
from ..process.command import script_name
from ..process.run import decide
from .execute import record_run
from .folders import LOG_FILE
from .history import LOSS_FILE, LossRecorder, read_history
from .plan import Plan

try:
    from ...parsers import OutputParser
except ImportError:
    from parsers import OutputParser

__all__ = ["JobTail", "Verdict", "STORED_TAIL"]

CHUNK = 1 << 20
READ_LIMIT = 8 << 20  # per read(): a 10 MB line is taken in a couple of ticks
TAIL_LINES = 200  # what failures are matched in, as in a foreground run
TAIL_LINE_CHARS = 2000
STORED_TAIL = 20  # lines kept in the job row
STREAM = "output"  # the wrapper puts stdout and stderr on one pipe, as a terminal shows them


class Verdict:
    """How a finished job ended: final state, message, hint, exit code, result.json status."""

    def __init__(self, state: str, *, reason: Optional[str] = None, hint: Optional[str] = None,
                 exit_code: Optional[int] = None, status: str = "", ended: Optional[float] = None) -> None:
        self.state, self.reason, self.hint, self.exit_code = state, reason, hint, exit_code
        self.status, self.ended = status, ended


class JobTail:
    """The reader of one job's run.log; ``offset`` bytes are replayed silently first."""

    def __init__(self, plan: Plan, offset: int = 0) -> None:
        self.plan = plan
        self.path = os.path.join(plan.run_dir, LOG_FILE)
        self.parser = OutputParser()  # no coalescing: every step's frame reaches the recorder
        self.recorder: Optional[LossRecorder] = LossRecorder() if plan.step == "train" else None
        self.lines: deque[str] = deque(maxlen=TAIL_LINES)
        self.last_progress: Any = None
        self.progress: dict[str, Any] = {"phase": "starting", "step": None, "total": None, "epoch": None,
                                         "epochs": None, "loss": None, "rate": None, "eta": None}
        self.offset = 0
        self.finished = False
        while self.offset < offset:
            if not self._read(min(CHUNK, offset - self.offset)):
                break
        if self.recorder is not None:
            loss_file = os.path.join(plan.run_dir, LOSS_FILE)
            done = read_history(loss_file)
            self.recorder.written_through = max((p["step"] for p in done), default=0)
            self.recorder.path = loss_file

    @property
    def tail(self) -> list[str]:
        return list(self.lines)[-STORED_TAIL:]

    def read(self) -> bool:
        """Take what the log grew by (up to READ_LIMIT bytes); True when anything was read."""
        start, grew = self.offset, False
        while self.offset - start < READ_LIMIT:
            before = self.offset
            if not self._read(CHUNK):
                break
            grew = True
            if self.offset - before < CHUNK:
                break
        return grew

    def _read(self, size: int) -> bool:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(size)
        except OSError:
            return False
        if not data:
            return False
        self.offset += len(data)
        self._feed(self.parser.feed(STREAM, data))
        return True

    def _feed(self, events: list[Any]) -> None:
        p = self.progress
        for event in events:
            kind = getattr(event, "type", None)
            if self.recorder is not None:
                self.recorder.feed(event)
            if kind == "log":
                self.lines.append(event.text[:TAIL_LINE_CHARS])  # as a foreground run's tail
            elif kind == "progress":
                self._on_progress(event)
            elif kind == "epoch":
                p["epoch"], p["epochs"], p["phase"] = int(event.n), int(event.total), "training"
            elif kind == "total_steps" and self.plan.step == "train":
                p["total"] = int(event.count)
            elif kind == "phase":
                p["phase"] = event.name
            elif kind in ("checkpoint", "model_saved"):
                p["phase"] = "saving"
        if self.recorder is not None and self.recorder.points:
            last = self.recorder.points[-1]
            p["step"], p["loss"] = last["step"], last["avr_loss"]

    def _on_progress(self, event: Any) -> None:
        p = self.progress
        if event.desc == "steps" or (self.plan.step != "train" and not event.desc and event.total is None):
            self.last_progress = event
            moved = p["step"] is None or int(event.n) != p["step"]
            p["step"] = int(event.n)
            if event.total:
                p["total"] = int(event.total)
            p["rate"], p["eta"] = _number(event.rate), _number(event.remaining)
            if p["phase"] in ("starting", "loading_model", "loading_dataset", "") \
                    or (moved and p["phase"] in ("sampling", "saving")):
                p["phase"] = "training" if self.plan.step == "train" else "caching"
        elif event.desc.startswith("Loading") and p["phase"] not in ("training", "caching"):
            p["phase"] = "loading_model"

    # -- the end ------------------------------------------------------------------------------

    def judge(self, record: Optional[dict[str, Any]], started: Optional[float]) -> Verdict:
        """Read the rest of the log and decide, as a foreground run would, from the wrapper's
        exit.json; without one the job is ``lost``. Writes result.json either way."""
        while self.read():
            pass
        if not self.finished:
            self._feed(self.parser.finish())
            if self.recorder is not None:
                self.recorder.close()
            self.finished = True
        log = self.path if os.path.exists(self.path) else None
        if record is None:
            return self._lost(started, log)
        begun = float(record.get("started") or started or 0.0)
        ended = float(record.get("ended") or begun)
        result = RunResult(argv=list(self.plan.command.argv), exit_code=record.get("exit_code"),
                           duration=max(0.0, ended - begun), tail=list(self.lines), last_progress=self.last_progress,
                           log_path=log, warnings=[str(w) for w in record.get("warnings") or []])
        reason = next((r for r in ("cancelled", "timed_out", "stalled") if record.get(r)), None)
        error = decide(result, self.parser, reason, script=script_name(self.plan.command.argv),
                       timeout=self.plan.timeout, stall_timeout=self.plan.stall_timeout)
        status = record_run(self.plan, result, error, begun, ended, self.recorder)
        if status == "succeeded":
            return Verdict("succeeded", exit_code=result.exit_code, status=status, ended=ended)
        if status == "cancelled":
            return Verdict("cancelled", reason="stopped by request", exit_code=result.exit_code, status=status,
                           ended=ended)
        message = error.message if error is not None else f"{self.plan.step} exited 0 but produced no output"
        hint = error.hint if error is not None else result.failure_hint
        return Verdict("failed", reason=message, hint=hint, exit_code=result.exit_code, status=status, ended=ended)

    def _lost(self, started: Optional[float], log: Optional[str]) -> Verdict:
        import time

        ended = time.time()
        where = f"; its output is in {log}" if log else ""
        reason = ("the job's processes ended without recording how (exit.json is missing): they were killed "
                  "together, or the computer stopped" + where)
        hint = ("Nothing of this run is lost that it saved: the epoch LoRAs and training states are in its run "
                f"folder {self.plan.run_dir}. Queue it again, or resume from a saved state.")
        result = RunResult(argv=list(self.plan.command.argv), exit_code=None,
                           duration=max(0.0, ended - (started or ended)), tail=list(self.lines),
                           last_progress=self.last_progress, log_path=log, failure_kind="lost", failure_hint=hint)
        record_run(self.plan, result, None, started or ended, ended, self.recorder, status="lost")
        return Verdict("lost", reason=reason, hint=hint, status="lost", ended=ended)


def _number(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None

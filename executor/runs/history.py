"""What a run folder says about its training: ``loss.jsonl`` (one JSON object per optimizer step
musubi reported, appended and flushed line by line, so a crash keeps every step already seen), the
sample images musubi wrote, and the run's status (also while it runs) for the nodes' status route.
Standard library only; the nodes draw the curve.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from typing import Any, Callable, Optional, TextIO

__all__ = ["LOSS_FILE", "SAMPLE_EXTENSIONS", "LossRecorder", "read_history", "summarize", "sample_files",
           "latest_samples", "run_status", "valid_run_id"]

LOSS_FILE = "loss.jsonl"
SAMPLE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".mp4", ".webm", ".gif")
# Run folder names the pack makes (timestamp, step, label): letters, digits, '.', '_', '-'.
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def _number(text: Any) -> Optional[float]:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


class LossRecorder:
    """Turns parser events into loss points, one per optimizer step of the ``steps`` bar:
    ``{step, total, epoch, epochs, avr_loss, time, elapsed}`` plus ``lr`` when musubi's
    postfix has one; a NaN/inf loss is stored as null.

    musubi moves the bar (``update(1)``: a frame showing the previous step's loss), may
    sample or save, and only then shows the step's loss (``set_postfix``). So a step's point
    is kept pending until its loss differs from the previous step's (the ``set_postfix``
    frame), the bar moves on, or ``close``. With a ``path`` each point is appended to that
    file when it is final; a write error stops the writing (training goes on).
    """

    def __init__(self, path: Optional[str] = None, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.points: list[dict[str, Any]] = []
        self.epoch: Optional[int] = None
        self.epochs: Optional[int] = None
        self.total: Optional[int] = None
        self._clock = clock
        self._started = clock()
        self._file: Optional[TextIO] = None
        self._broken = False
        self.pending: Optional[dict[str, Any]] = None
        # Steps already in the file (a background job's tail re-attached after a restart
        # replays the log it had read): never written twice.
        self.written_through = 0

    def feed(self, event: Any) -> Optional[dict[str, Any]]:
        """Take one event; returns the new point, if it made one."""
        kind = getattr(event, "type", None)
        if kind == "epoch":
            self.epoch, self.epochs = int(event.n), int(event.total)
            return None
        if kind == "total_steps":
            self.total = int(event.count)
            return None
        if kind != "progress" or getattr(event, "desc", None) != "steps":
            return None
        if event.total:
            self.total = int(event.total)
        postfix = event.postfix or {}
        step = int(event.n)
        done: Optional[dict[str, Any]] = None
        if self.pending is not None and step > self.pending["step"]:
            done = self._commit()
        if "avr_loss" not in postfix or step <= 0 or (self.points and step <= self.points[-1]["step"]) \
                or (self.pending is not None and step < self.pending["step"]):
            return done
        loss = _number(postfix["avr_loss"])
        now = self._clock()
        point: dict[str, Any] = {
            "step": step, "total": self.total, "epoch": self.epoch, "epochs": self.epochs,
            "avr_loss": loss if loss is not None and math.isfinite(loss) else None,
            "time": round(now, 3), "elapsed": round(now - self._started, 3),
        }
        lr_key = next((k for k in postfix if k == "lr" or k.startswith("lr/") or k.startswith("lr_")), None)
        if lr_key is not None:
            lr = _number(postfix[lr_key])
            if lr is not None and math.isfinite(lr):
                point["lr"] = lr
        if self.pending is not None and self.pending["step"] == step:
            # the same step again (set_postfix, or a frame repeated after the next epoch's
            # first line): its epoch is the one it was first seen in
            point["epoch"], point["epochs"] = self.pending["epoch"], self.pending["epochs"]
        self.pending = point
        if not self.points or point["avr_loss"] != self.points[-1]["avr_loss"]:
            done = self._commit()  # the step's own loss (the set_postfix frame)
        return done

    def _commit(self) -> Optional[dict[str, Any]]:
        point, self.pending = self.pending, None
        if point is not None:
            self.points.append(point)
            self._write(point)
        return point

    def all_points(self) -> list[dict[str, Any]]:
        """The final points and the pending one (for a live curve)."""
        return self.points + ([self.pending] if self.pending is not None else [])

    def _write(self, point: dict[str, Any]) -> None:
        if self.path is None or self._broken or point["step"] <= self.written_through:
            return
        try:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")
            self._file.write(json.dumps(point, separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError:
            self._broken = True

    def close(self) -> None:
        """Write the pending point (the last step) and close the file."""
        self._commit()
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def summary(self) -> dict[str, Any]:
        return summarize(self.all_points(), total=self.total, epochs=self.epochs)


def read_history(path: str, since: int = 0) -> list[dict[str, Any]]:
    """The points of a ``loss.jsonl`` with ``step > since``; a torn last line (the writer
    was killed mid-line) and anything not a point are skipped."""
    points: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    point = json.loads(line)
                except ValueError:
                    continue
                if isinstance(point, dict) and isinstance(point.get("step"), int) and point["step"] > since:
                    points.append(point)
    except OSError:
        return []
    return points


def summarize(points: list[dict[str, Any]], *, total: Optional[int] = None,
              epochs: Optional[int] = None) -> dict[str, Any]:
    """``final_loss``, ``best_loss`` (lowest avr_loss) and its ``best_loss_step``, ``steps``
    (the last step seen), ``total_steps`` and ``epochs``."""
    losses = [(p["avr_loss"], p["step"]) for p in points if isinstance(p.get("avr_loss"), (int, float))]
    best = min(losses) if losses else None
    last = points[-1] if points else {}
    return {
        "final_loss": losses[-1][0] if losses else None,
        "best_loss": best[0] if best else None,
        "best_loss_step": best[1] if best else None,
        "steps": last.get("step"),
        "total_steps": total if total is not None else last.get("total"),
        "epochs": epochs if epochs is not None else last.get("epochs"),
    }


def sample_files(output_dir: Optional[str], since: Optional[float] = None) -> list[str]:
    """Sample images/videos in ``<output_dir>/sample``, oldest first (by time, then name);
    with ``since``, only those written after it."""
    if not output_dir:
        return []
    found = []
    try:
        with os.scandir(os.path.join(output_dir, "sample")) as it:
            for entry in it:
                if entry.name.lower().endswith(SAMPLE_EXTENSIONS) and entry.is_file():
                    mtime = entry.stat().st_mtime
                    if since is None or mtime >= since - 1:
                        found.append((mtime, entry.name, entry.path))
    except OSError:
        return []
    return [path for _, _, path in sorted(found)]


def latest_samples(paths: list[str]) -> list[str]:
    """The samples of the newest sampling round: musubi names them
    ``<name>_<e000002|000006>_<prompt:02d>_<YYYYmmddHHMMSS>[_<seed>]_000.png``, so the round is
    the name up to the prompt index; the newest file decides which round, files in prompt order."""
    if not paths:
        return []

    def round_of(path: str) -> str:
        m = re.match(r"^(.*_(?:e\d{6}|\d{6}))_\d{2,}_\d{14}", os.path.basename(path))
        return m.group(1) if m else os.path.basename(path)

    newest = round_of(paths[-1])
    return sorted((p for p in paths if round_of(p) == newest), key=os.path.basename)


def valid_run_id(run_id: str) -> bool:
    """A run folder name: no separators, no leading dot, nothing that can climb out."""
    return bool(_RUN_ID.match(run_id or "")) and ".." not in run_id


def _read_json(path: str) -> Optional[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def run_status(run_dir: str, *, since: int = 0, history: bool = True) -> dict[str, Any]:
    """Status of one run folder: ``status`` is result.json's (succeeded, failed, cancelled,
    ...), else ``running`` while the run's process holds the folder's lock, else
    ``incomplete`` (it ended without a result: killed, or the machine stopped). Also the
    latest progress from the loss history, the history itself (points after ``since``),
    the sample files and result.json. ``rate`` (steps per second over the last steps) and,
    while running, ``eta`` (seconds left after the last step) come from the points' times."""
    from .folders import LOCK_NAME, PLAN_FILE, RESULT_FILE
    from .locks import lock_is_live, read_lock
    from .speed import rate_of_points

    result = _read_json(os.path.join(run_dir, RESULT_FILE))
    plan = _read_json(os.path.join(run_dir, PLAN_FILE)) or {}
    if result is not None:
        status = str(result.get("status"))
    else:
        lock = os.path.join(run_dir, LOCK_NAME)
        status = "running" if os.path.exists(lock) and lock_is_live(lock, read_lock(lock)) else "incomplete"
    points = read_history(os.path.join(run_dir, LOSS_FILE))
    summary = summarize(points)
    last = points[-1] if points else {}
    speed = rate_of_points(points[-20:])
    # result.json lists the samples wherever output_dir was; a node's run keeps them in its folder
    recorded = (result or {}).get("sample_files")
    samples = [str(p) for p in recorded] if isinstance(recorded, list) else sample_files(run_dir)
    out: dict[str, Any] = {
        "run_id": os.path.basename(os.path.normpath(run_dir)),
        "status": status,
        "architecture": (result or plan).get("architecture"),
        "kind": (result or plan).get("step"),
        "progress": {"step": last.get("step"), "total": last.get("total"), "epoch": last.get("epoch"),
                     "epochs": last.get("epochs"), "loss": summary["final_loss"],
                     "best_loss": summary["best_loss"], "best_loss_step": summary["best_loss_step"],
                     "rate": speed.rate,
                     "eta": speed.remaining(last.get("total")) if status == "running" else None},
        "latest_sample": os.path.basename(samples[-1]) if samples else None,
        "samples": [os.path.basename(p) for p in samples],
        "result": result,
    }
    if history:
        out["history"] = [p for p in points if p["step"] > since]
    return out

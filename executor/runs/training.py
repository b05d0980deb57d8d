"""What a training run does around musubi, for ``execute.execute_plan`` (and the Jobs backend):
record its states as they are written (``saves.TrainSaves``); and for a continuation, load only a
verified private copy of the state, link the new run folder to its parent (``resume.json``), start
its ``loss.jsonl`` with the parent's curve, show every step and epoch in the whole run's numbers,
and rename its files to that numbering at the end.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from typing import Any, Callable, Optional

from ..musubi.dataset import write_atomic
from .folders import RESUME_FILE
from .history import LOSS_FILE, LossRecorder
from .resume import PICK_HINT, ResumeRefused, seed_points
from .saves import TrainSaves
from .states import StateChanged, stage_copy
from .trust import Registry

__all__ = ["TrainingRun"]


class TrainingRun:
    """One training plan's extras. ``prepare`` before anything is written (it may refuse),
    ``begin`` once the run folder exists, ``on_event`` wraps the caller's callback, ``finish``
    when the run ended (always), ``cleanup`` last."""

    def __init__(self, plan: Any, registry: Optional[Registry] = None) -> None:
        self.plan = plan
        self.cont = getattr(plan, "continuation", None)
        self.registry = registry or Registry()
        self.saves = TrainSaves(plan, self.registry) if plan.output_dir else None
        self.seed: list[dict[str, Any]] = []
        self.staged: Optional[str] = None
        self.problems: list[str] = []

    def prepare(self) -> None:
        """Copy the state to continue from into the pack's data folder, checking every file
        against its recorded SHA-256; refuses (nothing launched) when one differs."""
        if self.cont is None:
            return
        try:
            stage_copy(self.cont.source_state, self.cont.staging, self.cont.files)
        except StateChanged as exc:
            raise ResumeRefused(f"the state {self.cont.source_state} is not what musubi wrote: "
                                + "; ".join(exc.problems) + ". It is not loaded: resuming unpickles these files",
                                hint=PICK_HINT) from None
        except FileExistsError:
            raise ResumeRefused(f"{self.cont.staging} already exists", hint="make a new plan") from None
        except OSError as exc:
            raise ResumeRefused(f"the state could not be copied to {self.cont.staging}: {exc.strerror or exc}",
                                hint="free some disk space in the pack's data folder (a state is as large as the "
                                     "LoRA and its optimizer; see docs/resume.md)") from None
        self.staged = self.cont.staging
        self.seed = seed_points(self.cont)

    def begin(self, run_dir: str, *, follow: bool = True) -> None:
        """The run folder exists: link it to its parent, start its curve, enter it in the
        record; ``follow``: this process also reads its output (a background job's tail
        follows it instead)."""
        if self.cont is not None:
            write_atomic(os.path.join(run_dir, RESUME_FILE),
                         json.dumps(self.cont.link(), indent=2, ensure_ascii=False) + "\n", overwrite="never")
            if self.seed:
                text = "".join(json.dumps(p, separators=(",", ":")) + "\n" for p in self.seed)
                write_atomic(os.path.join(run_dir, LOSS_FILE), text, overwrite="never")
        if self.saves is not None:
            try:
                self.saves.start(follow=follow)
            except Exception as exc:  # noqa: BLE001 - training goes on; the user is told it cannot be continued
                self.saves = None
                self.problems.append(f"the run's training states cannot be recorded ({exc}), so this run cannot be "
                                     f"continued if it stops; check the pack's data folder {self.registry.path}")

    def follow(self) -> None:
        """Record the states of a run begun elsewhere (a background job's tail, also after a
        restart): a state already in the record is not hashed again."""
        if self.cont is not None and self.cont.parent_run_id is not None:
            self.seed = seed_points(self.cont)
        if self.saves is not None:
            self.saves.start(register=False)

    def recorder(self, run_dir: str) -> LossRecorder:
        recorder = LossRecorder(os.path.join(run_dir, LOSS_FILE))
        recorder.points = list(self.seed)
        return recorder

    def on_event(self, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        """``callback`` with the run's events in the whole run's numbers, the saves fed first."""
        saves = self.saves

        def events(event: Any) -> None:
            if saves is not None:
                saves.feed(event)  # musubi's own numbers: they name the files
            callback(self.shift(event))
        return events

    def shift(self, event: Any) -> Any:
        cont = self.cont
        if cont is None or cont.parent_run_id is None:
            return event
        kind = getattr(event, "type", None)
        if kind == "progress" and getattr(event, "desc", None) == "steps":
            total = cont.plan_steps or (event.total + cont.step_offset if event.total else None)
            n = event.n + cont.step_offset
            return replace(event, n=n, total=total, percent=round(100 * n / total) if total else event.percent)
        if kind == "epoch":
            return replace(event, n=event.n + cont.epoch_offset,
                           total=cont.plan_epochs or event.total + cont.epoch_offset)
        if kind == "total_steps" and cont.plan_steps:
            return replace(event, count=cont.plan_steps)
        return event

    def finish(self) -> list[str]:
        """The run ended: record, rename and prune its states. Returns warnings for the user."""
        if self.saves is None:
            return list(self.problems)
        try:
            return self.problems + self.saves.close()
        except Exception as exc:  # noqa: BLE001 - the trained files are there; say what failed
            return self.problems + [f"the run's training states could not be recorded: {exc}"]

    def mark(self, status: str) -> list[str]:
        if self.saves is None:
            return []
        try:
            self.saves.mark(status)
        except Exception as exc:  # noqa: BLE001 - a record that cannot be written must not fail a finished run
            return [f"the state record could not be updated: {exc}"]
        return []

    def cleanup(self) -> None:
        """Remove the verified copy of the state (the run ended, or was refused)."""
        staged = self.staged or (self.cont.staging if self.cont is not None else None)
        if staged and os.path.isdir(staged):
            shutil.rmtree(staged, ignore_errors=True)
            try:
                os.rmdir(os.path.dirname(staged))
            except OSError:
                pass

"""The saves of one training run, kept while it runs: each complete state folder musubi writes is
hashed and recorded (``trust.Registry``) as soon as musubi says it is written, old ones are pruned to
the newest ``keep``, and at the end a continuation's files take the whole run's numbering.

``TrainSaves`` is fed the run's parser events (as ``history.LossRecorder`` is) and closed when the
run ends, however it ends. Hashing runs on a worker thread so a large state never delays the
events (or a Cancel).
"""

from __future__ import annotations

import math
import os
import queue
import re
import threading
from typing import Any, Optional

from .states import EPOCH, FINAL, MARKER, STEP, hash_files, is_complete, parse_state_name, remove_state, state_folders
from .trust import Registry, path_key

__all__ = ["TrainSaves", "renumber", "DEFAULT_KEEP"]

DEFAULT_KEEP = 2
_RANDOM_SAVED = re.compile(r"Random states saved in (.+?)\s*$")
_BATCHES = re.compile(r"num batches per epoch\b[^:]*:\s*(\d+)")
_SCAN_AFTER = re.compile(r"saving state at (?:epoch|step) \d+|saving last state\.|saving checkpoint: |model saved\.")


class TrainSaves:
    """Records the states of the training run of ``plan`` (a ``plan.Plan`` with ``record``)."""

    def __init__(self, plan: Any, registry: Optional[Registry] = None, keep: Optional[int] = None) -> None:
        record = dict(getattr(plan, "record", None) or {})
        self.registry = registry or Registry()
        self.run_dir = plan.run_dir
        self.output_dir = plan.output_dir or plan.run_dir
        self.cont = getattr(plan, "continuation", None)
        self.final_name = plan.output_name
        self.musubi_name = self.cont.raw_name if self.cont is not None else plan.output_name
        args = record.get("args") or {}
        self.accumulation = max(1, int(_first(args.get("--gradient_accumulation_steps")) or 1))
        epochs = _first(args.get("--max_train_epochs"))
        self.plan_epochs = self.cont.plan_epochs if self.cont is not None else (int(epochs) if epochs else None)
        self.keep = max(1, int(keep or record.get("keep_states") or DEFAULT_KEEP))
        self.record = record
        self.facts: dict[str, Any] = {}
        self.recorded: set[str] = set()
        self.errors: list[str] = []
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._worker: Optional[threading.Thread] = None
        self._following = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ life

    def start(self, *, register: bool = True, follow: bool = True) -> None:
        """``register``: enter the run in the record (once, when its folder is made);
        ``follow``: start recording its states (whoever reads its output)."""
        if register:
            data = dict(self.record, output_name=self.final_name, musubi_name=self.musubi_name,
                        output_dir=path_key(self.output_dir), status="running", facts={})
            if self.cont is not None:
                data.update(self.cont.run_fields())
            self.registry.add_run(self.run_dir, data)
        self._following = follow

    def feed(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        if kind == "total_steps":
            self.facts["total_steps"] = int(event.count)
        elif kind == "epoch":
            self.facts["epochs"] = int(event.total)
        elif kind == "checkpoint":
            self._scan()
        elif kind == "log":
            text = getattr(event, "text", "") or ""
            m = _BATCHES.search(text)
            if m:
                self.facts["batches_per_epoch"] = int(m[1])
            m = _RANDOM_SAVED.search(text)
            if m:
                self._offer(os.path.dirname(m[1]))
            elif _SCAN_AFTER.search(text):
                self._scan()
        elif kind == "model_saved":
            self._scan()

    def close(self) -> list[str]:
        """The run ended: record what is left, give a continuation's files the run's numbering,
        and prune. Returns notes for the user (files that kept musubi's name)."""
        self._scan(ended=True)
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join()
        notes: list[str] = []
        if self.cont is not None:
            notes = renumber(self.output_dir, self.cont, self.registry)
        self._prune()
        return notes + self.errors

    def mark(self, status: str) -> None:
        """Record how the run ended (a finished run is no longer offered for continuing)."""
        facts = dict(self.facts, steps_per_epoch=self.steps_per_epoch())
        self.registry.update_run(self.run_dir, status=status, facts=facts, renumbered=True)

    # ------------------------------------------------------------------ recording

    def steps_per_epoch(self) -> Optional[int]:
        if self.cont is not None and self.cont.steps_per_epoch:
            return self.cont.steps_per_epoch
        batches = self.facts.get("batches_per_epoch")
        if batches:
            return math.ceil(batches / self.accumulation)
        total = self.facts.get("total_steps")
        if total and self.plan_epochs:
            return total // self.plan_epochs
        return None

    def position(self, kind: str, number: Optional[int]) -> tuple[Optional[int], Optional[int]]:
        """(epoch, step) of the whole plan for a state of this run (musubi's own numbers)."""
        spe = self.steps_per_epoch()
        epoch0 = self.cont.epoch_offset if self.cont is not None else 0
        step0 = self.cont.step_offset if self.cont is not None else 0
        if kind == EPOCH and number is not None:
            return epoch0 + number, (step0 + number * spe) if spe else None
        if kind == STEP and number is not None:
            step = step0 + number
            return (step // spe if spe else None), step
        total = self.facts.get("total_steps")
        epochs = self.facts.get("epochs")
        if self.cont is not None:
            return self.cont.plan_epochs or (epoch0 + (epochs or 0)), step0 + (total or 0)
        return epochs, total

    def _offer(self, folder: str) -> None:
        key = path_key(folder)
        with self._lock:
            if key in self.recorded or not self._following:
                return
            self.recorded.add(key)
            if self._worker is None:  # started with the first state (a tail may never see one)
                self._worker = threading.Thread(target=self._work, name="musubi-state-recorder", daemon=True)
                self._worker.start()
        self._queue.put(folder)

    def _scan(self, ended: bool = False) -> None:
        """Offer the complete states not recorded yet. While musubi runs, the newest one may be
        the save in progress (its last file half written): it is recorded when musubi says it
        is written (``Random states saved in``), or once a newer save started, or at the end."""
        found = []
        for state in state_folders(self.output_dir, self.musubi_name):
            try:
                found.append((os.stat(os.path.join(state.path, MARKER)).st_mtime_ns, state.path))
            except OSError:
                continue
        found.sort()
        for _, path in found if ended else found[:-1]:
            self._offer(path)

    def _work(self) -> None:
        while True:
            folder = self._queue.get()
            if folder is None:
                return
            try:
                self._record(folder)
                self._prune()
            except Exception as exc:  # noqa: BLE001 - recording is a service; training goes on
                self.errors.append(f"the state {folder} could not be recorded: {exc}")

    def _record(self, folder: str) -> None:
        parsed = parse_state_name(os.path.basename(folder), self.musubi_name)
        if parsed is None or not is_complete(folder) or path_key(os.path.dirname(folder)) != path_key(self.output_dir):
            return
        if self.registry.state(folder) is not None:
            return  # recorded when musubi wrote it: never hashed again (a later change must show)
        kind, number = parsed
        epoch, step = self.position(kind, number)
        self.registry.add_state(folder, run_dir=self.run_dir, kind=kind, number=number, epoch=epoch, step=step,
                                files=_settled_hashes(folder))

    def _prune(self) -> None:
        """Keep the newest ``keep`` recorded states of this run (the end-of-training state is the
        newest when there is one); delete the older folders and forget them."""
        rows = [r for r in self.registry.states(self.run_dir) if os.path.isdir(r["path"])]
        rows.sort(key=lambda r: (r["kind"] == FINAL, r["step"] if r["step"] is not None else -1, r["recorded"]),
                  reverse=True)
        for row in rows[self.keep:]:
            if remove_state(row["path"]):
                self.registry.forget_state(row["path"])


def _settled_hashes(folder: str, tries: int = 3) -> dict[str, dict[str, Any]]:
    """The folder's hashes, taken again if a file changed while they were taken."""
    for _ in range(tries):
        before = _stats(folder)
        files = hash_files(folder)
        if _stats(folder) == before:
            return files
    raise RuntimeError(f"{folder} kept changing while it was read")


def _stats(folder: str) -> dict[str, tuple[int, int]]:
    out = {}
    for name in sorted(os.listdir(folder)):
        try:
            st = os.lstat(os.path.join(folder, name))
        except OSError:
            continue
        out[name] = (st.st_size, st.st_mtime_ns)
    return out


def _first(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


# ---------------------------------------------------------------- numbering of a continuation

def renumber(output_dir: str, cont: Any, registry: Optional[Registry] = None) -> list[str]:
    """Rename a continuation's files from musubi's numbering (from 1 again, under ``cont.raw_name``)
    to the whole run's (``-000004`` after the parent's ``-000003``, under the output name):
    LoRA files, state folders, anything else musubi named after them, and the samples. Never
    replaces an existing file: a name that is taken is left as it was and reported."""
    raw, final = cont.raw_name, cont.final_name
    epoch0, step0 = cont.epoch_offset, cont.step_offset
    stem = re.escape(raw)
    notes: list[str] = []

    def target_of(name: str) -> Optional[str]:
        m = re.match(rf"^{stem}-(\d{{6}})(?=[-._]|$)(.*)$", name)
        if m:
            return f"{final}-{epoch0 + int(m[1]):06d}{m[2]}"
        m = re.match(rf"^{stem}-step(\d{{8}})(?=[-._]|$)(.*)$", name)
        if m:
            return f"{final}-step{step0 + int(m[1]):08d}{m[2]}"
        if name == raw or name.startswith(raw + ".") or name.startswith(raw + "-"):
            return final + name[len(raw):]
        return None

    def sample_target(name: str) -> Optional[str]:
        m = re.match(rf"^{stem}_e(\d{{6}})_(.*)$", name)
        if m:
            return f"{final}_e{epoch0 + int(m[1]):06d}_{m[2]}"
        m = re.match(rf"^{stem}_(\d{{6}})_(.*)$", name)
        if m:
            return f"{final}_{step0 + int(m[1]):06d}_{m[2]}"
        return None

    for folder, rule in ((output_dir, target_of), (os.path.join(output_dir, "sample"), sample_target)):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            new = rule(name)
            if new is None or new == name:
                continue
            old_path, new_path = os.path.join(folder, name), os.path.join(folder, new)
            if not _rename_no_clobber(old_path, new_path):
                notes.append(f"{name} kept musubi's name: {new} already exists")
                continue
            if registry is not None and folder == output_dir:
                parsed = parse_state_name(new, final)
                if parsed is not None:
                    registry.move_state(old_path, new_path, number=parsed[1])
    return notes


def _rename_no_clobber(old: str, new: str) -> bool:
    """Rename without ever replacing ``new``: files by a hard link then unlink where the file
    system allows it (atomic), else (and for folders) only when ``new`` does not exist."""
    if os.path.lexists(new):
        return False
    if os.path.isfile(old) and not os.path.islink(old):
        try:
            os.link(old, new)
        except FileExistsError:
            return False
        except OSError:
            pass
        else:
            os.unlink(old)
            return True
    try:
        os.rename(old, new)
    except OSError:
        return False
    return True

"""Running a plan: lock its folders, make the run folder (command.txt, plan.json, the dataset
config), run it through ``process.run`` with the loss recorded, and write result.json. The first
and last parts (``prepare_run``, ``record_run``) are shared with background jobs (``jobs``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import ConfigError, RunError, RunResult, TrainerFailed
from ..musubi.dataset import write_atomic
from .folders import COMMAND_FILE, LOG_FILE, PLAN_FILE, RESULT_FILE
from .history import LOSS_FILE, LossRecorder, sample_files
from .locks import RunLock
from .plan import Plan, command_text

__all__ = ["execute_plan", "prepare_run", "record_run"]


# ---------------------------------------------------------------- running

def _files_produced(plan: Plan, since: float) -> list[str]:
    out: list[str] = []
    if plan.output_dir and plan.output_name:
        from ..musubi.files import existing_outputs

        for path in existing_outputs(plan.output_dir, plan.output_name):
            try:
                if os.path.getmtime(path) >= since - 1:
                    out.append(path)
            except OSError:
                pass
    for folder, ending in plan.cache_patterns:
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.name.endswith(ending) and (ending.endswith("_te.safetensors")
                                                        or not entry.name.endswith("_te.safetensors")):
                        if entry.stat().st_mtime >= since - 1:
                            out.append(entry.path)
        except OSError:
            pass
    return sorted(out)


def _last_loss(result: Optional[RunResult]) -> Optional[float]:
    progress = getattr(result, "last_progress", None)
    value = (getattr(progress, "postfix", None) or {}).get("avr_loss")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _status(result: Optional[RunResult], produced: list[str], plan: Plan, error: Optional[BaseException]) -> str:
    if result is None:
        return "cancelled" if isinstance(error, KeyboardInterrupt) else "error"
    if result.cancelled:
        return "cancelled"
    if result.timed_out:
        return "timed_out"
    if result.stalled:
        return "stalled"
    if not result.ok:
        return "failed"
    if plan.step in ("train", "convert") and plan.output_name \
            and not any(os.path.basename(p) == f"{plan.output_name}.safetensors" for p in produced):
        return "no_output"
    if plan.cache_patterns and not produced:
        return "no_output"
    return "succeeded"


def execute_plan(plan: Plan, *, on_event: Optional[Callable[[Any], None]] = None,
                 should_cancel: Optional[Callable[[], bool]] = None, check: bool = False) -> RunResult:
    """Run a plan: lock its output folders, create the run folder, run, write result.json.

    Refuses (RunLocked) when another live run holds one of the folders, and (ConfigError)
    when the LoRA now exists and overwrite was not asked for; in both cases nothing is
    written. With ``check`` a failed run raises its RunError (result.json is written first);
    a run that exits 0 without its output is ``no_output`` and raises TrainerFailed.
    """
    from ..process.run import run

    run_dir = Path(plan.run_dir)
    with contextlib.ExitStack() as stack:
        prepare_run(plan, stack)
        started = time.time()
        result: Optional[RunResult] = None
        error: Optional[BaseException] = None
        # Training records every step's loss in loss.jsonl as it happens (flushed per line).
        recorder = LossRecorder(str(run_dir / LOSS_FILE)) if plan.step == "train" else None
        events = on_event
        if recorder is not None:
            def events(event: Any) -> None:
                recorder.feed(event)
                if on_event is not None:
                    on_event(event)
        try:
            result = run(plan.command, on_event=events, should_cancel=should_cancel, timeout=plan.timeout,
                         stall_timeout=plan.stall_timeout, log_path=str(run_dir / LOG_FILE), check=check)
        except RunError as exc:
            result, error = exc.result, exc
        except BaseException as exc:
            error = exc
        finally:
            if recorder is not None:
                recorder.close()
        status = record_run(plan, result, error, started, time.time(), recorder)
        if error is not None:
            raise error
        assert result is not None
        if status == "no_output" and check:
            raise TrainerFailed(f"{plan.step} exited 0 but produced no output", result=result,
                                hint=result.failure_hint or "", kind="no_output")
        return result


def prepare_run(plan: Plan, stack: contextlib.ExitStack, *, token: Optional[str] = None) -> list[RunLock]:
    """Lock the plan's folders (the locks go on ``stack``), refuse to overwrite a LoRA, make
    the run folder and write command.txt, plan.json and the dataset config into it.

    Raises RunLocked / ConfigError with nothing written. Returns the locks (all with ``token``
    when given); a caller that keeps them after this (a background job) takes them over with
    ``stack.pop_all()``.
    """
    from ..musubi.files import existing_outputs

    run_dir = Path(plan.run_dir)
    # A run folder that is also a locked output folder (the nodes train into their run folder)
    # is made before the lock, which would make it otherwise; making it is what claims it.
    early = any(_same_dir(plan.run_dir, d) for d in plan.lock_dirs)
    if early:
        _make_run_dir(run_dir)
    claim = _Claim(run_dir if early else None)
    locks = []
    with claim:
        locks.append(stack.enter_context(RunLock(plan.lock_dirs, plan.run_dir, token=token)))
        if plan.output_dir and plan.output_name and not plan.overwrite and plan.step == "train":
            found = existing_outputs(plan.output_dir, plan.output_name)
            if found and not _has_flag(plan, "--resume"):
                raise ConfigError(f"{os.path.basename(found[0])} already exists in {plan.output_dir}; "
                                  "this run would overwrite it", hint="use a new output_name, or set overwrite")
        if plan.step != "train" and plan.output_dir and plan.output_name and not plan.overwrite \
                and os.path.exists(os.path.join(plan.output_dir, f"{plan.output_name}.safetensors")):
            raise ConfigError(f"{plan.output_name}.safetensors already exists in {plan.output_dir}",
                              hint="use a new output_name, or set overwrite")
        if not early:
            _make_run_dir(run_dir)
            # The run folder is locked while the run lasts, so a reader can tell a live run
            # (history.run_status: "running") from one that ended without result.json.
            locks.append(stack.enter_context(RunLock([str(run_dir)], plan.run_dir, token=token)))
        claim.keep()
    write_atomic(run_dir / COMMAND_FILE, command_text(plan), overwrite="never")
    write_atomic(run_dir / PLAN_FILE, json.dumps(plan.to_dict(), indent=2, ensure_ascii=False) + "\n",
                 overwrite="never")
    if plan.dataset_text is not None and plan.dataset_config:
        write_atomic(plan.dataset_config, plan.dataset_text, overwrite="never")
    elif plan.dataset_config and os.path.isfile(plan.dataset_config):
        ext = ".json" if plan.dataset_config.lower().endswith(".json") else ".toml"
        shutil.copyfile(plan.dataset_config, run_dir / f"dataset{ext}")
    return locks


def record_run(plan: Plan, result: Optional[RunResult], error: Optional[BaseException], started: float,
               finished: float, recorder: Optional[LossRecorder], *, status: Optional[str] = None) -> str:
    """Judge what the run left (a train step without its LoRA is ``no_output``), write
    result.json and return the status: succeeded, failed, cancelled, timed_out, stalled,
    no_output or error (or ``status`` when the caller knows better: a background job that was
    ``lost``). A result.json that cannot be written becomes a warning."""
    run_dir = Path(plan.run_dir)
    produced = _files_produced(plan, started)
    status = status or _status(result, produced, plan, error)
    if status == "no_output" and result is not None:
        result.failure_kind = "no_output"
        result.failure_hint = ("musubi exited 0 but wrote no output; check run.log for 'found 0 images' "
                               "or an empty dataset")
    record = {
        "status": status, "architecture": plan.arch, "step": plan.step,
        "exit_code": result.exit_code if result else None,
        "duration": round(result.duration if result else finished - started, 3),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(finished)),
        "files_produced": produced, "last_loss": _last_loss(result),
        "failure_kind": result.failure_kind if result else type(error).__name__ if error else None,
        "failure_hint": result.failure_hint if result else (getattr(error, "hint", None) or
                                                            (str(error) if error else None)),
        "log": LOG_FILE, "tail": list(result.tail[-20:]) if result else [],
        "warnings": list(result.warnings) if result else [],
    }
    if recorder is not None:
        record.update(recorder.summary())
        record["loss_history"] = LOSS_FILE if recorder.points else None
        record["sample_files"] = sample_files(plan.output_dir, since=started)
    try:
        write_atomic(run_dir / RESULT_FILE, json.dumps(record, indent=2, ensure_ascii=False) + "\n",
                     overwrite="never")
    except OSError as exc:
        # A full disk must not turn a finished run into an error: the caller still gets the
        # result (and the LoRA), and is told the record is missing.
        if result is not None:
            result.warnings.append(f"{RESULT_FILE} could not be written in {run_dir} ({exc}).")
    return status


def _make_run_dir(run_dir: Path) -> None:
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_dir.mkdir()
    except FileExistsError:
        raise ConfigError(f"the run folder {run_dir} already exists", hint="make a new plan") from None


def _same_dir(a: str, b: str) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


class _Claim:
    """An empty run folder made before the locks is removed again if the run is refused."""

    def __init__(self, folder: Optional[Path]) -> None:
        self.folder = folder

    def keep(self) -> None:
        self.folder = None

    def __enter__(self) -> "_Claim":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.folder is not None:
            try:
                self.folder.rmdir()  # only if empty: the lock file is gone by now
            except OSError:
                pass


def _has_flag(plan: Plan, flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in plan.command.argv)

"""Continuing a stopped training run: which runs can be continued, which recorded state a
``resume`` value names (and why anything else is refused), checking a new plan against the run
it continues, and the continuation plan itself. The node, the command line
(``python -m executor resume RUN_DIR``) and the Jobs route all come through here.

Only states in the pack's own record (``trust.Registry``) are used, and only through a copy
verified file by file against the SHA-256 recorded when musubi wrote them (``states.stage_copy``):
``--resume`` makes accelerate unpickle those files.
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional

from ..errors import ConfigError
from .continuation import RAW_SUFFIX, Continuation, first, parse_args, remaining_options, schedule_options
from .folders import default_data_dir
from .states import FINAL, MARKER
from .trust import Registry

__all__ = ["ResumeRefused", "PICK_HINT", "lookup_source", "continuable_runs", "newest_state", "plan_continuation",
           "compare_runs", "staging_dir", "spec_from_record", "can_continue", "is_live", "describe", "seed_points", "trusted_states", "continue_check"]

PICK_HINT = ("pick the run in the Train node's resume list (runs that stopped with a saved state), or run "
             "`python -m executor resume RUN_DIR`; a state made outside this pack can be registered from the "
             "command line with `python -m executor trust-state DIR`")
_ENDED = ("succeeded",)


class ResumeRefused(ConfigError):
    """A resume value that names no usable recorded state: ``message`` says why, ``hint`` how."""


# ---------------------------------------------------------------- which state

def is_live(run_dir: str) -> bool:
    """The run's process still holds its folder (a run in progress is not continued)."""
    from .folders import LOCK_NAME
    from .locks import lock_is_live, read_lock

    lock = os.path.join(run_dir, LOCK_NAME)
    return os.path.exists(lock) and lock_is_live(lock, read_lock(lock))


def _present(state: dict[str, Any]) -> bool:
    """The recorded files are all still there (their contents are checked when used)."""
    path = state["path"]
    return os.path.isfile(os.path.join(path, MARKER)) and all(
        os.path.isfile(os.path.join(path, name)) for name in state["files"])


def newest_state(registry: Registry, run: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The run's newest recorded state whose files are all there (a final state included)."""
    states = [s for s in registry.states(run["run_dir"]) if _present(s)]
    states.sort(key=lambda s: (s["kind"] == FINAL, s["step"] if s["step"] is not None else -1, s["recorded"]))
    return states[-1] if states else None


def can_continue(registry: Registry, run: dict[str, Any]) -> tuple[Optional[dict[str, Any]], str]:
    """(the state to continue from, "") or (None, why not)."""
    if run.get("status") in _ENDED:
        return None, "it finished its plan"
    if is_live(run["run_dir"]):
        return None, "it is still running"
    state = newest_state(registry, run)
    if state is None:
        return None, "it saved no complete training state (states are saved with the epoch saves and every N steps)"
    if state["kind"] == FINAL:
        return None, "it finished its plan (its newest state is the end-of-training state)"
    plan = _plan_of(run)
    if not remaining_options(state["kind"], state["epoch"], state["step"], plan.get("epochs"), plan.get("steps")):
        return None, "nothing of its plan is left after its newest state"
    return state, ""


def _continued_by(registry: Registry, run: dict[str, Any]) -> Optional[dict[str, Any]]:
    """A continuation of ``run`` that saved a state of its own or is running, if any."""
    for other in registry.runs():
        if other.get("parent") == run["run_dir"] and (newest_state(registry, other) is not None
                                                      or is_live(other["run_dir"])):
            return other
    return None


def continue_check(run_dir: str, registry: Optional[Registry] = None) -> tuple[bool, str]:
    """Whether the run in ``run_dir`` can be continued now, and why not (for routes and panels)."""
    registry = registry or Registry()
    run = registry.run(run_dir)
    if run is None:
        return False, "the pack has no record of this run's training states"
    child = _continued_by(registry, run)
    if child is not None:
        return False, f"it was continued by {child['run_id']}"
    state, why = can_continue(registry, run)
    return state is not None, why


def continuable_runs(registry: Optional[Registry] = None) -> list[dict[str, Any]]:
    """Runs that can be continued, newest first: each with its newest complete state. A run
    one of whose continuations saved a state of its own is represented by that continuation."""
    registry = registry or Registry()
    runs = registry.runs()
    superseded = set()
    for run in runs:
        parent = run.get("parent")
        if parent and (newest_state(registry, run) is not None or is_live(run["run_dir"])):
            superseded.add(parent)
    out = []
    for run in runs:
        if run["run_dir"] in superseded or not os.path.isdir(run["run_dir"]):
            continue
        state, _ = can_continue(registry, run)
        if state is None:
            continue
        plan = _plan_of(run)
        out.append({"run_id": run["run_id"], "run_dir": run["run_dir"], "architecture": run.get("architecture"),
                    "output_name": run.get("output_name"), "state": state["path"], "epoch": state["epoch"],
                    "step": state["step"], "epochs": plan.get("epochs"), "total_steps": plan.get("steps")})
    return out


def trusted_states(registry: Optional[Registry] = None) -> list[str]:
    """State folders registered from the command line (``trust-state``) that are still whole."""
    registry = registry or Registry()
    return [s["path"] for s in registry.states() if s["origin"] == "cli" and _present(s)]


def _plan_of(run: dict[str, Any]) -> dict[str, Any]:
    """The whole plan of a run: a continuation's is recorded; an original run's comes from its
    arguments and what musubi reported."""
    if run.get("plan"):
        return dict(run["plan"])
    args = run.get("args") or {}
    facts = run.get("facts") or {}
    epochs = first(args.get("--max_train_epochs"))
    return {"epochs": int(epochs) if epochs else None, "steps": facts.get("total_steps"),
            "steps_per_epoch": facts.get("steps_per_epoch") or _steps_per_epoch(args, facts, epochs),
            "processes": run.get("processes") or 1}


def _steps_per_epoch(args: dict[str, Any], facts: dict[str, Any], epochs: Any) -> Optional[int]:
    batches = facts.get("batches_per_epoch")
    accumulation = max(1, int(first(args.get("--gradient_accumulation_steps")) or 1))
    if batches:
        return math.ceil(batches / accumulation)
    if facts.get("total_steps") and epochs:
        return int(facts["total_steps"]) // int(epochs)
    return None


def lookup_source(value: str, registry: Optional[Registry] = None, *,
                  finish: bool = True) -> tuple[Optional[dict[str, Any]], dict[str, Any]]:
    """(run or None for an outside state, state) named by a resume value: a run id from the
    list, a run folder, or a recorded state folder. Raises ResumeRefused saying why not.
    ``finish``: first rename the files of a continuation that ended without renaming them
    (off for a check that must change nothing)."""
    registry = registry or Registry()
    text = (value or "").strip()
    if not text or "\x00" in text:
        raise ResumeRefused("resume names nothing", hint=PICK_HINT)
    looks_like_path = os.sep in text or "/" in text or text.startswith(("~", "."))
    if looks_like_path:
        state = registry.state(text)
        if state is not None:
            run = registry.run(state["run_dir"]) if state["run_dir"] else None
            return run, _usable(registry, run, state, text)
        run = registry.run(text)
        if run is None:
            raise ResumeRefused(f"{text} is not a training state or run this pack recorded; only states saved by "
                                "the pack's own runs (or registered from the command line) are loaded, because "
                                "resuming unpickles their files", hint=PICK_HINT)
    else:
        found = registry.runs_named(text)
        if not found:
            raise ResumeRefused(f"there is no run {text!r} in this pack's record of training runs", hint=PICK_HINT)
        if len(found) > 1:
            raise ResumeRefused(f"{len(found)} recorded runs are named {text!r}",
                                hint="give the run folder's full path instead")
        run = found[0]
    if finish:
        _finish_numbering(registry, run)
    child = _continued_by(registry, run)
    if child is not None:
        raise ResumeRefused(f"the run {run['run_id']} was already continued by {child['run_id']}",
                            hint=f"continue {child['run_id']} instead (it is the newer part of this run); to "
                                 "branch off an earlier state on purpose, give that state folder's path")
    state, why = can_continue(registry, run)
    if state is None:
        raise ResumeRefused(f"the run {run['run_id']} cannot be continued: {why}", hint=PICK_HINT)
    return run, state


def _usable(registry: Registry, run: Optional[dict[str, Any]], state: dict[str, Any], text: str) -> dict[str, Any]:
    if not _present(state):
        raise ResumeRefused(f"the state {text} is incomplete: files musubi wrote are missing "
                            f"({MARKER} is written last; a folder without it is a save that was cut short)",
                            hint=PICK_HINT)
    if state["kind"] == FINAL:
        raise ResumeRefused(f"{text} is the end-of-training state of a run that finished its plan; nothing is "
                            "left to continue", hint="to train further, start a new run with initial_weights = "
                            "the finished LoRA")
    if run is not None and is_live(run["run_dir"]):
        raise ResumeRefused(f"the run {run['run_id']} is still running", hint="wait for it to stop, then continue it")
    return state


def _finish_numbering(registry: Registry, run: dict[str, Any]) -> None:
    """A continuation whose run ended without its files renamed (its process was killed) gets
    them renamed now, before its states are looked at."""
    if not run.get("parent") or run.get("renumbered") or is_live(run["run_dir"]):
        return
    from .saves import renumber

    cont = Continuation(source_state=run.get("source_state") or "", files={}, parent_run_dir=run.get("parent"),
                        parent_run_id=run.get("parent_run_id"), final_name=run.get("output_name") or "",
                        raw_name=run.get("musubi_name") or "", epoch_offset=int(run.get("epoch_offset") or 0),
                        step_offset=int(run.get("step_offset") or 0))
    if cont.raw_name and cont.final_name and cont.renames:
        renumber(run.get("output_dir") or run["run_dir"], cont, registry)
    registry.update_run(run["run_dir"], renumbered=True)


# ---------------------------------------------------------------- checking a new plan against the run

_MUST_MATCH = (
    ("--network_dim", "network_dim", "1"), ("--network_alpha", "network_alpha", "1"),
    ("--network_module", "the network module", ""), ("--network_args", "network_args", ""),
    ("--gradient_accumulation_steps", "gradient_accumulation_steps", "1"),
    ("--optimizer_type", "optimizer_type", "adamw"),
)
_NOTED = (
    ("--learning_rate", "learning_rate", "musubi keeps the run's learning rate: it comes back with the saved "
                                         "optimizer and schedule"),
    ("--lr_scheduler", "lr_scheduler", "the run's schedule continues where it stopped"),
    ("--lr_warmup_steps", "lr_warmup_steps", "the run's schedule continues where it stopped"),
    ("--lr_scheduler_num_cycles", "lr_scheduler_num_cycles", "the run's schedule continues where it stopped"),
    ("--lr_scheduler_power", "lr_scheduler_power", "the run's schedule continues where it stopped"),
    ("--lr_scheduler_min_lr_ratio", "lr_scheduler_min_lr_ratio", "the run's schedule continues where it stopped"),
    ("--max_train_epochs", "max_train_epochs", "the continuation trains what is left of the run's plan"),
    ("--max_train_steps", "max_train_steps", "the continuation trains what is left of the run's plan"),
    ("--optimizer_args", "optimizer_args", "the optimizer's settings come back with its saved state"),
    ("--seed", "seed", "the random state comes back with the saved state"),
    ("--dit", "the DiT file", "training continues on the DiT file given now"),
)


def _same(a: list[str], b: list[str]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x == y:
            continue
        try:
            if float(x) != float(y):
                return False
        except ValueError:
            if x.lower() != y.lower():
                return False
    return True


def _shown(values: list[str]) -> str:
    return " ".join(values) if values else "(not set)"


def compare_runs(origin: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(refusals, notes) for continuing the run recorded as ``origin`` with the plan ``new``;
    both are ``{"architecture", "selectors", "dataset_digest", "processes", "args"}``."""
    errors, notes = [], []
    if origin.get("architecture") != new.get("architecture"):
        errors.append(f"the run trained {origin.get('architecture')}, this plan trains {new.get('architecture')}")
        return errors, notes
    for name in sorted(set(origin.get("selectors") or {}) | set(new.get("selectors") or {})):
        was, now = (origin.get("selectors") or {}).get(name), (new.get("selectors") or {}).get(name)
        if str(was) != str(now):
            errors.append(f"the run used {name} {was}, this plan {now} (another model variant)")
    if origin.get("dataset_digest") and origin.get("dataset_digest") != new.get("dataset_digest"):
        errors.append("the dataset differs from the run's (its folders, resolution, repeats or batch size): the "
                      "run's epochs and steps would no longer mean the same")
    if int(origin.get("processes") or 1) != int(new.get("processes") or 1):
        errors.append(f"the run trained on {origin.get('processes') or 1} process(es), this plan on "
                      f"{new.get('processes') or 1}: the saved schedule counts steps per process")
    was_args, now_args = origin.get("args") or {}, new.get("args") or {}
    for flag, label, default in _MUST_MATCH:
        was = was_args.get(flag) or ([default] if default else [])
        now = now_args.get(flag) or ([default] if default else [])
        if not _same(was, now):
            errors.append(f"{label} was {_shown(was)} in the run, {_shown(now)} now")
    for flag, label, why in _NOTED:
        was, now = was_args.get(flag) or [], now_args.get(flag) or []
        if not _same(was, now) and flag in now_args:
            notes.append(f"{label} {_shown(now)} is not used ({_shown(was)} in the run): {why}")
    return errors, notes


# ---------------------------------------------------------------- the continuation

def staging_dir(run_dir: str, state_path: str) -> str:
    """Where the verified copy of the state goes for this run: inside the pack's data folder."""
    return os.path.join(default_data_dir(), "staging", os.path.basename(os.path.normpath(run_dir)),
                        os.path.basename(os.path.normpath(state_path)))


def plan_continuation(run: Optional[dict[str, Any]], state: dict[str, Any], *, new: dict[str, Any],
                      output_name: str, run_dir: str) -> tuple[Continuation, dict[str, Any]]:
    """The continuation of ``run`` from ``state`` for a plan described by ``new`` (see
    compare_runs) with output name ``output_name`` in ``run_dir``. Returns it and the option
    overrides (what is left of the plan, the schedule); raises ResumeRefused with every reason."""
    staging = staging_dir(run_dir, state["path"])
    if run is None:  # a state registered from the command line: musubi's own behaviour, with a note
        cont = Continuation(source_state=state["path"], files=state["files"], parent_run_dir=None,
                            parent_run_id=None, final_name=output_name, raw_name=output_name, staging=staging,
                            origin_args={})
        cont.notes.append("this state was registered from the command line, so the pack does not know its run's "
                          "plan: the epochs/steps and schedule given now are trained on top of it (musubi's own "
                          "resume), and the files are numbered from 1")
        return cont, {}
    origin_args = run.get("origin_args") or run.get("args") or {}
    origin = {"architecture": run.get("architecture"), "selectors": run.get("selectors"),
              "dataset_digest": run.get("dataset_digest"), "processes": run.get("processes") or 1,
              "args": origin_args}
    errors, notes = compare_runs(origin, new)
    if errors:
        raise ResumeRefused(f"the run {run['run_id']} cannot be continued with these settings: " + "; ".join(errors),
                            hint="use the run's settings (or pick another run), or set resume to (none) to start "
                                 "fresh")
    plan = _plan_of(run)
    left = remaining_options(state["kind"], state["epoch"], state["step"], plan.get("epochs"), plan.get("steps"))
    if not left or not plan.get("steps"):
        raise ResumeRefused(f"the run {run['run_id']} has nothing left to train after {os.path.basename(state['path'])}",
                            hint=PICK_HINT)
    overrides: dict[str, Any] = dict(left)
    schedule, note = schedule_options(origin_args, int(plan["steps"]), int(plan.get("processes") or 1))
    clash = [f for f in ("--lr_scheduler_type", "--lr_scheduler_args") if f in (new.get("extra_flags") or ())]
    if schedule and clash:
        notes.append(f"{' and '.join(clash)} in extra_args replace the run's schedule: the learning rate may not "
                     "follow the original curve")
    else:
        overrides.update(schedule)
    if note:
        notes.append(note)
    spe = plan.get("steps_per_epoch")
    step = int(state["step"] or 0)
    epoch = int(state["epoch"]) if state["epoch"] is not None else (step // spe if spe else 0)
    cont = Continuation(source_state=state["path"], files=state["files"], parent_run_dir=run["run_dir"],
                        parent_run_id=run["run_id"], final_name=output_name, raw_name=output_name + RAW_SUFFIX,
                        epoch_offset=epoch, step_offset=step, steps_per_epoch=spe, plan_epochs=plan.get("epochs"),
                        plan_steps=int(plan["steps"]), processes=int(plan.get("processes") or 1),
                        resume_points=list(run.get("resume_points") or []) + [step], staging=staging,
                        origin_args=origin_args, notes=notes)
    return cont, overrides


def spec_from_record(run: dict[str, Any], *, run_dir: str) -> dict[str, Any]:
    """A plan spec (``plan.PlanSpec.from_dict`` data) that continues ``run`` exactly as it was
    planned, from the pack's own record (nothing a ComfyUI client could have edited)."""
    spec = dict(run.get("spec") or {})
    if not spec:
        raise ResumeRefused(f"the record of {run['run_id']} has no plan to continue", hint=PICK_HINT)
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    text = run.get("dataset_toml")
    spec["dataset_config"] = tomllib.loads(text) if text else spec.get("dataset_config")
    spec["options"] = dict(spec.get("options") or {}, resume=run["run_dir"])
    spec.update(output_dir=run_dir, run_dir=run_dir, step="train")
    spec.pop("runs_dir", None)
    return spec


def describe(cont: Continuation) -> str:
    """One line for the node and the command line."""
    if cont.parent_run_id is None:
        return f"resuming from the registered state {cont.source_state}"
    where = f"epoch {cont.epoch_offset}" + (f" of {cont.plan_epochs}" if cont.plan_epochs else "")
    return (f"continuing run {cont.parent_run_id} from {where}, step {cont.step_offset} of {cont.plan_steps} "
            f"(state {os.path.basename(cont.source_state)})")


def seed_points(cont: Continuation) -> list[dict[str, Any]]:
    """The parent's loss points up to the resume point: the start of the continuation's curve."""
    from .history import LOSS_FILE, read_history

    if not cont.parent_run_dir:
        return []
    return [p for p in read_history(os.path.join(cont.parent_run_dir, LOSS_FILE)) if p["step"] <= cont.step_offset]

"""Continuing a stopped training run from the Train node: the ``resume`` choices (runs that can be
continued, newest complete state of each), the queue-time check of a resume value, the saving
inputs that make a stop cheap (states with the epoch saves and every N steps, the newest kept),
and the resume points marked on the loss curve. The work is ``executor.runs.resume``'s.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

NONE = "(none)"

# What one training state takes on disk: the LoRA in fp32 plus the optimizer's state (adamw8bit about
# half the LoRA again, AdamW twice the LoRA), at each architecture's recommended rank; the LoRA sizes
# are counted with musubi's own network code (.ci/lora_sizes.py), the table is in docs/resume.md.
STATE_SIZES = ("GB per state at the recommended rank, adamw8bit / AdamW: HunyuanVideo 0.7/1.4, HunyuanVideo 1.5 "
               "1.1/2.1, Wan 1.3B 0.3/0.5, Wan 14B 0.9/1.8, FramePack 0.8/1.7, FLUX.1 Kontext 0.7/1.3, FLUX.2 dev "
               "1.2/2.3, Klein 4B 0.3/0.6, Klein 9B 0.5/1.0, Qwen-Image 0.9/1.8, Z-Image 0.4/0.8, Kandinsky 5 Lite "
               "0.3/0.6, Pro 1.3/2.6, Ideogram 4 0.5/1.0, Krea 2 0.7/1.4 (it grows with network_dim).")

SAVE_STATE_TOOLTIP = ("Save the training state (LoRA + optimizer + schedule) with every epoch save and every "
                      "save_every_n_steps, so a stopped run can be continued with resume. Only the newest "
                      "keep_states are kept. " + STATE_SIZES)
SAVE_STEPS_TOOLTIP = ("Also save the LoRA (and, with save_state, the training state) every N optimizer steps, "
                      "so a stop loses at most N steps; 0 = only with the epoch saves.")
KEEP_TOOLTIP = ("How many of the newest training states to keep in the run folder (older ones are deleted as "
                "new ones are written; the end-of-training state counts as the newest).")
RESUME_TOOLTIP = ("Continue a run that stopped (cancelled, failed, ComfyUI closed) from its newest saved state: "
                  "the rest of its plan (epochs or steps), its learning-rate schedule, its numbering and loss "
                  "curve go on in a new run folder. Only runs this pack recorded are listed; (none) = start "
                  "fresh. A state made elsewhere: `python -m executor trust-state DIR` on the command line.")


def choices() -> list[str]:
    """``(none)``, the ids of the runs that can be continued (newest first), and the state
    folders registered from the command line."""
    try:
        from ..executor.runs.resume import continuable_runs, trusted_states

        return [NONE] + [run["run_id"] for run in continuable_runs()] + trusted_states()
    except Exception:  # noqa: BLE001 - a broken record must not break the node's definition
        return [NONE]


def chosen(value: Any) -> Optional[str]:
    """The resume value to use, or None for a fresh start."""
    text = str(value).strip() if isinstance(value, str) else ""
    return None if text in ("", NONE) else text


def data_dir_problem() -> Optional[str]:
    """The record of states must not lie where ComfyUI's clients can write: its input, output,
    temp or user folders (a MUSUBI_TUNER_NODES_DATA_DIR set there)."""
    from ..executor.runs.folders import default_data_dir

    import folder_paths

    folder = os.path.realpath(default_data_dir())
    served = [folder_paths.get_input_directory(), folder_paths.get_output_directory(),
              folder_paths.get_temp_directory()]
    getter = getattr(folder_paths, "get_user_directory", None)
    if getter is not None:
        served.append(getter())
    for root in served:
        root = os.path.realpath(root)
        if folder == root or folder.startswith(root + os.sep):
            return (f"the pack's data folder {folder} is inside ComfyUI's folder {root}, which ComfyUI's clients "
                    "can write: no state is trusted from there. Set MUSUBI_TUNER_NODES_DATA_DIR to a folder "
                    "outside ComfyUI (or unset it) and restart ComfyUI")
    return None


def problem(value: Any) -> Optional[str]:
    """Why a resume value is refused at queue time (HTTP 400), or None when it is usable."""
    name = chosen(value)
    if name is None:
        return None
    if not isinstance(value, str):
        return "resume must be a run from the list"
    unsafe = data_dir_problem()
    if unsafe:
        return "resume: " + unsafe
    from ..executor.runs.resume import ResumeRefused, lookup_source

    try:
        lookup_source(name, finish=False)
    except ResumeRefused as exc:
        return f"resume: {exc.message}; {exc.hint}" if exc.hint else f"resume: {exc.message}"
    return None


def resume_points(run_dir: str) -> list[int]:
    """The steps where the run (and its ancestors) were continued, from its resume.json."""
    from ..executor.runs.folders import RESUME_FILE

    try:
        with open(os.path.join(run_dir, RESUME_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return []
    points = data.get("resume_points") if isinstance(data, dict) else None
    return [int(p) for p in points if isinstance(p, int)] if isinstance(points, list) else []


def note_lines(plan: Any) -> list[str]:
    """What the node says about a continuation before it runs."""
    cont = getattr(plan, "continuation", None)
    if cont is None:
        return []
    from ..executor.runs.resume import describe

    lines = [describe(cont)]
    if cont.renames:
        lines.append(f"musubi counts from 1 again; its files ({cont.raw_name}-...) are renamed to the run's numbering "
                     "when it ends")
    return lines


def seed_curve(reporter: Any, plan: Any) -> None:
    """The node's live loss curve starts with the part of the run before the resume point."""
    cont = getattr(plan, "continuation", None)
    history = getattr(reporter, "history", None)
    if cont is None or history is None:
        return
    from ..executor.runs.resume import seed_points

    history.points = seed_points(cont) + list(history.points)
    if cont.plan_steps:
        reporter.total = cont.plan_steps


def marks(plan: Any) -> list[int]:
    """Resume points to mark on the run's loss curve."""
    cont = getattr(plan, "continuation", None)
    return list(cont.resume_points) if cont is not None else []


def save_notes(options: dict[str, Any]) -> list[str]:
    """A state saved only at the end of training cannot be continued: say so."""
    if options.get("save_state") and not options.get("save_every_n_epochs") and not options.get("save_every_n_steps"):
        return ["save_state is on, but with save_every_n_epochs and save_every_n_steps at 0 only the end-of-training "
                "state is saved: a stopped run could not be continued"]
    return []

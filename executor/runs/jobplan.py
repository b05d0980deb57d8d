"""A plan as a background job keeps it: the JSON in the job store (everything needed to launch it
and judge its end after a ComfyUI restart), the plan rebuilt from it, and the GPUs it asks for.

Secrets stay out of the store: environment values with secret-looking names are stored as
``***`` and taken again at launch from the settings' ``env`` or the environment of the process
that launches (where they came from in the first place).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence

from ..process.command import REDACTED, Command, is_secret_name
from .folders import LOCK_NAME
from .plan import Plan

__all__ = ["plan_record", "restore_plan", "gpu_request", "lock_paths"]


def plan_record(plan: Plan, *, lock_token: Optional[str] = None) -> dict[str, Any]:
    """``Plan.to_dict()`` plus what relaunching and finishing the job need."""
    command = plan.command
    record = plan.to_dict()
    record["launch"] = {
        "argv": list(command.argv),
        "cwd": command.cwd,
        "added_env": {k: (REDACTED if is_secret_name(k) else v) for k, v in command.added_env.items()},
        "removed_env": list(command.removed_env),
    }
    record.update(output_dir=plan.output_dir, output_name=plan.output_name, overwrite=plan.overwrite,
                  lock_dirs=list(plan.lock_dirs), cache_patterns=[list(p) for p in plan.cache_patterns],
                  timeout=plan.timeout, stall_timeout=plan.stall_timeout, lock_token=lock_token)
    return record


def restore_plan(record: Mapping[str, Any], settings: Any = None,
                 environ: Optional[Mapping[str, str]] = None) -> Plan:
    """The Plan a stored record describes, its command's environment rebuilt from ours:
    minus the removed names, plus the added values (secrets from settings.env or ours)."""
    launch = record["launch"]
    base = dict(os.environ if environ is None else environ)
    removed = set(launch.get("removed_env") or [])
    env = {k: v for k, v in base.items() if k not in removed}
    user_env = dict(getattr(settings, "env", None) or {})
    added: dict[str, str] = {}
    for name, value in (launch.get("added_env") or {}).items():
        if value == REDACTED:
            value = user_env.get(name, base.get(name))
            if value is None:
                continue
        added[name] = value
        env[name] = value
    command = Command(argv=tuple(launch["argv"]), env=env, cwd=launch["cwd"], added_env=added,
                      removed_env=tuple(sorted(removed)))
    return Plan(arch=record.get("architecture", ""), step=record.get("step", ""), script=record.get("script", ""),
                command=command, dataset_config=record.get("dataset_config"), run_dir=record["run_dir"],
                expected_outputs=list(record.get("expected_outputs") or []),
                lock_dirs=list(record.get("lock_dirs") or []), output_dir=record.get("output_dir"),
                output_name=record.get("output_name"), overwrite=bool(record.get("overwrite")),
                cache_patterns=[(str(a), str(b)) for a, b in record.get("cache_patterns") or []],
                timeout=record.get("timeout"), stall_timeout=record.get("stall_timeout"))


def gpu_request(argv: Sequence[str]) -> tuple[Optional[list[int]], int]:
    """(GPU ids named by ``accelerate launch --gpu_ids``, or None for "any"; how many GPUs).

    ``--gpu_ids 0,1`` pins the job to those GPUs; ``all`` or none means any free ones, as many
    as ``--num_processes`` (default 1). A plain python run uses one GPU."""
    args = list(argv)
    if "accelerate.commands.launch" not in args:
        return None, 1
    launcher = args[:args.index("accelerate.commands.launch") + 1]
    rest = args[len(launcher):]
    options: dict[str, str] = {}
    i = 0
    while i < len(rest) and rest[i].startswith("--"):
        flag, eq, value = rest[i].partition("=")
        if eq:
            options[flag] = value
            i += 1
        elif i + 1 < len(rest) and not rest[i + 1].startswith("--") and not rest[i + 1].endswith(".py"):
            options[flag] = rest[i + 1]
            i += 2
        else:
            i += 1
    try:
        count = max(1, int(options.get("--num_processes", "1")))
    except ValueError:
        count = 1
    ids = options.get("--gpu_ids", "all").replace(" ", "")
    if ids in ("", "all"):
        return None, count
    try:
        pinned = [int(x) for x in ids.split(",") if x != ""]
    except ValueError:
        return None, count
    return pinned, len(pinned)


def lock_paths(record: Mapping[str, Any]) -> list[str]:
    """The lock files a job's plan holds: its output/cache folders and its run folder."""
    dirs = list(record.get("lock_dirs") or []) + [record["run_dir"]]
    seen: list[str] = []
    for d in dirs:
        path = os.path.join(d, LOCK_NAME)
        if path not in seen:
            seen.append(path)
    return seen

"""``python -m executor resume`` and ``python -m executor trust-state``: continue a stopped run
from the command line, list the runs that can be continued, and register a training state made
outside the pack (the only way one is ever trusted: never from a workflow)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..errors import PreflightError, SetupError
from ..problems import Problem
from .cli import _cli_fail, _cli_run
from .resume import ResumeRefused, continuable_runs
from .states import MARKER, hash_files, is_complete
from .trust import Registry, path_key

__all__ = ["cli_resume", "cli_trust_state"]


def cli_resume(args: Any) -> int:
    """``resume RUN_DIR [--dry-run]``: continue the run from its newest recorded state, as it
    was planned, in a new run folder beside it; ``resume --list`` lists what can be continued."""
    registry = Registry()
    if args.list or not args.run:
        runs = continuable_runs(registry)
        if getattr(args, "json", False) or args.list:
            print(json.dumps({"runs": runs}, indent=2, ensure_ascii=False))
        if not args.run and not args.list:
            print("give the run folder (or its id) to continue; the runs that can be continued are listed above",
                  file=sys.stderr)
            return 2
        return 0
    from ..setup.settings import load_settings
    from .continue_run import continuation_plan

    try:
        plan = continuation_plan(args.run, load_settings(), registry=registry)
    except PreflightError as exc:
        return _cli_fail(exc.problems, getattr(exc, "warnings", []))
    except ResumeRefused as exc:
        return _cli_fail([Problem("run", exc.message, exc.hint)], [])
    except SetupError as exc:
        return _cli_fail([Problem("spec", exc.message, exc.hint)], [], code=2)
    for w in plan.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.dry_run:
        print(json.dumps(plan.to_dict(), indent=2, ensure_ascii=False))
        return 0
    return _cli_run(plan)


def cli_trust_state(args: Any) -> int:
    """``trust-state DIR``: record a state folder made outside the pack, so resume may load it.
    Resuming unpickles its files: register only a folder you made yourself or fully trust."""
    folder = os.path.abspath(os.path.expanduser(args.folder))
    if not os.path.isdir(folder):
        print(f"{folder} is not a folder", file=sys.stderr)
        return 1
    if not is_complete(folder):
        print(f"{folder} is not a complete training state: {MARKER} (written last by accelerate's save_state) is "
              "missing, so the save was cut short or this is not a state folder", file=sys.stderr)
        return 1
    registry = Registry()
    known = registry.state(folder)
    if known is not None and known.get("origin") == "run":
        print(f"{folder} was saved by a run of this pack and is already recorded; continue its run with "
              "`python -m executor resume RUN_DIR`", file=sys.stderr)
        return 0
    files = hash_files(folder)
    row = registry.add_state(folder, run_dir=None, kind="outside", number=None, epoch=None, step=None, files=files,
                             origin="cli")
    print(json.dumps({"registered": path_key(folder), "files": sorted(files), "bytes": row["size"]}, indent=2))
    print(f"registered {folder} ({len(files)} files, {row['size'] / 1e6:.1f} MB). The Train node lists it under "
          "resume, and an API prompt or plan spec may name it as resume; if any of its files changes, it is "
          "refused again.", file=sys.stderr)
    return 0

"""The continuation of a recorded run as a ready plan, from the pack's record alone (the spec the
run was planned from, its dataset as TOML): ``python -m executor resume`` and the Jobs panel's
Continue (``POST /musubi-tuner/jobs/{id}/continue``) both use it. The new run folder goes beside
the run's; nothing a ComfyUI client could have edited is read.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from .folders import unique_run_dir
from .plan import Plan, PlanSpec, make_plan
from .resume import PICK_HINT, ResumeRefused, spec_from_record
from .trust import Registry

__all__ = ["find_run", "continuation_plan"]


def find_run(value: str, registry: Optional[Registry] = None) -> dict[str, Any]:
    """The recorded run a folder path or run id names; ResumeRefused when none (or several)."""
    registry = registry or Registry()
    text = (value or "").strip()
    if os.sep in text or "/" in text:
        found = registry.run(text)
        if found is not None:
            return found
    named = registry.runs_named(os.path.basename(os.path.normpath(text)))
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise ResumeRefused(f"{len(named)} recorded runs are named {text!r}", hint="give the run folder's full path")
    raise ResumeRefused(f"{text} is not a training run this pack recorded", hint=PICK_HINT)


def continuation_plan(value: str, settings: Any, *, install: Any = None, registry: Optional[Registry] = None,
                      use_probe: bool = True) -> Plan:
    """The plan that continues the run ``value`` names from its newest recorded state, exactly as
    it was planned, in a new run folder beside it. Raises ResumeRefused, or PreflightError
    (whose problems say why the continuation is refused: another state, a changed file ...)."""
    run = find_run(value, registry)
    run_dir = unique_run_dir(os.path.dirname(run["run_dir"]), "train", run.get("output_name") or "lora")
    spec = PlanSpec.from_dict(spec_from_record(run, run_dir=run_dir))
    return make_plan(settings, spec, install=install, use_probe=use_probe)

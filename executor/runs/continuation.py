"""What a continuation of a stopped training run passes to musubi, and why (facts:
docs/resume.md, from musubi v0.3.4 ``training/trainer_base.py`` and ``parser_common.py``).

musubi's ``--resume`` restores weights, optimizer, scheduler position and RNG, but counts steps
and epochs from 0 again, numbers its files from 1 again and sizes the loop (and a LambdaLR
schedule's length) from this run's arguments only. So a continuation of a plan of N epochs /
T steps from a state at epoch k / step s passes:

- what is left: ``--max_train_epochs N-k`` (an epoch state of an epoch plan), else
  ``--max_train_steps T-s``;
- the schedule's original length: cosine/linear-type schedules are given explicitly as the
  transformers function with ``num_training_steps`` = T x processes (and the warm-up in steps),
  because musubi would otherwise rebuild them for the shorter run; constant schedules, rex
  and torch classes need nothing (their state is restored whole);
- its own output name (``<name>-continued``), so musubi's restarted numbering can never touch a
  file of the run; the pack renames the files to the whole run's numbering afterwards.
Standard library only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Sequence

__all__ = ["Continuation", "RAW_SUFFIX", "parse_args", "remaining_options", "schedule_options", "int_or_float",
           "first"]

RAW_SUFFIX = "-continued"
TRANSFORMERS = "transformers.optimization."
# lr_scheduler name -> the transformers function musubi calls for it (TYPE_TO_SCHEDULER_FUNCTION)
_LAMBDA_SCHEDULES = {
    "linear": "get_linear_schedule_with_warmup",
    "cosine": "get_cosine_schedule_with_warmup",
    "cosine_with_restarts": "get_cosine_with_hard_restarts_schedule_with_warmup",
    "polynomial": "get_polynomial_decay_schedule_with_warmup",
    "cosine_with_min_lr": "get_cosine_with_min_lr_schedule_with_warmup",
    "warmup_stable_decay": "get_wsd_schedule",
}
# schedules whose only link to the run's length is a warm-up given as a ratio
_WARMUP_ONLY = ("constant_with_warmup", "inverse_sqrt")


@dataclass
class Continuation:
    """A continuation of a recorded run from one of its recorded states.

    Positions are of the whole plan: the state is at ``epoch_offset`` epochs / ``step_offset``
    steps; the plan is ``plan_epochs`` epochs (None for a steps plan) of ``plan_steps`` steps.
    ``staging`` is the private verified copy musubi loads (``--resume``)."""

    source_state: str
    files: dict[str, dict[str, Any]]
    parent_run_dir: Optional[str]
    parent_run_id: Optional[str]
    final_name: str
    raw_name: str
    epoch_offset: int = 0
    step_offset: int = 0
    steps_per_epoch: Optional[int] = None
    plan_epochs: Optional[int] = None
    plan_steps: Optional[int] = None
    processes: int = 1
    resume_points: list[int] = field(default_factory=list)
    staging: str = ""
    origin_args: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def renames(self) -> bool:
        return self.raw_name != self.final_name

    def run_fields(self) -> dict[str, Any]:
        """What the state record keeps about a continuation run."""
        if self.parent_run_dir is None:  # an outside state: the run's own arguments are its plan
            return {"source_state": self.source_state}
        return {"parent": self.parent_run_dir, "parent_run_id": self.parent_run_id,
                "source_state": self.source_state, "epoch_offset": self.epoch_offset,
                "step_offset": self.step_offset, "resume_points": list(self.resume_points),
                "origin_args": self.origin_args,
                "plan": {"epochs": self.plan_epochs, "steps": self.plan_steps,
                         "steps_per_epoch": self.steps_per_epoch, "processes": self.processes}}

    def link(self) -> dict[str, Any]:
        """resume.json in the continuation's run folder (for people and the status route)."""
        return {"parent_run": self.parent_run_id, "parent_run_dir": self.parent_run_dir,
                "state": self.source_state, "resumed_at": {"epoch": self.epoch_offset, "step": self.step_offset},
                "plan": {"epochs": self.plan_epochs, "steps": self.plan_steps},
                "resume_points": list(self.resume_points), "musubi_output_name": self.raw_name,
                "output_name": self.final_name}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def first(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def parse_args(args: Sequence[str]) -> dict[str, list[str]]:
    """``{"--flag": [values]}`` of a musubi argument list (a switch has ``[]``)."""
    out: dict[str, list[str]] = {}
    current: Optional[str] = None
    for arg in args:
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            out[name] = [value] if eq else []
            current = None if eq else name
        elif current is not None:
            out[current].append(arg)
    return out


def int_or_float(text: Any) -> Any:
    """musubi's ``_int_or_float`` (parser_common.py): ``10`` -> 10 steps, ``0.1``/``10%`` -> a
    ratio of the training steps; None for no value."""
    if text is None or text == "":
        return None
    value = str(text)
    if value.endswith("%"):
        return float(value[:-1]) / 100.0
    number = float(value)
    return int(number) if number >= 1 and number.is_integer() else number


def _steps(value: Any, total: int) -> int:
    """A warm-up/decay setting as musubi turns it into steps for ``total`` training steps."""
    return int(value * total) if isinstance(value, float) else int(value or 0)


def remaining_options(kind: str, epoch: Optional[int], step: Optional[int], plan_epochs: Optional[int],
                      plan_steps: Optional[int]) -> dict[str, Optional[int]]:
    """``max_train_epochs``/``max_train_steps`` for what is left of the plan after a state;
    an empty dict when nothing is left."""
    if kind == "epoch" and plan_epochs and epoch is not None:
        left = plan_epochs - epoch
        return {"max_train_epochs": left, "max_train_steps": None} if left > 0 else {}
    if plan_steps and step is not None:
        left = plan_steps - step
        return {"max_train_steps": left, "max_train_epochs": None} if left > 0 else {}
    return {}


def schedule_options(origin: Mapping[str, list[str]], plan_steps: int, processes: int = 1,
                     ) -> tuple[dict[str, Any], Optional[str]]:
    """Options that make the continuation's learning rate follow the original schedule exactly,
    and a note when the pack cannot promise that (None otherwise)."""
    name = (first(origin.get("--lr_scheduler")) or "constant").strip()
    total = plan_steps * max(1, processes)  # musubi: num_training_steps = max_train_steps x processes
    optimizer = (first(origin.get("--optimizer_type")) or "").lower()
    if optimizer.endswith("schedulefree"):
        return {}, None  # a schedule-free optimizer has no scheduler to keep
    if first(origin.get("--lr_scheduler_type")):
        return {}, ("the run used a custom lr_scheduler_type: musubi restores its saved state as it is, so a "
                    "torch scheduler continues exactly, a function-based one is rebuilt for the remaining steps")
    warmup = int_or_float(first(origin.get("--lr_warmup_steps")))
    warmup_steps = _steps(warmup, total)
    if name in _WARMUP_ONLY:
        return ({"lr_warmup_steps": warmup_steps} if isinstance(warmup, float) else {}), None
    if name not in _LAMBDA_SCHEDULES:
        # constant, rex (its whole state is restored), adafactor, piecewise_constant: nothing depends on the length
        return {}, None
    cycles = int(first(origin.get("--lr_scheduler_num_cycles")) or 1)
    kwargs: dict[str, Any] = {"num_warmup_steps": warmup_steps}
    if name == "warmup_stable_decay":
        decay = _steps(int_or_float(first(origin.get("--lr_decay_steps"))), total)
        ratio = first(origin.get("--lr_scheduler_min_lr_ratio"))
        kwargs.update(num_stable_steps=total - warmup_steps - decay, num_decay_steps=decay, num_cycles=cycles / 2,
                      min_lr_ratio=float(ratio) if ratio is not None else 0.0)
    else:
        kwargs["num_training_steps"] = total
    if name == "cosine_with_restarts":
        kwargs["num_cycles"] = cycles
    elif name == "polynomial":
        kwargs["power"] = float(first(origin.get("--lr_scheduler_power")) or 1.0)
    elif name == "cosine_with_min_lr":
        kwargs["num_cycles"] = cycles / 2
        ratio = first(origin.get("--lr_scheduler_min_lr_ratio"))
        if ratio is not None:
            kwargs["min_lr_rate"] = float(ratio)
    for item in origin.get("--lr_scheduler_args") or []:  # the run's own extra scheduler arguments
        key, _, value = item.partition("=")
        kwargs.setdefault(key, value)
    return {"lr_scheduler_type": TRANSFORMERS + _LAMBDA_SCHEDULES[name],
            "lr_scheduler_args": [f"{k}={_literal(v)}" for k, v in kwargs.items()]}, None


def _literal(value: Any) -> str:
    """A value as musubi reads it back (``ast.literal_eval``)."""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "0.0"
    return str(value)

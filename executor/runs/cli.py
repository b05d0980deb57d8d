"""``python -m executor plan``: pre-flight a JSON spec, print the plan, optionally run it."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError, PreflightError, SetupError
from ..problems import Problem
from .execute import execute_plan
from .folders import RESULT_FILE
from .plan import Plan, PlanSpec, make_plan

__all__ = ["cli_plan"]


# ---------------------------------------------------------------- python -m executor plan

def _problem_lines(problems: Sequence[Problem]) -> str:
    return "\n".join(f"  - {p}" for p in problems)


def cli_plan(args: Any) -> int:
    """``python -m executor plan SPEC.json [--run] [--runs-dir DIR]``.

    Prints one JSON object: ``argv``, ``cwd``, ``env`` (only what is added; secrets
    redacted), ``warnings``, ... . On problems prints ``{"ok": false, "problems": [...],
    "warnings": [...]}``, explains them on stderr and exits 1 (2 for an unreadable spec).
    With ``--run`` it prints JSON lines instead: ``{"plan": ...}``, one ``{"event": ...}``
    per event, then ``{"result": ...}``; exit 0 only when the run succeeded.
    """
    from ..setup.settings import load_settings

    spec_path = Path(args.spec)
    try:
        data = json.loads(spec_path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        return _cli_fail([Problem("spec", f"cannot read {spec_path}: {exc.strerror or exc}",
                                  "give the path of a JSON spec file")], [], code=2)
    except ValueError as exc:
        return _cli_fail([Problem("spec", f"{spec_path} is not valid JSON: {exc}", "fix the JSON")], [], code=2)
    try:
        spec = PlanSpec.from_dict(data, base_dir=spec_path.parent)
        if getattr(args, "runs_dir", None):
            spec.runs_dir = os.path.abspath(args.runs_dir)
        settings = load_settings()
        plan = make_plan(settings, spec)
    except PreflightError as exc:
        return _cli_fail(exc.problems, getattr(exc, "warnings", []))
    except SetupError as exc:
        return _cli_fail([Problem("spec", exc.message, exc.hint)], [], code=2 if isinstance(exc, ConfigError) else 1)
    for w in plan.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not getattr(args, "run", False):
        print(json.dumps(plan.to_dict(), indent=2, ensure_ascii=False))
        return 0
    return _cli_run(plan)


def _cli_fail(problems: Sequence[Problem], warnings: Sequence[Problem], code: int = 1) -> int:
    print(json.dumps({"ok": False, "problems": [p.to_dict() for p in problems],
                      "warnings": [p.to_dict() for p in warnings]}, indent=2, ensure_ascii=False))
    print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found; nothing was run:\n"
          + _problem_lines(problems), file=sys.stderr)
    if warnings:
        print("warnings:\n" + _problem_lines(warnings), file=sys.stderr)
    return code


def _cli_run(plan: Plan) -> int:
    try:
        from ...parsers.events import to_dict
    except ImportError:
        from parsers.events import to_dict

    def emit(obj: Any) -> None:
        sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    emit({"plan": plan.to_dict()})
    cancel = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        # Ctrl+C asks the executor to cancel (it kills the whole tree) instead of
        # unwinding through it, so result.json still records the run.
        previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        execute_plan(plan, on_event=lambda e: emit({"event": to_dict(e)}), should_cancel=cancel.is_set)
    except SetupError as exc:
        return _cli_fail([Problem("run", exc.message, exc.hint)], [])
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    record = _read_result(plan.run_dir)
    emit({"result": record})
    return 0 if record.get("status") == "succeeded" else 1


def _read_result(run_dir: str) -> dict[str, Any]:
    try:
        return json.loads(Path(run_dir, RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"status": "error"}

"""Plans: the exact command one musubi step will run, checked before launch, and run folders.

``make_plan`` turns a spec (architecture, step, dataset, models, options, ...) into a Plan
after pre-flight; ``execute_plan`` runs it through ``process.run`` with a folder per run
(command.txt for three shells, the dataset config used, run.log, result.json) and a lock on
the folders it writes, and never writes over a LoRA unless asked. ``cli_plan`` backs
``python -m executor plan``. Imports only the standard library, psutil and siblings.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from .dataset import (DatasetConfig, load_dataset_config, parse_dataset_dict, render_toml, write_atomic)
from .errors import ConfigError, PreflightError, RunError, RunResult, SetupError, TrainerFailed
from .history import LOSS_FILE, LossRecorder, sample_files
from .problems import WARNING, Problem

__all__ = ["PlanSpec", "Plan", "make_plan", "execute_plan", "cli_plan", "RunLock", "RunLocked",
           "LOCK_NAME", "RESULT_FILE", "COMMAND_FILE", "LOG_FILE", "default_runs_dir"]

LOCK_NAME = ".musubi-tuner-nodes.lock"
RESULT_FILE = "result.json"
COMMAND_FILE = "command.txt"
LOG_FILE = "run.log"
PLAN_FILE = "plan.json"
# Options the pack consumes itself; they never reach musubi's argv.
PACK_OPTIONS = ("overwrite",)
LAUNCHERS = ("accelerate", "python")
_PATH_OPTIONS = ("resume", "network_weights", "sample_prompts", "logging_dir")
SHELLS = (("POSIX shells (bash, zsh, sh)", "posix"), ("Windows cmd.exe", "cmd"),
          ("Windows PowerShell", "powershell"))


def default_runs_dir(environ: Optional[Mapping[str, str]] = None) -> str:
    """Where run folders go when nobody says: the per-user data folder
    (``%LOCALAPPDATA%\\musubi-tuner-nodes\\runs``, ``$XDG_DATA_HOME/musubi-tuner-nodes/runs``,
    else ``~/.local/share/musubi-tuner-nodes/runs``). ComfyUI passes its own output folder."""
    env = os.environ if environ is None else environ
    if os.name == "nt":
        base = env.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    else:
        xdg = env.get("XDG_DATA_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "musubi-tuner-nodes", "runs")


# ---------------------------------------------------------------- the spec

@dataclass
class PlanSpec:
    """What to run. ``dataset_config`` is a path (.toml/.json), a dict shaped like the
    TOML, or a DatasetConfig. ``options`` are catalogue options (plus ``overwrite``).

    ``run_dir``: the run folder to use (it must not exist yet) instead of a new one under
    ``runs_dir``; it may also be ``output_dir``. ``launcher``: how training starts,
    ``accelerate`` (``accelerate launch`` with the ``accelerate`` options) or ``python``
    (one process); the other steps always run with python.
    """

    architecture: str
    step: str
    dataset_config: Union[str, Mapping[str, Any], DatasetConfig, None] = None
    models: dict[str, str] = field(default_factory=dict)
    selectors: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    extra_args: Union[str, list[str], None] = None
    output_dir: Optional[str] = None
    output_name: Optional[str] = None
    overwrite: bool = False
    accelerate: dict[str, Any] = field(default_factory=dict)
    runs_dir: Optional[str] = None
    name: Optional[str] = None
    run_dir: Optional[str] = None
    launcher: str = "accelerate"

    @classmethod
    def from_dict(cls, data: Any, *, base_dir: Union[str, os.PathLike, None] = None) -> "PlanSpec":
        """A spec from JSON data; relative paths are taken relative to ``base_dir`` (the
        spec file's folder), so the printed argv holds absolute paths. Raises ConfigError."""
        if not isinstance(data, dict):
            raise ConfigError("the spec must be a JSON object", hint='start from {"architecture": "wan", ...}')
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        missing = [k for k in ("architecture", "step") if not data.get(k)]
        if unknown or missing:
            parts = [f"unknown key(s) {', '.join(unknown)}"] if unknown else []
            parts += [f"missing {', '.join(missing)}"] if missing else []
            raise ConfigError(f"spec: {'; '.join(parts)}", hint=f"the keys are: {', '.join(known)}")
        for key, kind in (("models", dict), ("selectors", dict), ("options", dict), ("accelerate", dict)):
            if data.get(key) is not None and not isinstance(data[key], kind):
                raise ConfigError(f"spec: {key} must be an object", hint=f'write "{key}": {{...}}')
        spec = cls(**{k: v for k, v in data.items() if v is not None or k == "dataset_config"})
        base = os.path.abspath(os.fspath(base_dir)) if base_dir is not None else None
        if base is not None:
            spec._absolutize(base)
        return spec

    def _absolutize(self, base: str) -> None:
        def absolute(value: Any, maybe_hf_id: bool = False) -> Any:
            if not isinstance(value, str) or not value or value.startswith("-") or "\x00" in value:
                return value  # pre-flight reports these
            value = os.path.expanduser(value)
            if os.path.isabs(value):
                return value
            joined = os.path.normpath(os.path.join(base, value))
            if maybe_hf_id and not value.startswith(".") and not os.path.exists(joined) \
                    and re.match(r"^[\w.-]+/[\w.-]+$", value) \
                    and not value.lower().endswith((".safetensors", ".sft", ".pt", ".pth", ".bin", ".ckpt")):
                return value  # a Hugging Face id such as Qwen/Qwen2.5-VL-7B-Instruct
            return joined

        if isinstance(self.dataset_config, str):
            self.dataset_config = absolute(self.dataset_config)
        self.models = {k: absolute(v, maybe_hf_id=True) for k, v in (self.models or {}).items()}
        self.output_dir = absolute(self.output_dir)
        self.runs_dir = absolute(self.runs_dir)
        self.run_dir = absolute(self.run_dir)
        options = dict(self.options or {})
        for key in _PATH_OPTIONS:
            if key in options:
                options[key] = absolute(options[key])
        if isinstance(options.get("base_weights"), list):
            options["base_weights"] = [absolute(v) for v in options["base_weights"]]
        self.options = options


# ---------------------------------------------------------------- the plan

@dataclass
class Plan:
    """One checked, ready-to-run step. ``run_dir`` is chosen but created only by
    ``execute_plan``; ``dataset_text`` is set when the plan writes the dataset TOML itself."""

    arch: str
    step: str
    script: str
    command: Any  # command.Command
    dataset_config: Optional[str]
    run_dir: str
    expected_outputs: list[str]
    warnings: list[Problem] = field(default_factory=list)
    lock_dirs: list[str] = field(default_factory=list)
    output_dir: Optional[str] = None
    output_name: Optional[str] = None
    overwrite: bool = False
    dataset_text: Optional[str] = None
    cache_patterns: list[tuple[str, str]] = field(default_factory=list)
    timeout: Optional[float] = None
    stall_timeout: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``python -m executor plan`` prints (environment secrets redacted)."""
        from .command import REDACTED, _redacted_argv, is_secret_name

        return {
            "architecture": self.arch, "step": self.step, "script": self.script,
            "argv": list(_redacted_argv(self.command.argv)), "cwd": self.command.cwd,
            "env": {k: (REDACTED if is_secret_name(k) else v) for k, v in self.command.added_env.items()},
            "removed_env": list(self.command.removed_env),
            "dataset_config": self.dataset_config, "run_dir": self.run_dir,
            "expected_outputs": self.expected_outputs,
            "warnings": [p.to_dict() for p in self.warnings],
        }


def _run_name(step: str, label: str) -> str:
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "run"
    return f"{stamp}_{step}_{safe[:60]}"


# Run folders are created only when a plan runs, so names handed out by this process are
# remembered: two plans made in the same millisecond still get different folders.
_RESERVED: set[str] = set()
_RESERVED_LOCK = threading.Lock()


def _unique_run_dir(runs_dir: str, step: str, label: str) -> str:
    name = _run_name(step, label)
    path = os.path.join(runs_dir, name)
    n = 2
    with _RESERVED_LOCK:
        while os.path.exists(path) or path in _RESERVED:
            path = os.path.join(runs_dir, f"{name}-{n}")
            n += 1
        _RESERVED.add(path)
    return path


def make_plan(settings: Any, spec: Union[PlanSpec, Mapping[str, Any]], *, install: Any = None,
              probe_report: Any = None, use_probe: bool = True,
              probe_cache_dir: Optional[str] = None, check_caches: bool = True) -> Plan:
    """Pre-flight ``spec`` and build its command. Raises PreflightError listing every
    problem (its ``warnings`` attribute holds the warnings), never launches anything.

    ``check_caches=False`` skips only the check that training's caches exist: a dry run of
    the whole chain before its cache steps ever ran still shows the training command.

    The venv probe (for the attention backend and bitsandbytes checks) is used when
    ``probe_report`` is given or ``use_probe`` is true; its answer is cached per venv.
    """
    from . import catalogue as cat
    from .command import AccelerateOptions, accelerate_command, python_command
    from .preflight import preflight

    if not isinstance(spec, PlanSpec):
        spec = PlanSpec.from_dict(spec)
    problems: list[Problem] = []

    def fail() -> PreflightError:
        errors = [p for p in problems if p.is_error]
        exc = PreflightError(errors, hint="fix the inputs named above; nothing was run")
        exc.warnings = [p for p in problems if not p.is_error]  # type: ignore[attr-defined]
        return exc

    try:
        arch = cat.get_architecture(spec.architecture)
    except SetupError as exc:
        problems.append(Problem("architecture", exc.message, exc.hint))
        raise fail()
    if spec.step not in arch.scripts:
        problems.append(Problem("step", f"{arch.display_name} has no step {spec.step!r}",
                                f"use one of: {', '.join(arch.scripts)}"))
        raise fail()
    if install is None:
        from .config import resolve_install

        try:
            install = resolve_install(settings)
        except SetupError as exc:
            problems.append(Problem("musubi_tuner", exc.message, exc.hint or "check the settings file"))

    options = dict(spec.options or {})
    overwrite = bool(spec.overwrite) or bool(options.pop("overwrite", False))
    if spec.run_dir:
        run_dir = os.path.abspath(os.path.expanduser(spec.run_dir))
        if os.path.exists(run_dir):
            problems.append(Problem("run_dir", f"the run folder {run_dir} already exists",
                                    "give a folder that does not exist yet; a run never writes into an "
                                    "earlier run's folder"))
    else:
        runs_dir = spec.runs_dir or default_runs_dir()
        run_dir = _unique_run_dir(runs_dir, spec.step, spec.output_name or spec.name or arch.id)
    launcher = spec.launcher or "accelerate"
    if launcher not in LAUNCHERS:
        problems.append(Problem("launcher", f"unknown launcher {launcher!r}", "use accelerate or python"))
    elif launcher == "python" and spec.step == cat.TRAIN \
            and ((spec.accelerate or {}).get("num_processes") or 1) > 1:
        problems.append(Problem("launcher", "the python launcher starts one process; num_processes "
                                f"{spec.accelerate['num_processes']} needs accelerate", "use the accelerate "
                                "launcher to train on several GPUs", WARNING))

    # The dataset: a file is passed as is (a copy goes into the run folder); data is written
    # into the run folder as dataset.toml and that file is what musubi reads.
    dataset: Optional[DatasetConfig] = None
    dataset_path: Optional[str] = None
    dataset_text: Optional[str] = None
    if spec.step != cat.CONVERT and spec.dataset_config is not None:
        if isinstance(spec.dataset_config, (str, os.PathLike)):
            dataset_path = os.path.abspath(os.fspath(spec.dataset_config))
            dataset = load_dataset_config(dataset_path)
        else:
            dataset = spec.dataset_config if isinstance(spec.dataset_config, DatasetConfig) \
                else parse_dataset_dict(spec.dataset_config)
            dataset_path = os.path.join(run_dir, "dataset.toml")
            if dataset.ok:
                dataset_text = render_toml(dataset)

    selectors = dict(spec.selectors or {})
    args: list[str] = []
    build_error: Optional[SetupError] = None
    try:
        args = cat.build_args(arch.id, spec.step, dataset_config=dataset_path, models=spec.models,
                              selectors=selectors, options=options, output_dir=spec.output_dir,
                              output_name=spec.output_name)
    except SetupError as exc:
        build_error = exc
    command_flags = [a.partition("=")[0] for a in args if a.startswith("--")]

    report = probe_report
    if report is None and use_probe and install is not None:
        report = _cached_probe(install, settings, probe_cache_dir)
    problems.extend(preflight(arch, spec.step, settings=settings, install=install, dataset=dataset,
                              models=spec.models, selectors=selectors, options=options,
                              extra_args=spec.extra_args, output_dir=spec.output_dir,
                              output_name=spec.output_name, overwrite=overwrite, probe_report=report,
                              command_flags=command_flags, check_caches=check_caches))
    if build_error is not None and not any(p.is_error for p in problems):
        # Pre-flight states the same rules with input names and fixes; build_args' own
        # text is the fallback for anything it knows that pre-flight does not.
        for text in build_error.context.get("problems") or [build_error.message]:
            problems.append(Problem("options", str(text), build_error.hint or "fix the input named"))
    extra: list[str] = []
    if spec.extra_args:
        from .extra_args import check_extra_args

        extra, _ = check_extra_args(spec.extra_args, arch.scripts[spec.step], command_flags=command_flags)

    command = None
    if install is not None and not any(p.is_error for p in problems):
        try:
            if spec.step == cat.TRAIN and launcher == "accelerate":
                command = accelerate_command(install, arch.scripts[spec.step], [*args, *extra], settings,
                                             AccelerateOptions(**(spec.accelerate or {})))
            else:
                command = python_command(install, arch.scripts[spec.step], [*args, *extra], settings)
        except (SetupError, TypeError) as exc:
            problems.append(Problem("command", getattr(exc, "message", str(exc)),
                                    getattr(exc, "hint", "") or "check the accelerate options and the "
                                    "musubi-tuner checkout; the command could not be built"))
    if any(p.is_error for p in problems) or command is None:
        raise fail()

    suffix = arch.suffix(selectors)
    expected: list[str] = []
    patterns: list[tuple[str, str]] = []
    lock_dirs: list[str] = []
    cwd = install.root
    writes_lora = spec.step in (cat.TRAIN, cat.CONVERT) and bool(spec.output_dir)
    if spec.step in (cat.TRAIN, cat.CONVERT):
        out_dir = os.path.abspath(os.path.join(cwd, os.path.expanduser(spec.output_dir or "")))
        expected.append(os.path.join(out_dir, f"{spec.output_name}.safetensors"))
        lock_dirs.append(out_dir)
    elif dataset is not None:
        ending = f"_{suffix}_te.safetensors" if spec.step == cat.CACHE_TEXT_ENCODER else f"_{suffix}.safetensors"
        for i in range(len(dataset.datasets)):
            cache = dataset.cache_directory(i)
            if cache:
                folder = os.path.abspath(os.path.join(cwd, os.path.expanduser(cache)))
                patterns.append((folder, ending))
                expected.append(os.path.join(folder, "*" + ending))
                lock_dirs.append(folder)
    return Plan(arch=arch.id, step=spec.step, script=arch.scripts[spec.step], command=command,
                dataset_config=dataset_path, run_dir=run_dir, expected_outputs=expected,
                warnings=[p for p in problems if not p.is_error], lock_dirs=_unique_dirs(lock_dirs),
                output_dir=os.path.abspath(os.path.join(cwd, spec.output_dir)) if writes_lora else None,
                output_name=spec.output_name if writes_lora else None, overwrite=overwrite,
                dataset_text=dataset_text,
                cache_patterns=patterns,
                timeout=getattr(settings, "command_timeout", 0) or None,
                stall_timeout=getattr(settings, "stall_timeout", 0) or None)


def _unique_dirs(dirs: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for d in dirs:
        key = os.path.normcase(os.path.realpath(d))
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _cached_probe(install: Any, settings: Any, cache_dir: Optional[str]) -> Any:
    try:
        from .probe import probe
    except ImportError:  # pragma: no cover - probe is part of the pack
        return None
    try:
        return probe(install, settings, cache_dir=cache_dir or _probe_cache_dir())
    except (SetupError, OSError):
        return None  # the probe is an extra check; launch-time errors still surface


def _probe_cache_dir() -> str:
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
        return os.path.join(base, "musubi-tuner-nodes", "cache")
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "musubi-tuner-nodes")


# ---------------------------------------------------------------- locks

class RunLocked(ConfigError):
    """Another run is writing to the same folder."""

    reference = "run-locked"


def _process_start(pid: int) -> Optional[float]:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # psutil missing, no such process, access denied
        return None


def _pid_alive(pid: int) -> bool:
    try:
        import psutil

        return psutil.pid_exists(pid)
    except ImportError:  # pragma: no cover - psutil is a runtime dependency
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True


class RunLock:
    """A lock file (``.musubi-tuner-nodes.lock``: pid, process start time, host, run
    folder) in each folder a run writes to. A lock whose process is gone (or whose pid was
    reused by another process) is stale and taken over; a live one refuses the new run."""

    def __init__(self, dirs: Sequence[str], run_dir: str) -> None:
        self.dirs = list(dirs)
        self.run_dir = run_dir
        self.held: list[str] = []
        self.token = uuid.uuid4().hex
        self.info = {"pid": os.getpid(), "started": _process_start(os.getpid()), "host": socket.gethostname(),
                     "run_dir": run_dir, "token": self.token, "time": time.time()}

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            for folder in self.dirs:
                self.held.append(self._acquire_one(folder))
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        for path in reversed(self.held):
            holder = _read_lock(path)
            if holder is not None and holder.get("token") == self.token:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        self.held = []

    def _acquire_one(self, folder: str) -> str:
        path = os.path.join(folder, LOCK_NAME)
        if not os.path.isdir(folder):
            os.makedirs(folder, exist_ok=True)
        data = json.dumps(self.info).encode("utf-8")
        for _ in range(5):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(path)
                if _lock_is_live(path, holder):
                    who = f"process {holder.get('pid')} on {holder.get('host')}" if holder else "another run"
                    run = holder.get("run_dir") if holder else None
                    raise RunLocked(
                        f"another run ({who}) is writing to {folder}; this run was refused and touched nothing",
                        hint="wait for it to finish (or cancel it)"
                             + (f"; its log is in {run}" if run else "")
                             + f"; if no run is active, delete {path}")
                _take_over(path, holder)
                continue
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            except BaseException:
                # A lock we could not fill in (disk full) would refuse every run here
                # for its grace time; it was never ours to keep.
                try:
                    os.unlink(path)
                except OSError:
                    pass
                raise
            return path
        raise RunLocked(f"could not lock {folder}: the lock file keeps changing", hint="try again")


def _read_lock(path: str) -> Optional[dict[str, Any]]:
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _lock_is_live(path: str, holder: Optional[dict[str, Any]]) -> bool:
    if holder is None:
        # Unreadable: either being written this instant or garbage. Trust it briefly.
        try:
            return time.time() - os.path.getmtime(path) < 10
        except OSError:
            return False
    if holder.get("host") != socket.gethostname():
        return True  # a folder shared over the network: we cannot see that process
    pid = holder.get("pid")
    if not isinstance(pid, int) or not _pid_alive(pid):
        return False
    started, now_started = holder.get("started"), _process_start(pid)
    if isinstance(started, (int, float)) and now_started is not None and abs(now_started - started) > 1.0:
        return False  # the pid now belongs to another process
    return True


def _take_over(path: str, stale: Optional[dict[str, Any]]) -> None:
    # Rename, then check we moved the stale lock and not one a competitor just created.
    moved = f"{path}.{uuid.uuid4().hex}.stale"
    try:
        os.replace(path, moved)
    except OSError:
        return
    # Also when the stale lock was unreadable: a readable one now means a competitor's.
    if _read_lock(moved) != stale:
        try:
            os.link(moved, path)  # put the competitor's lock back (fails if one exists again)
        except OSError:
            pass
    try:
        os.unlink(moved)
    except OSError:
        pass


# ---------------------------------------------------------------- running

def _files_produced(plan: Plan, since: float) -> list[str]:
    out: list[str] = []
    if plan.output_dir and plan.output_name:
        from .preflight import existing_outputs

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


def command_text(plan: Plan) -> str:
    """command.txt: the same command for POSIX shells, cmd.exe and PowerShell."""
    from .command import format_command

    parts = [f"# musubi-tuner-nodes: {plan.arch} {plan.step}, run folder {plan.run_dir}",
             "# Paste the block for your shell to run the same command again.", ""]
    for title, shell in SHELLS:
        parts += [f"# --- {title} ---", format_command(plan.command, shell), ""]
    return "\n".join(parts)


def execute_plan(plan: Plan, *, on_event: Optional[Callable[[Any], None]] = None,
                 should_cancel: Optional[Callable[[], bool]] = None, check: bool = False) -> RunResult:
    """Run a plan: lock its output folders, create the run folder, run, write result.json.

    Refuses (RunLocked) when another live run holds one of the folders, and (ConfigError)
    when the LoRA now exists and overwrite was not asked for; in both cases nothing is
    written. With ``check`` a failed run raises its RunError (result.json is written first);
    a run that exits 0 without its output is ``no_output`` and raises TrainerFailed.
    """
    from .preflight import existing_outputs
    from .process import run

    run_dir = Path(plan.run_dir)
    # A run folder that is also a locked output folder (the nodes train into their run folder)
    # is made before the lock, which would make it otherwise; making it is what claims it.
    early = any(_same_dir(plan.run_dir, d) for d in plan.lock_dirs)
    if early:
        _make_run_dir(run_dir)
    with contextlib.ExitStack() as stack:
        claim = stack.enter_context(_Claim(run_dir if early else None))
        stack.enter_context(RunLock(plan.lock_dirs, plan.run_dir))
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
            stack.enter_context(RunLock([str(run_dir)], plan.run_dir))
        claim.keep()
        write_atomic(run_dir / COMMAND_FILE, command_text(plan), overwrite="never")
        write_atomic(run_dir / PLAN_FILE, json.dumps(plan.to_dict(), indent=2, ensure_ascii=False) + "\n",
                     overwrite="never")
        if plan.dataset_text is not None and plan.dataset_config:
            write_atomic(plan.dataset_config, plan.dataset_text, overwrite="never")
        elif plan.dataset_config and os.path.isfile(plan.dataset_config):
            ext = ".json" if plan.dataset_config.lower().endswith(".json") else ".toml"
            shutil.copyfile(plan.dataset_config, run_dir / f"dataset{ext}")

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
        finished = time.time()
        produced = _files_produced(plan, started)
        status = _status(result, produced, plan, error)
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
        if error is not None:
            raise error
        assert result is not None
        if status == "no_output" and check:
            raise TrainerFailed(f"{plan.step} exited 0 but produced no output", result=result,
                                hint=result.failure_hint or "", kind="no_output")
        return result


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
    from .config import load_settings

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
        from ..parsers.events import to_dict
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

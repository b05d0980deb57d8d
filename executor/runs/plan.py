"""Plans: the exact command one musubi step will run, checked before launch.

``make_plan`` turns a spec (architecture, step, dataset, models, options, ...) into a Plan
after pre-flight; ``execute.execute_plan`` runs it in a run folder of its own, ``cli``
backs ``python -m executor plan``. ``command_text`` is the command.txt of a run folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional, Sequence, Union

from ..errors import ConfigError, PreflightError, SetupError
from ..musubi.dataset import DatasetConfig, load_dataset_config, parse_dataset_dict, render_toml
from ..problems import WARNING, Problem
from .folders import default_runs_dir, unique_run_dir

__all__ = ["PlanSpec", "Plan", "make_plan", "command_text", "LAUNCHERS"]

PACK_OPTIONS = ("overwrite",)
LAUNCHERS = ("accelerate", "python")
_PATH_OPTIONS = ("resume", "network_weights", "sample_prompts", "logging_dir")
SHELLS = (("POSIX shells (bash, zsh, sh)", "posix"), ("Windows cmd.exe", "cmd"),
          ("Windows PowerShell", "powershell"))


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
                value = absolute(options[key])
                # resume may also name a run by its id (a folder name, not a path here)
                keep = key == "resume" and isinstance(value, str) and not os.path.exists(value) \
                    and not os.path.isabs(os.path.expanduser(str(options[key])))
                options[key] = options[key] if keep else value
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
    # training: what the state record keeps about the run (``saves.TrainSaves``), and the
    # continuation of an earlier run it is (``continuation.Continuation``), if any
    record: Optional[dict[str, Any]] = None
    continuation: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``python -m executor plan`` prints (environment secrets redacted)."""
        from ..process.command import REDACTED, _redacted_argv, is_secret_name

        return {
            "architecture": self.arch, "step": self.step, "script": self.script,
            "argv": list(_redacted_argv(self.command.argv)), "cwd": self.command.cwd,
            "env": {k: (REDACTED if is_secret_name(k) else v) for k, v in self.command.added_env.items()},
            "removed_env": list(self.command.removed_env),
            "dataset_config": self.dataset_config, "run_dir": self.run_dir,
            "expected_outputs": self.expected_outputs,
            "warnings": [p.to_dict() for p in self.warnings],
            **({"continues": self.continuation.link()} if self.continuation is not None else {}),
        }


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
    from ..musubi import catalogue as cat
    from ..process.command import AccelerateOptions, accelerate_command, python_command
    from ..musubi.preflight import check_gpu_ids, preflight

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
        from ..setup.discovery import resolve_install

        try:
            install = resolve_install(settings)
        except SetupError as exc:
            problems.append(Problem("musubi_tuner", exc.message, exc.hint or "check the settings file"))

    options = dict(spec.options or {})
    overwrite = bool(spec.overwrite) or bool(options.pop("overwrite", False))
    keep_states = options.pop("keep_states", None)
    # resume names a state the pack recorded (resume.lookup_source); what musubi gets is a
    # verified copy of it, added to the command below with what is left of the run's plan
    resume_value = options.pop("resume", None) if spec.step == cat.TRAIN else None
    source: Any = None
    if resume_value not in (None, ""):
        from .resume import ResumeRefused, lookup_source

        try:
            source = lookup_source(str(resume_value))
        except ResumeRefused as exc:
            problems.append(Problem("options.resume", exc.message, exc.hint))
    if spec.run_dir:
        run_dir = os.path.abspath(os.path.expanduser(spec.run_dir))
        if os.path.exists(run_dir):
            problems.append(Problem("run_dir", f"the run folder {run_dir} already exists",
                                    "give a folder that does not exist yet; a run never writes into an "
                                    "earlier run's folder"))
    else:
        runs_dir = spec.runs_dir or default_runs_dir()
        run_dir = unique_run_dir(runs_dir, spec.step, spec.output_name or spec.name or arch.id)
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
    accelerate = dict(spec.accelerate or {})
    if spec.step == cat.TRAIN:
        # Settings the chosen files call for (Wan's fp16 weights need fp16 mixed precision),
        # where the user set none; accelerate's precision then follows musubi's.
        from ..musubi.preflight_models import file_options

        for key, value in file_options(arch, spec.models, install.root if install else None).items():
            if options.get(key) is None:
                options[key] = value
                if key == "mixed_precision":
                    accelerate["mixed_precision"] = value
    args: list[str] = []
    build_error: Optional[SetupError] = None
    try:
        args = cat.build_args(arch.id, spec.step, dataset_config=dataset_path, models=spec.models,
                              selectors=selectors, options=options, output_dir=spec.output_dir,
                              output_name=spec.output_name)
    except SetupError as exc:
        build_error = exc
    record: Optional[dict[str, Any]] = None
    continuation: Any = None
    if spec.step == cat.TRAIN and build_error is None:
        record = _train_record(spec, arch, selectors, options, args, dataset, launcher, keep_states)
        if source is not None:
            args, continuation = _continue(source, spec, record, run_dir, selectors, dataset_path, options,
                                           problems)
    command_flags = [a.partition("=")[0] for a in args if a.startswith("--")]

    report = probe_report
    if report is None and use_probe and install is not None:
        report = _cached_probe(install, settings, probe_cache_dir)
    problems.extend(preflight(arch, spec.step, settings=settings, install=install, dataset=dataset,
                              models=spec.models, selectors=selectors, options=options,
                              extra_args=spec.extra_args, output_dir=spec.output_dir,
                              output_name=spec.output_name, overwrite=overwrite, probe_report=report,
                              command_flags=command_flags, check_caches=check_caches))
    if launcher == "accelerate" and spec.step == cat.TRAIN:
        problems.extend(check_gpu_ids((spec.accelerate or {}).get("gpu_ids"), report))
    if build_error is not None and not any(p.is_error for p in problems):
        # Pre-flight states the same rules with input names and fixes; build_args' own
        # text is the fallback for anything it knows that pre-flight does not.
        for text in build_error.context.get("problems") or [build_error.message]:
            problems.append(Problem("options", str(text), build_error.hint or "fix the input named"))
    extra: list[str] = []
    if spec.extra_args:
        from ..musubi.extra_args import check_extra_args

        extra, _ = check_extra_args(spec.extra_args, arch.scripts[spec.step], command_flags=command_flags)

    command = None
    if install is not None and not any(p.is_error for p in problems):
        try:
            if spec.step == cat.TRAIN and launcher == "accelerate":
                command = accelerate_command(install, arch.scripts[spec.step], [*args, *extra], settings,
                                             AccelerateOptions(**accelerate))
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
                stall_timeout=getattr(settings, "stall_timeout", 0) or None,
                record=record, continuation=continuation)


def _train_record(spec: PlanSpec, arch: Any, selectors: Mapping[str, Any], options: Mapping[str, Any],
                  args: Sequence[str], dataset: Optional[DatasetConfig], launcher: str,
                  keep_states: Any) -> dict[str, Any]:
    """What the state record keeps about a training run: enough to check and rebuild a
    continuation from the record alone (the dataset as canonical TOML, the spec, the args)."""
    import hashlib
    import shlex

    from .continuation import parse_args

    toml = render_toml(dataset) if dataset is not None and dataset.ok else None
    processes = int((spec.accelerate or {}).get("num_processes") or 1) if launcher == "accelerate" else 1
    try:
        tokens = list(spec.extra_args) if isinstance(spec.extra_args, list) else shlex.split(spec.extra_args or "")
    except ValueError:  # pre-flight reports unclosed quotes
        tokens = []
    extra = [t.partition("=")[0] for t in tokens if isinstance(t, str) and t.startswith("--")]
    return {
        "architecture": arch.id,
        "selectors": {k: str(v) for k, v in arch.resolve_selectors(selectors).items()},
        "dataset_digest": hashlib.sha256(toml.encode("utf-8")).hexdigest() if toml else None,
        "dataset_toml": toml, "processes": processes, "args": parse_args(args), "extra_flags": extra,
        "keep_states": keep_states,
        "spec": {"architecture": arch.id, "models": dict(spec.models or {}), "selectors": dict(selectors),
                 "options": {**options, **({"keep_states": keep_states} if keep_states else {})},
                 "extra_args": spec.extra_args, "output_name": spec.output_name,
                 "accelerate": dict(spec.accelerate or {}), "launcher": launcher, "name": spec.name},
    }


def _continue(source: Any, spec: PlanSpec, record: dict[str, Any], run_dir: str, selectors: Mapping[str, Any],
              dataset_path: Optional[str], options: Mapping[str, Any], problems: list[Problem]) -> tuple[list[str], Any]:
    """The command line of a continuation of ``source`` (run, state): the run's own output
    name for musubi, what is left of the plan, the schedule, and ``--resume`` the copy."""
    from ..musubi import catalogue as cat
    from .continuation import parse_args
    from .resume import ResumeRefused, plan_continuation

    run, state = source
    try:
        cont, overrides = plan_continuation(run, state, new=record, output_name=spec.output_name or "lora",
                                            run_dir=run_dir)
    except ResumeRefused as exc:
        problems.append(Problem("options.resume", exc.message, exc.hint))
        return [], None
    args = cat.build_args(spec.architecture, spec.step, dataset_config=dataset_path, models=spec.models,
                          selectors=selectors, options={**options, **overrides}, output_dir=spec.output_dir,
                          output_name=cont.raw_name) + ["--resume", cont.staging]
    problems.extend(Problem("options.resume", note, "", WARNING) for note in cont.notes)
    record["args"] = parse_args(args)
    record["origin_args"] = cont.origin_args
    return args, cont


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
        from ..setup.probe import probe
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

def command_text(plan: Plan) -> str:
    """command.txt: the same command for POSIX shells, cmd.exe and PowerShell."""
    from ..process.command import format_command

    parts = [f"# musubi-tuner-nodes: {plan.arch} {plan.step}, run folder {plan.run_dir}",
             "# Paste the block for your shell to run the same command again.", ""]
    for title, shell in SHELLS:
        parts += [f"# --- {title} ---", format_command(plan.command, shell), ""]
    return "\n".join(parts)



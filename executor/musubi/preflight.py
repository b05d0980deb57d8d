"""Pre-flight: every problem with a planned musubi step found at once, before anything runs.

Cheap checks only (stat, directory listings, 32-byte header sniffs, the cached venv probe):
no model is loaded, no musubi code runs, so a broken setup is rejected in well under a
second instead of after minutes of model loading. Each Problem names the input and the
fix. Imports only the standard library, its own room and ``setup`` (the install and its
probe). The dataset checks are ``preflight_dataset``; file helpers are ``files``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from .dataset import DatasetConfig, load_dataset_config
from ..errors import SetupError
from .extra_args import check_extra_args
from .files import MODEL_EXTENSIONS, check_output_name, existing_outputs, free_name, resolve
from .preflight_dataset import check_datasets
from .preflight_models import check_model_file, file_options
from .reads import dataset_reads, model_reads, option_reads, read_problems
from ..problems import ERROR, WARNING, Problem

__all__ = ["preflight", "effective_options", "check_gpu_ids"]

# Pack-level options: consumed by plans, never passed to musubi.
PACK_OPTIONS = ("overwrite",)


def _steps():
    from . import catalogue

    return catalogue


# ---------------------------------------------------------------- small helpers

def _is_set(value: Any) -> bool:
    return value is not None and value is not False and value != ""


def effective_options(arch: Any, step: str, options: Optional[Mapping[str, Any]],
                      selectors: Optional[Mapping[str, Any]] = None, *, models: Optional[Mapping[str, Any]] = None,
                      cwd: Optional[str] = None) -> dict[str, Any]:
    """The options a step really gets, as ``build_args`` merges them: for training the
    recommended settings and those the chosen ``models`` call for (Wan fp16 weights: fp16
    mixed precision), for caching the cache defaults, overridden by the user's
    (None/False/"" unsets)."""
    cat = _steps()
    out: dict[str, Any] = {}
    try:
        if step == cat.TRAIN:
            out.update(arch.recommended_for(selectors))
            out.update(file_options(arch, models, cwd))
        else:
            out.update(arch.cache_recommended.get(step, {}))
    except SetupError:
        pass  # bad selectors are reported on their own
    out.update(options or {})
    return {k: v for k, v in out.items() if _is_set(v)}


# ---------------------------------------------------------------- the checks

@dataclass
class _Context:
    arch: Any
    step: str
    cwd: Optional[str]
    problems: list[Problem]
    selectors: dict[str, Any]
    check_caches: bool = True
    roots: tuple[str, ...] = ()  # settings.output_roots: where steps may write (empty: anywhere)

    def error(self, input_name: str, message: str, fix: str) -> None:
        self.problems.append(Problem(input_name, message, fix, ERROR))

    def warn(self, input_name: str, message: str, fix: str) -> None:
        self.problems.append(Problem(input_name, message, fix, WARNING))


def preflight(arch: Any, step: str, *, settings: Any = None, install: Any = None,
              dataset: Union[DatasetConfig, str, os.PathLike, None] = None,
              models: Optional[Mapping[str, str]] = None, selectors: Optional[Mapping[str, Any]] = None,
              options: Optional[Mapping[str, Any]] = None,
              extra_args: Union[str, Sequence[str], None] = None,
              output_dir: Optional[str] = None, output_name: Optional[str] = None,
              overwrite: bool = False, probe_report: Any = None,
              command_flags: Iterable[str] = (), flag_facts: Optional[Mapping[str, Any]] = None,
              check_caches: bool = True) -> list[Problem]:
    """Check one planned step and return every problem (errors and warnings) at once.

    ``arch``: an ``Architecture`` or its id. ``install``: a ``MusubiInstall``; when None and
    ``settings`` is given it is resolved here (a missing venv becomes a problem). Relative
    paths are checked the way musubi opens them: against its working folder (the checkout).
    ``probe_report``: a cached ``probe.ProbeReport`` for the attention / bitsandbytes checks
    (skipped when None). ``command_flags``: flags the pack's own command has (extra
    arguments may not repeat them). ``options`` may hold ``overwrite`` (a pack option).
    ``check_caches=False`` skips only the "training before caching" check (a dry run of a
    chain whose cache steps have not run yet).
    """
    cat = _steps()
    problems: list[Problem] = []
    if isinstance(arch, str):
        try:
            arch = cat.get_architecture(arch)
        except SetupError as exc:
            return [Problem("architecture", exc.message, exc.hint or "pick a listed architecture")]
    if install is None and settings is not None:
        install = _check_install(settings, problems)
    ctx = _Context(arch, step, install.root if install is not None else None, problems, {},
                   check_caches=check_caches, roots=tuple(getattr(settings, "output_roots", ()) or ()))

    script = arch.scripts.get(step)
    if script is None:
        ctx.error("step", f"{arch.display_name} has no {step} step", f"use one of: {', '.join(arch.scripts)}")
        return problems
    if install is not None:
        path = os.path.join(install.package_dir, *script.split("/"))
        if not os.path.isfile(path):
            ctx.error("musubi_tuner", f"the checkout {install.root} has no {script} ({path} is missing)",
                      "update the checkout to musubi-tuner v0.3.4 or later (git pull), "
                      "or point root_path at the right checkout")

    user_options = dict(options or {})
    overwrite = bool(overwrite) or bool(user_options.pop("overwrite", False))
    resolved = _check_selectors(ctx, selectors)
    if resolved is not None:
        ctx.selectors = resolved
    suffix = arch.suffix(resolved) if resolved is not None else None
    models = {k: v for k, v in (models or {}).items() if v}
    opts = effective_options(arch, step, user_options, resolved, models=models, cwd=ctx.cwd)
    if step == cat.CONVERT:
        _check_convert(ctx, models)
    else:
        _check_models(ctx, models, opts)
        if resolved is not None:
            _check_option_rules(ctx, user_options, opts, models)

    config: Optional[DatasetConfig] = None
    if step != cat.CONVERT:
        if dataset is None:
            ctx.error("dataset_config", "no dataset config",
                      "give the dataset TOML (or build one with the dataset node)")
        else:
            config = dataset if isinstance(dataset, DatasetConfig) else load_dataset_config(dataset)
            problems.extend(config.problems)
            if resolved is not None:
                check_datasets(ctx, config, suffix)

    if step in (cat.TRAIN, cat.CONVERT):
        _check_output(ctx, settings, output_dir, output_name, overwrite or _is_set(opts.get("resume")))
    if step == cat.TRAIN:
        _check_train_options(ctx, opts, suffix, config)
    if probe_report is not None:
        _check_probe(ctx, probe_report, opts)

    if extra_args:
        _, extra_problems = check_extra_args(extra_args, script, command_flags=command_flags, facts=flag_facts)
        problems.extend(extra_problems)
    if getattr(settings, "read_roots", ()):
        # What musubi will read (and may echo into the log every client sees) stays inside read_roots.
        reads = model_reads(models, ctx.cwd) + option_reads(opts, ctx.cwd)
        if config is not None:
            reads += dataset_reads(config, ctx.cwd)
        problems.extend(read_problems(reads, settings))
    return _dedupe(problems)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _check_install(settings: Any, problems: list[Problem]) -> Any:
    from ..setup.discovery import resolve_install

    try:
        return resolve_install(settings)
    except SetupError as exc:
        problems.append(Problem("musubi_tuner", exc.message, exc.hint or "set musubi_tuner.venv_path / root_path"))
        return None


def _check_selectors(ctx: _Context, selectors: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    try:
        return ctx.arch.resolve_selectors(selectors)
    except SetupError as exc:
        ctx.error("selectors", exc.message, exc.hint or "pick a listed value")
        return None


def _check_models(ctx: _Context, models: Mapping[str, str], opts: Mapping[str, Any]) -> None:
    arch, step = ctx.arch, ctx.step
    known = {m.name: m for m in arch.models}
    for name in models:
        if name not in known:
            ctx.error(f"models.{name}", f"{arch.display_name} has no model input {name!r}",
                      f"use one of: {', '.join(known) or 'none'}")
    # Sampling during training needs the VAE and text encoders the train script loads for it.
    sampling = step == _steps().TRAIN and _is_set(opts.get("sample_prompts"))
    for m in arch.models:
        value = models.get(m.name)
        label = m.label or m.name
        if not value:
            if m.default:
                continue  # a Hugging Face id musubi fetches itself
            if m.required(step, ctx.selectors):
                ctx.error(f"models.{m.name}", f"{label} is required for {step.replace('_', ' ')}",
                          f"pick the {label} file (ComfyUI folder models/{m.folder})")
            elif sampling and m.sampling and step in m.steps and m.folder in ("vae", "text_encoders"):
                ctx.error(f"models.{m.name}", f"sample prompts are set, and sampling needs the {label}",
                          f"pick the {label} (models/{m.folder}), or remove options.sample_prompts")
            continue
        if step not in m.steps:
            continue  # one models dict serves all steps
        _check_model_value(ctx, f"models.{m.name}", label, value, m.kind, m.folder, m.name, opts)


def _check_convert(ctx: _Context, models: Mapping[str, str]) -> None:
    conversion = getattr(ctx.arch, "lora_conversion", None)
    kind = getattr(conversion, "kind", "")
    if kind in ("none", "not_supported", "key_rename"):
        why = {"none": "its LoRAs load in ComfyUI as they are",
               "not_supported": "ComfyUI has no loader for this model",
               "key_rename": "the pack renames the keys itself, no musubi script is needed"}[kind]
        ctx.error("step", f"{ctx.arch.display_name} has no LoRA conversion step: {why}", "skip the convert step")
        return
    value = models.get("lora")
    if not value:
        ctx.error("models.lora", "no LoRA to convert", "give the trained LoRA file (.safetensors)")
        return
    _check_model_value(ctx, "models.lora", "LoRA", value, "file", "loras", "lora", {})


def _check_model_value(ctx: _Context, input_name: str, label: str, value: Any, kind: str, folder: str,
                       model: str, opts: Mapping[str, Any]) -> None:
    if not isinstance(value, str):
        ctx.error(input_name, f"expected a path, got {value!r}", f"pick the {label} file")
        return
    if "\x00" in value:
        ctx.error(input_name, "the path contains a NUL character", "pick the file again")
        return
    if value.startswith("-"):
        ctx.error(input_name, f"{value!r} starts with '-', so musubi would read it as a flag",
                  "use the full path of the file")
        return
    path = resolve(value, ctx.cwd)
    if kind == "hf_id" and not os.path.exists(path) and re.match(r"^[\w.-]+/[\w.-]+$", value) \
            and not value.lower().endswith(MODEL_EXTENSIONS):
        return  # a Hugging Face id: fetched (or read from the HF cache) by musubi itself
    if not os.path.isabs(os.path.expanduser(value)):
        ctx.warn(input_name, f"relative path {value!r} is opened from musubi's working folder {ctx.cwd}",
                 "use an absolute path")
    if not os.path.exists(path):
        ctx.error(input_name, f"{label} not found: {path}",
                  f"check the path, or pick the file from ComfyUI's models/{folder} folder")
        return
    if os.path.isdir(path):
        if kind == "file":
            ctx.error(input_name, f"{path} is a folder; {label} must be a single file",
                      f"pick the model file inside it ({', '.join(MODEL_EXTENSIONS[:2])})")
        else:
            check_model_file(ctx, input_name, model, path, opts)
        return
    ext = os.path.splitext(path)[1].lower()
    if ext not in MODEL_EXTENSIONS and ext != ".gguf":
        ctx.warn(input_name, f"{os.path.basename(path)} has an unusual extension for a model",
                 f"musubi expects {', '.join(MODEL_EXTENSIONS)}")
    # The header says what the file is (and whether it is whole); never the tensor data.
    check_model_file(ctx, input_name, model, path, opts)


def _check_output(ctx: _Context, settings: Any, output_dir: Optional[str], output_name: Optional[str],
                  allowed_to_replace: bool) -> None:
    ctx.problems.extend(check_output_name(output_name))
    if not output_dir:
        ctx.error("output_dir", "no output folder", "choose where the LoRA is saved")
        return
    if not isinstance(output_dir, str) or "\x00" in output_dir:
        ctx.error("output_dir", "not a usable path", "choose the output folder again")
        return
    if output_dir.startswith("-"):
        ctx.error("output_dir", f"{output_dir!r} starts with '-', so musubi would read it as a flag",
                  "use an absolute path")
        return
    folder = os.path.abspath(resolve(output_dir, ctx.cwd))
    if os.path.isfile(folder):
        ctx.error("output_dir", f"{folder} is a file, not a folder", "choose a folder")
        return
    roots = tuple(getattr(settings, "output_roots", ()) or ())
    if roots:
        real = os.path.normcase(os.path.realpath(folder))
        inside = [r for r in roots if real == os.path.normcase(os.path.realpath(r))
                  or real.startswith(os.path.normcase(os.path.realpath(r)).rstrip(os.sep) + os.sep)]
        if not inside:
            ctx.error("output_dir", f"{folder} is outside the allowed output folders ({', '.join(roots)})",
                      "choose a folder inside one of them, or add it to output_roots in the settings file")
    if isinstance(output_name, str) and not check_output_name(output_name) and not allowed_to_replace:
        found = existing_outputs(folder, output_name)
        if found:
            ctx.error("output_name", f"{len(found)} LoRA file(s) named {output_name} already exist in {folder} "
                      f"({os.path.basename(found[0])}); training would overwrite them",
                      f"use a new output_name such as {free_name(folder, output_name)!r}, or set overwrite "
                      "(or resume) explicitly")


def _label(key: str) -> str:
    return f"model {key[6:]}" if key.startswith("model:") else key


def _check_option_rules(ctx: _Context, user: Mapping[str, Any], opts: Mapping[str, Any],
                        models: Mapping[str, str]) -> None:
    """The catalogue's option rules (musubi's, kept as data): unknown options, options this
    architecture has no use for, allowed values, requires and conflicts."""
    import difflib

    cat = _steps()
    arch, step, values = ctx.arch, ctx.step, ctx.selectors
    accepted = arch.options_for(step, values)
    anywhere = frozenset().union(*(arch.options_for(s, values) for s in arch.step_options))
    for name, value in user.items():
        if not _is_set(value):
            continue
        if name not in cat.OPTIONS:
            close = difflib.get_close_matches(name, list(cat.OPTIONS), n=1)
            ctx.error(f"options.{name}", "unknown option",
                      f"did you mean {close[0]}?" if close else "remove it (or pass a musubi flag in extra_args)")
        elif name not in anywhere:
            ctx.error(f"options.{name}", f"{arch.display_name} does not use {name}", f"remove {name}")
    for name, allowed in arch.allowed_values.items():
        if name in accepted and name in opts and opts[name] not in allowed:
            ctx.error(f"options.{name}", f"{arch.display_name} supports {name} "
                      f"{' or '.join(map(str, allowed))} only, not {opts[name]!r}",
                      f"set {name} to {' or '.join(map(str, allowed))}")

    def present(key: str) -> bool:
        return key[6:] in models if key.startswith("model:") else key in opts

    def where(key: str) -> str:
        return f"models.{key[6:]}" if key.startswith("model:") else f"options.{key}"

    for option, needed in tuple(arch.requires) + (("fp8_scaled", "fp8_base"),):
        if (option.startswith("model:") or option in accepted) and present(option) and not present(needed):
            if (option, needed) == ("fp8_scaled", "fp8_base"):
                message = "fp8_scaled needs fp8_base (musubi: fp8_scaled requires fp8_base)"
            else:
                message = f"{_label(option)} needs {_label(needed)} for {arch.display_name}"
            fix = (f"pick the {needed[6:]} model" if needed.startswith("model:") else f"also set {needed}")
            ctx.error(where(option), message, f"{fix}, or unset {_label(option)}")
    for a, b in arch.conflicts:
        if present(a) and present(b) and (a in accepted or b in accepted):
            ctx.error(where(a), f"{_label(a)} cannot be used together with {_label(b)} in {arch.display_name}",
                      f"unset {_label(a)} or {_label(b)}")
    if step == cat.TRAIN:
        attention = opts.get("attention")
        flags = getattr(cat, "ATTENTION_FLAGS", {})
        if attention is not None and attention not in flags:
            ctx.error("options.attention", f"attention {attention!r} is not a musubi backend",
                      f"use one of: {', '.join(flags)}")
        for name in getattr(cat, "_TRAIN_NEEDS", ()):
            if name not in opts:
                hint = ' e.g. "adamw8bit" (musubi\'s default is an empty name, which crashes)' \
                    if name == "optimizer_type" else ""
                ctx.error(f"options.{name}", f"{name} is needed for training", f"set options.{name}{hint}")


def _check_train_options(ctx: _Context, opts: Mapping[str, Any], suffix: Optional[str],
                         config: Optional[DatasetConfig]) -> None:
    """Runtime rules of musubi's trainers that the catalogue does not hold as data."""
    arch = ctx.arch
    who = arch.display_name
    swap = opts.get("blocks_to_swap")
    if swap is not None:
        limit = arch.max_blocks_to_swap(ctx.selectors)
        if not isinstance(swap, int) or isinstance(swap, bool) or swap < 0:
            ctx.error("options.blocks_to_swap", f"expected a whole number, got {swap!r}", "set 0 to disable")
        elif limit is not None and swap > limit:
            ctx.error("options.blocks_to_swap", f"{who} can swap at most {limit} blocks, {swap} requested "
                      f"(musubi: Cannot swap more than {limit} blocks)", f"set blocks_to_swap to {limit} or less")
    if _is_set(opts.get("block_swap_h2d_only")) and not _is_set(opts.get("gradient_checkpointing")):
        ctx.error("options.block_swap_h2d_only", "block_swap_h2d_only needs gradient_checkpointing",
                  "also set gradient_checkpointing")
    if _is_set(opts.get("persistent_data_loader_workers")) and opts.get("max_data_loader_n_workers") in (0, "0"):
        ctx.error("options.persistent_data_loader_workers", "persistent workers need at least one data loader "
                  "worker (max_data_loader_n_workers is 0)",
                  "unset persistent_data_loader_workers, or set max_data_loader_n_workers to 1 or more")
    warmup = opts.get("lr_warmup_steps")
    if str(opts.get("lr_scheduler", "constant")) == "constant" and warmup not in (None, 0, "0", 0.0, "0%"):
        ctx.error("options.lr_warmup_steps", "the constant scheduler takes no warmup steps "
                  "(musubi: does not require num_warmup_steps)",
                  'use lr_scheduler = "constant_with_warmup", or set lr_warmup_steps to 0')
    if opts.get("log_with") in ("tensorboard", "all") and not _is_set(opts.get("logging_dir")):
        ctx.error("options.logging_dir", f"log_with {opts.get('log_with')} needs a logging folder",
                  "set logging_dir")
    attention = opts.get("attention")
    if attention == "sage_attn":
        ctx.error("options.attention", "SageAttention cannot be used for training (musubi refuses it)",
                  'use "sdpa" or "xformers"')
    for key, want_dir in (("resume", True), ("network_weights", False), ("sample_prompts", False)):
        value = opts.get(key)
        if not _is_set(value):
            continue
        if not isinstance(value, str) or value.startswith("-") or "\x00" in value:
            ctx.error(f"options.{key}", f"{value!r} is not a usable path", "give the full path")
            continue
        path = resolve(value, ctx.cwd)
        if not os.path.exists(path):
            what = "state folder" if want_dir else "file"
            ctx.error(f"options.{key}", f"{what} not found: {path}",
                      "give a *-state folder written by save_state" if want_dir else "check the path")
        elif want_dir and not os.path.isdir(path):
            ctx.error(f"options.{key}", f"{path} is a file; resume needs the state folder (...-state)",
                      "give the folder written by save_state; to continue from a LoRA file use network_weights")
        elif not want_dir and os.path.isdir(path):
            ctx.error(f"options.{key}", f"{path} is a folder, not a file", "pick the file")
    # HiDream-O1: the task must match the data, and two features need batches of one.
    if suffix == "ho1" and config is not None and config.datasets:
        task = ctx.selectors.get("task")
        has_control = any(ds.control_directory is not None for ds in config.datasets)
        if task == "t2i" and has_control:
            ctx.error("selectors.task", "the dataset has control images, which task t2i does not use "
                      "(musubi refuses the mismatch)", 'use task "i2i", or remove control_directory')
        if task == "i2i" or (attention == "flash_attn" and _is_set(swap) and swap):
            for i in range(len(config.datasets)):
                if config.value(i, "batch_size", 1) != 1:
                    ctx.error(f"datasets[{i}].batch_size", "HiDream-O1 i2i (and flash attention with block "
                              "swap) trains with batch size 1 only", "set batch_size = 1")


def check_gpu_ids(gpu_ids: Any, report: Any) -> list[Problem]:
    """accelerate's ``--gpu_ids`` against the GPUs the venv probe saw: each index must be below
    their count. Unknown (no probe, no CUDA in the probe) means nothing to check."""
    if not isinstance(gpu_ids, str) or gpu_ids.replace(" ", "") in ("", "all") or report is None:
        return []
    devices = tuple(getattr(report, "devices", ()) or ())
    if not getattr(report, "cuda_available", False) or not devices:
        return []
    ids = [int(i) for i in gpu_ids.replace(" ", "").split(",") if i.isdigit()]
    missing = [i for i in ids if i >= len(devices)]
    if not missing:
        return []
    seen = ", ".join(f"{n}: {name}" for n, name in enumerate(devices))
    return [Problem("accelerate.gpu_ids", f"gpu_ids {gpu_ids!r} names GPU {', '.join(map(str, missing))}, but the "
                    f"musubi venv sees {len(devices)} GPU(s) ({seen})",
                    f"use GPU numbers from 0 to {len(devices) - 1}, or all")]


def _check_probe(ctx: _Context, report: Any, opts: Mapping[str, Any]) -> None:
    try:
        from ..setup.probe import OPTIONAL_MODULES, attention_available
    except ImportError:  # pragma: no cover - probe is part of the pack
        return
    if getattr(report, "torch_version", None) is None:
        ctx.warn("musubi_tuner", "the venv probe could not import torch, so the attention backend was not checked",
                 "run `python -m executor check` to see what the venv is missing")
        return
    attention = opts.get("attention")
    if isinstance(attention, str) and attention:
        try:
            ok = attention_available(report, attention)
        except ValueError:
            ok = True  # an unknown name is the catalogue's to report
        if not ok:
            module = {"flash_attn": "flash_attn", "flash3": "flash_attn_interface", "xformers": "xformers",
                      "sage_attn": "sageattention"}.get(attention, attention)
            how = OPTIONAL_MODULES.get(module, ("", "", "install it"))[2]
            ctx.error("options.attention", f"attention {attention!r} is selected but {module} is not installed in "
                      "the musubi venv (musubi would fail at the first training step)",
                      f'use "sdpa", or {how.format(python="python", torch=report.torch_version)}')
    optimizer = str(opts.get("optimizer_type", "")).lower()
    if "8bit" in optimizer and report.optional.get("bitsandbytes") is None:
        ctx.error("options.optimizer_type", f"{opts.get('optimizer_type')} needs bitsandbytes, which is not "
                  "installed in the musubi venv", 'install bitsandbytes in that venv, or use optimizer_type "AdamW"')

"""The architecture catalogue: the table of every musubi-tuner v0.3.4 architecture
(``architectures.py``, shaped by ``schema.py``) and ``build_args``, which turns it into a
script's argument list. Per-architecture differences are data in ``ARCHITECTURES``, never code
branches. Callers import this module; it re-exports the table's names.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

from ..errors import ConfigError
from .architectures import ARCHITECTURES
from .schema import (ATTENTION_FLAGS, CACHE_LATENTS, CACHE_TEXT_ENCODER, CONVERT, OPTIONS, RESERVED_FLAGS, STEPS,  # noqa: F401 (re-exported)
                     TRAIN, Architecture, LoraConversion, ModelInput, Option, SampleSpec, Selector, SelectorValue,
                     Variant)

__all__ = [
    "CACHE_LATENTS", "CACHE_TEXT_ENCODER", "TRAIN", "CONVERT", "STEPS",
    "ModelInput", "Selector", "Option", "SampleSpec", "Variant", "LoraConversion", "Architecture",
    "ARCHITECTURES", "OPTIONS", "ATTENTION_FLAGS", "get_architecture", "build_args",
    "check_options",
]


def get_architecture(arch_id: str) -> Architecture:
    try:
        return ARCHITECTURES[arch_id]
    except KeyError:
        raise ConfigError(f"unknown architecture {arch_id!r}",
                          hint=f"use one of: {', '.join(ARCHITECTURES)}") from None


# --------------------------------------------------------------------------------------------
# Building arguments
# --------------------------------------------------------------------------------------------

# Training fails at runtime (not at argparse) without these; we refuse to build without them.
_TRAIN_NEEDS = ("attention", "optimizer_type", "learning_rate", "network_dim", "mixed_precision")


def _is_set(value: Any) -> bool:
    return value is not None and value is not False and value != ""


def _merged_options(arch: Architecture, step: str, values: Mapping[str, SelectorValue],
                    options: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """Recommended settings for the step, overridden by the user's (None/False unsets)."""
    merged: dict[str, Any] = dict(arch.recommended_for(values)) if step == TRAIN \
        else dict(arch.cache_recommended.get(step, {}))
    merged.update(options or {})
    return {k: v for k, v in merged.items() if _is_set(v)}


def check_options(arch_id: str, step: str, options: Optional[Mapping[str, Any]] = None,
                  selectors: Optional[Mapping[str, Any]] = None,
                  models: Optional[Mapping[str, str]] = None) -> list[str]:
    """Problems with the options of one step (empty when everything is usable).

    ``options`` are the user's; for TRAIN the recommended settings fill the gaps. Unset
    values (None, False, "") are never a problem. A set option the step's script does not
    take is a problem unless another step of this architecture takes it (one options dict
    may serve all three steps). Also checks musubi's rules kept as data: ``requires``,
    ``conflicts``, ``allowed_values``, the block-swap limit and the attention backend.
    """
    arch = get_architecture(arch_id)
    values = arch.resolve_selectors(selectors)
    opts = _merged_options(arch, step, values, options)
    given_models = {k for k, v in (models or {}).items() if v}
    accepted = arch.options_for(step, values)
    anywhere = frozenset().union(*(arch.options_for(s, values) for s in arch.step_options))
    problems: list[str] = []
    for name, value in opts.items():
        if name not in OPTIONS:
            problems.append(f"unknown option {name!r}")
        elif name not in anywhere:
            problems.append(f"{arch.display_name} does not take option {name!r}")
        elif name in accepted:
            allowed = arch.allowed_values.get(name)
            if allowed is not None and value not in allowed:
                problems.append(f"{arch.display_name} supports {name} {' or '.join(map(str, allowed))} "
                                f"only, not {value!r}")
    if step == TRAIN:
        attention = opts.get("attention")
        if attention is not None and attention not in ATTENTION_FLAGS:
            problems.append(f"attention {attention!r} is not one of {', '.join(ATTENTION_FLAGS)}")
        problems += [f"option {n!r} is needed for training" for n in _TRAIN_NEEDS if n not in opts]

    def present(key: str) -> bool:
        return key[6:] in given_models if key.startswith("model:") else key in opts

    for option, needed in arch.requires + (("fp8_scaled", "fp8_base"),):
        if option.startswith("model:") or option in accepted:
            if present(option) and not present(needed):
                problems.append(f"{option.replace('model:', 'model ')} needs {needed.replace('model:', 'model ')}")
    for a, b in arch.conflicts:
        if present(a) and present(b) and (a in accepted or b in accepted):
            problems.append(f"{a.replace('model:', 'model ')} cannot be used with {b}")
    swap, limit = opts.get("blocks_to_swap"), arch.max_blocks_to_swap(values)
    if step == TRAIN and isinstance(swap, int) and limit is not None and swap > limit:
        problems.append(f"{arch.display_name} can swap at most {limit} blocks, not {swap}")
    if step == TRAIN and opts.get("persistent_data_loader_workers") \
            and opts.get("max_data_loader_n_workers") in (0, "0"):
        problems.append("persistent_data_loader_workers needs max_data_loader_n_workers >= 1")
    return problems


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _path_value(what: str, value: Any, problems: list[str]) -> str:
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if text.startswith("-"):
        problems.append(f"{what} {text!r} starts with '-', which the script would read as a flag")
    return text


def build_args(arch_id: str, step: str, *, dataset_config: Optional[str] = None,
               models: Optional[Mapping[str, str]] = None,
               selectors: Optional[Mapping[str, Any]] = None,
               options: Optional[Mapping[str, Any]] = None,
               output_dir: Optional[str] = None, output_name: Optional[str] = None) -> list[str]:
    """The script arguments (after the script path) for one step of one architecture.

    Emits only flags the step's script takes, full names only. ``models`` maps
    ``ModelInput.name`` to a path (inputs of other steps are ignored, so one dict can serve
    all steps); ``selectors`` maps ``Selector.name`` to a value (defaults filled in);
    ``options`` maps ``OPTIONS`` names to values (None/False unsets). TRAIN starts from the
    architecture's recommended settings, cache steps from ``cache_recommended``. For CONVERT,
    ``models["lora"]`` is the input and ``output_dir/output_name(.safetensors)`` the output.
    Raises ConfigError naming every problem.
    """
    arch = get_architecture(arch_id)
    models = {k: v for k, v in (models or {}).items() if v}
    if step == CONVERT:
        return _convert_args(arch, models, output_dir, output_name)
    if step not in STEPS:
        raise ConfigError(f"unknown step {step!r}", hint=f"use one of: {', '.join(STEPS)}, {CONVERT}")
    values = arch.resolve_selectors(selectors)
    problems = check_options(arch_id, step, options, values, models)
    args: list[str] = []

    if not dataset_config:
        problems.append("dataset_config is required")
    else:
        args += ["--dataset_config", _path_value("dataset_config", dataset_config, problems)]

    known = {m.name for m in arch.models}
    unknown = sorted(set(models) - known)
    if unknown:
        problems.append(f"{arch.display_name} has no model input {', '.join(unknown)} "
                        f"(its inputs: {', '.join(sorted(known))})")
    for m in arch.models:
        if step not in m.steps:
            continue
        value = models.get(m.name) or m.default
        if value:
            args += [m.flag, _path_value(m.label or m.name, value, problems)]
        elif m.required(step, values):
            problems.append(f"{m.label or m.name} ({m.flag}) is required for {step}")

    for s in arch.selectors:
        args += list(s.emit.get(step, {}).get(values[s.name], ()))

    if step == TRAIN:
        args += ["--network_module", arch.network_module]
    accepted = arch.options_for(step, values)
    for name, value in _merged_options(arch, step, values, options).items():
        if name not in accepted or name not in OPTIONS:
            continue  # check_options reported it, or it belongs to another step
        opt = OPTIONS[name]
        if opt.kind == "attention":
            if value in ATTENTION_FLAGS:
                args.append(ATTENTION_FLAGS[value])
        elif opt.kind == "switch":
            args.append(opt.flag)
        elif opt.kind == "values":
            items = value.split() if isinstance(value, str) else [_format(v) for v in value]
            if items:
                args += [opt.flag, *items]
        else:
            if name in ("resume", "network_weights", "sample_prompts", "logging_dir"):
                value = _path_value(name, value, problems)
            args += [opt.flag, _format(value)]

    if step == TRAIN:
        if not output_dir or not output_name:
            problems.append("output_dir and output_name are required for training")
        else:
            args += ["--output_dir", _path_value("output_dir", output_dir, problems),
                     "--output_name", _path_value("output_name", output_name, problems)]
    if problems:
        raise ConfigError(f"{arch.display_name} {step}: " + "; ".join(problems),
                          hint="fix the inputs named above", problems=problems)
    return args


def _convert_args(arch: Architecture, models: Mapping[str, str], output_dir: Optional[str],
                  output_name: Optional[str]) -> list[str]:
    conv = arch.lora_conversion
    if CONVERT not in arch.scripts:
        raise ConfigError(f"{arch.display_name} LoRAs need no musubi conversion for ComfyUI "
                          f"({conv.kind}): {conv.note}", hint="use the trained LoRA file as it is"
                          if conv.kind == "none" else "see the architecture's notes")
    problems: list[str] = []
    source = models.get("lora")
    if not source:
        problems.append("models['lora'] (the LoRA to convert) is required")
    if not output_dir or not output_name:
        problems.append("output_dir and output_name are required")
    if problems:
        raise ConfigError(f"{arch.display_name} convert: " + "; ".join(problems),
                          hint="fix the inputs named above", problems=problems)
    name = output_name if output_name.endswith(".safetensors") else output_name + ".safetensors"
    target = os.path.join(output_dir, name)
    src = _path_value("lora", source, problems)
    dst = _path_value("output", target, problems)
    if problems:
        raise ConfigError(f"{arch.display_name} convert: " + "; ".join(problems), problems=problems)
    if conv.kind == "convert_lora":
        return ["--input", src, "--output", dst, "--target", "other"]
    return [src, dst]  # dedicated converters take positional source and destination

"""What the Train node's inputs become: musubi options and accelerate settings (``train_options``;
unset = the architecture's recommendation), the sample prompts (yours, a file, or the default from
nodes/samples.py), the models training reads, and the dry run's list of every value used.
"""

from __future__ import annotations

import os
import shlex
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

from . import host
from .deferred import catalogue
from .errors import user_error
from .fingerprint import digest
from .options import NONE, RECOMMENDED
from .values import MusubiModels


def _positive(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _chosen(value: Any) -> Any:
    return None if value in (None, "", RECOMMENDED) else value


def train_options(inputs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(musubi options, accelerate options) from the node's inputs; unset = recommended."""
    opts: dict[str, Any] = {
        "network_dim": _positive(inputs.get("network_dim")),
        "network_alpha": _positive(inputs.get("network_alpha")),
        "learning_rate": _positive(inputs.get("learning_rate")),
        "optimizer_type": (inputs.get("optimizer_custom") or "").strip() or _chosen(inputs.get("optimizer_type")),
        "lr_scheduler": _chosen(inputs.get("lr_scheduler")),
        "lr_warmup_steps": _positive(inputs.get("lr_warmup_steps")),
        "seed": inputs.get("seed", 42),
        "attention": _chosen(inputs.get("attention")),
        "mixed_precision": _chosen(inputs.get("mixed_precision")),
        "blocks_to_swap": _positive(inputs.get("blocks_to_swap")),
        "timestep_sampling": _chosen(inputs.get("timestep_sampling")),
        "discrete_flow_shift": _positive(inputs.get("discrete_flow_shift")),
    }
    args_text = (inputs.get("optimizer_args") or "").strip()
    if args_text:
        try:
            opts["optimizer_args"] = shlex.split(args_text)
        except ValueError as exc:
            raise user_error(f"optimizer_args: {exc}", "close the quotes, e.g. \"betas=(0.9,0.99)\"") from None
    steps = _positive(inputs.get("max_train_steps"))
    if steps:
        opts["max_train_steps"] = steps
    else:
        opts["max_train_epochs"] = _positive(inputs.get("max_train_epochs"))
    save = inputs.get("save_every_n_epochs", 1)
    opts["save_every_n_epochs"] = save if save and save > 0 else None
    no_epoch_saves = save == 0
    if "gradient_checkpointing" in inputs:
        opts["gradient_checkpointing"] = bool(inputs["gradient_checkpointing"])
    fp8 = _chosen(inputs.get("fp8"))
    if fp8 is not None:
        opts["fp8_base"] = fp8 != "off"
        opts["fp8_scaled"] = fp8 == "fp8_base + fp8_scaled"
    weights = inputs.get("initial_weights")
    if weights and weights != NONE:
        path = host.model_path("loras", weights)
        if path is None:
            raise user_error(f"initial_weights {weights!r} is not in models/loras", "pick a listed LoRA")
        opts["network_weights"] = path
    resume = (inputs.get("resume") or "").strip()
    if resume:
        opts["resume"] = host.resolve_user_path(resume)
    accelerate: dict[str, Any] = {}
    if inputs.get("num_processes", 1) and inputs.get("num_processes", 1) > 1:
        accelerate["num_processes"] = int(inputs["num_processes"])
    gpu_ids = (inputs.get("gpu_ids") or "").strip()
    if gpu_ids:
        accelerate["gpu_ids"] = gpu_ids
    opts = {k: v for k, v in opts.items() if v is not None}
    if no_epoch_saves:
        opts["save_every_n_epochs"] = None  # switches off the recommended "every epoch" (catalogue)
    return opts, accelerate


def prompt_file(text: str) -> tuple[str, str]:
    """(path, content) of the sample prompt file musubi reads, content-addressed under
    output/musubi-tuner/prompts; written by ``written_prompts`` around the run's checks."""
    body = "".join(line.rstrip() + "\n" for line in text.splitlines() if line.strip())
    return os.path.join(host.output_directory(), host.PACK_FOLDER, "prompts", f"prompts-{digest(body)[:16]}.txt"), body


@contextmanager
def written_prompts(pending: Optional[tuple[str, str]]) -> Iterator[None]:
    """The sample prompt file exists inside the block (the checks read it); when the block
    fails, a file written here is removed again, so refused inputs leave nothing behind."""
    from ..executor.musubi.dataset import write_atomic

    created = pending is not None and not os.path.exists(pending[0])
    if created:
        write_atomic(pending[0], pending[1], overwrite="always")
    try:
        yield
    except BaseException:
        if created:
            try:
                os.remove(pending[0])
            except OSError:
                pass
        raise


def training_models(arch: catalogue.Architecture, models: MusubiModels, sampling: bool) -> dict[str, str]:
    """Training reads the VAE and text encoders only to make samples, so they are passed only
    when sample prompts are set (musubi would otherwise load nothing from them anyway)."""
    out = {}
    values = arch.resolve_selectors(models.selectors)
    for model in arch.models:
        if model.name not in models.paths or catalogue.TRAIN not in model.steps:
            continue
        if model.required(catalogue.TRAIN, values) or not model.sampling or sampling:
            out[model.name] = models.paths[model.name]
    return out


@dataclass
class SampleSetup:
    sampling: bool
    notes: list[str]  # about inputs that are not used
    line: str  # the dry run's line about the sample prompts
    pending: Optional[tuple[str, str]] = None  # the prompt file to write: (path, content)


def sample_options(inputs: Mapping[str, Any], options: dict[str, Any],
                   default: Optional[tuple[Optional[str], str]] = None,
                   by_node: Optional[dict[str, str]] = None) -> SampleSetup:
    """Put the sampling inputs into ``options``: the prompt file (made from the text, the
    file given, or the ``default`` prompt for an empty box: (line or None, what it is / why
    not), see nodes/samples.py), how often, and at first. Options it chose itself go into
    ``by_node`` with why. The prompt file is written around the checks (``written_prompts``),
    so refused inputs leave nothing behind."""
    prompts = (inputs.get("sample_prompts") or "").strip()
    prompts_file = (inputs.get("sample_prompts_file") or "").strip()
    if prompts and prompts_file:
        raise user_error("sample prompts are given both as text and as a file",
                         "clear sample_prompts or sample_prompts_file")
    if prompts:
        count = len([line for line in prompts.splitlines() if line.strip()])
        summary = f"sample prompts: yours ({count} line{'s' if count != 1 else ''})"
    elif prompts_file:
        summary = f"sample prompts: yours, from {prompts_file}"
    elif default is not None and default[0]:
        prompts = default[0]
        summary = f"sample prompts: the default ({default[1]}):\n    {prompts}"
    else:
        unused = [n for n in ("sample_every_n_epochs", "sample_every_n_steps", "sample_at_first") if inputs.get(n)]
        why = default[1] if default is not None else "none given, and the default sample is switched off"
        return SampleSetup(False, [f"{n} is ignored: no sample prompts are given" for n in unused],
                           f"sample prompts: {why}")
    pending = prompt_file(prompts) if prompts else None
    options["sample_prompts"] = pending[0] if pending else host.resolve_user_path(prompts_file)
    every_steps = _positive(inputs.get("sample_every_n_steps"))
    every_epochs = _positive(inputs.get("sample_every_n_epochs"))
    if every_steps:
        options["sample_every_n_steps"] = every_steps
    if every_epochs or not every_steps:
        options["sample_every_n_epochs"] = every_epochs or options.get("save_every_n_epochs") or 1
        if not every_epochs and by_node is not None:
            by_node["sample_every_n_epochs"] = "the Train node's default: every saved epoch"
    if inputs.get("sample_at_first"):
        options["sample_at_first"] = True
    return SampleSetup(True, [], summary, pending)


def used_values(arch: catalogue.Architecture, models: MusubiModels, options: Mapping[str, Any],
                origin: Mapping[str, str], accelerate: Mapping[str, Any], launcher: str,
                inputs: Mapping[str, Any], sample_line: str, by_node: Mapping[str, str]) -> list[str]:
    """The dry run's list of every value the run will use and where it came from."""
    from .recommend import run_values

    lines = [f"values this run will use (recommended = musubi's docs for {arch.display_name}; you = set on "
             "the nodes; musubi's default = what musubi does when the command does not say):"]
    lines += run_values(arch, models.selectors, options, origin, by_node)
    launch_origin = origin.get("launcher")
    lines.append(f"  launcher {launcher} ({'you, on ' + launch_origin if launch_origin else 'the default'})")
    for key in ("num_processes", "gpu_ids"):
        if key in accelerate:
            lines.append(f"  {key} {accelerate[key]} (you, on {origin.get(key, 'the Train node')})")
    extra = (inputs.get("extra_args") or "").strip()
    if extra:
        lines.append(f"  extra_args {' '.join(extra.split())} (you, on {origin.get('extra_args', 'the Train node')})")
    lines.append(sample_line)
    return lines

"""The Train node's advanced inputs, out of a first run's way: five small optional nodes grouped by
subject (optimizer, memory, timesteps, samples, launch), chained into the Train node's ``options``
input. Each passes on a MUSUBI_TRAINING_OPTIONS value; the Train node merges it with its own inputs.

An API prompt written before these nodes existed sets the same inputs on the Train node itself. The
Train node still takes them (declared ``hidden``: ComfyUI hands a hidden input's value from the
prompt to the node, and the frontend draws no widget for it); ``check_values`` repeats ComfyUI's
checks for them, which it does not run on hidden inputs, and ``merge`` refuses a value set in both
places. docs/nodes.md says why nodes and not the frontends' "advanced" inputs.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from . import host
from .errors import user_error
from .values import OPTIONS_TYPE, TrainingOptions

CATEGORY = "Musubi Tuner/Options"
RECOMMENDED = "(recommended)"
NONE = "(none)"
OPTIMIZERS = [RECOMMENDED, "adamw8bit", "AdamW", "AdaFactor", "prodigyopt.Prodigy", "Muon", "Lion"]
SCHEDULERS = [RECOMMENDED, "constant", "constant_with_warmup", "cosine", "cosine_with_restarts", "linear",
              "polynomial", "cosine_with_min_lr", "inverse_sqrt"]
TIMESTEP_SAMPLING = [RECOMMENDED, "shift", "sigma", "uniform", "sigmoid", "flux_shift", "flux2_shift", "qwen_shift",
                     "krea2_shift", "ideogram4_shift", "logsnr", "qinglong_flux", "qinglong_qwen"]
ATTENTION = [RECOMMENDED, "sdpa", "flash_attn", "xformers", "flash3"]
MIXED_PRECISION = [RECOMMENDED, "bf16", "fp16", "no"]
FP8 = [RECOMMENDED, "off", "fp8_base", "fp8_base + fp8_scaled"]
LAUNCHERS = ["accelerate", "python"]
CHAIN_TOOLTIP = ("More options from another Musubi ... Options node (optional): chain several, one of each "
                 "kind, and wire the last into the Train node's options.")
OUTPUT_TOOLTIP = "These options (and the chained ones); wire into a Musubi Train LoRA node's options."


def _opt(kind: Any, default: Any, tooltip: str, **extra: Any) -> tuple[Any, dict[str, Any]]:
    return (kind, {"default": default, "tooltip": tooltip, **extra})


def _loras() -> list[str]:
    # only .safetensors: the other formats ComfyUI lists are pickles, which loading would run
    return [NONE] + [n for n in host.model_files("loras") if n.lower().endswith(".safetensors")]


def _optimizer(listing: bool = True) -> dict[str, Any]:
    return {
        "optimizer_type": _opt(OPTIMIZERS, RECOMMENDED, "Optimizer; (recommended) = adamw8bit for most "
                               "architectures. Custom optimizers: optimizer_custom."),
        "optimizer_custom": _opt("STRING", "", "A custom optimizer's full import path (e.g. "
                                 "came_pytorch.CAME), installed in musubi's venv; overrides optimizer_type."),
        "optimizer_args": _opt("STRING", "", "Optimizer arguments, space separated key=value "
                               "(e.g. weight_decay=0.01 \"betas=(0.9,0.99)\")."),
        "lr_scheduler": _opt(SCHEDULERS, RECOMMENDED, "Learning-rate schedule; (recommended) = constant "
                             "unless the architecture's docs say otherwise."),
        "lr_warmup_steps": _opt("INT", 0, "Warm-up steps for schedulers that use them; 0 = the "
                                "recommendation (none, or e.g. 100 for Kandinsky 5).", min=0, max=1000000),
        "max_train_steps": _opt("INT", 0, "Train for this many optimizer steps instead of epochs; 0 = use "
                                "the Train node's max_train_epochs.", min=0, max=100000000),
        "initial_weights": _opt(_loras() if listing else "STRING", NONE, "Start from an existing LoRA's "
                                "weights (a .safetensors file from models/loras); a fresh optimizer."),
    }


def _memory(listing: bool = True) -> dict[str, Any]:
    return {
        "fp8": _opt(FP8, RECOMMENDED, "Keep the DiT in fp8 to save VRAM: fp8_base, or fp8_base + "
                    "fp8_scaled (better quality; required by Krea 2 and HiDream-O1). (recommended) = what "
                    "the architecture's docs use."),
        "blocks_to_swap": _opt("INT", 0, "Swap this many transformer blocks to the CPU to save VRAM (slower); "
                               "0 = off. Each architecture has a maximum.", min=0, max=200),
        "gradient_checkpointing": _opt("BOOLEAN", True, "Recompute activations in the backward pass: much "
                                       "less VRAM, a little slower."),
        "mixed_precision": _opt(MIXED_PRECISION, RECOMMENDED, "Training precision; (recommended) = bf16, or "
                                "what the DiT file needs (read from its header: Wan fp16 weights train in fp16). "
                                "Must match the DiT weights (bf16 weights: bf16 or no)."),
        "attention": _opt(ATTENTION, RECOMMENDED, "Attention implementation; (recommended) = sdpa "
                          "(always available). flash_attn/xformers/flash3 must be installed in musubi's venv."),
    }


def _timesteps(listing: bool = True) -> dict[str, Any]:
    return {
        "timestep_sampling": _opt(TIMESTEP_SAMPLING, RECOMMENDED, "How training timesteps are drawn; "
                                  "(recommended) = the architecture's documented method."),
        "discrete_flow_shift": _opt("FLOAT", 0.0, "Shift for 'shift' timestep sampling. 0 = the "
                                    "recommendation (e.g. 3.0 Wan, 2.2 Qwen-Image).", min=0.0, max=100.0,
                                    step=0.1),
        # The frontend gives every INT named "seed" a "randomize after each queue" control;
        # a new seed per queue would re-train every time, so it is switched off.
        "seed": _opt("INT", 42, "Random seed (timesteps, noise, the order of the data).", min=0,
                     max=0xFFFFFFFF, control_after_generate=False),
    }


def _samples(listing: bool = True) -> dict[str, Any]:
    return {
        "default_sample": _opt("BOOLEAN", True, "With an empty sample_prompts box on the Train node, make "
                               "samples from a default prompt: the dataset's first caption at the "
                               "architecture's documented sample size and steps (the dry run shows it). "
                               "Off: an empty box means no samples."),
        "sample_every_n_epochs": _opt("INT", 0, "Make samples every N epochs (0 = every saved epoch, unless "
                                      "sample_every_n_steps is set).", min=0, max=100000),
        "sample_every_n_steps": _opt("INT", 0, "Make samples every N optimizer steps; 0 = off.", min=0,
                                     max=100000000),
        "sample_at_first": _opt("BOOLEAN", False, "Also make samples before the first step (what the model "
                                "does without the LoRA)."),
        "sample_prompts_file": _opt("STRING", "", "A prompt file musubi reads (.txt with one prompt per line, "
                                    ".toml or .json) instead of the Train node's sample_prompts text; a "
                                    "relative path is in ComfyUI's input folder. It must lie in ComfyUI's input, "
                                    "output or models folders or a read_roots folder of the pack's settings."),
    }


def _launch(listing: bool = True) -> dict[str, Any]:
    return {
        "launcher": _opt(LAUNCHERS, "accelerate", "accelerate launch (recommended by musubi; needed for "
                         "several GPUs) or plain python (one process)."),
        "num_processes": _opt("INT", 1, "accelerate: processes (GPUs) to train on.", min=1, max=64),
        "gpu_ids": _opt("STRING", "", "accelerate: which GPUs, e.g. 0 or 0,1; empty = all."),
        "extra_args": _opt("STRING", "", "More musubi flags, full names only (e.g. --max_grad_norm 1.0). "
                           "Checked against the training script's flags; flags set by the nodes are refused.",
                           multiline=True),
    }


def _saves(listing: bool = True) -> dict[str, Any]:
    from .resume import KEEP_TOOLTIP, SAVE_STATE_TOOLTIP, SAVE_STEPS_TOOLTIP

    return {
        "save_state": _opt("BOOLEAN", True, SAVE_STATE_TOOLTIP),
        "save_every_n_steps": _opt("INT", 0, SAVE_STEPS_TOOLTIP, min=0, max=100000000),
        "keep_states": _opt("INT", 2, KEEP_TOOLTIP, min=1, max=1000),
    }


@dataclass(frozen=True)
class Subject:
    """One options node: its id, title, what it is about, and its inputs (a function: the
    initial_weights list reads models/loras each time; ``listing=False`` takes it as text)."""

    node_id: str
    title: str
    description: str
    inputs: Callable[..., dict[str, Any]]
    names: tuple[str, ...]  # the input names, known without listing files


SUBJECTS = (
    Subject("MusubiOptimizerOptions", "Musubi Optimizer Options",
            "The optimizer, its arguments, the learning-rate schedule, training by steps instead of epochs, "
            "and initial LoRA weights. Wire into a Musubi Train LoRA node's options.", _optimizer,
            ("optimizer_type", "optimizer_custom", "optimizer_args", "lr_scheduler", "lr_warmup_steps",
             "max_train_steps", "initial_weights")),
    Subject("MusubiMemoryOptions", "Musubi Memory Options",
            "VRAM and speed: fp8, block swapping, gradient checkpointing, precision and the attention "
            "implementation. Wire into a Musubi Train LoRA node's options.", _memory,
            ("fp8", "blocks_to_swap", "gradient_checkpointing", "mixed_precision", "attention")),
    Subject("MusubiTimestepOptions", "Musubi Timestep Options",
            "How training timesteps are drawn (sampling method and flow shift) and the random seed. Wire "
            "into a Musubi Train LoRA node's options.", _timesteps,
            ("timestep_sampling", "discrete_flow_shift", "seed")),
    Subject("MusubiSampleOptions", "Musubi Sample Options",
            "When sample images are made during training, and the default sample when the prompt box is "
            "empty. Wire into a Musubi Train LoRA node's options.", _samples,
            ("default_sample", "sample_every_n_epochs", "sample_every_n_steps", "sample_at_first",
             "sample_prompts_file")),
    Subject("MusubiLaunchOptions", "Musubi Launch Options",
            "How training is launched: accelerate or python, processes and GPUs, and extra musubi flags. "
            "Wire into a Musubi Train LoRA node's options.", _launch,
            ("launcher", "num_processes", "gpu_ids", "extra_args")),
    Subject("MusubiSaveOptions", "Musubi Save Options",
            "Training states for continuing a stopped run (saved by default with the epoch saves), saves every N "
            "steps, and how many states are kept. Wire into a Musubi Train LoRA node's options.", _saves,
            ("save_state", "save_every_n_steps", "keep_states")),
)
# Inputs the Train node had itself before the options nodes; an API prompt may still set them there
# (not the inputs that came with the options nodes).
NEW_NAMES = ("default_sample", "save_state", "save_every_n_steps", "keep_states")
LEGACY_NAMES = tuple(n for s in SUBJECTS for n in s.names if n not in NEW_NAMES)


def subject_of(name: str) -> Subject:
    return next(s for s in SUBJECTS if name in s.names)


def moved_inputs() -> dict[str, Any]:
    """Every options-node input (name -> spec), subject by subject."""
    out: dict[str, Any] = {}
    for subject in SUBJECTS:
        out.update(subject.inputs())
    return out


def default_of(spec: tuple[Any, dict[str, Any]]) -> Any:
    return spec[1].get("default")


def check_values(specs: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    """ComfyUI's checks (type, list, min/max) plus finite numbers, for values it does not check
    itself (hidden inputs, or inputs VALIDATE_INPUTS names); None (a wire) is skipped."""
    problems = []
    for name, value in values.items():
        if value is None or name not in specs:
            continue
        kind, extra = specs[name][0], specs[name][1]
        if isinstance(kind, list):
            if value not in kind:
                shown = kind if len(kind) <= 20 else f"the {len(kind)} listed values"
                problems.append(f"{name}: {value!r} not in {shown}")  # ComfyUI's words
            continue
        if kind == "BOOLEAN":
            ok = isinstance(value, bool)
        elif kind == "STRING":
            ok = isinstance(value, str)
        elif kind == "INT":
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:  # FLOAT
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and not math.isfinite(value):
                problems.append(f"{name}: {value} is not a usable number; give a finite number")
                continue
        if not ok:
            wanted = {"BOOLEAN": "true or false", "STRING": "text", "INT": "a whole number"}.get(kind, "a number")
            problems.append(f"{name}: {value!r} is not {wanted}")
        elif kind in ("INT", "FLOAT") and "min" in extra and value < extra["min"]:
            problems.append(f"{name}: Value {value} smaller than min of {extra['min']}")
        elif kind in ("INT", "FLOAT") and "max" in extra and value > extra["max"]:
            problems.append(f"{name}: Value {value} bigger than max of {extra['max']}")
    return problems


# Text inputs checked when queued (ComfyUI checks no text): an optimizer class path, GPU indexes,
# a prompt file that must exist inside the folders the pack may read.
TEXT_CHECKED = ("optimizer_custom", "gpu_ids", "sample_prompts_file")


def text_problems(values: Mapping[str, Any]) -> list[str]:
    from . import guards

    custom = values.get("optimizer_custom")
    found = [guards.optimizer_problem(custom) if isinstance(custom, str) else None,
             guards.gpu_ids_problem(values.get("gpu_ids")) if isinstance(values.get("gpu_ids"), str) else None]
    prompts = values.get("sample_prompts_file")
    if isinstance(prompts, str) and prompts.strip():
        found.append(guards.labelled("sample_prompts_file",
                                     guards.file_problem(prompts, "sample_prompts_file", readable=True)))
    return [f for f in found if f]


def merge(own: Mapping[str, Any], options: Optional[TrainingOptions]) -> tuple[dict[str, Any], dict[str, str]]:
    """The flat inputs a Train node runs with, and who set each moved one (an options node's
    title, or the Train node for an input of older versions). A moved input set to a
    non-default value both on the Train node and on an options node is refused."""
    if options is not None and not isinstance(options, TrainingOptions):
        raise user_error("the options input is not a Musubi ... Options node's output",
                         "wire a Musubi Optimizer/Memory/Timestep/Sample/Launch Options node into it")
    specs = {name: spec for s in SUBJECTS for name, spec in _static_specs(s).items()}
    flat = {k: v for k, v in own.items() if k not in specs}
    origin: dict[str, str] = {}
    chained = dict(options.values) if options is not None else {}
    for name, value in own.items():
        if name not in specs or value is None or value == default_of(specs[name]):
            continue
        other = chained.get(name)
        if other is not None and other != default_of(specs[name]) and other != value:
            raise user_error(f"{name} is set twice: {value!r} on the Train node (an input of older versions) "
                             f"and {other!r} on {options.origin.get(name, 'an options node')}",
                             f"remove {name} from the Train node's inputs, or set it only on the options node")
        flat[name], origin[name] = value, "the Train node (an older input)"
    for name, value in chained.items():
        if name not in origin:
            flat[name], origin[name] = value, options.origin.get(name, "an options node")
    return flat, origin


def _static_specs(subject: Subject) -> dict[str, Any]:
    """A subject's specs without listing model files (initial_weights is then text: the Train
    node checks the file is in models/loras when it runs)."""
    return subject.inputs(listing=False)


class _Validation:
    """An options node's VALIDATE_INPUTS with its FLOAT inputs and optimizer_custom as parameters
    (ComfyUI passes only the inputs the signature names and skips its own checks for them, so
    check_values repeats them; NaN passes ComfyUI's range check, it is refused here)."""

    def __get__(self, instance: Any, owner: type) -> Callable[..., Any]:
        specs = owner.SUBJECT.inputs()
        names = [n for n, spec in specs.items() if spec[0] == "FLOAT" or n in TEXT_CHECKED]

        def validate(**values: Any) -> Any:
            found = check_values(specs, values) + text_problems(values)
            return True if not found else "; ".join(found)

        validate.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
            inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in names])
        return validate


class OptionsNodeBase:
    SUBJECT: Subject
    CATEGORY = CATEGORY
    FUNCTION = "collect"
    RETURN_TYPES = (OPTIONS_TYPE,)
    RETURN_NAMES = ("options",)
    OUTPUT_TOOLTIPS = (OUTPUT_TOOLTIP,)
    VALIDATE_INPUTS = _Validation()

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        # Everything is optional with a default, so an API prompt names only what it changes.
        return {"optional": {"options": (OPTIONS_TYPE, {"tooltip": CHAIN_TOOLTIP}), **cls.SUBJECT.inputs()}}

    def collect(self, options: Optional[TrainingOptions] = None, **inputs: Any) -> tuple[TrainingOptions]:
        subject = self.SUBJECT
        if options is not None and not isinstance(options, TrainingOptions):
            raise user_error("the options input is not a Musubi ... Options node's output",
                             "wire another Musubi ... Options node into it, or nothing")
        upstream = options or TrainingOptions()
        if subject.node_id in upstream.subjects:
            raise user_error(f"two {subject.title} nodes are chained", "keep one of them")
        found = check_values({k: v for k, v in _static_specs(subject).items() if k in inputs}, inputs)
        if found:
            raise user_error("; ".join(found), "change the input named above")
        values = dict(upstream.values)
        origin = dict(upstream.origin)
        for name in subject.names:
            if name in inputs:
                values[name], origin[name] = inputs[name], subject.title
        return (TrainingOptions(values, origin, upstream.subjects + (subject.node_id,)),)


def _node(subject: Subject) -> type:
    return type(subject.node_id, (OptionsNodeBase,), {"SUBJECT": subject, "DESCRIPTION": subject.description})


NODE_CLASS_MAPPINGS = {s.node_id: _node(s) for s in SUBJECTS}
NODE_DISPLAY_NAME_MAPPINGS = {s.node_id: s.title for s in SUBJECTS}

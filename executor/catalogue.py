"""The architecture catalogue: one declarative table of every musubi-tuner v0.3.4 architecture
(scripts, model inputs, selectors, options each script accepts, recommended training settings,
LoRA conversion for ComfyUI) and ``build_args``, which turns it into a script's argument list.
Per-architecture differences are data in ``ARCHITECTURES``, never code branches.
Imports only the standard library and ``.errors``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Optional, Sequence, Union

from .errors import ConfigError

__all__ = [
    "CACHE_LATENTS", "CACHE_TEXT_ENCODER", "TRAIN", "CONVERT", "STEPS",
    "ModelInput", "Selector", "Option", "LoraConversion", "Architecture",
    "ARCHITECTURES", "OPTIONS", "get_architecture", "build_args", "check_options",
]

CACHE_LATENTS = "cache_latents"
CACHE_TEXT_ENCODER = "cache_text_encoder"
TRAIN = "train"
CONVERT = "convert"
STEPS = (CACHE_LATENTS, CACHE_TEXT_ENCODER, TRAIN)

SelectorValue = Union[str, bool]


@dataclass(frozen=True)
class ModelInput:
    """A model file (or folder, or Hugging Face id) a user picks for one architecture.

    ``steps`` are the scripts that accept ``flag``; ``required_for`` the ones that fail without
    it. Train scripts accept VAE/text encoders only for sample generation, so they are in
    ``steps`` but not in ``required_for``; ``sampling`` marks the inputs sampling needs.
    """

    name: str
    flag: str
    folder: str  # ComfyUI model folder: diffusion_models | vae | text_encoders | clip_vision
    steps: tuple[str, ...]
    required_for: tuple[str, ...] = ()
    kind: str = "file"  # file | file_or_dir | hf_id
    label: str = ""
    tooltip: str = ""
    sampling: bool = False
    default: Optional[str] = None  # e.g. a Hugging Face id musubi's docs use


@dataclass(frozen=True)
class Selector:
    """A model-variant choice that must agree across all steps (task, model_version, ...).

    ``emit[step][value]`` is the argv fragment that step's script gets for ``value``; a step
    missing from ``emit`` (or a value missing from its map) emits nothing.
    """

    name: str
    choices: tuple[SelectorValue, ...]
    default: SelectorValue
    emit: Mapping[str, Mapping[SelectorValue, tuple[str, ...]]]
    label: str = ""
    tooltip: str = ""


@dataclass(frozen=True)
class Option:
    """A musubi flag the pack may set, keyed by our option name (the flag without ``--``).

    ``kind``: ``switch`` (store_true: emitted when truthy), ``value`` (one value),
    ``values`` (nargs: a sequence or a whitespace-free string per item).
    """

    name: str
    flag: str
    kind: str = "value"
    tooltip: str = ""


@dataclass(frozen=True)
class LoraConversion:
    """How a LoRA trained by musubi becomes loadable by ComfyUI's LoraLoader.

    ``kind``: ``none`` (loads as is), ``convert_lora`` (convert_lora.py --target other),
    ``script`` (a dedicated converter taking positional input/output), ``key_rename``
    (a plain key-prefix rename, not a musubi command), ``not_supported``.
    """

    kind: str
    script: Optional[str] = None
    rename: Optional[tuple[str, str]] = None
    note: str = ""


@dataclass(frozen=True)
class Architecture:
    """Everything the pack knows about one musubi architecture; see the module docstring."""

    id: str
    display_name: str
    scripts: Mapping[str, str]  # step -> script path relative to src/musubi_tuner
    cache_suffix: str
    models: tuple[ModelInput, ...]
    selectors: tuple[Selector, ...]
    media: tuple[str, ...]  # ("image",) or ("image", "video")
    control: str  # none | optional | required | exactly_one
    network_module: str
    recommended: Mapping[str, Any]  # train option -> documented default
    step_options: Mapping[str, frozenset[str]]  # step -> option names its script accepts
    lora_conversion: LoraConversion
    suffix_by: Optional[tuple[str, Mapping[SelectorValue, str]]] = None
    block_swap_max: Optional[int] = None
    block_swap_max_by: Optional[tuple[str, Mapping[SelectorValue, int]]] = None
    recommended_by: Mapping[str, Mapping[SelectorValue, Mapping[str, Any]]] = field(
        default_factory=dict)  # selector -> value -> recommended overrides
    notes: tuple[str, ...] = ()

    @property
    def image_only(self) -> bool:
        return "video" not in self.media

    def selector(self, name: str) -> Selector:
        for s in self.selectors:
            if s.name == name:
                return s
        raise KeyError(name)

    def model(self, name: str) -> ModelInput:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def resolve_selectors(self, selectors: Optional[Mapping[str, Any]] = None) -> dict[str, SelectorValue]:
        """Selector values with defaults filled in; raises ConfigError on unknown names/values."""
        selectors = dict(selectors or {})
        out: dict[str, SelectorValue] = {}
        for s in self.selectors:
            value = selectors.pop(s.name, None)
            if value is None:
                value = s.default
            if value not in s.choices:
                raise ConfigError(
                    f"{self.display_name}: {s.name} {value!r} is not one of {list(s.choices)}",
                    hint=f"Pick one of: {', '.join(map(str, s.choices))}.")
            out[s.name] = value
        if selectors:
            raise ConfigError(
                f"{self.display_name} has no selector {', '.join(sorted(selectors))}",
                hint=f"Its selectors are: {', '.join(s.name for s in self.selectors) or 'none'}.")
        return out

    def suffix(self, selectors: Optional[Mapping[str, Any]] = None) -> str:
        """The cache-file suffix musubi uses (``wan``, ``f2k4b``, ``qie``, ...)."""
        if self.suffix_by is None:
            return self.cache_suffix
        name, table = self.suffix_by
        return table[self.resolve_selectors(selectors)[name]]

    def max_blocks_to_swap(self, selectors: Optional[Mapping[str, Any]] = None) -> Optional[int]:
        if self.block_swap_max_by is not None:
            name, table = self.block_swap_max_by
            value = self.resolve_selectors(selectors)[name]
            if value in table:
                return table[value]
        return self.block_swap_max

    def recommended_for(self, selectors: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        """Documented training defaults, with selector-specific overrides applied."""
        values = self.resolve_selectors(selectors)
        out = dict(self.recommended)
        for name, by_value in self.recommended_by.items():
            out.update(by_value.get(values[name], {}))
        return out


def _ro(d: Mapping) -> Mapping:
    return MappingProxyType(dict(d))


# --------------------------------------------------------------------------------------------
# Options (our name -> flag). Whether a script accepts one is per architecture (step_options).
# --------------------------------------------------------------------------------------------

_SWITCHES = (
    # attention backends are one option ("attention") below, not switches
    "split_attn", "gradient_checkpointing", "gradient_checkpointing_cpu_offload",
    "persistent_data_loader_workers", "fp8_base", "fp8_scaled", "use_pinned_memory_for_block_swap",
    "block_swap_h2d_only", "img_in_txt_in_offloading", "disable_numpy_memmap",
    "preserve_distribution_shape", "save_state", "save_state_on_train_end", "sample_at_first",
    "no_metadata", "compile", "cuda_allow_tf32", "cuda_cudnn_benchmark",
    # cache / TE
    "skip_existing", "keep_cache", "vae_tiling", "vae_cache_cpu", "disable_cudnn_backend",
    "vae_enable_patch_conv", "nabla_resize", "one_frame_no_2x", "one_frame_no_4x",
    "fp8_llm", "fp8_t5", "fp8_vl", "fp8_text_encoder", "fp8_te", "quantized_qwen",
    "validate_caption_structure", "warn_on_caption_issues",
    # arch-specific train switches
    "offload_inactive_dit", "force_v2_1_time_embedding", "bulk_decode", "use_32bit_attention",
    "offload_dit_during_sampling", "no_vae_load", "force_nabla_attention", "turbo_dit",
    "remove_first_image_from_target", "skip_t2i_visual_dummy", "unconditional_dit",
    "use_unconditional_dit_for_lora_sampling", "log_loss_stats",
)
_VALUES = (
    "optimizer_type", "learning_rate", "max_grad_norm", "lr_scheduler", "lr_warmup_steps",
    "lr_decay_steps", "lr_scheduler_num_cycles", "lr_scheduler_power", "lr_scheduler_min_lr_ratio",
    "network_dim", "network_alpha", "network_dropout", "network_weights", "dim_from_weights",
    "max_train_epochs", "max_train_steps", "max_data_loader_n_workers", "seed",
    "gradient_accumulation_steps", "mixed_precision", "save_precision", "timestep_sampling",
    "discrete_flow_shift", "sigmoid_scale", "weighting_scheme", "logit_mean", "logit_std",
    "mode_scale", "min_timestep", "max_timestep", "num_timestep_buckets", "guidance_scale",
    "blocks_to_swap", "block_swap_ring_size", "save_every_n_epochs", "save_every_n_steps",
    "save_last_n_epochs", "save_last_n_steps", "save_last_n_epochs_state", "save_last_n_steps_state",
    "resume", "logging_dir", "log_with", "log_prefix", "training_comment",
    "sample_prompts", "sample_every_n_epochs", "sample_every_n_steps", "scale_weight_norms",
    # cache / TE
    "batch_size", "num_workers", "device", "vae_dtype", "vae_chunk_size",
    "vae_spatial_tile_sample_min_size", "vae_sample_size", "text_encoder_dtype",
    "qwen_max_length", "clip_max_length", "text_cache_dtype",
    # arch-specific train values
    "dit_dtype", "dit_in_channels", "timestep_boundary", "latent_window_size", "num_layers",
    "scheduler_scale", "i2v_mode", "nabla_P", "nabla_wT", "nabla_wH", "nabla_wW", "nabla_method",
    "noise_scale_start", "noise_scale_end", "noise_clip_std", "dino_loss_weight",
    "sampler_preset", "initial_sigma", "ideogram4_timestep_mu", "ideogram4_timestep_std",
    "override_dit", "turbo_dit_cache",
)
_LISTS = ("optimizer_args", "network_args", "lr_scheduler_args", "base_weights",
          "base_weights_multiplier")

ATTENTION_FLAGS = {"sdpa": "--sdpa", "flash_attn": "--flash_attn", "xformers": "--xformers",
                   "flash3": "--flash3", "sage_attn": "--sage_attn"}

OPTIONS: Mapping[str, Option] = _ro(
    {n: Option(n, f"--{n}", "switch") for n in _SWITCHES}
    | {n: Option(n, f"--{n}", "value") for n in _VALUES}
    | {n: Option(n, f"--{n}", "values") for n in _LISTS}
    | {"attention": Option("attention", "", "attention",
                           "Attention backend: sdpa, flash_attn, xformers or flash3.")}
)

ARCHITECTURES: Mapping[str, Architecture] = _ro({})  # filled below


def get_architecture(arch_id: str) -> Architecture:
    try:
        return ARCHITECTURES[arch_id]
    except KeyError:
        raise ConfigError(f"unknown architecture {arch_id!r}",
                          hint=f"Use one of: {', '.join(ARCHITECTURES)}.") from None


def check_options(arch_id: str, step: str, options: Mapping[str, Any]) -> list[str]:
    """Problems with ``options`` for this architecture and step (empty when all are usable).

    Falsy values (None, False) are "not set" and never a problem. A set option the target
    script does not accept is a problem unless another step of the same architecture accepts
    it (one options dict may serve all three steps).
    """
    raise NotImplementedError


def build_args(arch_id: str, step: str, *, dataset_config: Optional[str] = None,
               models: Optional[Mapping[str, str]] = None,
               selectors: Optional[Mapping[str, Any]] = None,
               options: Optional[Mapping[str, Any]] = None,
               output_dir: Optional[str] = None, output_name: Optional[str] = None) -> list[str]:
    """The script arguments (after the script path) for one step of one architecture.

    Emits only flags the step's script accepts, full names only. ``models`` maps
    ``ModelInput.name`` to a path; ``selectors`` maps ``Selector.name`` to a value (defaults
    filled in); ``options`` maps ``Option`` names to values (None/False = unset). For TRAIN the
    architecture's recommended settings are the base and ``options`` override them. For
    CONVERT, ``models["lora"]`` is the input and ``output_dir/output_name.safetensors`` the
    output. Raises ConfigError naming every problem.
    """
    raise NotImplementedError

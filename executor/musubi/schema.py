"""The shapes of the architecture catalogue: steps, model inputs, selectors, options, variants,
LoRA conversions and the Architecture record, plus the option table (our option name -> musubi
flag). The data itself is ``architectures.py``; reading it is ``catalogue.py``. Imports only the
standard library and ``errors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Optional, Union

from ..errors import ConfigError

__all__ = [
    "CACHE_LATENTS", "CACHE_TEXT_ENCODER", "TRAIN", "CONVERT", "STEPS", "SelectorValue",
    "ModelInput", "Selector", "Option", "SampleSpec", "Variant", "LoraConversion", "Architecture",
    "OPTIONS", "ATTENTION_FLAGS", "RESERVED_FLAGS",
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
    ``required_when`` narrows ``required_for`` to selector values: ((selector, values), ...),
    any one matching makes it required.
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
    default: Optional[str] = None  # used when the user gives nothing (Hugging Face ids)
    required_when: tuple[tuple[str, tuple[SelectorValue, ...]], ...] = ()

    def required(self, step: str, selectors: Mapping[str, SelectorValue]) -> bool:
        if step not in self.required_for:
            return False
        if not self.required_when:
            return True
        return any(selectors.get(name) in values for name, values in self.required_when)


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

    ``kind``: ``switch`` (store_true: emitted when truthy), ``value`` (one value), ``values``
    (nargs: a sequence, or a string split on whitespace), ``attention`` (the value picks a flag).
    """

    name: str
    flag: str
    kind: str = "value"


@dataclass(frozen=True)
class SampleSpec:
    """How musubi's docs make a sample of this architecture: size (``--w``/``--h``), steps
    (``--s``; None = musubi's default 20), frames (``--f``; None = 1, a still), whether the
    model needs a start image (``--i``, image-to-video), and whether an optional control image
    is a reference for the sample too (``--ci``; a required one always is). ``unsupported`` says
    why no default sample can be built (the prompt needs something only the user can give)."""

    width: int
    height: int
    steps: Optional[int] = None
    frames: Optional[int] = None
    start_image: bool = False
    references: bool = False
    unsupported: str = ""
    source: str = ""  # the musubi doc the numbers come from


@dataclass(frozen=True)
class Variant:
    """Overrides that apply when every ``when`` selector has one of the listed values.
    Later matching variants win; ``recommended`` is merged, not replaced."""

    when: Mapping[str, tuple[SelectorValue, ...]]
    suffix: Optional[str] = None
    media: Optional[tuple[str, ...]] = None
    control: Optional[str] = None
    block_swap_max: Optional[int] = None
    recommended: Mapping[str, Any] = field(default_factory=dict)
    excluded_options: frozenset[str] = frozenset()
    sample: Optional[SampleSpec] = None

    def matches(self, selectors: Mapping[str, SelectorValue]) -> bool:
        return all(selectors.get(k) in v for k, v in self.when.items())


@dataclass(frozen=True)
class LoraConversion:
    """How a LoRA trained by musubi becomes loadable by ComfyUI's LoraLoader.

    ``kind``: ``none`` (loads as is), ``convert_lora`` (convert_lora.py --target other),
    ``script`` (a dedicated converter with positional input/output), ``key_rename`` (a plain
    key-prefix rename, not a musubi command), ``not_supported`` (ComfyUI has no such model).
    """

    kind: str
    script: Optional[str] = None
    rename: Optional[tuple[str, str]] = None
    note: str = ""


@dataclass(frozen=True)
class Architecture:
    """Everything the pack knows about one musubi architecture.

    ``media``/``control``/``block_swap_max`` are the values for the default selectors' union
    (``media`` lists every kind some variant takes); use ``media_for``/``control_for``/
    ``max_blocks_to_swap`` with the user's selectors for the exact answer.
    ``step_options`` lists, per step, the options its script accepts AND uses (a flag the
    script parses but ignores or rejects at runtime, like ``--vae_dtype`` for FramePack, is
    left out). ``requires``/``conflicts``/``allowed_values`` are option rules musubi enforces.
    """

    id: str
    display_name: str
    scripts: Mapping[str, str]  # step -> script path relative to src/musubi_tuner
    cache_suffix: str
    models: tuple[ModelInput, ...]
    selectors: tuple[Selector, ...]
    media: tuple[str, ...]
    control: str  # none | optional | required | exactly_one
    network_module: str
    recommended: Mapping[str, Any]  # train option -> documented default
    step_options: Mapping[str, frozenset[str]]
    lora_conversion: LoraConversion
    cache_recommended: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    variants: tuple[Variant, ...] = ()
    block_swap_max: Optional[int] = None
    requires: tuple[tuple[str, str], ...] = ()  # (option, needed option or "model:<name>")
    conflicts: tuple[tuple[str, str], ...] = ()
    allowed_values: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    sample: Optional[SampleSpec] = None  # the documented sample settings (Variant.sample overrides)

    # -- lookups -------------------------------------------------------------------------
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
        given = dict(selectors or {})
        out: dict[str, SelectorValue] = {}
        for s in self.selectors:
            value = given.pop(s.name, None)
            if value is None:
                value = s.default
            if value not in s.choices:
                raise ConfigError(
                    f"{self.display_name}: {s.name} {value!r} is not one of {list(s.choices)}",
                    hint=f"pick one of: {', '.join(map(str, s.choices))}")
            out[s.name] = value
        if given:
            raise ConfigError(
                f"{self.display_name} has no selector {', '.join(sorted(given))}",
                hint=f"its selectors are: {', '.join(s.name for s in self.selectors) or 'none'}")
        return out

    def _variants(self, selectors: Optional[Mapping[str, Any]]) -> list[Variant]:
        values = self.resolve_selectors(selectors)
        return [v for v in self.variants if v.matches(values)]

    def _pick(self, attr: str, selectors: Optional[Mapping[str, Any]], base: Any) -> Any:
        for v in reversed(self._variants(selectors)):
            if getattr(v, attr) is not None:
                return getattr(v, attr)
        return base

    def suffix(self, selectors: Optional[Mapping[str, Any]] = None) -> str:
        """The cache-file suffix musubi uses (``wan``, ``f2k4b``, ``qie``, ...)."""
        return self._pick("suffix", selectors, self.cache_suffix)

    def media_for(self, selectors: Optional[Mapping[str, Any]] = None) -> tuple[str, ...]:
        return self._pick("media", selectors, self.media)

    def control_for(self, selectors: Optional[Mapping[str, Any]] = None) -> str:
        return self._pick("control", selectors, self.control)

    def sample_for(self, selectors: Optional[Mapping[str, Any]] = None) -> Optional[SampleSpec]:
        return self._pick("sample", selectors, self.sample)

    def max_blocks_to_swap(self, selectors: Optional[Mapping[str, Any]] = None) -> Optional[int]:
        """musubi's limit for ``--blocks_to_swap`` (None: musubi clamps or we do not know)."""
        return self._pick("block_swap_max", selectors, self.block_swap_max)

    def recommended_for(self, selectors: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        """Documented training defaults, with selector-specific overrides applied."""
        out = dict(self.recommended)
        for v in self._variants(selectors):
            out.update(v.recommended)
        return out

    def options_for(self, step: str, selectors: Optional[Mapping[str, Any]] = None) -> frozenset[str]:
        """Options the step's script accepts for these selectors."""
        excluded: frozenset[str] = frozenset()
        for v in self._variants(selectors):
            excluded |= v.excluded_options
        return self.step_options.get(step, frozenset()) - excluded

    def required_models(self, step: str, selectors: Optional[Mapping[str, Any]] = None) -> list[ModelInput]:
        values = self.resolve_selectors(selectors)
        return [m for m in self.models if m.required(step, values)]


def read_only(d: Mapping) -> Mapping:
    return MappingProxyType(dict(d))


# --------------------------------------------------------------------------------------------
# Options (our name -> flag). Whether a script takes one is per architecture (step_options).
# --------------------------------------------------------------------------------------------

_SWITCHES = (
    "split_attn", "gradient_checkpointing", "gradient_checkpointing_cpu_offload",
    "persistent_data_loader_workers", "fp8_base", "fp8_scaled", "use_pinned_memory_for_block_swap",
    "block_swap_h2d_only", "img_in_txt_in_offloading", "disable_numpy_memmap",
    "preserve_distribution_shape", "save_state", "save_state_on_train_end", "sample_at_first",
    "no_metadata", "compile", "cuda_allow_tf32", "cuda_cudnn_benchmark", "dim_from_weights",
    # caching
    "skip_existing", "keep_cache", "vae_tiling", "vae_cache_cpu", "disable_cudnn_backend",
    "vae_enable_patch_conv", "nabla_resize", "one_frame_no_2x", "one_frame_no_4x",
    "fp8_llm", "fp8_t5", "fp8_vl", "fp8_text_encoder", "fp8_te", "quantized_qwen",
    "validate_caption_structure", "warn_on_caption_issues",
    # architecture-specific training switches
    "offload_inactive_dit", "force_v2_1_time_embedding", "bulk_decode", "use_32bit_attention",
    "offload_dit_during_sampling", "no_vae_load", "force_nabla_attention", "turbo_dit_cache",
    "remove_first_image_from_target", "skip_t2i_visual_dummy",
    "use_unconditional_dit_for_lora_sampling", "log_loss_stats",
)
_VALUES = (
    "optimizer_type", "learning_rate", "max_grad_norm", "lr_scheduler", "lr_warmup_steps",
    "lr_decay_steps", "lr_scheduler_num_cycles", "lr_scheduler_power", "lr_scheduler_min_lr_ratio",
    "network_dim", "network_alpha", "network_dropout", "network_weights",
    "max_train_epochs", "max_train_steps", "max_data_loader_n_workers", "seed",
    "gradient_accumulation_steps", "mixed_precision", "save_precision", "timestep_sampling",
    "discrete_flow_shift", "sigmoid_scale", "weighting_scheme", "logit_mean", "logit_std",
    "mode_scale", "min_timestep", "max_timestep", "num_timestep_buckets", "guidance_scale",
    "blocks_to_swap", "block_swap_ring_size", "save_every_n_epochs", "save_every_n_steps",
    "save_last_n_epochs", "save_last_n_steps", "save_last_n_epochs_state", "save_last_n_steps_state",
    "resume", "logging_dir", "log_with", "log_prefix", "training_comment",
    "sample_prompts", "sample_every_n_epochs", "sample_every_n_steps", "scale_weight_norms",
    # caching
    "batch_size", "num_workers", "device", "vae_dtype", "vae_chunk_size",
    "vae_spatial_tile_sample_min_size", "vae_sample_size", "text_encoder_dtype",
    "qwen_max_length", "clip_max_length", "text_cache_dtype",
    # architecture-specific training values
    "dit_dtype", "dit_in_channels", "timestep_boundary", "latent_window_size", "num_layers",
    "scheduler_scale", "i2v_mode", "nabla_P", "nabla_wT", "nabla_wH", "nabla_wW", "nabla_method",
    "noise_scale_start", "noise_scale_end", "noise_clip_std", "dino_loss_weight",
    "sampler_preset", "initial_sigma", "ideogram4_timestep_mu", "ideogram4_timestep_std",
)
_LISTS = ("optimizer_args", "network_args", "lr_scheduler_args", "base_weights",
          "base_weights_multiplier")

# --sage_attn is parsed by every trainer but rejected for training ("SageAttention doesn't
# support training currently"), so it is not offered.
ATTENTION_FLAGS: Mapping[str, str] = read_only({"sdpa": "--sdpa", "flash_attn": "--flash_attn",
                                          "xformers": "--xformers", "flash3": "--flash3"})

OPTIONS: Mapping[str, Option] = read_only(
    {n: Option(n, f"--{n}", "switch") for n in _SWITCHES}
    | {n: Option(n, f"--{n}", "value") for n in _VALUES}
    | {n: Option(n, f"--{n}", "values") for n in _LISTS}
    | {"attention": Option("attention", "", "attention")}
)

# Options the pack sets from its own inputs; never user options (see build_args).
RESERVED_FLAGS = frozenset({"--dataset_config", "--output_dir", "--output_name", "--network_module",
                            "--input", "--output", "--target"})

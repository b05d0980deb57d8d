"""The architecture catalogue: one declarative table of every musubi-tuner v0.3.4 architecture
(scripts, model inputs, selectors, options each script accepts, recommended training settings,
LoRA conversion for ComfyUI) and ``build_args``, which turns it into a script's argument list.
Per-architecture differences are data in ``ARCHITECTURES``, never code branches. Facts were
checked against the v0.3.4 scripts; ``tests/test_catalogue.py`` checks every flag against
``executor/data/musubi_flags.json``. Imports only the standard library and ``.errors``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from .errors import ConfigError

__all__ = [
    "CACHE_LATENTS", "CACHE_TEXT_ENCODER", "TRAIN", "CONVERT", "STEPS",
    "ModelInput", "Selector", "Option", "Variant", "LoraConversion", "Architecture",
    "ARCHITECTURES", "OPTIONS", "ATTENTION_FLAGS", "get_architecture", "build_args",
    "check_options",
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


def _ro(d: Mapping) -> Mapping:
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
ATTENTION_FLAGS: Mapping[str, str] = _ro({"sdpa": "--sdpa", "flash_attn": "--flash_attn",
                                          "xformers": "--xformers", "flash3": "--flash3"})

OPTIONS: Mapping[str, Option] = _ro(
    {n: Option(n, f"--{n}", "switch") for n in _SWITCHES}
    | {n: Option(n, f"--{n}", "value") for n in _VALUES}
    | {n: Option(n, f"--{n}", "values") for n in _LISTS}
    | {"attention": Option("attention", "", "attention")}
)

# Options the pack sets from its own inputs; never user options (see build_args).
RESERVED_FLAGS = frozenset({"--dataset_config", "--output_dir", "--output_name", "--network_module",
                            "--input", "--output", "--target"})

# --------------------------------------------------------------------------------------------
# Shared building blocks of the table
# --------------------------------------------------------------------------------------------

_LATENT_BASE = frozenset({"batch_size", "num_workers", "device", "skip_existing", "keep_cache",
                          "disable_cudnn_backend"})
_HV_VAE = frozenset({"vae_tiling", "vae_chunk_size", "vae_spatial_tile_sample_min_size"})
_TE_BASE = frozenset({"batch_size", "num_workers", "device", "skip_existing", "keep_cache"})
# Everything training/parser_common.py defines that the pack offers (guidance_scale is HV-only
# in effect, and fp8_scaled is added per architecture, so neither is here).
_TRAIN_BASE = frozenset({
    "attention", "split_attn", "gradient_checkpointing", "gradient_checkpointing_cpu_offload",
    "persistent_data_loader_workers", "fp8_base", "use_pinned_memory_for_block_swap",
    "block_swap_h2d_only", "img_in_txt_in_offloading", "disable_numpy_memmap",
    "preserve_distribution_shape", "save_state", "save_state_on_train_end", "sample_at_first",
    "no_metadata", "compile", "cuda_allow_tf32", "cuda_cudnn_benchmark",
    "optimizer_type", "learning_rate", "max_grad_norm", "lr_scheduler", "lr_warmup_steps",
    "lr_decay_steps", "lr_scheduler_num_cycles", "lr_scheduler_power", "lr_scheduler_min_lr_ratio",
    "network_dim", "network_alpha", "network_dropout", "network_weights", "dim_from_weights",
    "max_train_epochs", "max_train_steps", "max_data_loader_n_workers", "seed",
    "gradient_accumulation_steps", "mixed_precision", "save_precision", "timestep_sampling",
    "discrete_flow_shift", "sigmoid_scale", "weighting_scheme", "logit_mean", "logit_std",
    "mode_scale", "min_timestep", "max_timestep", "num_timestep_buckets", "blocks_to_swap",
    "block_swap_ring_size", "save_every_n_epochs", "save_every_n_steps", "save_last_n_epochs",
    "save_last_n_steps", "save_last_n_epochs_state", "save_last_n_steps_state", "resume",
    "logging_dir", "log_with", "log_prefix", "training_comment", "sample_prompts",
    "sample_every_n_epochs", "sample_every_n_steps", "scale_weight_norms",
    "optimizer_args", "network_args", "lr_scheduler_args", "base_weights", "base_weights_multiplier",
})


def _options(latents: Iterable[str] = (), te: Iterable[str] = (), train: Iterable[str] = (), *,
             latent_base: frozenset[str] = _LATENT_BASE) -> Mapping[str, frozenset[str]]:
    return _ro({CACHE_LATENTS: latent_base | frozenset(latents),
                CACHE_TEXT_ENCODER: _TE_BASE | frozenset(te),
                TRAIN: _TRAIN_BASE | frozenset(train)})


def _scripts(latents: str, te: str, train: str, convert: Optional[str] = None) -> Mapping[str, str]:
    d = {CACHE_LATENTS: latents, CACHE_TEXT_ENCODER: te, TRAIN: train}
    if convert:
        d[CONVERT] = convert
    return _ro(d)


def _valued(flag: str, choices: Sequence[str]) -> Mapping[SelectorValue, tuple[str, ...]]:
    """Every value is passed as ``flag value``."""
    return _ro({c: (flag, c) for c in choices})


def _switch(flag: str, when: Sequence[SelectorValue]) -> Mapping[SelectorValue, tuple[str, ...]]:
    """A store_true flag emitted for the listed values only."""
    return _ro({c: (flag,) for c in when})


_ON_OFF = (False, True)


def _dit(tooltip: str, steps: tuple[str, ...] = (TRAIN,)) -> ModelInput:
    return ModelInput("dit", "--dit", "diffusion_models", steps, (TRAIN,), label="DiT",
                      tooltip=tooltip)


def _vae(tooltip: str, steps: tuple[str, ...] = (CACHE_LATENTS, TRAIN)) -> ModelInput:
    return ModelInput("vae", "--vae", "vae", steps, (CACHE_LATENTS,), label="VAE", tooltip=tooltip,
                      sampling=True)


def _te(name: str, flag: str, label: str, tooltip: str, *, kind: str = "file",
        folder: str = "text_encoders", default: Optional[str] = None) -> ModelInput:
    return ModelInput(name, flag, folder, (CACHE_TEXT_ENCODER, TRAIN), (CACHE_TEXT_ENCODER,),
                      kind=kind, label=label, tooltip=tooltip, sampling=True, default=default)


# The documented training command every architecture's doc shows, minus what differs.
_DOC_TRAIN = _ro({
    "attention": "sdpa", "mixed_precision": "bf16", "optimizer_type": "adamw8bit",
    "gradient_checkpointing": True, "max_data_loader_n_workers": 2,
    "persistent_data_loader_workers": True, "network_dim": 32,
    # musubi's own default alpha, stated so the command shows it; docs that give one override it
    "network_alpha": 1, "max_train_epochs": 16, "save_every_n_epochs": 1, "seed": 42,
    "weighting_scheme": "none",
})


def _train(**overrides: Any) -> Mapping[str, Any]:
    d = dict(_DOC_TRAIN)
    d.update(overrides)
    return _ro({k: v for k, v in d.items() if v is not None})


_NO_CONVERSION = LoraConversion("none", note="Loads as is in ComfyUI's LoraLoader.")

# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

_WAN_TASKS = ("t2v-14B", "t2v-1.3B", "i2v-14B", "t2i-14B", "flf2v-14B", "t2v-1.3B-FC",
              "t2v-14B-FC", "i2v-14B-FC", "i2v-A14B", "t2v-A14B")
# wan_train_network treats a task as image-conditioned when its name has "i2v" or "flf2v";
# those need first-frame latents, i.e. --i2v at latent caching.
_WAN_I2V = ("i2v-14B", "flf2v-14B", "i2v-14B-FC", "i2v-A14B")
# Wan2.1 image-conditioned models also need CLIP features (Wan2.2 A14B does not).
_WAN_CLIP = ("i2v-14B", "flf2v-14B", "i2v-14B-FC")
_FLUX2_VERSIONS = ("dev", "klein-4b", "klein-base-4b", "klein-9b", "klein-base-9b")
_QWEN_VERSIONS = ("original", "edit", "edit-2509", "edit-2511", "layered")
_K5_TASKS = ("k5-pro-t2v-5s-sd", "k5-pro-t2v-10s-sd", "k5-pro-i2v-5s-sd", "k5-pro-t2v-5s-hd",
             "k5-pro-t2v-10s-hd", "k5-pro-i2v-5s-hd", "k5-lite-t2v-5s-sd", "k5-lite-t2v-10s-sd",
             "k5-lite-i2v-5s-sd")

_ARCHS = (
    Architecture(
        id="hv", display_name="HunyuanVideo",
        scripts=_scripts("cache_latents.py", "cache_text_encoder_outputs.py", "hv_train_network.py",
                         "convert_lora.py"),
        cache_suffix="hv",
        models=(
            _dit("HunyuanVideo DiT, e.g. mp_rank_00_model_states.pt or a ComfyUI bf16 safetensors."),
            _vae("HunyuanVideo VAE (hunyuan-video-t2v-720p/vae/pytorch_model.pt)."),
            _te("text_encoder1", "--text_encoder1", "Text encoder 1 (LLM)",
                "LLaVA-LLaMA-3 text encoder: a folder or ComfyUI's llava_llama3_fp16.safetensors.",
                kind="file_or_dir"),
            _te("text_encoder2", "--text_encoder2", "Text encoder 2 (CLIP-L)",
                "CLIP-L text encoder: a folder or ComfyUI's clip_l.safetensors.", kind="file_or_dir"),
        ),
        selectors=(),
        media=("image", "video"), control="none", network_module="networks.lora",
        recommended=_train(fp8_base=True, learning_rate=2e-4, timestep_sampling="shift",
                           discrete_flow_shift=7.0),
        cache_recommended=_ro({CACHE_LATENTS: {"vae_chunk_size": 32, "vae_tiling": True},
                               CACHE_TEXT_ENCODER: {"batch_size": 16}}),
        step_options=_options(
            latents={"vae_dtype", *_HV_VAE},
            te={"text_encoder_dtype", "fp8_llm"},
            train={"dit_dtype", "dit_in_channels", "fp8_llm", "text_encoder_dtype", "guidance_scale",
                   *_HV_VAE}),
        # 20 double + 40 single blocks; enable_block_swap asserts n//2 <= 19 and
        # (n - n//2)*2 + 1 <= 39, so 38 (the training doc says 36).
        block_swap_max=38,
        lora_conversion=LoraConversion(
            "convert_lora", "convert_lora.py",
            note="As is, ComfyUI loads 160 of 240 modules (img_mlp names differ); "
                 "convert_lora.py --target other loads all."),
        notes=("No --fp8_scaled for HunyuanVideo.", "Lower discrete_flow_shift to about 3.0 if "
               "details are not learned (musubi docs)."),
    ),
    Architecture(
        id="hv15", display_name="HunyuanVideo 1.5",
        scripts=_scripts("hv_1_5_cache_latents.py", "hv_1_5_cache_text_encoder_outputs.py",
                         "hv_1_5_train_network.py",
                         "networks/convert_hunyuan_video_1_5_lora_to_comfy.py"),
        cache_suffix="hv15",
        models=(
            _dit("HunyuanVideo 1.5 DiT (t2v or i2v). ComfyUI's fp16 DiT cannot train in bf16."),
            _vae("HunyuanVideo 1.5 VAE."),
            _te("text_encoder", "--text_encoder", "Text encoder (Qwen2.5-VL)",
                "Qwen2.5-VL 7B, e.g. qwen_2.5_vl_7b.safetensors."),
            _te("byt5", "--byt5", "ByT5 text encoder", "byt5_small_glyphxl_fp16.safetensors."),
            ModelInput("image_encoder", "--image_encoder", "clip_vision", (CACHE_LATENTS, TRAIN),
                       (CACHE_LATENTS,), label="Image encoder (SigLIP)",
                       tooltip="sigclip_vision_patch14_384.safetensors; needed for i2v.",
                       sampling=True, required_when=(("task", ("i2v",)),)),
        ),
        selectors=(
            Selector("task", ("t2v", "i2v"), "t2v",
                     _ro({CACHE_LATENTS: _switch("--i2v", ("i2v",)), TRAIN: _valued("--task", ("t2v", "i2v"))}),
                     label="Task", tooltip="t2v, or i2v (first frame as condition; needs the image encoder)."),
        ),
        media=("image", "video"), control="none", network_module="networks.lora_hv_1_5",
        recommended=_train(learning_rate=1e-4, timestep_sampling="shift", discrete_flow_shift=2.0),
        cache_recommended=_ro({CACHE_TEXT_ENCODER: {"batch_size": 16}}),
        step_options=_options(
            latents={"vae_dtype", "vae_sample_size", "vae_enable_patch_conv"},
            te={"fp8_vl"},
            train={"dit_dtype", "fp8_scaled", "fp8_vl", "vae_sample_size", "vae_enable_patch_conv"}),
        block_swap_max=51,
        lora_conversion=LoraConversion(
            "script", "networks/convert_hunyuan_video_1_5_lora_to_comfy.py",
            note="As is, ComfyUI loads 108 of 756 modules (q/k/v are fused in ComfyUI); the dedicated "
                 "converter fuses them. convert_lora.py --target other is not enough."),
        notes=("musubi's docs recommend --optimizer_type Muon with PyTorch 2.9 or later.",),
    ),
    Architecture(
        id="wan", display_name="Wan 2.1 / 2.2",
        scripts=_scripts("wan_cache_latents.py", "wan_cache_text_encoder_outputs.py", "wan_train_network.py"),
        cache_suffix="wan",
        models=(
            _dit("Wan DiT matching the task. For Wan2.2 A14B this is the low-noise model."),
            ModelInput("dit_high_noise", "--dit_high_noise", "diffusion_models", (TRAIN,), (),
                       label="DiT (high noise)",
                       tooltip="Wan2.2 A14B only: the high-noise DiT, to train both models at once "
                               "(switched at timestep_boundary)."),
            _vae("Wan2.1 VAE (Wan2.1_VAE.pth or wan_2.1_vae.safetensors); Wan2.2 14B uses it too."),
            _te("t5", "--t5", "T5 text encoder", "umT5-XXL, models_t5_umt5-xxl-enc-bf16.pth."),
            ModelInput("clip", "--clip", "clip_vision", (CACHE_LATENTS, TRAIN), (CACHE_LATENTS,),
                       label="CLIP vision (Wan2.1 I2V)",
                       tooltip="models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth; Wan2.1 i2v, "
                               "flf2v and one-frame training need it, Wan2.2 does not.",
                       sampling=True,
                       required_when=(("task", _WAN_CLIP), ("one_frame", (True,)))),
        ),
        selectors=(
            Selector("task", _WAN_TASKS, "t2v-14B",
                     _ro({CACHE_LATENTS: _switch("--i2v", _WAN_I2V), TRAIN: _valued("--task", _WAN_TASKS)}),
                     label="Task", tooltip="The Wan model the DiT is: 2.1 t2v/i2v/flf2v/Fun-Control, "
                                           "or 2.2 A14B."),
            Selector("one_frame", _ON_OFF, False,
                     _ro({CACHE_LATENTS: _switch("--one_frame", (True,)),
                          TRAIN: _switch("--one_frame", (True,))}),
                     label="One-frame training",
                     tooltip="Image dataset with control images (use with task i2v-14B or flf2v-14B)."),
        ),
        media=("image", "video"), control="optional", network_module="networks.lora_wan",
        recommended=_train(fp8_base=True, learning_rate=2e-4, timestep_sampling="shift",
                           discrete_flow_shift=3.0),
        cache_recommended=_ro({CACHE_TEXT_ENCODER: {"batch_size": 16}}),
        step_options=_options(
            latents={"vae_dtype", "vae_cache_cpu"},
            te={"fp8_t5"},
            train={"fp8_scaled", "fp8_t5", "vae_cache_cpu", "force_v2_1_time_embedding",
                   "timestep_boundary", "offload_inactive_dit"}),
        block_swap_max=39,
        variants=(
            Variant({"task": ("t2v-1.3B", "t2v-1.3B-FC")}, block_swap_max=29),
            Variant({"task": ("t2v-1.3B-FC", "t2v-14B-FC", "i2v-14B-FC")}, control="required"),
            Variant({"task": tuple(t for t in _WAN_TASKS if "A14B" not in t)},
                    excluded_options=frozenset({"timestep_boundary", "offload_inactive_dit",
                                                "force_v2_1_time_embedding"})),
            Variant({"one_frame": (True,)}, media=("image",), control="required"),
        ),
        conflicts=(("offload_inactive_dit", "blocks_to_swap"),),
        lora_conversion=_NO_CONVERSION,
        notes=("Wan2.2 single-model training: musubi suggests min/max_timestep 0-875 (t2v low), "
               "875-1000 (t2v high), 0-900 (i2v low), 900-1000 (i2v high) with "
               "preserve_distribution_shape.",
               "fp8 (e4m3fn) DiT weights work with fp8_base only, not fp8_scaled.",
               "Mixed precision must match bf16/fp16 DiT weights."),
    ),
    Architecture(
        id="framepack", display_name="FramePack",
        scripts=_scripts("fpack_cache_latents.py", "fpack_cache_text_encoder_outputs.py",
                         "fpack_train_network.py"),
        cache_suffix="fp",
        models=(
            _dit("FramePack DiT (I2V); FramePack-F1 with the F1 selector."),
            _vae("HunyuanVideo VAE."),
            _te("text_encoder1", "--text_encoder1", "Text encoder 1 (LLaMA)", "llava_llama3_fp16.safetensors."),
            _te("text_encoder2", "--text_encoder2", "Text encoder 2 (CLIP-L)", "clip_l.safetensors."),
            ModelInput("image_encoder", "--image_encoder", "clip_vision", (CACHE_LATENTS, TRAIN),
                       (CACHE_LATENTS,), label="Image encoder (SigLIP)",
                       tooltip="sigclip_vision_patch14_384.safetensors.", sampling=True),
        ),
        selectors=(
            Selector("f1", _ON_OFF, False,
                     _ro({CACHE_LATENTS: _switch("--f1", (True,)), TRAIN: _switch("--f1", (True,))}),
                     label="FramePack-F1", tooltip="Train FramePack-F1 (forward sampling)."),
            Selector("one_frame", _ON_OFF, False,
                     _ro({CACHE_LATENTS: _switch("--one_frame", (True,)),
                          TRAIN: _switch("--one_frame", (True,))}),
                     label="One-frame training", tooltip="Image dataset with control images."),
        ),
        media=("image", "video"), control="optional", network_module="networks.lora_framepack",
        recommended=_train(learning_rate=2e-4, timestep_sampling="shift", discrete_flow_shift=3.0),
        cache_recommended=_ro({CACHE_LATENTS: {"vae_chunk_size": 32},
                               CACHE_TEXT_ENCODER: {"batch_size": 16}}),
        step_options=_options(
            latents={"one_frame_no_2x", "one_frame_no_4x", *_HV_VAE},
            te={"fp8_llm"},
            train={"fp8_scaled", "fp8_llm", "latent_window_size", "bulk_decode", *_HV_VAE}),
        # Same block layout and limit rule as HunyuanVideo; the doc says 36.
        block_swap_max=38,
        variants=(
            Variant({"one_frame": (False,)}, media=("video",), control="none",
                    excluded_options=frozenset({"one_frame_no_2x", "one_frame_no_4x"})),
            Variant({"one_frame": (True,)}, media=("image",), control="required"),
        ),
        lora_conversion=LoraConversion(
            "not_supported", note="ComfyUI core has no FramePack model; wrapper nodes load LoRAs their own way."),
        notes=("Video datasets use frame_extraction = \"full\" with a large max_frames.",
               "Use split_attn with batch size > 1.",
               "Re-cache without skip_existing after changing F1 or one-frame."),
    ),
    Architecture(
        id="flux_kontext", display_name="FLUX.1 Kontext",
        scripts=_scripts("flux_kontext_cache_latents.py", "flux_kontext_cache_text_encoder_outputs.py",
                         "flux_kontext_train_network.py"),
        cache_suffix="fk",
        models=(
            _dit("flux1-kontext-dev.safetensors."),
            _vae("The FLUX AE, ae.safetensors."),
            _te("text_encoder1", "--text_encoder1", "Text encoder 1 (T5-XXL)", "t5xxl_fp16.safetensors."),
            _te("text_encoder2", "--text_encoder2", "Text encoder 2 (CLIP-L)", "clip_l.safetensors."),
        ),
        selectors=(),
        media=("image",), control="exactly_one", network_module="networks.lora_flux",
        recommended=_train(learning_rate=1e-4, timestep_sampling="flux_shift"),
        cache_recommended=_ro({CACHE_TEXT_ENCODER: {"batch_size": 16}}),
        # --vae_dtype: "VAE dtype is not supported"; tiling flags parsed but unused; --fp8_t5
        # hits a typo (torch.float8e4m3fn) in v0.3.4, so none of them is offered.
        step_options=_options(train={"fp8_scaled"}),
        # 19 double + 38 single blocks: n//2 <= 17 and (n - n//2)*2 + 1 <= 36.
        block_swap_max=34,
        lora_conversion=LoraConversion(
            "none", note="Loads as is (228/228); convert_lora.py --target other would break 76 modules."),
        notes=("Every image needs exactly one control image.",),
    ),
    Architecture(
        id="flux_2", display_name="FLUX.2",
        scripts=_scripts("flux_2_cache_latents.py", "flux_2_cache_text_encoder_outputs.py",
                         "flux_2_train_network.py"),
        cache_suffix="f2d",
        models=(
            _dit("FLUX.2 dev or klein DiT matching the model version (klein base models train best)."),
            _vae("FLUX.2 AE, ae.safetensors."),
            _te("text_encoder", "--text_encoder", "Text encoder",
                "Mistral 3 for dev, Qwen3 4B/8B for klein (the first file of a split model)."),
        ),
        selectors=(
            Selector("model_version", _FLUX2_VERSIONS, "dev",
                     _ro({s: _valued("--model_version", _FLUX2_VERSIONS) for s in STEPS}),
                     label="Model version", tooltip="dev, klein 4B/9B, or their base models."),
        ),
        media=("image",), control="optional", network_module="networks.lora_flux_2",
        recommended=_train(learning_rate=1e-4, timestep_sampling="flux2_shift"),
        step_options=_options(latents={"vae_dtype"}, te={"fp8_text_encoder"},
                              train={"fp8_scaled", "fp8_text_encoder"}),
        block_swap_max=29,
        variants=(
            Variant({"model_version": ("klein-4b", "klein-base-4b")}, suffix="f2k4b", block_swap_max=13),
            Variant({"model_version": ("klein-9b", "klein-base-9b")}, suffix="f2k9b", block_swap_max=16),
            # musubi's doc: the fp8 text encoder is not available for dev
            Variant({"model_version": ("dev",)}, excluded_options=frozenset({"fp8_text_encoder"})),
        ),
        lora_conversion=LoraConversion(
            "none", note="Loads as is (dev 160/160; klein needs ComfyUI 0.33 or later); "
                         "convert_lora.py --target other would break modules."),
        notes=("Block swap limits are musubi's documented values with fp8_base + fp8_scaled.",),
    ),
    Architecture(
        id="qwen_image", display_name="Qwen-Image",
        scripts=_scripts("qwen_image_cache_latents.py", "qwen_image_cache_text_encoder_outputs.py",
                         "qwen_image_train_network.py"),
        cache_suffix="qi",
        models=(
            _dit("Qwen-Image DiT matching the model version (bf16; fp8 checkpoints cannot be used)."),
            _vae("Qwen-Image VAE; Layered needs qwen_image_layered_vae.safetensors."),
            _te("text_encoder", "--text_encoder", "Text encoder (Qwen2.5-VL)", "qwen_2.5_vl_7b.safetensors."),
        ),
        selectors=(
            Selector("model_version", _QWEN_VERSIONS, "original",
                     _ro({s: _valued("--model_version", _QWEN_VERSIONS) for s in STEPS}),
                     label="Model version", tooltip="original, edit (2509/2511), or layered."),
        ),
        media=("image",), control="optional", network_module="networks.lora_qwen_image",
        recommended=_train(learning_rate=5e-5, timestep_sampling="shift", discrete_flow_shift=2.2,
                           network_dim=16),
        cache_recommended=_ro({CACHE_TEXT_ENCODER: {"batch_size": 1}}),
        step_options=_options(te={"fp8_vl"},
                              train={"fp8_scaled", "fp8_vl", "num_layers", "remove_first_image_from_target"}),
        block_swap_max=59,
        variants=(
            Variant({"model_version": ("original",)}, control="none"),
            Variant({"model_version": ("edit", "edit-2509", "edit-2511")}, suffix="qie", control="required"),
            Variant({"model_version": ("layered",)}, suffix="qil", control="none"),
            Variant({"model_version": ("original", "edit", "edit-2509", "edit-2511")},
                    excluded_options=frozenset({"remove_first_image_from_target"})),
        ),
        lora_conversion=LoraConversion("none", note="Loads as is (840/840)."),
        notes=("Layered datasets set multiple_target = true.",
               "Use split_attn with attention other than sdpa; flash3 does not work."),
    ),
    Architecture(
        id="zimage", display_name="Z-Image",
        scripts=_scripts("zimage_cache_latents.py", "zimage_cache_text_encoder_outputs.py",
                         "zimage_train_network.py", "networks/convert_z_image_lora_to_comfy.py"),
        cache_suffix="zi",
        models=(
            _dit("Z-Image DiT (base recommended; Turbo via a de-turbo DiT)."),
            _vae("Z-Image VAE."),
            _te("text_encoder", "--text_encoder", "Text encoder (Qwen3)", "Qwen3 text encoder."),
        ),
        selectors=(),
        media=("image",), control="none", network_module="networks.lora_zimage",
        recommended=_train(learning_rate=1e-4, timestep_sampling="shift", discrete_flow_shift=2.0),
        cache_recommended=_ro({CACHE_TEXT_ENCODER: {"batch_size": 16}}),
        # --vae_dtype only logs that the VAE always runs in float32
        step_options=_options(te={"fp8_llm"}, train={"fp8_scaled", "fp8_llm", "use_32bit_attention"}),
        block_swap_max=28,
        lora_conversion=LoraConversion(
            "script", "networks/convert_z_image_lora_to_comfy.py",
            note="As is, ComfyUI loads 90 of 210 modules; the dedicated converter fuses q/k/v. "
                 "convert_lora.py --target other also works with ComfyUI 0.3.75 or later."),
    ),
    Architecture(
        id="kandinsky5", display_name="Kandinsky 5",
        scripts=_scripts("kandinsky5_cache_latents.py", "kandinsky5_cache_text_encoder_outputs.py",
                         "kandinsky5_train_network.py"),
        cache_suffix="k5",
        models=(
            _dit("Kandinsky 5 DiT matching the task, e.g. kandinsky5pro_t2v_sft_5s.safetensors."),
            _vae("HunyuanVideo 3D VAE (diffusion_pytorch_model.safetensors)."),
            _te("text_encoder_qwen", "--text_encoder_qwen", "Qwen2.5-VL (HF id or folder)",
                "A Hugging Face id or a local snapshot folder.", kind="hf_id",
                default="Qwen/Qwen2.5-VL-7B-Instruct"),
            _te("text_encoder_clip", "--text_encoder_clip", "CLIP (HF id or folder)",
                "A Hugging Face id or a local snapshot folder.", kind="hf_id",
                default="openai/clip-vit-large-patch14"),
        ),
        selectors=(
            Selector("task", _K5_TASKS, "k5-pro-t2v-5s-sd",
                     _ro({TRAIN: _valued("--task", _K5_TASKS)}),
                     label="Task", tooltip="Model configuration; the DiT must match it."),
        ),
        media=("image", "video"), control="none", network_module="networks.lora_kandinsky",
        recommended=_train(fp8_base=True, max_data_loader_n_workers=1, learning_rate=1e-4,
                           optimizer_args=("weight_decay=0.001", "betas=(0.9,0.95)"),
                           max_grad_norm=1.0, lr_scheduler="constant_with_warmup", lr_warmup_steps=100,
                           network_alpha=32, timestep_sampling="shift", discrete_flow_shift=5.0,
                           max_train_epochs=50, scheduler_scale=10.0),
        cache_recommended=_ro({CACHE_TEXT_ENCODER: {"batch_size": 4}}),
        step_options=_options(
            latents={"vae_dtype", "nabla_resize"},
            te={"qwen_max_length", "clip_max_length", "quantized_qwen"},
            train={"fp8_scaled", "offload_dit_during_sampling", "no_vae_load", "scheduler_scale",
                   "i2v_mode", "force_nabla_attention", "nabla_P", "nabla_wT", "nabla_wH", "nabla_wW",
                   "nabla_method"}),
        block_swap_max=None,  # musubi clamps the number instead of rejecting it
        lora_conversion=LoraConversion(
            "none", note="Loads as is with ComfyUI 0.33 or later; --target other would load nothing."),
        notes=("LoHa/LoKr are not supported for Kandinsky 5.",),
    ),
    Architecture(
        id="ideogram4", display_name="Ideogram 4",
        scripts=_scripts("ideogram4_cache_latents.py", "ideogram4_cache_text_encoder_outputs.py",
                         "ideogram4_train_network.py"),
        cache_suffix="i4",
        models=(
            _dit("The pre-quantized FP8 DiT, ideogram4_fp8_scaled.safetensors."),
            ModelInput("unconditional_dit", "--unconditional_dit", "diffusion_models", (TRAIN,), (),
                       label="Unconditional DiT", tooltip="Optional, for sample generation."),
            _vae("The FLUX.2 VAE, flux2-vae.safetensors."),
            _te("text_encoder", "--text_encoder", "Text encoder (Qwen3-VL 8B)",
                "qwen3vl_8b_fp8_scaled.safetensors."),
        ),
        selectors=(),
        media=("image",), control="none", network_module="networks.lora_ideogram4",
        # musubi's doc command gives no optimizer or learning rate (the parser defaults crash);
        # these are the pack's choice, in line with the other image architectures.
        recommended=_train(learning_rate=1e-4, timestep_sampling="ideogram4_shift",
                           max_data_loader_n_workers=None, persistent_data_loader_workers=None),
        cache_recommended=_ro({CACHE_LATENTS: {"vae_dtype": "bfloat16"},
                               CACHE_TEXT_ENCODER: {"text_cache_dtype": "bf16"}}),
        step_options=_options(
            latents={"vae_dtype"},
            te={"text_cache_dtype", "validate_caption_structure", "warn_on_caption_issues"},
            train={"dit_dtype", "use_unconditional_dit_for_lora_sampling", "sampler_preset",
                   "initial_sigma", "log_loss_stats", "ideogram4_timestep_mu", "ideogram4_timestep_std",
                   "validate_caption_structure", "warn_on_caption_issues"}),
        block_swap_max=33,
        allowed_values=_ro({"weighting_scheme": ("none",)}),
        lora_conversion=LoraConversion(
            "none", note="Loads as is with ComfyUI 0.33 or later; apply it to the conditional DiT."),
        notes=("No --fp8_scaled: the DiT is already FP8.", "Text-encoder caches are large "
               "(about 14-218 MB per image).", "Sampling needs both the VAE and the text encoder."),
    ),
    Architecture(
        id="krea2", display_name="Krea 2",
        scripts=_scripts("krea2_cache_latents.py", "krea2_cache_text_encoder_outputs.py",
                         "krea2_train_network.py"),
        cache_suffix="kr2",
        models=(
            _dit("Krea 2 raw DiT."),
            ModelInput("turbo_dit", "--turbo_dit", "diffusion_models", (TRAIN,), (),
                       label="Turbo DiT", tooltip="Optional: sample with the Turbo DiT (not with block swap)."),
            _vae("The Qwen-Image VAE."),
            _te("text_encoder", "--text_encoder", "Text encoder (Qwen3-VL 4B)", "qwen3vl_4b_bf16.safetensors."),
        ),
        selectors=(),
        media=("image",), control="none", network_module="networks.lora_krea2",
        recommended=_train(learning_rate=1e-4, timestep_sampling="shift", discrete_flow_shift=2.5,
                           network_alpha=32),
        cache_recommended=_ro({CACHE_TEXT_ENCODER: {"batch_size": 1}}),
        step_options=_options(te={"text_encoder_dtype"}, train={"fp8_scaled", "turbo_dit_cache"}),
        block_swap_max=26,
        requires=(("fp8_base", "fp8_scaled"), ("turbo_dit_cache", "model:turbo_dit")),
        conflicts=(("model:turbo_dit", "blocks_to_swap"),),
        lora_conversion=LoraConversion(
            "none", note="Loads as is with ComfyUI 0.33 or later; --target other drops 32 modules."),
        notes=("Use timestep_sampling krea2_shift for mixed resolutions.",),
    ),
    Architecture(
        id="hidream_o1", display_name="HiDream-O1-Image",
        scripts=_scripts("hidream_o1_cache_pixel.py", "hidream_o1_cache_text_encoder_outputs.py",
                         "hidream_o1_train_network.py"),
        cache_suffix="ho1",
        models=(
            ModelInput("dit", "--dit", "diffusion_models", (CACHE_TEXT_ENCODER, TRAIN), (TRAIN,),
                       label="Model", tooltip="hidream_o1_image_bf16.safetensors. Optional at "
                                              "text-encoder caching (needed there for fp8_te)."),
        ),
        selectors=(
            Selector("model_type", ("full", "dev"), "full",
                     _ro({CACHE_TEXT_ENCODER: _valued("--model_type", ("full", "dev")),
                          TRAIN: _valued("--model_type", ("full", "dev"))}),
                     label="Model type", tooltip="full or dev."),
            Selector("task", ("t2i", "i2i"), "t2i",
                     _ro({TRAIN: _valued("--task", ("t2i", "i2i"))}),
                     label="Task", tooltip="t2i, or i2i with control images."),
        ),
        media=("image",), control="optional", network_module="networks.lora_hidream_o1",
        recommended=_train(learning_rate=4e-5, timestep_sampling="uniform", noise_scale_start=8.0,
                           noise_scale_end=8.0, noise_clip_std=0.0,
                           max_data_loader_n_workers=None, persistent_data_loader_workers=None),
        cache_recommended=_ro({CACHE_LATENTS: {"batch_size": 1}, CACHE_TEXT_ENCODER: {"batch_size": 16}}),
        # the pixel cache has no VAE: --vae and --vae_dtype are parsed but unused
        step_options=_options(
            te={"fp8_te"},
            train={"fp8_scaled", "noise_scale_start", "noise_scale_end", "noise_clip_std",
                   "skip_t2i_visual_dummy", "dino_loss_weight"}),
        block_swap_max=None,  # decoder layers - 1; the layer count comes from the model's config
        variants=(
            Variant({"model_type": ("dev",)},
                    recommended={"noise_scale_start": 7.5, "noise_scale_end": 7.5, "noise_clip_std": 2.5}),
            Variant({"task": ("t2i",)}, control="none"),
            Variant({"task": ("i2i",)}, control="required",
                    recommended={"network_args": ("conv_dim=4", "conv_alpha=1")}),
        ),
        requires=(("fp8_base", "fp8_scaled"), ("fp8_te", "model:dit")),
        allowed_values=_ro({"weighting_scheme": ("none",)}),
        lora_conversion=LoraConversion(
            "key_rename", rename=("lora_unet_model_", "lora_unet_"),
            note="No musubi tool works: ComfyUI (0.33 or later) loads 0 modules as is; renaming the key "
                 "prefix lora_unet_model_ to lora_unet_ loads all (effect on images unverified)."),
        notes=("Bucket resolution step is 32.", "musubi's doc commands omit the attention flag; "
               "the pack always passes one."),
    ),
)

ARCHITECTURES: Mapping[str, Architecture] = _ro({a.id: a for a in _ARCHS})


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

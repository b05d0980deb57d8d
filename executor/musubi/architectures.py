"""Every musubi-tuner v0.3.4 architecture as data: scripts, model inputs, selectors, the options
each script accepts, recommended training settings from musubi's docs, block-swap limits and the
LoRA conversion for ComfyUI. A long module on purpose: it is a table, and the code that reads it is
``catalogue.py``. Facts were checked against the v0.3.4 scripts; ``tests/test_catalogue.py`` checks
every flag against ``data/musubi_flags.json``.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

from .schema import (CACHE_LATENTS, CACHE_TEXT_ENCODER, CONVERT, STEPS, TRAIN, Architecture, LoraConversion,
                     ModelInput, SampleSpec, Selector, SelectorValue, Variant, read_only)

__all__ = ["ARCHITECTURES"]


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
    return read_only({CACHE_LATENTS: latent_base | frozenset(latents),
                CACHE_TEXT_ENCODER: _TE_BASE | frozenset(te),
                TRAIN: _TRAIN_BASE | frozenset(train)})


def _scripts(latents: str, te: str, train: str, convert: Optional[str] = None) -> Mapping[str, str]:
    d = {CACHE_LATENTS: latents, CACHE_TEXT_ENCODER: te, TRAIN: train}
    if convert:
        d[CONVERT] = convert
    return read_only(d)


def _valued(flag: str, choices: Sequence[str]) -> Mapping[SelectorValue, tuple[str, ...]]:
    """Every value is passed as ``flag value``."""
    return read_only({c: (flag, c) for c in choices})


def _switch(flag: str, when: Sequence[SelectorValue]) -> Mapping[SelectorValue, tuple[str, ...]]:
    """A store_true flag emitted for the listed values only."""
    return read_only({c: (flag,) for c in when})


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
_DOC_TRAIN = read_only({
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
    return read_only({k: v for k, v in d.items() if v is not None})


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
        # docs/hunyuan_video.md, inference: --video_size 544 960 --infer_steps 30
        sample=SampleSpec(960, 544, 30, source="hunyuan_video.md"),
        cache_recommended=read_only({CACHE_LATENTS: {"vae_chunk_size": 32, "vae_tiling": True},
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
                     read_only({CACHE_LATENTS: _switch("--i2v", ("i2v",)), TRAIN: _valued("--task", ("t2v", "i2v"))}),
                     label="Task", tooltip="t2v, or i2v (first frame as condition; needs the image encoder)."),
        ),
        media=("image", "video"), control="none", network_module="networks.lora_hv_1_5",
        recommended=_train(learning_rate=1e-4, timestep_sampling="shift", discrete_flow_shift=2.0),
        # docs/hunyuan_video_1_5.md, inference: --video_size 720 1280 --infer_steps 25
        sample=SampleSpec(1280, 720, 25, source="hunyuan_video_1_5.md"),
        variants=(Variant({"task": ("i2v",)},
                          sample=SampleSpec(1280, 720, 25, start_image=True, source="hunyuan_video_1_5.md")),),
        cache_recommended=read_only({CACHE_TEXT_ENCODER: {"batch_size": 16}}),
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
                     read_only({CACHE_LATENTS: _switch("--i2v", _WAN_I2V), TRAIN: _valued("--task", _WAN_TASKS)}),
                     label="Task", tooltip="The Wan model the DiT is: 2.1 t2v/i2v/flf2v/Fun-Control, "
                                           "or 2.2 A14B."),
            Selector("one_frame", _ON_OFF, False,
                     read_only({CACHE_LATENTS: _switch("--one_frame", (True,)),
                          TRAIN: _switch("--one_frame", (True,))}),
                     label="One-frame training",
                     tooltip="Image dataset with control images (use with task i2v-14B or flf2v-14B)."),
        ),
        media=("image", "video"), control="optional", network_module="networks.lora_wan",
        recommended=_train(fp8_base=True, learning_rate=2e-4, timestep_sampling="shift",
                           discrete_flow_shift=3.0),
        # docs/wan.md, sample prompt: --w 832 --h 480 --f 81 --d 42 --s 20 (a still here: --f 1)
        sample=SampleSpec(832, 480, 20, source="wan.md"),
        cache_recommended=read_only({CACHE_TEXT_ENCODER: {"batch_size": 16}}),
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
            Variant({"task": _WAN_I2V}, sample=SampleSpec(832, 480, 20, start_image=True, source="wan.md")),
            Variant({"task": ("t2v-1.3B-FC", "t2v-14B-FC", "i2v-14B-FC")}, sample=SampleSpec(
                832, 480, 20, unsupported="a Fun-Control sample needs a control video (--cn)")),
            Variant({"one_frame": (True,)}, sample=SampleSpec(
                384, 576, 10, unsupported="a one-frame sample needs its start and control images and --of "
                                          "(docs/wan_1f.md)")),
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
                     read_only({CACHE_LATENTS: _switch("--f1", (True,)), TRAIN: _switch("--f1", (True,))}),
                     label="FramePack-F1", tooltip="Train FramePack-F1 (forward sampling)."),
            Selector("one_frame", _ON_OFF, False,
                     read_only({CACHE_LATENTS: _switch("--one_frame", (True,)),
                          TRAIN: _switch("--one_frame", (True,))}),
                     label="One-frame training", tooltip="Image dataset with control images."),
        ),
        media=("image", "video"), control="optional", network_module="networks.lora_framepack",
        recommended=_train(learning_rate=2e-4, timestep_sampling="shift", discrete_flow_shift=3.0),
        # docs/framepack.md, sample prompt: --w 832 --h 480 --f 5 --d 42 --s 20 --i start_image
        sample=SampleSpec(832, 480, 20, frames=5, start_image=True, source="framepack.md"),
        cache_recommended=read_only({CACHE_LATENTS: {"vae_chunk_size": 32},
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
            Variant({"one_frame": (True,)}, media=("image",), control="required",
                    sample=SampleSpec(384, 576, 10, unsupported="a one-frame sample needs its start and control "
                                                                "images and --of (docs/framepack_1f.md)")),
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
        # docs/flux_kontext.md, inference: --image_size 1024 1024 --infer_steps 25
        sample=SampleSpec(1024, 1024, 25, source="flux_kontext.md"),
        cache_recommended=read_only({CACHE_TEXT_ENCODER: {"batch_size": 16}}),
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
                     read_only({s: _valued("--model_version", _FLUX2_VERSIONS) for s in STEPS}),
                     label="Model version", tooltip="dev, klein 4B/9B, or their base models."),
        ),
        media=("image",), control="optional", network_module="networks.lora_flux_2",
        recommended=_train(learning_rate=1e-4, timestep_sampling="flux2_shift"),
        # docs/flux_2.md, inference: --image_size 1024 1024 --infer_steps 50
        sample=SampleSpec(1024, 1024, 50, references=True, source="flux_2.md"),
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
                     read_only({s: _valued("--model_version", _QWEN_VERSIONS) for s in STEPS}),
                     label="Model version", tooltip="original, edit (2509/2511), or layered."),
        ),
        media=("image",), control="optional", network_module="networks.lora_qwen_image",
        recommended=_train(learning_rate=5e-5, timestep_sampling="shift", discrete_flow_shift=2.2,
                           network_dim=16),
        # docs/qwen_image.md, inference: --image_size 1024 1024 --infer_steps 25
        sample=SampleSpec(1024, 1024, 25, source="qwen_image.md"),
        cache_recommended=read_only({CACHE_TEXT_ENCODER: {"batch_size": 1}}),
        step_options=_options(te={"fp8_vl"},
                              train={"fp8_scaled", "fp8_vl", "num_layers", "remove_first_image_from_target"}),
        block_swap_max=59,
        variants=(
            Variant({"model_version": ("original",)}, control="none"),
            Variant({"model_version": ("edit", "edit-2509", "edit-2511")}, suffix="qie", control="required"),
            Variant({"model_version": ("layered",)}, suffix="qil", control="none",
                    sample=SampleSpec(1024, 1024, 25, unsupported="a Qwen-Image-Layered sample takes a control image "
                                                                  "and the number of layers (--f)")),
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
        # docs/zimage.md, sample prompt: --w 1280 --h 720 --fs 3 --s 20 --d 1234 --l 4
        sample=SampleSpec(1280, 720, 20, source="zimage.md"),
        cache_recommended=read_only({CACHE_TEXT_ENCODER: {"batch_size": 16}}),
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
                     read_only({TRAIN: _valued("--task", _K5_TASKS)}),
                     label="Task", tooltip="Model configuration; the DiT must match it."),
        ),
        media=("image", "video"), control="none", network_module="networks.lora_kandinsky",
        recommended=_train(fp8_base=True, max_data_loader_n_workers=1, learning_rate=1e-4,
                           optimizer_args=("weight_decay=0.001", "betas=(0.9,0.95)"),
                           max_grad_norm=1.0, lr_scheduler="constant_with_warmup", lr_warmup_steps=100,
                           network_alpha=32, timestep_sampling="shift", discrete_flow_shift=5.0,
                           max_train_epochs=50, scheduler_scale=10.0),
        # docs/kandinsky5.md, inference: --width 512 --height 512 --steps 50
        sample=SampleSpec(512, 512, 50, source="kandinsky5.md"),
        variants=(Variant({"task": tuple(t for t in _K5_TASKS if "-i2v-" in t)},
                          sample=SampleSpec(512, 512, 50, start_image=True, source="kandinsky5.md")),),
        cache_recommended=read_only({CACHE_TEXT_ENCODER: {"batch_size": 4}}),
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
        # docs/ideogram4.md, inference: --image_size 1024 1024 (steps come from --sampler_preset)
        sample=SampleSpec(1024, 1024, source="ideogram4.md"),
        cache_recommended=read_only({CACHE_LATENTS: {"vae_dtype": "bfloat16"},
                               CACHE_TEXT_ENCODER: {"text_cache_dtype": "bf16"}}),
        step_options=_options(
            latents={"vae_dtype"},
            te={"text_cache_dtype", "validate_caption_structure", "warn_on_caption_issues"},
            train={"dit_dtype", "use_unconditional_dit_for_lora_sampling", "sampler_preset",
                   "initial_sigma", "log_loss_stats", "ideogram4_timestep_mu", "ideogram4_timestep_std",
                   "validate_caption_structure", "warn_on_caption_issues"}),
        block_swap_max=33,
        allowed_values=read_only({"weighting_scheme": ("none",)}),
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
        # docs/krea2.md, sample prompt (on the Turbo DiT): --w 1024 --h 1024 --s 8 --l 1 --d 0
        sample=SampleSpec(1024, 1024, 8, source="krea2.md"),
        cache_recommended=read_only({CACHE_TEXT_ENCODER: {"batch_size": 1}}),
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
                     read_only({CACHE_TEXT_ENCODER: _valued("--model_type", ("full", "dev")),
                          TRAIN: _valued("--model_type", ("full", "dev"))}),
                     label="Model type", tooltip="full or dev."),
            Selector("task", ("t2i", "i2i"), "t2i",
                     read_only({TRAIN: _valued("--task", ("t2i", "i2i"))}),
                     label="Task", tooltip="t2i, or i2i with control images."),
        ),
        media=("image",), control="optional", network_module="networks.lora_hidream_o1",
        recommended=_train(learning_rate=4e-5, timestep_sampling="uniform", noise_scale_start=8.0,
                           noise_scale_end=8.0, noise_clip_std=0.0,
                           max_data_loader_n_workers=None, persistent_data_loader_workers=None),
        # docs/hidream_o1.md, inference: --image_size 2048 2048
        sample=SampleSpec(2048, 2048, source="hidream_o1.md"),
        cache_recommended=read_only({CACHE_LATENTS: {"batch_size": 1}, CACHE_TEXT_ENCODER: {"batch_size": 16}}),
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
        allowed_values=read_only({"weighting_scheme": ("none",)}),
        lora_conversion=LoraConversion(
            "key_rename", rename=("lora_unet_model_", "lora_unet_"),
            note="No musubi tool works: ComfyUI (0.33 or later) loads 0 modules as is; renaming the key "
                 "prefix lora_unet_model_ to lora_unet_ loads all (effect on images unverified)."),
        notes=("Bucket resolution step is 32.", "musubi's doc commands omit the attention flag; "
               "the pack always passes one."),
    ),
)

ARCHITECTURES: Mapping[str, Architecture] = read_only({a.id: a for a in _ARCHS})

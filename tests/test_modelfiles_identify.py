"""Identification from headers the tests write: every architecture's DiT, VAE and encoders,
the ComfyUI repackaged / fp8_scaled / mixed-quantized variants, LoRAs and all-in-one
checkpoints; dtype, layout, prefix, what only the file name can tell; the cache."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import modelfile_keys as K
from executor.musubi.modelfiles import identify as identify_module
from executor.musubi.modelfiles.identify import clear_cache, identify
from modelfile_writers import write_safetensors, write_torch_legacy, write_torch_zip

DIT = "model.diffusion_model."

# (file name, tensors, metadata, expected: component, family, and any Identity/variant fields)
CASES: list[tuple[str, Any, dict, dict]] = [
    ("wan2.1_t2v_1.3B_fp16.safetensors", K.prefixed(K.wan_dit(1536, dtype="F16"), DIT), {},
     dict(component="dit", family="wan_dit", dtype="fp16", layout="comfy", prefix=DIT, size="1.3B",
          tasks=["t2v-1.3B"])),
    ("wan2.1_t2v_14B_bf16.safetensors", K.wan_dit(5120), {},
     dict(family="wan_dit", tasks=["t2v-14B", "t2i-14B", "t2v-A14B"], undecidable="Wan 2.2 t2v-A14B")),
    ("wan2.1_i2v_720p_14B_bf16.safetensors", K.wan_dit(5120, 36, img_emb=True), {},
     dict(family="wan_dit", tasks=["i2v-14B"], kind="image-to-video (Wan 2.1)")),
    ("wan2.1_flf2v_720p_14B_fp16.safetensors", K.wan_dit(5120, 36, img_emb=True, emb_pos=True, dtype="F16"), {},
     dict(tasks=["flf2v-14B"])),
    ("wan2.2_i2v_high_noise_14B_fp16.safetensors", K.wan_dit(5120, 36, dtype="F16"), {},
     dict(tasks=["i2v-A14B"], undecidable="high-noise and low-noise")),
    ("wan2.1_fun_control_1.3B.safetensors", K.wan_dit(1536, 48, img_emb=True), {}, dict(tasks=["t2v-1.3B-FC"])),
    ("wan2.2_ti2v_5B_fp16.safetensors", K.wan_dit(3072, 48, dtype="F16"), {}, dict(unsupported="TI2V-5B", tasks=[])),
    ("wan2.1_vace_14B_fp16.safetensors", K.wan_dit(5120, 16, extra=["vace_patch_embedding.weight"]), {},
     dict(unsupported="VACE")),
    ("wan2.1_t2v_14B_fp8_scaled.safetensors", K.fp8_scaled(K.wan_dit(5120)), {}, dict(quant="fp8_scaled")),
    ("wan2.1_t2v_14B_fp8_e4m3fn.safetensors", K.cast(K.wan_dit(5120), "F8_E4M3", matrices_only=True), {},
     dict(quant="fp8", dtype="fp8_e4m3fn")),
    ("Wan2.1-diffusers.safetensors", {"blocks.0.attn1.to_q.weight": ("BF16", (5120, 5120)),
                                      "condition_embedder.time_embedder.linear_1.weight": ("BF16", (5120, 256))}, {},
     dict(family="wan_diffusers_dit", layout="diffusers")),
    ("hunyuan_video_t2v_720p_bf16.safetensors", K.prefixed(K.hv_dit(comfy=True), "model.model."), {},
     dict(family="hv_dit", layout="comfy", prefix="model.model.", in_channels=16)),
    ("mp_rank_00_model_states_fp8.safetensors", K.cast(K.hv_dit(), "F8_E4M3"), {},
     dict(family="hv_dit", layout="original", quant="fp8")),
    ("skyreels_i2v.safetensors", K.hv_dit(32), {}, dict(family="hv_dit", in_channels=32)),
    ("hunyuanvideo1.5_720p_t2v_fp16.safetensors", K.hv15_dit(comfy=True), {},
     dict(family="hv15_dit", layout="comfy", dtype="fp16", undecidable="t2v and i2v")),
    ("hv15_official.safetensors", K.hv15_dit(dtype="BF16"), {}, dict(family="hv15_dit", layout="original")),
    ("hunyuanvideo1.5_720p_t2v_cfg_distilled.safetensors", K.hv15_dit(extra=["guidance_in.in_layer.weight"]), {},
     dict(unsupported="cfg-distilled")),
    ("FramePackI2V_HY_bf16.safetensors", K.framepack_dit(), {}, dict(family="framepack_dit", undecidable="F1")),
    ("hunyuanvideo_diffusers.safetensors", K.framepack_dit(plain_hv=True), {}, dict(family="hv_diffusers_dit")),
    ("flux1-kontext-dev.safetensors", K.flux1_dit(), {}, dict(family="flux1_dit", kind="dev", undecidable="Kontext")),
    ("flux1-schnell.safetensors", K.flux1_dit(guidance=False), {}, dict(kind="schnell")),
    ("flux1-fill-dev.safetensors", K.flux1_dit(384), {}, dict(kind="Fill")),
    ("flux1-canny-dev.safetensors", K.flux1_dit(128), {}, dict(kind="Canny/Depth")),
    ("flux1-dev-kontext_fp8_scaled.safetensors", K.prefixed(K.fp8_scaled(K.flux1_dit()), DIT), {},
     dict(family="flux1_dit", quant="fp8_scaled", prefix=DIT)),
    ("flux2-dev.safetensors", K.flux2_dit("dev"), {}, dict(family="flux2_dit", version="dev")),
    ("flux2-klein-9b.safetensors", K.flux2_dit("klein-9b"), {},
     dict(version="klein-9b", double_blocks=8, single_blocks=24, undecidable="klein-base")),
    ("flux2-klein-base-4b.safetensors", K.flux2_dit("klein-4b"), {}, dict(version="klein-4b", double_blocks=5)),
    ("flux2_dev_fp8mixed.safetensors", K.comfy_quant(K.flux2_dit("dev")), {"_quantization_metadata": "{}"},
     dict(quant="comfy_quant", quant_detail="fp8mixed")),
    ("qwen_image_bf16.safetensors", K.qwen_image_dit(), {}, dict(family="qwen_image_dit", version="",
                                                                 undecidable="Edit-2509")),
    ("qwen_image_edit_2511_bf16.safetensors", K.qwen_image_dit("edit-2511"), {}, dict(version="edit-2511")),
    ("qwen_image_layered_bf16.safetensors", K.qwen_image_dit("layered"), {}, dict(version="layered")),
    ("z_image_turbo_bf16.safetensors", K.zimage_dit(), {}, dict(family="zimage_dit", layout="comfy")),
    ("z_image_official.safetensors", K.zimage_dit(comfy=False), {}, dict(family="zimage_dit", layout="original")),
    ("lumina_2.safetensors", K.zimage_dit(dim=2304), {}, dict(family="lumina2_dit")),
    ("kandinsky5pro_t2v_sft_5s.safetensors", K.kandinsky5_dit("pro"), {}, dict(family="kandinsky5_dit", size="pro")),
    ("kandinsky5lite_t2v_sft_5s.safetensors", K.kandinsky5_dit("lite"), {}, dict(size="lite", video=True)),
    ("kandinsky5lite_t2i.safetensors", K.kandinsky5_dit("lite-image", video=False), {},
     dict(size="lite-image", unsupported="Lite image")),
    ("ideogram4_fp8_scaled.safetensors", K.comfy_quant(K.ideogram4_dit()), {"model_type": "ideogram4_cond"},
     dict(family="ideogram4_dit", model_type="ideogram4_cond", quant="comfy_quant")),
    ("ideogram4_unconditional_fp8_scaled.safetensors", K.comfy_quant(K.ideogram4_dit()),
     {"model_type": "ideogram4_uncond"}, dict(model_type="ideogram4_uncond")),
    ("raw.safetensors", K.krea2_dit(), {}, dict(family="krea2_dit", undecidable="RAW and Turbo")),
    ("hidream_o1_image_bf16.safetensors", K.hidream_o1(), {}, dict(component="dit", family="hidream_o1")),
    # VAEs
    ("hunyuan_video_vae_bf16.safetensors", K.hv_vae(), {}, dict(component="vae", family="hv_vae")),
    ("pytorch_model_vae.safetensors", K.prefixed(K.hv_vae(), "vae."), {}, dict(family="hv_vae", prefix="vae.")),
    ("hunyuanvideo15_vae_fp16.safetensors", K.hv_vae(32, "F16"), {}, dict(family="hv15_vae")),
    ("wan_2.1_vae.safetensors", K.wan_vae(), {}, dict(family="wan_vae", undecidable="Qwen-Image VAE")),
    ("wan2.2_vae.safetensors", K.wan_vae(v22=True), {}, dict(family="wan22_vae")),
    ("qwen_image_layered_vae.safetensors", K.wan_vae(4), {}, dict(family="qwen_layered_vae")),
    ("qwen_vae_diffusers.safetensors", K.qwen_vae_diffusers(), {}, dict(family="qwen_vae_diffusers")),
    ("ae.safetensors", K.bfl_ae(16), {}, dict(family="flux1_ae", latent_channels=16)),
    ("flux2_ae.safetensors", K.bfl_ae(32), {}, dict(family="flux2_ae", latent_channels=32)),
    ("flux2-vae.safetensors", K.diffusers_vae_2d(32), {}, dict(family="flux2_vae_diffusers")),
    ("zimage_vae_diffusers.safetensors", K.diffusers_vae_2d(16, bn=False), {}, dict(family="flux1_vae_diffusers")),
    # text encoders
    ("clip_l.safetensors", K.clip_text(), {}, dict(component="text_encoder", family="clip_l")),
    ("clip_g.safetensors", K.clip_text(32, 1280), {}, dict(family="clip_g")),
    ("t5xxl_fp16.safetensors", K.t5(), {}, dict(family="t5xxl")),
    ("t5xxl_fp8_e4m3fn_scaled.safetensors", K.fp8_scaled(K.t5()), {}, dict(family="t5xxl", quant="fp8_scaled")),
    ("umt5_xxl_fp16.safetensors", K.t5(256384), {}, dict(family="umt5_hf")),
    ("byt5_small_glyphxl_fp16.safetensors", K.byt5(), {}, dict(family="byt5")),
    ("models_t5_umt5-xxl-enc-bf16.safetensors", K.umt5_wan(), {}, dict(family="umt5_wan")),
    ("llava_llama3_fp16.safetensors", K.llava_llama3(), {}, dict(family="llava_llama3")),
    ("llama3_8b.safetensors", K.llava_llama3(128256), {}, dict(family="llama")),
    ("qwen_2.5_vl_7b.safetensors", K.qwen25vl("7B"), {}, dict(family="qwen25vl", size="7B")),
    ("qwen_2.5_vl_3b.safetensors", K.qwen25vl("3B"), {}, dict(family="qwen25vl", size="3B")),
    ("qwen25vl_tf452.safetensors", K.qwen25vl("7B", prefix="model.language_model."), {},
     dict(family="qwen25vl", transformers_452=True)),
    ("qwen_3_4b.safetensors", K.qwen3("4B"), {}, dict(family="qwen3", size="4B")),
    ("qwen_3_8b.safetensors", K.qwen3("8B"), {}, dict(family="qwen3", size="8B")),
    ("qwen3vl_4b_bf16.safetensors", K.qwen3vl("4B"), {}, dict(family="qwen3vl", size="4B")),
    ("qwen3vl_8b_fp8_scaled.safetensors", K.comfy_quant(K.qwen3vl("8B")), {}, dict(size="8B", quant="comfy_quant")),
    ("mistral3_full.safetensors", K.mistral3(), {}, dict(family="mistral3", pruned=False, vision=True)),
    ("mistral_3_small_flux2_bf16.safetensors", K.mistral3(31, vision=False), {}, dict(family="mistral3", pruned=True)),
    # image encoders, LoRA, checkpoints
    ("sigclip_vision_patch14_384.safetensors", K.vision_model(1152, 27), {}, dict(component="image_encoder",
                                                                                  family="siglip")),
    ("clip_vision_h.safetensors", K.vision_model(1280, 32, True), {}, dict(family="clip_vision_h")),
    ("models_clip_open-clip-xlm-roberta.safetensors", K.wan_clip(), {}, dict(family="wan_clip")),
    ("clip_visual_only.safetensors", K.wan_clip(False), {}, dict(family="wan_clip_visual")),
    ("my_lora.safetensors", K.lora(), {}, dict(component="lora", family="lora")),
    ("flux1-dev-fp8.safetensors", K.comfy_checkpoint(), {}, dict(component="checkpoint", inner_family="flux1_dit")),
]


def _field(ident: Any, name: str) -> Any:
    if name in ident.variant:
        return ident.variant[name]
    return getattr(ident, name)


@pytest.mark.parametrize("name, tensors, metadata, expected", CASES, ids=[c[0] for c in CASES])
def test_identified_from_the_header(tmp_path: Path, name: str, tensors: Any, metadata: dict, expected: dict) -> None:
    ident = identify(str(write_safetensors(tmp_path / name, tensors, metadata=metadata or None)))
    assert ident.usable, ident.describe()
    for key, want in expected.items():
        have = _field(ident, key)
        if key in ("undecidable", "unsupported"):
            assert want in have, (key, have)
        else:
            assert have == want, (key, have, ident.describe())


def test_every_family_of_the_expectations_is_recognised_by_some_case() -> None:
    """Each family a loader accepts has a header in CASES that identifies as it."""
    from executor.musubi.modelfiles.expectations import EXPECT

    covered = {c[3].get("family") for c in CASES}
    wanted = {f for exp in EXPECT.values() for f in exp.families}
    assert wanted <= covered, sorted(wanted - covered)


def test_pytorch_checkpoints_are_identified(tmp_path: Path) -> None:
    dit = identify(str(write_torch_zip(tmp_path / "mp_rank_00_model_states.pt", K.hv_dit(), wrapper="module")))
    assert (dit.family, dit.format, dit.wrapper) == ("hv_dit", "pytorch-zip", "module")
    vae = identify(str(write_torch_legacy(tmp_path / "Wan2.1_VAE.pth", K.wan_vae())))
    assert (vae.family, vae.format) == ("wan_vae", "pytorch-legacy")
    t5 = identify(str(write_torch_zip(tmp_path / "models_t5_umt5-xxl-enc-bf16.pth", K.umt5_wan())))
    assert t5.family == "umt5_wan"


def test_one_line_description_says_what_where_and_how(tmp_path: Path) -> None:
    ident = identify(str(write_safetensors(tmp_path / "wan2.1_t2v_1.3B_fp16.safetensors",
                                           K.prefixed(K.wan_dit(1536, dtype="F16"), DIT))))
    assert ident.describe() == ("Wan DiT 1.3B, text-to-video, fp16, ComfyUI repackaged layout, "
                                "prefix 'model.diffusion_model.'")


def test_truncated_file_is_identified_and_named_cut_short(tmp_path: Path) -> None:
    ident = identify(str(write_safetensors(tmp_path / "wan_2.1_vae.safetensors", K.wan_vae(), complete=False)))
    assert ident.family == "wan_vae" and not ident.usable and "cut short" in ident.describe()


def test_unknown_keys_are_not_guessed(tmp_path: Path) -> None:
    ident = identify(str(write_safetensors(tmp_path / "x.safetensors", {"foo.bar": ("F16", (3, 3))})))
    assert ident.family == "" and ident.component == "unknown" and ident.usable


def test_cached_per_path_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clear_cache()
    path = write_safetensors(tmp_path / "ae.safetensors", K.bfl_ae(16))
    reads = []
    real = identify_module.read_header
    monkeypatch.setattr(identify_module, "read_header", lambda p: reads.append(p) or real(p))
    assert identify(str(path)).family == "flux1_ae"
    assert identify(str(path)).family == "flux1_ae"
    assert len(reads) == 1
    write_safetensors(path, K.bfl_ae(32))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    assert identify(str(path)).family == "flux2_ae"
    assert len(reads) == 2

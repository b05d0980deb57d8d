"""Does the file fit the input? Errors where the header decides (what it is, why not, what to
pick instead); warnings where only the file name can tell; precision rules musubi asserts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest

import modelfile_keys as K
from executor.musubi import catalogue as cat
from executor.musubi.modelfiles.expectations import EXPECT
from executor.musubi.modelfiles.fit import check_model, explain, file_recommendations, verdict
from executor.musubi.modelfiles.identify import identify
from modelfile_writers import write_safetensors, write_torch_zip

DIT = "model.diffusion_model."


def findings(tmp_path: Path, name: str, tensors: Any, arch: str, input_name: str,
             selectors: Optional[dict] = None, options: Optional[dict] = None, metadata: Optional[dict] = None,
             complete: bool = True) -> tuple[list, list]:
    ident = identify(str(write_safetensors(tmp_path / name, tensors, metadata=metadata, complete=complete)))
    out = check_model(ident, arch, input_name, selectors=selectors, options=options)
    return [f for f in out if f.level == "error"], [f for f in out if f.level == "warning"]


def test_every_file_input_of_the_catalogue_has_an_expectation() -> None:
    inputs = {(a.id, m.name) for a in cat.ARCHITECTURES.values() for m in a.models if m.kind != "hf_id"}
    assert inputs == set(EXPECT)


def test_wan_13b_with_task_14b_is_refused_with_the_fix(tmp_path: Path) -> None:
    errors, _ = findings(tmp_path, "wan2.1_t2v_1.3B_fp16.safetensors", K.prefixed(K.wan_dit(1536, dtype="F16"), DIT),
                         "wan", "dit", {"task": "t2v-14B"}, {"mixed_precision": "fp16"})
    assert len(errors) == 1
    assert "t2v-14B needs a 14B model (dim 5120) with 16 input channels" in errors[0].message
    assert "size mismatch" in errors[0].message
    assert errors[0].fix == ("set task to t2v-1.3B, or pick wan2.1_t2v_14B_bf16.safetensors "
                             "(Comfy-Org/Wan_2.1_ComfyUI_repackaged split_files/diffusion_models)")


def test_wan_i2v_a14b_file_with_the_21_i2v_task_names_the_missing_keys(tmp_path: Path) -> None:
    errors, _ = findings(tmp_path, "wan2.2_i2v_low_noise_14B_fp16.safetensors", K.wan_dit(5120, 36, dtype="F16"),
                         "wan", "dit", {"task": "i2v-14B"}, {"mixed_precision": "fp16"})
    assert "Missing key(s)" in errors[0].message and errors[0].fix.startswith("set task to i2v-A14B")


@pytest.mark.parametrize("name, tensors, arch, input_name, words, belongs", [
    ("wan_2.1_vae.safetensors", K.wan_vae(), "wan", "dit", "a VAE, not a Wan DiT",
     "It belongs in the Wan 2.1 VAE input (vae)."),
    ("umt5_xxl_fp16.safetensors", K.t5(256384), "wan", "vae", "not a Wan 2.1 VAE", ""),
    ("wan2.1_t2v_14B_bf16.safetensors", K.wan_dit(5120), "wan", "t5", "a DiT (diffusion model), not a Wan T5",
     "It belongs in the Wan DiT input (dit)."),
    ("clip_l.safetensors", K.clip_text(), "flux_kontext", "text_encoder1", "not a T5-XXL",
     "It belongs in the CLIP-L text encoder input (text_encoder2)."),
])
def test_a_component_in_the_wrong_slot_is_named(tmp_path: Path, name: str, tensors: Any, arch: str,
                                                input_name: str, words: str, belongs: str) -> None:
    errors, _ = findings(tmp_path, name, tensors, arch, input_name, {"task": "t2v-14B"} if arch == "wan" else None)
    assert len(errors) == 1 and words in errors[0].message and belongs in errors[0].message
    assert errors[0].fix.startswith("pick ")


def test_half_downloaded_vae_is_refused(tmp_path: Path) -> None:
    errors, _ = findings(tmp_path, "wan_2.1_vae.safetensors", K.wan_vae(), "wan", "vae", complete=False)
    assert "cut short" in errors[0].message and "download" in errors[0].fix


@pytest.mark.parametrize("name, tensors, arch, input_name, reason, instead", [
    ("umt5_xxl_fp16.safetensors", K.t5(256384), "wan", "t5", "transformers key layout",
     "models_t5_umt5-xxl-enc-bf16.pth"),
    ("clip_vision_h.safetensors", K.vision_model(1280, 32, True), "wan", "clip", "whole open-clip file",
     "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"),
    ("flux2-vae.safetensors", K.diffusers_vae_2d(32), "flux_2", "vae", "encoder.down_blocks",
     "ae.safetensors from black-forest-labs/FLUX.2-dev"),
    ("ae.safetensors", K.bfl_ae(32), "flux_kontext", "vae", "16-channel FLUX.1 AE", "FLUX.1-Kontext-dev"),
    ("hunyuan_video_t2v_720p_bf16.safetensors", K.prefixed(K.hv_dit(comfy=True), "model.model."), "hv", "dit",
     "ComfyUI's key names", "mp_rank_00_model_states.pt"),
    ("hunyuan_video_diffusers.safetensors", K.framepack_dit(plain_hv=True), "framepack", "dit",
     "FramePack is its own model", "FramePackI2V_HY"),
    ("lumina_2.safetensors", K.zimage_dit(dim=2304), "zimage", "dit", "other shapes", "z_image_bf16"),
    ("qwen_image_layered_vae.safetensors", K.wan_vae(4), "krea2", "vae", "3-channel", "qwen_image_vae"),
])
def test_comfyui_files_musubi_refuses_say_why_and_what_instead(tmp_path: Path, name: str, tensors: Any, arch: str,
                                                             input_name: str, reason: str, instead: str) -> None:
    errors, _ = findings(tmp_path, name, tensors, arch, input_name)
    assert errors and reason in errors[0].message and instead in errors[0].fix, errors


def test_fp8_formats(tmp_path: Path) -> None:
    wan = {"task": "t2v-14B"}
    errors, _ = findings(tmp_path, "wan2.1_t2v_14B_fp8_scaled.safetensors", K.fp8_scaled(K.wan_dit(5120)),
                         "wan", "dit", wan)
    assert "ComfyUI fp8_scaled file" in errors[0].message and "Unexpected key(s)" in errors[0].message
    plain = K.cast(K.wan_dit(5120), "F8_E4M3", matrices_only=True)
    errors, warnings = findings(tmp_path, "wan_e4m3fn.safetensors", plain, "wan", "dit", wan, {"fp8_base": True})
    assert not errors and not warnings
    errors, _ = findings(tmp_path, "wan_e4m3fn.safetensors", plain, "wan", "dit", wan,
                         {"fp8_base": True, "fp8_scaled": True})
    assert "already in float8 format" in errors[0].message
    errors, warnings = findings(tmp_path, "wan_e4m3fn.safetensors", plain, "wan", "dit", wan, {})
    assert not errors and "fp8_base" in warnings[0].fix
    errors, _ = findings(tmp_path, "qwen_image_fp8_e4m3fn.safetensors", K.cast(K.qwen_image_dit(), "F8_E4M3"),
                         "qwen_image", "dit", {"model_version": "original"})
    assert "cannot be used" in errors[0].message
    errors, _ = findings(tmp_path, "flux2_dev_fp8mixed.safetensors", K.comfy_quant(K.flux2_dit()), "flux_2", "dit",
                         {"model_version": "dev"})
    assert "ComfyUI-quantized (fp8mixed)" in errors[0].message
    errors, warnings = findings(tmp_path, "t5xxl_fp8_e4m3fn.safetensors", K.cast(K.t5(), "F8_E4M3"),
                                "flux_kontext", "text_encoder1")
    assert not errors and "casts them up" in warnings[0].message
    errors, warnings = findings(tmp_path, "flux1-kontext-dev_fp8_e4m3fn.safetensors", K.cast(K.flux1_dit(), "F8_E4M3"),
                                "flux_kontext", "dit")
    assert not errors and "the file's own dtype" in warnings[0].message


def test_formats_musubi_takes_only_for_one_architecture(tmp_path: Path) -> None:
    scaled_k5 = K.fp8_scaled(K.kandinsky5_dit("pro"))
    errors, _ = findings(tmp_path, "k5pro_fp8.safetensors", scaled_k5, "kandinsky5", "dit",
                         {"task": "k5-pro-t2v-5s-sd"})
    assert not errors
    ideo = K.comfy_quant(K.ideogram4_dit())
    errors, warnings = findings(tmp_path, "ideogram4_fp8_scaled.safetensors", ideo, "ideogram4", "dit",
                                metadata={"model_type": "ideogram4_cond"})
    assert not errors and not warnings
    errors, _ = findings(tmp_path, "ideogram4_unconditional_fp8_scaled.safetensors", ideo, "ideogram4", "dit",
                         metadata={"model_type": "ideogram4_uncond"})
    assert "unconditional DiT" in errors[0].message and "unconditional_dit" in errors[0].fix
    errors, _ = findings(tmp_path, "flux2-vae.safetensors", K.diffusers_vae_2d(32), "ideogram4", "vae")
    assert not errors


def test_wan_mixed_precision_follows_the_weights(tmp_path: Path) -> None:
    tensors = K.wan_dit(1536, dtype="F16")
    errors, _ = findings(tmp_path, "wan2.1_t2v_1.3B_fp16.safetensors", tensors, "wan", "dit", {"task": "t2v-1.3B"},
                         {"mixed_precision": "bf16"})
    assert "asserts mixed_precision fp16" in errors[0].message
    assert errors[0].fix.startswith("set mixed_precision to fp16")
    ident = identify(str(tmp_path / "wan2.1_t2v_1.3B_fp16.safetensors"))
    assert file_recommendations("wan", {"dit": ident}) == {"mixed_precision": "fp16"}
    errors, _ = findings(tmp_path, "wan2.1_t2v_1.3B_fp16.safetensors", tensors, "wan", "dit", {"task": "t2v-1.3B"},
                         {"mixed_precision": "no"})
    assert not errors


def test_hv15_fp16_weights_refuse_a_bf16_dit_dtype(tmp_path: Path) -> None:
    errors, warnings = findings(tmp_path, "hunyuanvideo1.5_720p_t2v_fp16.safetensors", K.hv15_dit(comfy=True),
                                "hv15", "dit", {"task": "t2v"}, {"dit_dtype": "bfloat16", "mixed_precision": "bf16"})
    assert "float16" in errors[0].message
    assert any("bf16 training" in w.message for w in warnings)


@pytest.mark.parametrize("name, tensors, arch, input_name, selectors, words", [
    ("wan2.2_t2v_low_noise_14B_fp16.safetensors", K.wan_dit(5120, dtype="F16"), "wan", "dit", {"task": "t2v-14B"},
     "says Wan 2.2"),
    ("wan2.2_t2v_high_noise_14B_fp16.safetensors", K.wan_dit(5120, dtype="F16"), "wan", "dit", {"task": "t2v-A14B"},
     "says high noise"),
    ("flux1-dev.safetensors", K.flux1_dit(), "flux_kontext", "dit", {}, "does not say kontext"),
    ("flux2-klein-9b.safetensors", K.flux2_dit("klein-9b"), "flux_2", "dit", {"model_version": "klein-base-9b"},
     "does not say base"),
    ("qwen_image_edit_bf16.safetensors", K.qwen_image_dit(), "qwen_image", "dit", {"model_version": "original"},
     "says edit"),
    ("hunyuanvideo1.5_720p_i2v_fp16.safetensors", K.hv15_dit(comfy=True), "hv15", "dit", {"task": "t2v"}, "says i2v"),
    ("FramePack_F1_I2V_HY_20250503.safetensors", K.framepack_dit(), "framepack", "dit", {"f1": False}, "F1"),
    ("turbo.safetensors", K.krea2_dit(), "krea2", "dit", {}, "Turbo"),
    ("hidream_o1_image_dev_bf16.safetensors", K.hidream_o1(), "hidream_o1", "dit", {"model_type": "full"}, "says dev"),
    ("qwen_image_vae.safetensors", K.wan_vae(), "wan", "vae", {}, "Qwen-Image VAE"),
])
def test_what_only_the_name_tells_is_a_warning(tmp_path: Path, name: str, tensors: Any, arch: str, input_name: str,
                                              selectors: dict, words: str) -> None:
    errors, warnings = findings(tmp_path, name, tensors, arch, input_name, selectors, {"mixed_precision": "fp16"})
    assert not errors, errors
    assert any(words in w.message and "guess from the file name" in w.message for w in warnings), warnings


@pytest.mark.parametrize("name, tensors, arch, input_name, selectors, words", [
    ("flux2-klein-9b.safetensors", K.flux2_dit("klein-9b"), "flux_2", "dit", {"model_version": "dev"},
     "model_version dev does not match"),
    ("qwen_3_4b.safetensors", K.qwen3("4B"), "flux_2", "text_encoder", {"model_version": "klein-9b"}, "Qwen3 8B"),
    ("mistral_3_small_flux2_bf16.safetensors", K.mistral3(31, vision=False), "flux_2", "text_encoder",
     {"model_version": "dev"}, "pruned"),
    ("qwen_image_edit_2511_bf16.safetensors", K.qwen_image_dit("edit-2511"), "qwen_image", "dit",
     {"model_version": "edit"}, "asserts model_version edit-2511"),
    ("qwen_image_bf16.safetensors", K.qwen_image_dit(), "qwen_image", "dit", {"model_version": "layered"},
     "needs the Layered DiT"),
    ("qwen_image_vae.safetensors", K.wan_vae(), "qwen_image", "vae", {"model_version": "layered"}, "Layered VAE"),
    ("flux1-schnell.safetensors", K.flux1_dit(guidance=False), "flux_kontext", "dit", {}, "this one has none"),
    ("kandinsky5lite_t2v.safetensors", K.kandinsky5_dit("lite"), "kandinsky5", "dit", {"task": "k5-pro-t2v-5s-sd"},
     "needs a Kandinsky 5 Pro DiT"),
    ("kandinsky5lite_t2i.safetensors", K.kandinsky5_dit("lite-image", video=False), "kandinsky5", "dit",
     {"task": "k5-lite-t2v-5s-sd"}, "Lite image"),
    ("qwen3vl_8b.safetensors", K.qwen3vl("8B"), "krea2", "text_encoder", {}, "Krea 2 uses Qwen3-VL 4B"),
    ("byt5_no_shared.safetensors", {k: v for k, v in K.byt5().items() if k != "shared.weight"}, "hv15", "byt5", {},
     "needs the key shared.weight"),
    ("qwen_vae_diffusers.safetensors", K.qwen_vae_diffusers(), "wan", "vae", {}, "non-strictly"),
    ("skyreels.safetensors", K.hv_dit(32), "hv", "dit", {}, "dit_in_channels is 16"),
    ("wan2.2_ti2v_5B_fp16.safetensors", K.wan_dit(3072, 48, dtype="F16"), "wan", "dit", {"task": "t2v-14B"},
     "TI2V-5B"),
    ("my_lora.safetensors", K.lora(), "wan", "dit", {"task": "t2v-14B"}, "not a Wan DiT"),
    ("flux1-dev-fp8.safetensors", K.comfy_checkpoint(), "flux_kontext", "dit", {}, "not from an all-in-one"),
])
def test_variant_mismatches_the_header_shows_are_refused(tmp_path: Path, name: str, tensors: Any, arch: str,
                                                         input_name: str, selectors: dict, words: str) -> None:
    errors, _ = findings(tmp_path, name, tensors, arch, input_name, selectors)
    assert errors and words in errors[0].message and errors[0].fix, errors


def test_hv_checkpoint_needs_the_deepspeed_module_key(tmp_path: Path) -> None:
    ident = identify(str(write_torch_zip(tmp_path / "hv.pt", K.hv_dit())))
    errors = [f for f in check_model(ident, "hv", "dit") if f.level == "error"]
    assert "from 'module'" in errors[0].message
    ident = identify(str(write_torch_zip(tmp_path / "mp_rank_00_model_states.pt", K.hv_dit(), wrapper="module")))
    assert not check_model(ident, "hv", "dit")


def test_split_part_for_a_loader_that_reads_one_file(tmp_path: Path) -> None:
    keys = list(K.flux1_dit().items())
    write_safetensors(tmp_path / "flux-00001-of-00002.safetensors", dict(keys[:60]))
    write_safetensors(tmp_path / "flux-00002-of-00002.safetensors", dict(keys[60:]))
    ident = identify(str(tmp_path / "flux-00001-of-00002.safetensors"))
    assert ident.family == "flux1_dit" and ident.split_parts == 2
    errors = [f for f in check_model(ident, "flux_kontext", "dit") if f.level == "error"]
    assert "one part of a split model" in errors[0].message


def test_unrecognised_and_gguf_files(tmp_path: Path) -> None:
    errors, warnings = findings(tmp_path, "odd.safetensors", {"foo.weight": ("F16", (4, 4))}, "wan", "vae")
    assert not errors and "matches no model the pack knows" in warnings[0].message
    errors, warnings = findings(tmp_path, "empty.safetensors", {}, "wan", "vae")
    assert not errors and "holds no tensors" in warnings[0].message
    gguf = tmp_path / "wan.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 64)
    ident = identify(str(gguf))
    out = check_model(ident, "wan", "dit", selectors={"task": "t2v-14B"})
    assert out[0].level == "error" and explain(ident, out[0]).startswith("wan.gguf is a GGUF file")


def test_verdict_lines(tmp_path: Path) -> None:
    good = identify(str(write_safetensors(tmp_path / "wan_2.1_vae.safetensors", K.wan_vae())))
    assert verdict(good, "wan", "vae") == "OK wan_2.1_vae.safetensors: Wan 2.1 VAE or Qwen-Image VAE (bf16)"
    lora = identify(str(write_safetensors(tmp_path / "my_lora.safetensors", K.lora())))
    assert verdict(lora, "wan", "dit", selectors={"task": "t2v-14B"}).startswith(
        "REFUSED my_lora.safetensors is a LoRA (trained adapter weights) (bf16): not a Wan DiT -> pick ")
    bad = identify(str(write_safetensors(tmp_path / "umt5_xxl_fp16.safetensors", K.t5(256384))))
    line = verdict(bad, "wan", "t5")
    assert line.startswith("REFUSED umt5_xxl_fp16.safetensors is UMT5-XXL") and "-> pick models_t5_umt5" in line
    guess = identify(str(write_safetensors(tmp_path / "qwen_image_vae.safetensors", K.wan_vae())))
    assert verdict(guess, "wan", "vae").startswith("CHECK qwen_image_vae.safetensors")

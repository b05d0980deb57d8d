"""What musubi v0.3.4's loader for each (architecture, model input) accepts, as data: the
model families it reads, the prefixes it strips, whether it merges split files, its rules
for fp8 and ComfyUI's quantized formats, and what to pick or download instead. Taken from the
pack's reference notes on model files (loader file:line there); the variant rules that need
the selectors live in variants.py. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

__all__ = ["Expect", "EXPECT", "expectation", "BELONGS"]

DIT_PREFIX = "model.diffusion_model."


@dataclass(frozen=True)
class Expect:
    """``families``: identities the loader reads. ``instead``: the file(s) to pick or download.
    ``fp8``: plain fp8 weights (no scale keys) are ``fp8_base`` (fine with --fp8_base, refused
    with --fp8_scaled), ``refuse``, ``warn`` (cast up, not documented), ``file_dtype`` (the loader
    keeps the file's dtype) or ``ok``.
    ``reasons``: why a family that is often picked by mistake does not load (by family)."""

    label: str
    families: tuple[str, ...]
    instead: str
    prefixes: tuple[str, ...] = ("",)
    split: bool = False
    fp8: str = "warn"
    fp8_scaled: bool = False
    comfy_quant: bool = False
    bnb: bool = False
    layouts: tuple[str, ...] = ()
    folder: bool = False
    reasons: Mapping[str, str] = field(default_factory=dict)
    # (selector, {value: file}) when what to pick depends on a selector (task, model_version)
    instead_by: tuple[str, Mapping[str, str]] = ("", {})

    def instead_for(self, selectors: Mapping[str, object]) -> str:
        name, table = self.instead_by
        return table.get(str(selectors.get(name)), self.instead) if name else self.instead


_HV_VAE = ("hunyuan-video-t2v-720p/vae/pytorch_model.pt (tencent/HunyuanVideo), or ComfyUI's "
           "hunyuan_video_vae_bf16.safetensors")
_CLIP_L = Expect("CLIP-L text encoder", ("clip_l",), "clip_l.safetensors (comfyanonymous/flux_text_encoders)",
                 folder=True)
_SIGLIP = Expect("image encoder (SigLIP)", ("siglip",),
                 "sigclip_vision_patch14_384.safetensors (Comfy-Org/sigclip_vision_384, ComfyUI's models/clip_vision)")
_QWEN25VL = Expect("Qwen2.5-VL 7B text encoder", ("qwen25vl",),
                   "qwen_2.5_vl_7b.safetensors (Comfy-Org/Qwen-Image_ComfyUI split_files/text_encoders)",
                   split=True, fp8="warn")
_QWEN_VAE = "qwen_image_vae.safetensors (Comfy-Org/Qwen-Image_ComfyUI split_files/vae)"
_W21 = "(Comfy-Org/Wan_2.1_ComfyUI_repackaged split_files/diffusion_models)"
_W22 = "(Comfy-Org/Wan_2.2_ComfyUI_Repackaged split_files/diffusion_models)"
_FUN = "the Wan2.1-Fun Control model for the task (alibaba-pai/Wan2.1-Fun-1.3B-Control or -14B-Control)"
_WAN_FILES = {
    "t2v-14B": f"wan2.1_t2v_14B_bf16.safetensors {_W21}", "t2i-14B": f"wan2.1_t2v_14B_bf16.safetensors {_W21}",
    "t2v-1.3B": f"wan2.1_t2v_1.3B_fp16.safetensors {_W21}",
    "i2v-14B": f"wan2.1_i2v_720p_14B_bf16.safetensors or wan2.1_i2v_480p_14B_bf16.safetensors {_W21}",
    "flf2v-14B": f"wan2.1_flf2v_720p_14B_fp16.safetensors {_W21}",
    "t2v-1.3B-FC": _FUN, "t2v-14B-FC": _FUN, "i2v-14B-FC": _FUN,
    "t2v-A14B": f"wan2.2_t2v_low_noise_14B_fp16.safetensors {_W22}",
    "i2v-A14B": f"wan2.2_i2v_low_noise_14B_fp16.safetensors {_W22}",
}
_WAN_HIGH = {"t2v-A14B": f"wan2.2_t2v_high_noise_14B_fp16.safetensors {_W22}",
             "i2v-A14B": f"wan2.2_i2v_high_noise_14B_fp16.safetensors {_W22}"}
_QI = "(Comfy-Org/Qwen-Image_ComfyUI split_files/diffusion_models)"
_QWEN_FILES = {"original": f"qwen_image_bf16.safetensors {_QI}", "edit": f"qwen_image_edit_bf16.safetensors {_QI}",
               "edit-2509": f"qwen_image_edit_2509_bf16.safetensors {_QI}",
               "edit-2511": f"qwen_image_edit_2511_bf16.safetensors {_QI}",
               "layered": f"qwen_image_layered_bf16.safetensors {_QI}"}
_BFL = "(black-forest-labs)"
_FLUX2_FILES = {"dev": f"flux2-dev.safetensors {_BFL}", "klein-4b": f"flux2-klein-4b.safetensors {_BFL}",
                "klein-base-4b": f"flux2-klein-base-4b.safetensors {_BFL}",
                "klein-9b": f"flux2-klein-9b.safetensors {_BFL}",
                "klein-base-9b": f"flux2-klein-base-9b.safetensors {_BFL}"}
_FLUX2_TE = {"dev": "text_encoder/model-00001-of-00010.safetensors of black-forest-labs/FLUX.2-dev (all 10 parts in "
                    "one folder)",
             "klein-4b": "qwen_3_4b.safetensors (Comfy-Org/z_image_turbo split_files/text_encoders)",
             "klein-9b": "qwen_3_8b.safetensors (or the klein 9B repo's split text encoder)"}
_FLUX2_TE.update({"klein-base-4b": _FLUX2_TE["klein-4b"], "klein-base-9b": _FLUX2_TE["klein-9b"]})

EXPECT: dict[tuple[str, str], Expect] = {
    # ------------------------------------------------------------------ HunyuanVideo
    ("hv", "dit"): Expect(
        "HunyuanVideo DiT", ("hv_dit",),
        "mp_rank_00_model_states.pt (tencent/HunyuanVideo hunyuan-video-t2v-720p/transformers), or kohya-ss's "
        "mp_rank_00_model_states_fp8.safetensors with fp8_base",
        layouts=("original",), fp8="fp8_base",
        reasons={"hv_dit": "ComfyUI's repackaged HunyuanVideo files use ComfyUI's key names, which musubi's loader "
                           "does not rename (\"Missing key(s) ... img_in.proj.weight\")"}),
    ("hv", "vae"): Expect("HunyuanVideo VAE", ("hv_vae",), _HV_VAE, prefixes=("", "vae.")),
    ("hv", "text_encoder1"): Expect(
        "LLaVA-LLaMA-3 text encoder", ("llava_llama3",),
        "llava_llama3_fp16.safetensors (Comfy-Org/HunyuanVideo_repackaged split_files/text_encoders)", folder=True),
    ("hv", "text_encoder2"): _CLIP_L,
    # ------------------------------------------------------------------ HunyuanVideo 1.5
    ("hv15", "dit"): Expect(
        "HunyuanVideo 1.5 DiT", ("hv15_dit",),
        "hunyuanvideo1.5_720p_t2v_fp16.safetensors or ..._i2v_fp16 (Comfy-Org/HunyuanVideo_1.5_repackaged), or the "
        "official transformer/720p_t2v/diffusion_pytorch_model.safetensors", split=True),
    ("hv15", "vae"): Expect(
        "HunyuanVideo 1.5 VAE", ("hv15_vae",),
        "hunyuanvideo15_vae_fp16.safetensors (Comfy-Org/HunyuanVideo_1.5_repackaged split_files/vae)"),
    ("hv15", "text_encoder"): _QWEN25VL,
    ("hv15", "byt5"): Expect(
        "ByT5 text encoder", ("byt5",),
        "byt5_small_glyphxl_fp16.safetensors (Comfy-Org/HunyuanVideo_1.5_repackaged split_files/text_encoders)"),
    ("hv15", "image_encoder"): _SIGLIP,
    # ------------------------------------------------------------------ Wan
    ("wan", "dit"): Expect(
        "Wan DiT", ("wan_dit",),
        "the Wan file for the task from Comfy-Org/Wan_2.1_ComfyUI_repackaged or Wan_2.2_ComfyUI_Repackaged "
        "split_files/diffusion_models (_fp16 or _bf16)",
        prefixes=("", DIT_PREFIX), split=True, fp8="fp8_base", instead_by=("task", _WAN_FILES)),
    ("wan", "dit_high_noise"): Expect(
        "Wan 2.2 high-noise DiT", ("wan_dit",),
        "wan2.2_t2v_high_noise_14B_fp16.safetensors or wan2.2_i2v_high_noise_14B_fp16.safetensors "
        "(Comfy-Org/Wan_2.2_ComfyUI_Repackaged)", prefixes=("", DIT_PREFIX), split=True, fp8="fp8_base",
        instead_by=("task", _WAN_HIGH)),
    ("wan", "vae"): Expect(
        "Wan 2.1 VAE", ("wan_vae",),
        "wan_2.1_vae.safetensors (Comfy-Org/Wan_2.1_ComfyUI_repackaged split_files/vae) or Wan2.1_VAE.pth "
        "(Wan-AI/Wan2.1-T2V-14B)",
        reasons={"wan22_vae": "the Wan 2.2 VAE is for TI2V-5B only and does not fit the 14B models or musubi's "
                              "Wan VAE loader",
                 "qwen_vae_diffusers": "musubi's Wan VAE loader reads Wan's original key layout, and it loads "
                                       "non-strictly: a diffusers-layout VAE would load with its weights missing "
                                       "and fail later"}),
    ("wan", "t5"): Expect(
        "Wan T5 (umT5-XXL) text encoder", ("umt5_wan",),
        "models_t5_umt5-xxl-enc-bf16.pth (Wan-AI/Wan2.1-I2V-14B-720P)",
        reasons={"umt5_hf": "ComfyUI's umt5_xxl files use the transformers key layout; musubi's Wan loader reads "
                            "only Wan's original layout"}),
    ("wan", "clip"): Expect(
        "Wan CLIP (XLM-RoBERTa ViT-H)", ("wan_clip",),
        "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth (Wan-AI/Wan2.1-I2V-14B-720P)",
        reasons={"clip_vision_h": "musubi's Wan loader needs the whole open-clip file (vision and text halves); "
                                  "ComfyUI's clip_vision_h is a different export",
                 "wan_clip_visual": "musubi's Wan loader needs the whole open-clip file, text half included"}),
    # ------------------------------------------------------------------ FramePack
    ("framepack", "dit"): Expect(
        "FramePack DiT", ("framepack_dit",),
        "lllyasviel/FramePackI2V_HY (pass part 1 of 3), lllyasviel/FramePack_F1_I2V_HY_20250503, or Kijai's "
        "FramePackI2V_HY_bf16.safetensors", split=True, folder=True, fp8="file_dtype",
        reasons={"hv_dit": "FramePack is its own model (clean_x_embedder, image_projection), not a HunyuanVideo DiT",
                 "hv_diffusers_dit": "FramePack is its own model (clean_x_embedder, image_projection), not a plain "
                                     "HunyuanVideo DiT"}),
    ("framepack", "vae"): Expect(
        "HunyuanVideo VAE", ("hv_vae",),
        "hunyuanvideo-community/HunyuanVideo vae/diffusion_pytorch_model.safetensors, or ComfyUI's "
        "hunyuan_video_vae_bf16.safetensors", prefixes=("", "vae.")),
    ("framepack", "text_encoder1"): Expect(
        "LLaVA-LLaMA-3 text encoder", ("llava_llama3",),
        "llava_llama3_fp16.safetensors (Comfy-Org/HunyuanVideo_repackaged), or hunyuanvideo-community/HunyuanVideo "
        "text_encoder/model-00001-of-00004.safetensors", split=True),
    ("framepack", "text_encoder2"): _CLIP_L,
    ("framepack", "image_encoder"): Expect(
        "image encoder (SigLIP)", ("siglip",),
        "sigclip_vision_patch14_384.safetensors, or lllyasviel/flux_redux_bfl image_encoder/model.safetensors"),
    # ------------------------------------------------------------------ FLUX.1 Kontext
    ("flux_kontext", "dit"): Expect(
        "FLUX.1 Kontext DiT", ("flux1_dit",),
        "flux1-kontext-dev.safetensors (black-forest-labs/FLUX.1-Kontext-dev)", prefixes=("", DIT_PREFIX),
        fp8="file_dtype",
        reasons={"flux1_diffusers_dit": "musubi reads FLUX.1 Kontext in BFL's layout only; the diffusers "
                                        "transformer folder's files cannot be used"}),
    ("flux_kontext", "vae"): Expect(
        "FLUX.1 AE", ("flux1_ae",), "ae.safetensors (black-forest-labs/FLUX.1-Kontext-dev or FLUX.1-dev)",
        reasons={"flux2_ae": "FLUX.1 Kontext needs the 16-channel FLUX.1 AE"}),
    ("flux_kontext", "text_encoder1"): Expect(
        "T5-XXL text encoder", ("t5xxl",), "t5xxl_fp16.safetensors (comfyanonymous/flux_text_encoders)",
        reasons={"umt5_hf": "FLUX uses T5-XXL, not Wan's UMT5-XXL"}),
    ("flux_kontext", "text_encoder2"): _CLIP_L,
    # ------------------------------------------------------------------ FLUX.2
    ("flux_2", "dit"): Expect(
        "FLUX.2 DiT", ("flux2_dit",),
        "BFL's flux2-dev.safetensors, flux2-klein-4b / flux2-klein-9b.safetensors or their -base- versions",
        split=True, instead_by=("model_version", _FLUX2_FILES)),
    ("flux_2", "vae"): Expect(
        "FLUX.2 AE", ("flux2_ae",), "ae.safetensors from black-forest-labs/FLUX.2-dev (BFL layout)", split=True,
        reasons={"flux2_vae_diffusers": "ComfyUI's flux2-vae.safetensors is in the diffusers layout, which musubi's "
                                        "FLUX.2 loader rejects (\"Unexpected key(s) ... encoder.down_blocks\")",
                 "flux1_ae": "FLUX.2 needs its own 32-channel AE"}),
    ("flux_2", "text_encoder"): Expect(
        "FLUX.2 text encoder", ("mistral3", "qwen3"),
        "dev: all 10 text_encoder/model-0000X-of-00010.safetensors of black-forest-labs/FLUX.2-dev (pick part 1); "
        "klein 4B: qwen_3_4b.safetensors; klein 9B: qwen_3_8b.safetensors", split=True,
        instead_by=("model_version", _FLUX2_TE)),
    # ------------------------------------------------------------------ Qwen-Image
    ("qwen_image", "dit"): Expect(
        "Qwen-Image DiT", ("qwen_image_dit",),
        "the _bf16 file for the model version from Comfy-Org/Qwen-Image_ComfyUI split_files/diffusion_models "
        "(qwen_image_bf16, qwen_image_edit_bf16, qwen_image_edit_2509_bf16, qwen_image_edit_2511_bf16, "
        "qwen_image_layered_bf16)", prefixes=("", DIT_PREFIX), split=True, fp8="refuse",
        instead_by=("model_version", _QWEN_FILES)),
    ("qwen_image", "vae"): Expect(
        "Qwen-Image VAE", ("wan_vae", "qwen_vae_diffusers", "qwen_layered_vae"),
        f"{_QWEN_VAE}; for Layered qwen_image_layered_vae.safetensors",
        reasons={"wan22_vae": "the Wan 2.2 VAE has 48 channels"}),
    ("qwen_image", "text_encoder"): _QWEN25VL,
    # ------------------------------------------------------------------ Z-Image
    ("zimage", "dit"): Expect(
        "Z-Image DiT", ("zimage_dit",),
        "z_image_bf16.safetensors (Comfy-Org/z_image split_files/diffusion_models), ostris's "
        "z_image_de_turbo_v1_bf16, or Tongyi-MAI/Z-Image's transformer files (pick part 1)", split=True,
        reasons={"lumina2_dit": "Lumina 2 has the key names of Z-Image but other shapes"}),
    ("zimage", "vae"): Expect(
        "Z-Image VAE (the FLUX.1 AE)", ("flux1_ae", "flux1_vae_diffusers"),
        "ae.safetensors (the FLUX.1 AE, Comfy-Org/z_image_turbo split_files/vae), or the official Z-Image VAE"),
    ("zimage", "text_encoder"): Expect(
        "Qwen3 4B text encoder", ("qwen3",),
        "qwen_3_4b.safetensors (Comfy-Org/z_image_turbo split_files/text_encoders)", split=True),
    # ------------------------------------------------------------------ Kandinsky 5
    ("kandinsky5", "dit"): Expect(
        "Kandinsky 5 DiT", ("kandinsky5_dit",),
        "the kandinskylab kandinsky5pro_*/kandinsky5lite_* .safetensors for the task", fp8_scaled=True, fp8="ok"),
    ("kandinsky5", "vae"): Expect("HunyuanVideo VAE", ("hv_vae",), _HV_VAE, prefixes=("", "vae."), folder=True),
    # ------------------------------------------------------------------ Ideogram 4
    ("ideogram4", "dit"): Expect(
        "Ideogram 4 conditional DiT", ("ideogram4_dit",),
        "ideogram4_fp8_scaled.safetensors (Comfy-Org/Ideogram-4 diffusion_models)",
        fp8="ok", fp8_scaled=True, comfy_quant=True, bnb=True),
    ("ideogram4", "unconditional_dit"): Expect(
        "Ideogram 4 unconditional DiT", ("ideogram4_dit",),
        "ideogram4_unconditional_fp8_scaled.safetensors (Comfy-Org/Ideogram-4 diffusion_models)",
        fp8="ok", fp8_scaled=True, comfy_quant=True, bnb=True),
    ("ideogram4", "vae"): Expect(
        "FLUX.2 VAE", ("flux2_vae_diffusers", "flux2_ae"), "flux2-vae.safetensors (Comfy-Org/Ideogram-4 vae)"),
    ("ideogram4", "text_encoder"): Expect(
        "Qwen3-VL 8B text encoder", ("qwen3vl",),
        "qwen3vl_8b_fp8_scaled.safetensors (Comfy-Org/Ideogram-4 text_encoders), or a bf16 Qwen3-VL-8B",
        fp8="ok", fp8_scaled=True, comfy_quant=True),
    # ------------------------------------------------------------------ Krea 2
    ("krea2", "dit"): Expect(
        "Krea 2 RAW DiT", ("krea2_dit",), "raw.safetensors (krea/Krea-2-Raw)", split=True),
    ("krea2", "turbo_dit"): Expect(
        "Krea 2 Turbo DiT", ("krea2_dit",), "turbo.safetensors (krea/Krea-2-Turbo)", split=True),
    ("krea2", "vae"): Expect(
        "Qwen-Image VAE", ("wan_vae", "qwen_vae_diffusers"), _QWEN_VAE,
        reasons={"qwen_layered_vae": "Krea 2 uses the 3-channel Qwen-Image VAE, not the Layered one",
                 "wan22_vae": "the Wan 2.2 VAE has 48 channels"}),
    ("krea2", "text_encoder"): Expect(
        "Qwen3-VL 4B text encoder", ("qwen3vl",),
        "qwen3vl_4b_bf16.safetensors (Comfy-Org/Qwen3-VL split_files/text_encoders)", split=True),
    # ------------------------------------------------------------------ HiDream-O1
    ("hidream_o1", "dit"): Expect(
        "HiDream-O1-Image checkpoint", ("hidream_o1",),
        "hidream_o1_image_bf16.safetensors or hidream_o1_image_dev_bf16.safetensors (Comfy-Org/HiDream-O1-Image "
        "checkpoints)", prefixes=("", "diffusion_model."), folder=True),
}

# Where a family belongs, to say which input a misplaced file is for.
BELONGS = {"dit": "DiT", "vae": "VAE", "text_encoder": "text encoder", "image_encoder": "image encoder"}


def expectation(arch_id: str, input_name: str) -> Optional[Expect]:
    return EXPECT.get((arch_id, input_name))

"""Fingerprints of diffusion models (DiTs): which keys and shapes tell the architecture, its
variant and its key layout apart. The markers follow ComfyUI's own detection
(``comfy/model_detection.py``) and musubi's loaders, as summarised in the pack's reference
notes on model files. Each detector fills an Identity and returns True when it recognises
the keys. Standard library only.
"""

from __future__ import annotations

from typing import Callable

from .identity import Identity, View

__all__ = ["DIT_DETECTORS", "WAN_SHAPES"]

# Wan task -> (dim, in_dim, img_emb, emb_pos): what musubi's WAN_CONFIGS build.
WAN_SHAPES: dict[str, tuple[int, int, bool, bool]] = {
    "t2v-14B": (5120, 16, False, False), "t2i-14B": (5120, 16, False, False),
    "t2v-A14B": (5120, 16, False, False), "t2v-1.3B": (1536, 16, False, False),
    "i2v-14B": (5120, 36, True, False), "flf2v-14B": (5120, 36, True, True),
    "i2v-A14B": (5120, 36, False, False), "t2v-1.3B-FC": (1536, 48, True, False),
    "t2v-14B-FC": (5120, 48, True, False), "i2v-14B-FC": (5120, 48, True, False),
}
_WAN_SIZES = {1536: "1.3B", 5120: "14B", 3072: "5B (Wan 2.2 TI2V)"}
_WAN_EXTRAS = (("vace_", "VACE"), ("control_adapter.", "Fun-Camera"),
               ("casual_audio_encoder.", "S2V (speech-to-video)"),
               ("audio_proj.", "HuMo"), ("face_adapter.", "Animate"))


def hunyuan_video(v: View, ident: Identity) -> bool:
    if not v.has("txt_in.individual_token_refiner.blocks.0.norm1.weight"):
        return False
    comfy = v.has("double_blocks.0.img_attn.qkv.weight")
    if v.starts("byt5_in.") or v.has("cond_type_embedding.weight"):
        return _hunyuan_video_15(v, ident)
    in_ch = v.dim("img_in.proj.weight", 1)
    ident.component, ident.family = "dit", "hv_dit"
    ident.layout = "comfy" if comfy else "original"
    ident.variant.update(in_channels=in_ch, double_blocks=v.blocks("double_blocks"),
                         single_blocks=v.blocks("single_blocks"), hidden=v.dim("img_in.proj.weight", 0))
    task = {16: "text-to-video", 32: "SkyReels image-to-video", 33: "image-to-video (HunyuanVideo-I2V)"}
    ident.variant["task"] = task.get(in_ch or 0, f"{in_ch} input channels")
    ident.name = f"HunyuanVideo DiT, {ident.variant['task']}"
    return True


def _hunyuan_video_15(v: View, ident: Identity) -> bool:
    ident.component, ident.family = "dit", "hv15_dit"
    ident.layout = "comfy" if v.has("double_blocks.0.img_attn_qkv.weight") else "original"
    ident.variant.update(double_blocks=v.blocks("double_blocks"), hidden=v.dim("img_in.proj.weight", 0),
                         in_channels=v.dim("img_in.proj.weight", 1))
    ident.name = "HunyuanVideo 1.5 DiT"
    if v.starts("guidance_in."):
        ident.unsupported = "a cfg-distilled model (guidance_in), which musubi's HunyuanVideo 1.5 model does not have"
    elif v.starts("time_r_in."):
        ident.unsupported = "a step-distilled model (time_r_in), which musubi's HunyuanVideo 1.5 model does not have"
    ident.undecidable = "t2v and i2v models have the same keys"
    return True


def framepack(v: View, ident: Identity) -> bool:
    if not v.has("transformer_blocks.0.attn.to_q.weight") or not (
            v.starts("context_embedder.token_refiner.") or v.starts("clean_x_embedder.")):
        return False
    ident.component = "dit"
    if v.starts("clean_x_embedder.") and v.starts("image_projection."):
        ident.family, ident.name, ident.layout = "framepack_dit", "FramePack DiT", "diffusers"
        ident.undecidable = "FramePack and FramePack-F1 have the same keys"
    else:
        ident.family, ident.name, ident.layout = "hv_diffusers_dit", "HunyuanVideo DiT (diffusers layout)", "diffusers"
    return True


def wan(v: View, ident: Identity) -> bool:
    if v.has("blocks.0.attn1.to_q.weight") and v.starts("condition_embedder."):
        ident.component, ident.family, ident.layout = "dit", "wan_diffusers_dit", "diffusers"
        ident.name = "Wan DiT (diffusers layout)"
        return True
    if not v.has("head.modulation", "blocks.0.cross_attn.k.weight"):
        return False
    dim = v.dim("head.modulation", -1) or 0
    in_dim = v.dim("patch_embedding.weight", 1) or 0
    img_emb = v.starts("img_emb.")
    emb_pos = v.has("img_emb.emb_pos")
    ident.component, ident.family = "dit", "wan_dit"
    ident.layout = "comfy" if ident.prefix else "original"
    ident.variant.update(dim=dim, in_dim=in_dim, blocks=v.blocks("blocks"), img_emb=img_emb, emb_pos=emb_pos,
                         size=_WAN_SIZES.get(dim, f"dim {dim}"))
    extras = [name for prefix, name in _WAN_EXTRAS if v.starts(prefix)] + (["Wan 2.2 Fun-Control (ref_conv)"]
                                                                            if v.has("ref_conv.weight") else [])
    tasks = [t for t, (d, i, e, p) in WAN_SHAPES.items() if (d, i, e, p) == (dim, in_dim, img_emb, emb_pos)]
    ident.variant["tasks"] = tasks
    if extras:
        ident.unsupported = f"a Wan {extras[0]} model, which musubi does not train"
        kind = extras[0]
    elif dim == 3072:
        ident.unsupported = "Wan 2.2 TI2V-5B, which musubi v0.3.4 has no task for"
        kind = "TI2V-5B"
    elif in_dim == 48:
        kind = "Fun-Control"
        ident.undecidable = "Fun-Control t2v and i2v 14B models have the same keys"
    elif in_dim == 36 and emb_pos:
        kind = "first-last-frame-to-video (Wan 2.1 FLF2V)"
    elif in_dim == 36 and img_emb:
        kind = "image-to-video (Wan 2.1)"
    elif in_dim == 36:
        kind = "image-to-video (Wan 2.2 A14B)"
        ident.undecidable = "the A14B high-noise and low-noise models have the same keys"
    elif in_dim == 16:
        kind = "text-to-video"
        if dim == 5120:
            ident.undecidable = ("Wan 2.1 t2v-14B, Wan 2.2 t2v-A14B high-noise and low-noise models have the same "
                                 "keys")
    else:
        kind = f"{in_dim} input channels"
    ident.variant["kind"] = kind
    ident.name = f"Wan DiT {ident.variant['size']}, {kind}"
    return True


def flux2(v: View, ident: Identity) -> bool:
    if not v.has("double_stream_modulation_img.lin.weight"):
        return False
    txt = v.shape("txt_in.weight")
    versions = {(6144, 15360): "dev", (4096, 12288): "klein-9b", (3072, 7680): "klein-4b"}
    version = versions.get(tuple(txt[:2]), "")
    ident.component, ident.family, ident.layout = "dit", "flux2_dit", "bfl"
    ident.variant.update(version=version, txt_in=list(txt), double_blocks=v.blocks("double_blocks"),
                         single_blocks=v.blocks("single_blocks"), guidance=v.starts("guidance_in."))
    names = {"dev": "FLUX.2 dev", "klein-9b": "FLUX.2 klein 9B", "klein-4b": "FLUX.2 klein 4B"}
    ident.name = f"{names.get(version, 'FLUX.2 (unknown size)')} DiT"
    if version.startswith("klein"):
        ident.undecidable = "klein and klein-base models have the same keys"
    return True


def flux1(v: View, ident: Identity) -> bool:
    if v.has("single_transformer_blocks.0.attn.to_q.weight", "x_embedder.weight") and v.starts("time_text_embed."):
        ident.component, ident.family, ident.layout = "dit", "flux1_diffusers_dit", "diffusers"
        ident.name = "FLUX.1 DiT (diffusers layout)"
        return True
    if not v.has("double_blocks.0.img_attn.norm.key_norm.scale"):
        return False
    if v.starts("distilled_guidance_layer."):
        ident.component, ident.layout = "dit", "bfl"
        ident.family, ident.name = "chroma_dit", "Chroma DiT (a FLUX.1 derivative)"
        return True
    if not v.has("img_in.weight"):
        return False
    ident.component, ident.layout = "dit", "bfl"
    in_ch = v.dim("img_in.weight", 1)
    guidance = v.starts("guidance_in.")
    ident.family = "flux1_dit"
    kind = {64: "", 384: "Fill", 128: "Canny/Depth"}.get(in_ch or 0, f"{in_ch} input channels")
    ident.variant.update(in_channels=in_ch, guidance=guidance, double_blocks=v.blocks("double_blocks"),
                         single_blocks=v.blocks("single_blocks"))
    if kind:
        ident.variant["kind"] = kind
        ident.name = f"FLUX.1 {kind} DiT"
    elif guidance:
        ident.variant["kind"] = "dev"
        ident.name = "FLUX.1 dev-type DiT (dev, Kontext or Krea)"
        ident.undecidable = "FLUX.1 dev, Kontext and Krea-dev have the same keys"
    else:
        ident.variant["kind"] = "schnell"
        ident.name = "FLUX.1 schnell DiT (no guidance input)"
    return True


def qwen_image(v: View, ident: Identity) -> bool:
    if not v.has("txt_norm.weight", "img_in.weight") or not v.starts("transformer_blocks."):
        return False
    ident.component, ident.family, ident.layout = "dit", "qwen_image_dit", "comfy" if ident.prefix else "original"
    ident.variant.update(blocks=v.blocks("transformer_blocks"), txt_norm=v.dim("txt_norm.weight", 0))
    if v.has("__index_timestep_zero__"):
        ident.variant["version"] = "edit-2511"
        ident.name = "Qwen-Image Edit-2511 DiT"
    elif v.has("time_text_embed.addition_t_embedding.weight"):
        ident.variant["version"] = "layered"
        ident.name = "Qwen-Image Layered DiT"
    else:
        ident.variant["version"] = ""
        ident.name = "Qwen-Image DiT (original, Edit or Edit-2509)"
        ident.undecidable = "Qwen-Image original, Edit, Edit-2509 (and 2512) have the same keys"
    return True


def zimage(v: View, ident: Identity) -> bool:
    if not v.has("cap_embedder.1.weight"):
        return False
    dim = v.dim("cap_embedder.1.weight", 0)
    ident.component = "dit"
    if dim == 2304 or not v.starts("noise_refiner."):
        ident.family, ident.name, ident.layout = "lumina2_dit", "Lumina 2 DiT", "comfy"
        return True
    ident.family = "zimage_dit"
    ident.layout = "comfy" if v.has("layers.0.attention.qkv.weight") or v.has("x_embedder.weight") else "original"
    ident.variant.update(dim=dim, layers=v.blocks("layers"))
    ident.name = "Z-Image DiT"
    ident.undecidable = "Z-Image Turbo, Base and De-Turbo have the same keys"
    return True


def kandinsky5(v: View, ident: Identity) -> bool:
    if not v.has("visual_transformer_blocks.0.cross_attention.key_norm.weight"):
        return False
    dim = v.dim("visual_embeddings.in_layer.bias", 0)
    in_ch = v.dim("visual_embeddings.in_layer.weight", 1)
    size = {4096: "pro", 1792: "lite", 2560: "lite-image"}.get(dim or 0, "")
    ident.component, ident.family, ident.layout = "dit", "kandinsky5_dit", "original"
    ident.variant.update(dim=dim, size=size, in_channels=in_ch, blocks=v.blocks("visual_transformer_blocks"),
                         video=in_ch == 132)
    names = {"pro": "Kandinsky 5 Pro", "lite": "Kandinsky 5 Lite", "lite-image": "Kandinsky 5 Lite image"}
    ident.name = f"{names.get(size, 'Kandinsky 5')} DiT ({'video' if in_ch == 132 else 'text-to-image'})"
    if size == "lite-image":
        ident.unsupported = "Kandinsky 5 Lite image, which musubi's docs list as not supported"
    elif in_ch == 132:
        ident.undecidable = "t2v and i2v models of one size have the same keys"
    return True


def ideogram4(v: View, ident: Identity) -> bool:
    if not v.has("embed_image_indicator.weight", "input_proj.weight"):
        return False
    ident.component, ident.family, ident.layout = "dit", "ideogram4_dit", "comfy"
    ident.variant.update(layers=v.blocks("layers"))
    ident.name = "Ideogram 4 DiT"
    return True


def krea2(v: View, ident: Identity) -> bool:
    if not v.has("txtfusion.projector.weight", "first.weight"):
        return False
    ident.component, ident.family, ident.layout = "dit", "krea2_dit", "original"
    ident.variant.update(blocks=v.blocks("blocks"))
    ident.name = "Krea 2 DiT"
    ident.undecidable = "Krea 2 RAW and Turbo have the same keys"
    return True


def hidream_o1(v: View, ident: Identity) -> bool:
    if not (v.ends("t_embedder1.mlp.0.weight") and v.ends("x_embedder.proj1.weight")):
        return False
    ident.component, ident.family, ident.layout = "dit", "hidream_o1", "comfy-checkpoint"
    ident.name = "HiDream-O1-Image checkpoint"
    ident.undecidable = "HiDream-O1 full and dev have the same keys"
    return True


# Tried in order; the first that recognises the keys wins.
DIT_DETECTORS: tuple[Callable[[View, Identity], bool], ...] = (
    hidream_o1, hunyuan_video, framepack, wan, flux2, flux1, qwen_image, zimage, kandinsky5, ideogram4, krea2,
)

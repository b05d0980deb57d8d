"""Fingerprints of VAEs, text encoders and image encoders (and LoRA files picked by mistake).

Same shape as dits.py: each detector fills an Identity from a View and returns True when it
recognises the keys. The language models are told apart by their first layer (hidden size,
q_norm, k_proj bias), their vocabulary and whether a vision tower is present. Standard library
only.
"""

from __future__ import annotations

from typing import Callable, Optional

from .identity import Identity, View

__all__ = ["ENCODER_DETECTORS", "lora"]

_LORA_ENDS = (".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight", ".hada_w1_a",
              ".lokr_w1", ".lora.down.weight", ".lora.up.weight")


def lora(v: View, ident: Identity) -> bool:
    keys = v.tensors
    hits = sum(1 for k in keys if k.endswith(_LORA_ENDS) or k.startswith(("lora_unet_", "lora_te")))
    if not keys or hits * 3 < len(keys):
        return False
    ident.component, ident.family, ident.name = "lora", "lora", "a LoRA (trained adapter weights)"
    return True


# ---------------------------------------------------------------- VAEs

def _hv_vae(v: View, ident: Identity) -> bool:
    key = "decoder.conv_in.conv.weight" if v.has("decoder.conv_in.conv.weight") else "decoder.conv_in.weight"
    shape = v.shape(key)
    if len(shape) != 5:
        return False
    if shape[1] == 16 and v.has("encoder.down_blocks.0.resnets.0.conv1.conv.weight"):
        ident.family, ident.name = "hv_vae", "HunyuanVideo 3D VAE (16 latent channels)"
    elif shape[1] == 32:
        ident.family, ident.name = "hv15_vae", "HunyuanVideo 1.5 VAE (32 latent channels)"
    else:
        return False
    ident.component, ident.layout = "vae", "diffusers" if ident.family == "hv_vae" else "original"
    ident.variant["latent_channels"] = shape[1]
    return True


def _wan_vae(v: View, ident: Identity) -> bool:
    if v.has("decoder.middle.0.residual.0.gamma") and v.starts("conv1."):
        ident.component, ident.layout = "vae", "original"
        in_ch = v.dim("encoder.conv1.weight", 1)
        ident.variant["in_channels"] = in_ch
        if v.has("decoder.upsamples.0.upsamples.0.residual.2.weight"):
            ident.family, ident.name = "wan22_vae", "Wan 2.2 VAE (48 latent channels, for TI2V-5B)"
        elif in_ch == 4:
            ident.family, ident.name = "qwen_layered_vae", "Qwen-Image-Layered VAE (4-channel input)"
        else:
            ident.family, ident.name = "wan_vae", "Wan 2.1 VAE or Qwen-Image VAE"
            ident.undecidable = "the Wan 2.1 VAE and the Qwen-Image VAE have the same keys and shapes"
        return True
    shape = v.shape("encoder.conv_in.weight")
    if len(shape) == 5 and v.starts("decoder.mid_block.") and v.has("quant_conv.weight"):
        ident.component, ident.layout = "vae", "diffusers"
        ident.variant["in_channels"] = shape[1]
        if shape[1] == 4:
            ident.family, ident.name = "qwen_layered_vae", "Qwen-Image-Layered VAE (4-channel input, diffusers layout)"
        elif v.dim("decoder.conv_in.weight", 1) == 48:
            ident.family, ident.name = "wan22_vae", "Wan 2.2 VAE (diffusers layout)"
        else:
            ident.family, ident.name = "qwen_vae_diffusers", "Qwen-Image / Wan 2.1 VAE (diffusers layout)"
        return True
    return False


def _vae_2d(v: View, ident: Identity) -> bool:
    bfl = v.has("encoder.down.0.block.0.conv1.weight")
    diffusers = v.has("encoder.down_blocks.0.resnets.0.conv1.weight")
    if not (bfl or diffusers) or len(v.shape("decoder.conv_in.weight")) != 4:
        return False
    latent = v.dim("decoder.conv_in.weight", 1)
    bn = v.has("bn.running_mean")
    ident.component, ident.layout = "vae", "bfl" if bfl else "diffusers"
    ident.variant["latent_channels"] = latent
    if bfl and latent == 16:
        ident.family, ident.name = "flux1_ae", "FLUX.1 AE (16 latent channels)"
    elif bfl and latent == 32 and bn:
        ident.family, ident.name = "flux2_ae", "FLUX.2 AE (32 latent channels)"
    elif diffusers and latent == 32 and bn:
        ident.family, ident.name = "flux2_vae_diffusers", "FLUX.2 VAE in diffusers layout (ComfyUI's flux2-vae)"
    elif diffusers and latent == 16:
        ident.family, ident.name = "flux1_vae_diffusers", "FLUX.1 / SD3-type VAE in diffusers layout (16 channels)"
    elif latent == 4:
        ident.family, ident.name = "sd_vae", "Stable Diffusion VAE (4 latent channels)"
    else:
        ident.family, ident.name = "image_vae", f"an image VAE with {latent} latent channels"
    return True


# ---------------------------------------------------------------- text encoders

def _clip_text(v: View, ident: Identity) -> bool:
    if not v.starts("text_model.encoder.layers."):
        return False
    layers = v.blocks("text_model.encoder.layers")
    hidden = v.dim("text_model.final_layer_norm.weight", 0)
    ident.component, ident.layout = "text_encoder", "hf"
    ident.variant.update(layers=layers, hidden=hidden, with_vision=v.starts("vision_model."))
    if layers >= 31:
        ident.family, ident.name = "clip_g", "CLIP-G text encoder"
    elif layers >= 23:
        ident.family, ident.name = "clip_h_text", "CLIP-H text encoder"
    elif layers == 12 and hidden in (768, None):
        ident.family, ident.name = "clip_l", "CLIP-L text encoder"
    else:
        ident.family, ident.name = "clip_text", f"a CLIP text encoder ({layers} layers)"
    return True


def _t5(v: View, ident: Identity) -> bool:
    key = "encoder.block.0.layer.0.SelfAttention.k.weight"
    if not v.has(key):
        return False
    ident.component, ident.layout = "text_encoder", "hf"
    if v.dim(key, 1) == 1472:
        ident.family, ident.name = "byt5", "ByT5-small text encoder (glyph)"
        ident.variant["shared"] = v.has("shared.weight")
        return True
    vocab = v.dim("shared.weight", 0) or v.dim("encoder.embed_tokens.weight", 0)
    d_model = v.dim(key, 1)
    blocks = v.blocks("encoder.block")
    ident.variant.update(vocab=vocab, d_model=d_model, blocks=blocks)
    if vocab == 256384:
        ident.family, ident.name = "umt5_hf", "UMT5-XXL text encoder, transformers layout (ComfyUI's umt5_xxl)"
    elif d_model == 4096 and blocks == 24:
        ident.family, ident.name = "t5xxl", "T5-XXL text encoder"
    else:
        ident.family, ident.name = "t5", f"a T5 text encoder (d_model {d_model}, {blocks} blocks)"
    return True


def _umt5_wan(v: View, ident: Identity) -> bool:
    for p in ("", "encoder."):
        if v.has(f"{p}token_embedding.weight", f"{p}blocks.0.attn.q.weight") and \
                v.starts(f"{p}blocks.0.pos_embedding."):
            ident.component, ident.family, ident.layout = "text_encoder", "umt5_wan", "original"
            ident.name = "UMT5-XXL text encoder, Wan's original layout"
            ident.variant["vocab"] = v.dim(f"{p}token_embedding.weight", 0)
            return True
    return False


def _language_model(v: View, ident: Identity) -> bool:
    norm = v.ends("layers.0.post_attention_layernorm.weight")
    if norm is None:
        return False
    base = norm[: -len("0.post_attention_layernorm.weight")]
    hidden = v.dim(norm, 0) or 0
    layers = v.blocks(base[:-1])
    q_norm = v.has(base + "0.self_attn.q_norm.weight")
    k_bias = v.dim(base + "0.self_attn.k_proj.bias", 0)
    vocab = v.dim(v.ends("embed_tokens.weight"), 0)
    vision = any(v.starts(p) for p in ("visual.", "model.visual.", "vision_tower.", "model.vision_tower."))
    deepstack = v.ends("visual.deepstack_merger_list.0.norm.weight") is not None
    ident.component = "text_encoder"
    ident.layout = "hf"
    ident.variant.update(hidden=hidden, layers=layers, vocab=vocab, vision=vision, lm_prefix=base)
    if deepstack:
        width = v.dim(v.ends("visual.merger.linear_fc2.weight"), 0)
        size = {2560: "4B", 4096: "8B"}.get(width or hidden, "")
        ident.family, ident.name = "qwen3vl", f"Qwen3-VL {size or '(unknown size)'} text encoder"
        ident.variant["size"] = size
    elif q_norm:
        size = {2560: "4B", 4096: "8B"}.get(hidden, "")
        ident.family, ident.name = "qwen3", f"Qwen3 {size or '(unknown size)'} text encoder"
        ident.variant["size"] = size
    elif k_bias:
        size = {512: "7B", 256: "3B"}.get(k_bias, "")
        ident.variant["size"] = size
        if vision:
            ident.family, ident.name = "qwen25vl", f"Qwen2.5-VL {size or '(unknown size)'} text encoder"
        else:
            ident.family, ident.name = "qwen25", f"Qwen2.5 {size} language model (no vision part)"
        ident.variant["transformers_452"] = base.startswith("model.language_model.")
    elif hidden == 5120:
        ident.family, ident.name = "mistral3", "Mistral 3 Small (24B) text encoder"
        ident.variant["pruned"] = layers < 40
        if layers < 40:
            ident.name += f" with {layers} of 40 layers (ComfyUI's pruned FLUX.2 file)"
    elif hidden == 4096 and vocab == 128320:
        ident.family, ident.name = "llava_llama3", "LLaVA-LLaMA-3 8B text encoder"
    elif hidden == 4096:
        ident.family, ident.name = "llama", f"a Llama-type 8B language model (vocabulary {vocab})"
    else:
        ident.family, ident.name = "llm", f"a language model (hidden size {hidden})"
    return True


# ---------------------------------------------------------------- image encoders

def _vision(v: View, ident: Identity) -> bool:
    if v.has("log_scale") and v.starts("visual.") and v.starts("textual."):
        ident.component, ident.family, ident.layout = "image_encoder", "wan_clip", "original"
        ident.name = "XLM-RoBERTa CLIP (Wan's open-clip file, vision and text)"
        return True
    if v.starts("visual.transformer.") and not v.starts("textual."):
        ident.component, ident.family, ident.layout = "image_encoder", "wan_clip_visual", "original"
        ident.name = "the vision half of Wan's XLM-RoBERTa CLIP (a visual-only export)"
        return True
    if not v.starts("vision_model.encoder.layers."):
        return False
    hidden = v.dim("vision_model.post_layernorm.weight", 0)
    layers = v.blocks("vision_model.encoder.layers")
    ident.component, ident.layout = "image_encoder", "hf"
    ident.variant.update(hidden=hidden, layers=layers)
    if hidden == 1152:
        ident.family, ident.name = "siglip", "SigLIP so400m vision encoder"
    elif hidden == 1280:
        ident.family, ident.name = "clip_vision_h", "CLIP-ViT-H vision encoder (ComfyUI's clip_vision_h)"
    else:
        ident.family, ident.name = "clip_vision", f"a CLIP vision encoder (hidden size {hidden})"
    return True


ENCODER_DETECTORS: tuple[Callable[[View, Identity], bool], ...] = (
    _hv_vae, _wan_vae, _vae_2d, _clip_text, _t5, _umt5_wan, _language_model, _vision,
)


def first_match(detectors: tuple[Callable[[View, Identity], bool], ...], v: View,
                ident: Identity) -> Optional[str]:
    for detect in detectors:
        if detect(v, ident):
            return detect.__name__
    return None

"""Key sets of real model files, as the reference notes describe them
(the project's reference notes on model files, §3-§5): names, shapes and dtypes of the tensors that tell
component, architecture and variant apart, plus a few others. Per-block keys are kept to a
few per block; ``wan_dit(full=True)`` has every key of a real Wan DiT (the benchmark's size).
"""

from __future__ import annotations

from typing import Iterable, Optional

Tensors = dict[str, tuple[str, tuple[int, ...]]]


def prefixed(tensors: Tensors, prefix: str) -> Tensors:
    return {prefix + k: v for k, v in tensors.items()}


def cast(tensors: Tensors, dtype: str, *, matrices_only: bool = False) -> Tensors:
    return {k: (dtype if not matrices_only or len(s) >= 2 else d, s) for k, (d, s) in tensors.items()}


def fp8_scaled(tensors: Tensors) -> Tensors:
    """ComfyUI's old fp8_scaled format: fp8 matrices, a scale_weight per layer, and scaled_fp8."""
    out: Tensors = {"scaled_fp8": ("F8_E4M3", (0,))}
    for k, (d, s) in tensors.items():
        if len(s) >= 2 and k.endswith(".weight"):
            out[k] = ("F8_E4M3", s)
            out[k[: -len("weight")] + "scale_weight"] = ("F32", ())
        else:
            out[k] = (d, s)
    return out


def comfy_quant(tensors: Tensors) -> Tensors:
    """ComfyUI's new mixed format (fp8mixed): fp8 matrices with weight_scale and comfy_quant."""
    out: Tensors = {}
    for k, (d, s) in tensors.items():
        if len(s) >= 2 and k.endswith(".weight"):
            base = k[: -len("weight")]
            out[k] = ("F8_E4M3", s)
            out[base + "weight_scale"] = ("F32", ())
            out[base + "comfy_quant"] = ("U8", (32,))
        else:
            out[k] = (d, s)
    return out


def _blocks(prefix: str, n: int, keys: dict[str, tuple[int, ...]], dtype: str) -> Tensors:
    return {f"{prefix}.{i}.{k}": (dtype, s) for i in range(n) for k, s in keys.items()}


def wan_dit(dim: int = 5120, in_dim: int = 16, img_emb: bool = False, emb_pos: bool = False,
            dtype: str = "BF16", full: bool = False, extra: Iterable[str] = ()) -> Tensors:
    blocks = 30 if dim == 1536 else 40 if dim == 5120 else 30
    ffn = {1536: 8960, 5120: 13824, 3072: 14336}[dim]
    per_block = {"cross_attn.k.weight": (dim, dim), "self_attn.q.weight": (dim, dim), "ffn.0.weight": (ffn, dim),
                 "modulation": (1, 6, dim)}
    if full:
        for part in ("self_attn", "cross_attn"):
            for p in "qkvo":
                per_block[f"{part}.{p}.weight"] = (dim, dim)
                per_block[f"{part}.{p}.bias"] = (dim,)
            per_block[f"{part}.norm_q.weight"] = (dim,)
            per_block[f"{part}.norm_k.weight"] = (dim,)
        per_block.update({"ffn.0.bias": (ffn,), "ffn.2.weight": (dim, ffn), "ffn.2.bias": (dim,),
                          "norm3.weight": (dim,), "norm3.bias": (dim,)})
    if img_emb:
        per_block.update({"cross_attn.k_img.weight": (dim, dim), "cross_attn.v_img.weight": (dim, dim)})
    t = {"patch_embedding.weight": (dtype, (dim, in_dim, 1, 2, 2)), "head.modulation": (dtype, (1, 2, dim)),
         "head.head.weight": (dtype, (64 if in_dim != 48 or dim != 3072 else 192, dim)),
         "text_embedding.0.weight": (dtype, (dim, 4096)), "time_embedding.0.weight": (dtype, (dim, 256))}
    t.update(_blocks("blocks", blocks, per_block, dtype))
    if img_emb:
        t.update({"img_emb.proj.0.weight": (dtype, (1280,)), "img_emb.proj.0.bias": (dtype, (1280,)),
                  "img_emb.proj.1.weight": (dtype, (1280, 1280))})
    if emb_pos:
        t["img_emb.emb_pos"] = (dtype, (1, 514, 1280))
    for key in extra:
        t[key] = (dtype, (dim, 16, 1, 2, 2))
    return t


def hv_dit(in_ch: int = 16, comfy: bool = False, dtype: str = "BF16") -> Tensors:
    qkv = "img_attn.qkv.weight" if comfy else "img_attn_qkv.weight"
    t = {"txt_in.individual_token_refiner.blocks.0.norm1.weight": (dtype, (3072,)),
         "img_in.proj.weight": (dtype, (3072, in_ch, 1, 2, 2)), "final_layer.linear.weight": (dtype, (64, 3072)),
         "vector_in.in_layer.weight": (dtype, (3072, 768)), "guidance_in.in_layer.weight": (dtype, (3072, 256))}
    t.update(_blocks("double_blocks", 20, {qkv: (9216, 3072)}, dtype))
    t.update(_blocks("single_blocks", 40, {"linear1.weight": (21504, 3072)}, dtype))
    return t


def hv15_dit(comfy: bool = False, dtype: str = "F16", extra: Iterable[str] = ()) -> Tensors:
    attn = {"img_attn_qkv.weight": (6144, 2048)} if comfy else {"img_attn_k.weight": (2048, 2048)}
    t = {"txt_in.individual_token_refiner.blocks.0.norm1.weight": (dtype, (2048,)),
         "img_in.proj.weight": (dtype, (2048, 65, 1, 1, 1)), "byt5_in.fc1.weight": (dtype, (2048, 1472)),
         "cond_type_embedding.weight": (dtype, (3, 2048)), "vision_in.proj.0.weight": (dtype, (1152,)),
         "final_layer.linear.weight": (dtype, (32, 2048))}
    t.update(_blocks("double_blocks", 54, attn, dtype))
    for key in extra:
        t[key] = (dtype, (2048, 256))
    return t


def framepack_dit(plain_hv: bool = False, dtype: str = "BF16") -> Tensors:
    t = {"x_embedder.proj.weight": (dtype, (3072, 16, 1, 2, 2)),
         "context_embedder.token_refiner.refiner_blocks.0.norm1.weight": (dtype, (3072,))}
    t.update(_blocks("transformer_blocks", 20, {"attn.to_q.weight": (3072, 3072)}, dtype))
    t.update(_blocks("single_transformer_blocks", 40, {"attn.to_q.weight": (3072, 3072)}, dtype))
    if not plain_hv:
        t.update({"clean_x_embedder.proj.weight": (dtype, (3072, 16, 1, 2, 2)),
                  "image_projection.up.weight": (dtype, (3072, 1152))})
    return t


def flux1_dit(in_ch: int = 64, guidance: bool = True, dtype: str = "BF16") -> Tensors:
    t = {"img_in.weight": (dtype, (3072, in_ch)), "txt_in.weight": (dtype, (3072, 4096)),
         "vector_in.in_layer.weight": (dtype, (3072, 768)), "time_in.in_layer.weight": (dtype, (3072, 256))}
    if guidance:
        t["guidance_in.in_layer.weight"] = (dtype, (3072, 256))
    t.update(_blocks("double_blocks", 19, {"img_attn.norm.key_norm.scale": (128,),
                                           "img_attn.qkv.weight": (9216, 3072)}, dtype))
    t.update(_blocks("single_blocks", 38, {"linear1.weight": (21504, 3072)}, dtype))
    return t


FLUX2 = {"dev": (6144, 15360, 8, 48), "klein-9b": (4096, 12288, 8, 24), "klein-4b": (3072, 7680, 5, 20)}


def flux2_dit(version: str = "dev", dtype: str = "BF16") -> Tensors:
    hidden, ctx, double, single = FLUX2[version]
    t = {"img_in.weight": (dtype, (hidden, 128)), "txt_in.weight": (dtype, (hidden, ctx)),
         "double_stream_modulation_img.lin.weight": (dtype, (hidden * 6, hidden))}
    if version == "dev":
        t["guidance_in.in_layer.weight"] = (dtype, (hidden, 256))
    t.update(_blocks("double_blocks", double, {"img_attn.norm.key_norm.scale": (128,),
                                               "img_attn.qkv.weight": (hidden * 3, hidden)}, dtype))
    t.update(_blocks("single_blocks", single, {"linear1.weight": (hidden * 9, hidden)}, dtype))
    return t


def qwen_image_dit(version: str = "original", dtype: str = "BF16") -> Tensors:
    t = {"txt_norm.weight": (dtype, (3584,)), "img_in.weight": (dtype, (3072, 64)),
         "txt_in.weight": (dtype, (3072, 3584))}
    t.update(_blocks("transformer_blocks", 60, {"attn.to_q.weight": (3072, 3072)}, dtype))
    if version == "edit-2511":
        t["__index_timestep_zero__"] = ("BF16", (0,))
    if version == "layered":
        t["time_text_embed.addition_t_embedding.weight"] = (dtype, (2, 3072))
    return t


def zimage_dit(comfy: bool = True, dim: int = 3840, dtype: str = "BF16") -> Tensors:
    attn = {"attention.qkv.weight": (dim * 3, dim)} if comfy else {"attention.to_q.weight": (dim, dim)}
    t = {"cap_embedder.1.weight": (dtype, (dim, 2560 if dim == 3840 else dim))}
    t[("x_embedder.weight" if comfy else "all_x_embedder.2-1.weight")] = (dtype, (dim, 64))
    t.update(_blocks("layers", 30 if dim == 3840 else 26, attn, dtype))
    t.update(_blocks("noise_refiner", 2, attn, dtype))
    return t


K5 = {"pro": (4096, 60), "lite": (1792, 32), "lite-image": (2560, 50)}


def kandinsky5_dit(size: str = "pro", video: bool = True, dtype: str = "BF16") -> Tensors:
    dim, blocks = K5[size]
    t = {"visual_embeddings.in_layer.bias": (dtype, (dim,)),
         "visual_embeddings.in_layer.weight": (dtype, (dim, 132 if video else 64))}
    t.update(_blocks("visual_transformer_blocks", blocks, {"cross_attention.key_norm.weight": (128,),
                                                           "self_attention.to_query.weight": (dim, dim)}, dtype))
    return t


def ideogram4_dit(dtype: str = "BF16") -> Tensors:
    t = {"embed_image_indicator.weight": (dtype, (2, 4608)), "input_proj.weight": (dtype, (4608, 128))}
    t.update(_blocks("layers", 34, {"attn.qkv.weight": (13824, 4608)}, dtype))
    return t


def krea2_dit(dtype: str = "BF16") -> Tensors:
    t = {"txtfusion.projector.weight": (dtype, (6144, 2560)), "first.weight": (dtype, (6144, 64))}
    t.update(_blocks("blocks", 28, {"attn.qkv.weight": (18432, 6144)}, dtype))
    return t


def hidream_o1(dtype: str = "BF16") -> Tensors:
    t = {"diffusion_model.t_embedder1.mlp.0.weight": (dtype, (4096, 256)),
         "diffusion_model.x_embedder.proj1.weight": (dtype, (4096, 3072)),
         "vae.decoder.conv_in.weight": (dtype, (512, 16, 3, 3))}
    t.update(_blocks("diffusion_model.language_model.layers", 36, {"post_attention_layernorm.weight": (4096,)}, dtype))
    t.update(_blocks("diffusion_model.visual.blocks", 2, {"attn.qkv.weight": (3456, 1152)}, dtype))
    return t


# ---------------------------------------------------------------- VAEs

def hv_vae(latent: int = 16, dtype: str = "BF16") -> Tensors:
    top = 512 if latent == 16 else 1024
    return {"decoder.conv_in.conv.weight": (dtype, (top, latent, 3, 3, 3)),
            "encoder.conv_in.conv.weight": (dtype, (128, 3, 3, 3, 3)),
            "encoder.down_blocks.0.resnets.0.conv1.conv.weight": (dtype, (128, 128, 3, 3, 3)),
            "decoder.up_blocks.0.resnets.0.conv1.conv.weight": (dtype, (top, top, 3, 3, 3))}


def wan_vae(in_ch: int = 3, v22: bool = False, dtype: str = "BF16") -> Tensors:
    t = {"conv1.weight": (dtype, (32, 32, 1, 1, 1)), "conv2.weight": (dtype, (16, 16, 1, 1, 1)),
         "encoder.conv1.weight": (dtype, (96, in_ch, 3, 3, 3)),
         "decoder.middle.0.residual.0.gamma": (dtype, (384, 1, 1, 1)),
         "decoder.conv1.weight": (dtype, (384, 16, 3, 3, 3))}
    if v22:
        t["decoder.upsamples.0.upsamples.0.residual.2.weight"] = (dtype, (1024, 1024, 3, 3, 3))
    return t


def qwen_vae_diffusers(in_ch: int = 3, dtype: str = "BF16") -> Tensors:
    return {"encoder.conv_in.weight": (dtype, (96, in_ch, 3, 3, 3)),
            "decoder.conv_in.weight": (dtype, (384, 16, 3, 3, 3)),
            "decoder.mid_block.resnets.0.conv1.weight": (dtype, (384, 384, 3, 3, 3)),
            "quant_conv.weight": (dtype, (32, 32, 1, 1, 1))}


def bfl_ae(latent: int = 16, dtype: str = "F32") -> Tensors:
    t = {"encoder.conv_in.weight": (dtype, (128, 3, 3, 3)),
         "encoder.down.0.block.0.conv1.weight": (dtype, (128, 128, 3, 3)),
         "decoder.conv_in.weight": (dtype, (512, latent, 3, 3))}
    if latent == 32:
        t["bn.running_mean"] = (dtype, (128,))
    return t


def diffusers_vae_2d(latent: int = 32, bn: bool = True, dtype: str = "BF16") -> Tensors:
    t = {"encoder.conv_in.weight": (dtype, (128, 3, 3, 3)),
         "encoder.down_blocks.0.resnets.0.conv1.weight": (dtype, (128, 128, 3, 3)),
         "decoder.conv_in.weight": (dtype, (512, latent, 3, 3)),
         "quant_conv.weight": (dtype, (latent * 2, latent * 2, 1, 1))}
    if bn:
        t["bn.running_mean"] = (dtype, (128,))
    return t


# ---------------------------------------------------------------- text and image encoders

def clip_text(layers: int = 12, hidden: int = 768, dtype: str = "F16") -> Tensors:
    t = {"text_model.final_layer_norm.weight": (dtype, (hidden,)),
         "text_model.embeddings.token_embedding.weight": (dtype, (49408, hidden))}
    t.update(_blocks("text_model.encoder.layers", layers, {"self_attn.q_proj.weight": (hidden, hidden)}, dtype))
    return t


def t5(vocab: int = 32128, dtype: str = "F16") -> Tensors:
    t = {"shared.weight": (dtype, (vocab, 4096)),
         "encoder.block.23.layer.1.DenseReluDense.wi_1.weight": (dtype, (10240, 4096))}
    t.update(_blocks("encoder.block", 24, {"layer.0.SelfAttention.k.weight": (4096, 4096)}, dtype))
    return t


def byt5(dtype: str = "F16") -> Tensors:
    t = {"shared.weight": (dtype, (384, 1472))}
    t.update(_blocks("encoder.block", 12, {"layer.0.SelfAttention.k.weight": (384, 1472)}, dtype))
    return t


def umt5_wan(dtype: str = "BF16") -> Tensors:
    t = {"token_embedding.weight": (dtype, (256384, 4096)),
         "blocks.0.pos_embedding.embedding.weight": (dtype, (32, 64))}
    t.update(_blocks("blocks", 24, {"attn.q.weight": (4096, 4096)}, dtype))
    return t


def language_model(hidden: int, layers: int, vocab: int, *, prefix: str = "model.", q_norm: bool = False,
                   k_bias: Optional[int] = None, dtype: str = "BF16") -> Tensors:
    per = {"post_attention_layernorm.weight": (hidden,), "self_attn.k_proj.weight": (1024, hidden)}
    if q_norm:
        per["self_attn.q_norm.weight"] = (128,)
    if k_bias:
        per["self_attn.k_proj.bias"] = (k_bias,)
    t = {f"{prefix}embed_tokens.weight": (dtype, (vocab, hidden))}
    t.update(_blocks(f"{prefix}layers", layers, per, dtype))
    return t


def llava_llama3(vocab: int = 128320, dtype: str = "F16") -> Tensors:
    return language_model(4096, 32, vocab, dtype=dtype)


def qwen25vl(size: str = "7B", dtype: str = "BF16", prefix: str = "model.") -> Tensors:
    hidden, layers, bias = {"7B": (3584, 28, 512), "3B": (2048, 36, 256)}[size]
    t = language_model(hidden, layers, 152064, prefix=prefix, k_bias=bias, dtype=dtype)
    visual = "model.visual." if prefix == "model.language_model." else "visual."
    t[f"{visual}blocks.0.attn.qkv.weight"] = (dtype, (3840, 1280))
    t[f"{visual}merger.mlp.0.weight"] = (dtype, (5120, 5120))
    return t


def qwen3(size: str = "4B", dtype: str = "BF16") -> Tensors:
    hidden = {"4B": 2560, "8B": 4096}[size]
    return language_model(hidden, 36, 151936, q_norm=True, dtype=dtype)


def qwen3vl(size: str = "4B", dtype: str = "BF16") -> Tensors:
    hidden = {"4B": 2560, "8B": 4096}[size]
    t = language_model(hidden, 36, 151936, prefix="model.language_model.", q_norm=True, dtype=dtype)
    t["model.visual.deepstack_merger_list.0.norm.weight"] = (dtype, (4608,))
    t["model.visual.merger.linear_fc2.weight"] = (dtype, (hidden, 4608))
    return t


def mistral3(layers: int = 40, vision: bool = True, dtype: str = "BF16") -> Tensors:
    t = language_model(5120, layers, 131072, prefix="language_model.model.", dtype=dtype)
    if vision:
        t["vision_tower.transformer.layers.0.attention.q_proj.weight"] = (dtype, (1024, 1024))
        t["multi_modal_projector.linear_1.weight"] = (dtype, (5120, 1024))
    return t


def vision_model(hidden: int, layers: int, projection: bool = False, dtype: str = "F16") -> Tensors:
    t = {"vision_model.post_layernorm.weight": (dtype, (hidden,)),
         "vision_model.embeddings.patch_embedding.weight": (dtype, (hidden, 3, 14, 14))}
    t.update(_blocks("vision_model.encoder.layers", layers, {"self_attn.q_proj.weight": (hidden, hidden)}, dtype))
    if projection:
        t["visual_projection.weight"] = (dtype, (1024, hidden))
    return t


def wan_clip(textual: bool = True, dtype: str = "F16") -> Tensors:
    t = {"log_scale": (dtype, ()), "visual.cls_embedding": (dtype, (1, 1, 1280))} if textual else \
        {"visual.cls_embedding": (dtype, (1, 1, 1280))}
    t.update(_blocks("visual.transformer", 32, {"attn.to_qkv.weight": (3840, 1280)}, dtype))
    if textual:
        t["textual.token_embedding.weight"] = (dtype, (250002, 1024))
        t.update(_blocks("textual.blocks", 24, {"attn.q.weight": (1024, 1024)}, dtype))
    return t


def lora(dtype: str = "BF16") -> Tensors:
    t: Tensors = {}
    for i in range(4):
        base = f"lora_unet_blocks_{i}_cross_attn_k"
        t.update({f"{base}.lora_down.weight": (dtype, (32, 5120)), f"{base}.lora_up.weight": (dtype, (5120, 32)),
                  f"{base}.alpha": ("F32", ())})
    return t


def comfy_checkpoint(dtype: str = "BF16") -> Tensors:
    """A ComfyUI all-in-one checkpoint: FLUX.1 dev + its AE + CLIP-L."""
    t = prefixed(flux1_dit(dtype=dtype), "model.diffusion_model.")
    t.update(prefixed(bfl_ae(16, dtype), "vae."))
    t.update(prefixed(clip_text(dtype=dtype), "text_encoders.clip_l.transformer."))
    return t

"""Variant and precision rules: does this file's variant (size, task family, version...) match
the selectors, and do the training options suit its dtype? Where the header cannot tell two
variants apart, the file name is a hint and the result is a warning, never an error.
Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .dits import WAN_SHAPES
from .expectations import expectation
from .identity import Identity

__all__ = ["Finding", "VARIANT_CHECKS", "recommendations", "ERROR", "WARNING"]

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Finding:
    level: str
    message: str
    fix: str = ""


Check = Callable[[Identity, Mapping[str, Any], Mapping[str, Any], str], list[Finding]]


def _name(ident: Identity) -> str:
    """The file name, lower case, with separators unified (wan2.1 / wan2_1 / wan21 all match)."""
    return re.sub(r"[\s\-.]+", "_", ident.file_name.lower())


def _has(ident: Identity, *words: str) -> bool:
    name = _name(ident)
    return any(re.sub(r"[\s\-.]+", "_", w) in name for w in words)


def _hint(message: str, fix: str) -> Finding:
    return Finding(WARNING, f"{message} (the header cannot tell; this is a guess from the file name)", fix)


# ---------------------------------------------------------------- Wan

def _wan_needs(task: str) -> str:
    dim, in_dim, img, pos = WAN_SHAPES[task]
    size = "1.3B model (dim 1536)" if dim == 1536 else "14B model (dim 5120)"
    extra = ", with first/last-frame embedding" if pos else (", with the image embedding (img_emb)" if img else "")
    return f"a {size} with {in_dim} input channels{extra}"


def _wan_dit(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    out: list[Finding] = []
    task = str(sel.get("task", ""))
    if task not in WAN_SHAPES or ident.unsupported:
        return out
    tasks = ident.variant.get("tasks") or []
    if task not in tasks:
        dim, in_dim, img, _ = WAN_SHAPES[task]
        v = ident.variant
        if (v.get("dim"), v.get("in_dim")) != (dim, in_dim):
            symptom = "musubi would stop with \"size mismatch\" after loading it"
        else:
            symptom = "musubi would stop with \"Missing key(s)\" or \"Unexpected key(s)\" (cross_attn.k_img / img_emb)"
        exp = expectation("wan", input_name)
        pick = exp.instead_for(sel) if exp else f"a DiT for {task}"
        fix = f"set task to {' or '.join(tasks)}, or pick {pick}" if tasks else f"pick {pick}"
        out.append(Finding(ERROR, f"task {task} needs {_wan_needs(task)}; {symptom}", fix))
        return out
    if input_name == "dit" and task.endswith("A14B") and _has(ident, "high_noise", "high"):
        out.append(_hint("dit is the low-noise model for Wan 2.2 A14B, but this file's name says high noise",
                         "put the low-noise file in dit and this one in dit_high_noise"))
    if input_name == "dit_high_noise" and _has(ident, "low_noise", "low"):
        out.append(_hint("dit_high_noise takes the high-noise model, but this file's name says low noise",
                         "put the high-noise file here and the low-noise file in dit"))
    if task in ("t2v-14B", "t2i-14B", "i2v-14B") and _has(ident, "wan2_2", "wan22", "a14b"):
        out.append(_hint(f"the file name says Wan 2.2, but task {task} trains it as Wan 2.1",
                         f"set task to {'i2v-A14B' if 'i2v' in task else 't2v-A14B'} for Wan 2.2 A14B"))
    if task.endswith("A14B") and _has(ident, "wan2_1", "wan21"):
        out.append(_hint(f"the file name says Wan 2.1, but task {task} is Wan 2.2 A14B",
                         "set task to t2v-14B (Wan 2.1), or pick the Wan 2.2 file"))
    return out


# ---------------------------------------------------------------- HunyuanVideo / 1.5 / FramePack

def _hv_dit(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    out: list[Finding] = []
    if ident.format.startswith("pytorch") and ident.wrapper != "module":
        where = f"under {ident.wrapper!r}" if ident.wrapper else "at the top level"
        out.append(Finding(ERROR, f"the checkpoint holds its weights {where}; musubi's HunyuanVideo loader reads "
                                  "them from 'module' (a DeepSpeed checkpoint) and stops with KeyError",
                           "pick mp_rank_00_model_states.pt from tencent/HunyuanVideo"))
    in_ch = ident.variant.get("in_channels")
    wanted = int(opts.get("dit_in_channels") or 16)
    if in_ch == 33:
        out.append(Finding(WARNING, "musubi's HunyuanVideo trainer is not documented to support "
                                    "HunyuanVideo-I2V (33 input channels)", "use the T2V model"))
    elif in_ch and in_ch != wanted:
        out.append(Finding(ERROR, f"it has {in_ch} input channels but dit_in_channels is {wanted} (size mismatch "
                                  "at load)", f"set dit_in_channels to {in_ch}"))
    return out


def _hv15_dit(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    out: list[Finding] = []
    task = sel.get("task")
    if task == "t2v" and _has(ident, "i2v"):
        out.append(_hint("the file name says i2v, but task is t2v", "set task to i2v, or pick the t2v DiT"))
    elif task == "i2v" and _has(ident, "t2v"):
        out.append(_hint("the file name says t2v, but task is i2v", "set task to t2v, or pick the i2v DiT"))
    if not ident.unsupported and _has(ident, "_sr_", "distilled"):
        out.append(_hint("the file name says it is a super-resolution or distilled model, which musubi's "
                         "HunyuanVideo 1.5 model does not have", "pick the 720p t2v or i2v DiT"))
    if ident.dtype == "fp16":
        dit_dtype = opts.get("dit_dtype")
        if dit_dtype in ("bfloat16", "float32", "bf16", "fp32"):
            out.append(Finding(ERROR, f"the file holds fp16 weights, and musubi's HunyuanVideo 1.5 trainer asserts "
                                      f"that dit_dtype is float16 for them (dit_dtype is {dit_dtype})",
                               "unset dit_dtype, or pick the official bf16 DiT"))
        if opts.get("mixed_precision") == "bf16":
            out.append(Finding(WARNING, "the file holds fp16 weights and musubi's docs say not to use them for "
                                        "bf16 training (the DiT runs in fp16)",
                               "set mixed_precision to fp16, or use the official bf16 DiT"))
    return out


def _framepack_dit(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    f1 = bool(sel.get("f1"))
    if f1 and not _has(ident, "f1"):
        return [_hint("FramePack-F1 is selected, but the file name does not say F1",
                      "pick FramePack_F1_I2V_HY_20250503, or turn f1 off")]
    if not f1 and _has(ident, "f1"):
        return [_hint("the file name says FramePack-F1, but f1 is off", "turn f1 on, or pick FramePackI2V_HY")]
    return []


# ---------------------------------------------------------------- FLUX.1 Kontext / FLUX.2

def _kontext_dit(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    kind = ident.variant.get("kind")
    if kind == "schnell":
        return [Finding(ERROR, "Kontext's model has a guidance input and this one has none, so musubi "
                               "would stop with \"Missing key(s) ... guidance_in\"",
                        "pick flux1-kontext-dev.safetensors (black-forest-labs/FLUX.1-Kontext-dev)")]
    if kind != "dev":
        return [Finding(ERROR, f"Kontext has 64 input channels, this model {ident.variant.get('in_channels')} "
                               "(size mismatch at load)",
                        "pick flux1-kontext-dev.safetensors (black-forest-labs/FLUX.1-Kontext-dev)")]
    if not _has(ident, "kontext"):
        return [_hint("FLUX.1 dev and Krea-dev load too, but training them as Kontext trains the wrong model, and "
                      "the file name does not say kontext", "pick flux1-kontext-dev.safetensors")]
    return []


def _flux2_base(version: str) -> str:
    return version.replace("-base", "")


def _flux2_dit(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    version = str(sel.get("model_version", "dev"))
    have = ident.variant.get("version")
    if not have:
        return [Finding(WARNING, f"its txt_in shape {ident.variant.get('txt_in')} matches no FLUX.2 size musubi "
                                 "knows", "pick a FLUX.2 dev or klein file from black-forest-labs")]
    if _flux2_base(version) != have:
        choices = " or ".join(sorted({have, have.replace("klein", "klein-base")}))
        return [Finding(ERROR, f"model_version {version} does not match the file (musubi would stop with missing "
                               "or unexpected double/single block keys)",
                        f"set model_version to {choices}, or pick the {version} file")]
    if have.startswith("klein"):
        if "base" in version and not _has(ident, "base"):
            return [_hint(f"model_version {version} is a base model, but the file name does not say base",
                          f"set model_version to {have}, or pick flux2-{version}.safetensors")]
        if "base" not in version and _has(ident, "base"):
            return [_hint("the file name says base, but model_version is the distilled klein",
                          f"set model_version to {have.replace('klein', 'klein-base')}")]
    return []


def _flux2_te(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    version = _flux2_base(str(sel.get("model_version", "dev")))
    v = ident.variant
    if version == "dev":
        if ident.family != "mistral3":
            return [Finding(ERROR, "FLUX.2 dev uses the Mistral 3 Small text encoder",
                            "pick text_encoder/model-00001-of-00010.safetensors of black-forest-labs/FLUX.2-dev "
                            "(all 10 parts in one folder)")]
        if v.get("pruned") or not v.get("vision"):
            return [Finding(ERROR, "musubi loads the whole Mistral 3 (all 40 layers and the vision tower) strictly; "
                                   "ComfyUI's mistral_3_small_flux2 files are pruned and are refused",
                            "pick text_encoder/model-00001-of-00010.safetensors of black-forest-labs/FLUX.2-dev "
                            "(all 10 parts in one folder)")]
        return []
    size = "4B" if version == "klein-4b" else "8B"
    if ident.family != "qwen3" or v.get("size") != size:
        return [Finding(ERROR, f"FLUX.2 {version} uses the Qwen3 {size} text encoder (a different size is a "
                               "size mismatch)", f"pick qwen_3_{size.lower()}.safetensors")]
    return _qwen3_embed(ident)


def _qwen3_embed(ident: Identity) -> list[Finding]:
    if ident.variant.get("lm_prefix") not in (None, "model.layers."):
        return [Finding(ERROR, "musubi's Qwen3 loader needs the key model.embed_tokens.weight (KeyError otherwise); "
                               f"this file's layers are under {ident.variant.get('lm_prefix')!r}",
                        "pick ComfyUI's qwen_3_4b.safetensors / qwen_3_8b.safetensors")]
    return []


def _byt5(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    if not ident.variant.get("shared"):
        return [Finding(ERROR, "musubi's ByT5 loader needs the key shared.weight, which this file does not have",
                        "pick byt5_small_glyphxl_fp16.safetensors")]
    return []


def _qwen3_4b(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    if ident.variant.get("size") != "4B":
        return [Finding(ERROR, "Z-Image uses Qwen3 4B (size mismatch)", "pick qwen_3_4b.safetensors")]
    return _qwen3_embed(ident)


# ---------------------------------------------------------------- Qwen-Image / Krea 2 / Z-Image

def _qwen_dit(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    version = str(sel.get("model_version", "original"))
    have = ident.variant.get("version", "")
    if have == "edit-2511" and version != "edit-2511":
        return [Finding(ERROR, "musubi asserts model_version edit-2511 for Edit-2511 files (key "
                               f"__index_timestep_zero__), not {version}", "set model_version to edit-2511")]
    if have == "layered" and version != "layered":
        return [Finding(ERROR, f"with model_version {version} musubi stops with "
                               "\"Unexpected key(s) ... addition_t_embedding\"", "set model_version to layered")]
    if version == "layered" and have != "layered":
        return [Finding(ERROR, "model_version layered needs the Layered DiT (time_text_embed.addition_t_embedding), "
                               "which this file does not have", "pick qwen_image_layered_bf16.safetensors")]
    if have:
        return []
    if version == "edit-2511":
        return [_hint("model_version edit-2511, but the file has no __index_timestep_zero__ key (ComfyUI's 2511 "
                      "file has it)", "pick qwen_image_edit_2511_bf16.safetensors")]
    if version == "original" and _has(ident, "edit"):
        return [_hint("the file name says edit, but model_version is original",
                      "set model_version to edit or edit-2509")]
    if version.startswith("edit") and not _has(ident, "edit"):
        return [_hint(f"model_version {version}, but the file name does not say edit",
                      "pick the edit DiT, or set model_version to original")]
    if version == "edit" and _has(ident, "2509"):
        return [_hint("the file name says 2509, but model_version is edit", "set model_version to edit-2509")]
    if version == "edit-2509" and not _has(ident, "2509"):
        return [_hint("model_version edit-2509, but the file name does not say 2509",
                      "pick qwen_image_edit_2509_bf16.safetensors, or set model_version to edit")]
    return []


def _qwen_vae(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    layered = sel.get("model_version") == "layered"
    if layered and ident.family != "qwen_layered_vae":
        return [Finding(ERROR, "Qwen-Image Layered needs the Layered VAE (4-channel input); this one takes 3 "
                               "channels", "pick qwen_image_layered_vae.safetensors")]
    if not layered and ident.family == "qwen_layered_vae":
        return [Finding(ERROR, "the other Qwen-Image versions use the 3-channel VAE",
                        "pick qwen_image_vae.safetensors, or set model_version to layered")]
    return _vae_name_hint(ident, "wan", "the Wan 2.1 VAE")


def _vae_name_hint(ident: Identity, word: str, what: str) -> list[Finding]:
    if ident.family == "wan_vae" and _has(ident, word):
        return [_hint(f"the file name says it is {what}; the Wan 2.1 and Qwen-Image VAEs have the same keys, "
                      "and musubi loads either without complaint", "make sure it is the right VAE")]
    return []


def _wan_vae(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    return _vae_name_hint(ident, "qwen", "the Qwen-Image VAE")


def _krea_dit(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    if input_name == "dit" and _has(ident, "turbo"):
        return [_hint("the file name says Turbo; Krea 2 Turbo is for sampling, training needs the RAW model",
                      "pick raw.safetensors (krea/Krea-2-Raw); the Turbo file goes in turbo_dit")]
    if input_name == "turbo_dit" and _has(ident, "raw"):
        return [_hint("the file name says RAW, but turbo_dit takes the Turbo model", "pick turbo.safetensors")]
    return []


def _zimage_dit(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    if _has(ident, "turbo") and not _has(ident, "de_turbo", "deturbo"):
        return [_hint("the file name says Turbo; musubi's docs recommend training the Base model or ostris's "
                      "de-turbo DiT (training the distilled Turbo model directly breaks its distillation)",
                      "pick z_image_bf16.safetensors or z_image_de_turbo_v1_bf16.safetensors")]
    return []


def _qwen3vl(size: str, who: str) -> Check:
    def check(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
        if ident.variant.get("size") != size:
            return [Finding(ERROR, f"{who} uses Qwen3-VL {size} (size mismatch)", f"pick a Qwen3-VL {size} file")]
        return []
    return check


def _qwen25vl(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    if ident.variant.get("size") != "7B":
        return [Finding(ERROR, "musubi needs the 7B model (size mismatch)", "pick qwen_2.5_vl_7b.safetensors")]
    if ident.variant.get("transformers_452"):
        return [Finding(WARNING, "its keys are already in the transformers 4.52 layout (model.language_model.*); "
                                 "musubi adds that prefix itself and may then miss every key",
                        "pick ComfyUI's qwen_2.5_vl_7b.safetensors")]
    return []


# ---------------------------------------------------------------- Kandinsky 5 / Ideogram 4 / HiDream-O1

def _k5_dit(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    task = str(sel.get("task", ""))
    size = "pro" if "-pro-" in task else "lite"
    have = ident.variant.get("size")
    if ident.unsupported:
        return []
    if have != size:
        return [Finding(ERROR, f"task {task} needs a Kandinsky 5 {size.title()} DiT; this is "
                               f"{have.title() if have else 'another size'} (musubi loads it non-strictly and "
                               "fails later, or trains garbage)",
                        f"set a k5-{have}-… task, or pick the {size} DiT" if have in ("pro", "lite")
                        else f"pick the {size} DiT")]
    if not ident.variant.get("video"):
        return [Finding(ERROR, "musubi's Kandinsky 5 tasks are video models",
                        "pick the video DiT for the task")]
    if "i2v" in task and _has(ident, "t2v"):
        return [_hint(f"task {task} is image-to-video, but the file name says t2v", "pick the i2v DiT")]
    if "t2v" in task and _has(ident, "i2v"):
        return [_hint(f"task {task} is text-to-video, but the file name says i2v", "pick the t2v DiT")]
    return []


def _ideogram_dit(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    want = "ideogram4_uncond" if input_name == "unconditional_dit" else "ideogram4_cond"
    have = ident.variant.get("model_type") or "(none)"
    if have == want:
        return []
    if input_name == "dit" and have == "ideogram4_uncond":
        return [Finding(ERROR, "musubi checks the metadata model_type before loading and refuses the "
                               "unconditional DiT (ideogram4_uncond) as the training DiT",
                        "put it in unconditional_dit and pick ideogram4_fp8_scaled.safetensors here")]
    return [Finding(ERROR, f"its metadata model_type is {have}, and musubi requires {want} here",
                    "pick the file from Comfy-Org/Ideogram-4")]


def _hidream(ident: Identity, sel: Mapping[str, Any], opts: Mapping[str, Any], input_name: str) -> list[Finding]:
    dev = sel.get("model_type") == "dev"
    if dev and not _has(ident, "dev"):
        return [_hint("model_type dev, but the file name does not say dev",
                      "pick hidream_o1_image_dev_bf16.safetensors, or set model_type to full")]
    if not dev and _has(ident, "dev"):
        return [_hint("the file name says dev, but model_type is full", "set model_type to dev")]
    return []


VARIANT_CHECKS: dict[tuple[str, str], Check] = {
    ("wan", "dit"): _wan_dit, ("wan", "dit_high_noise"): _wan_dit, ("wan", "vae"): _wan_vae,
    ("hv", "dit"): _hv_dit, ("hv15", "dit"): _hv15_dit, ("framepack", "dit"): _framepack_dit,
    ("hv15", "text_encoder"): _qwen25vl, ("qwen_image", "text_encoder"): _qwen25vl,
    ("flux_kontext", "dit"): _kontext_dit, ("flux_2", "dit"): _flux2_dit, ("flux_2", "text_encoder"): _flux2_te,
    ("qwen_image", "dit"): _qwen_dit, ("qwen_image", "vae"): _qwen_vae, ("krea2", "vae"): _qwen_vae,
    ("krea2", "dit"): _krea_dit, ("krea2", "turbo_dit"): _krea_dit, ("zimage", "dit"): _zimage_dit,
    ("zimage", "text_encoder"): _qwen3_4b, ("krea2", "text_encoder"): _qwen3vl("4B", "Krea 2"),
    ("ideogram4", "text_encoder"): _qwen3vl("8B", "Ideogram 4"), ("kandinsky5", "dit"): _k5_dit,
    ("ideogram4", "dit"): _ideogram_dit, ("ideogram4", "unconditional_dit"): _ideogram_dit,
    ("hidream_o1", "dit"): _hidream, ("hv15", "byt5"): _byt5,
}


def precision(arch_id: str, input_name: str, ident: Identity, opts: Mapping[str, Any]) -> list[Finding]:
    """Wan's trainer asserts that the mixed precision matches fp16/bf16 DiT weights."""
    if arch_id != "wan" or input_name not in ("dit", "dit_high_noise"):
        return []
    mp = opts.get("mixed_precision")
    need = {"fp16": "fp16", "bf16": "bf16"}.get(ident.dtype)
    if need and mp not in (None, need, "no") and not ident.quant:
        return [Finding(ERROR, f"the file holds {ident.dtype} weights, and musubi's Wan trainer asserts "
                               f"mixed_precision {need} (or no) for them; mixed_precision is {mp}",
                        f"set mixed_precision to {need} (or pick the {mp} file)")]
    return []


def recommendations(arch_id: str, idents: Mapping[str, Identity]) -> dict[str, Any]:
    """Training settings that follow the chosen files (applied where the user set nothing)."""
    out: dict[str, Any] = {}
    dit = idents.get("dit")
    if dit is None or dit.broken:
        return out
    if arch_id == "wan" and dit.family == "wan_dit" and dit.dtype in ("fp16", "bf16") and not dit.quant:
        out["mixed_precision"] = dit.dtype
    elif arch_id == "hv15" and dit.family == "hv15_dit" and dit.dtype == "fp16":
        out["mixed_precision"] = "fp16"
    elif arch_id == "hv" and dit.family == "hv_dit" and dit.variant.get("in_channels") == 32:
        out["dit_in_channels"] = 32
    return out

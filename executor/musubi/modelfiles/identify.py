"""Identify a model file from its header: ``identify(path) -> Identity``, cached per
(path, size, mtime) of every file it reads, so a dropdown or a pre-flight asking again costs
a few ``stat`` calls. Standard library only.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Optional

from .dits import DIT_DETECTORS, hidream_o1
from .encoders import ENCODER_DETECTORS, first_match, lora
from .header import Header, read_header, split_parts
from .identity import DTYPE_NAMES, Identity, View, dominant_dtype, quantization

__all__ = ["identify", "identify_header", "clear_cache"]

DIT_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.model.")
_VAE_PREFIXES = ("vae.", "first_stage_model.")
_TE_PREFIXES = ("text_encoders.", "cond_stage_model.", "conditioner.")
_CACHE_SIZE = 512
_cache: "OrderedDict[tuple, Identity]" = OrderedDict()
_lock = threading.Lock()


def _share(keys: list[str], prefixes: tuple[str, ...]) -> tuple[str, int]:
    best, count = "", 0
    for p in prefixes:
        n = sum(1 for k in keys if k.startswith(p))
        if n > count:
            best, count = p, n
    return best, count


def _view(header: Header, ident: Identity) -> View:
    """The keys to fingerprint: a lone prefix covering (nearly) every key is taken off and
    reported; an all-in-one checkpoint is reduced to its diffusion model."""
    keys = list(header.tensors)
    dit_prefix, dit_n = _share(keys, DIT_PREFIXES)
    _, vae_n = _share(keys, _VAE_PREFIXES)
    _, te_n = _share(keys, _TE_PREFIXES)
    if dit_n and (vae_n or te_n) and dit_n < len(keys):
        ident.component, ident.family, ident.layout = "checkpoint", "checkpoint", "comfy-checkpoint"
        ident.prefix = dit_prefix
        return View(header.tensors, dit_prefix)
    prefix, n = _share(keys, DIT_PREFIXES + _VAE_PREFIXES)
    if prefix and n * 10 >= len(keys) * 9:
        ident.prefix = prefix
        return View(header.tensors, prefix)
    return View(header.tensors)


def identify_header(header: Header) -> Identity:
    """The Identity of an already read header."""
    ident = Identity(header.path, format=header.format, tensors=len(header.tensors), size=header.size,
                     expected_size=header.expected_size, broken=header.broken, problems=list(header.problems),
                     wrapper=header.wrapper,
                     split_parts=len(header.parts) if header.format != "folder" else 0)
    if header.broken:
        return ident
    if header.format == "gguf":
        ident.quant, ident.name = "gguf", "a GGUF file (quantized for ComfyUI-GGUF / llama.cpp)"
        ident.family = "gguf"
        return ident
    if not header.tensors:
        ident.notes.append("the file holds no tensors")
        _from_config(header, ident)
        return ident
    dtype, _ = dominant_dtype(header.tensors.values())
    ident.dtype = DTYPE_NAMES.get(dtype, dtype.lower())
    ident.quant, ident.quant_detail = quantization(header)
    newer = sorted({t.dtype for t in header.tensors.values()} & {"F8_E8M0", "F4"})
    if newer:
        ident.notes.append(f"uses dtype(s) {', '.join(newer)}, which the safetensors version musubi pins "
                           "(0.4.5) may not read")
    if lora(View(header.tensors), ident):
        return ident
    full = View(header.tensors)
    if hidream_o1(full, ident):
        return ident
    view = _view(header, ident)
    checkpoint = ident.component == "checkpoint"
    inner = Identity(header.path, prefix=ident.prefix) if checkpoint else ident
    if first_match(DIT_DETECTORS, view, inner) is None and not checkpoint:
        first_match(ENCODER_DETECTORS, view, inner)
    if checkpoint:
        ident.inner = inner.name or "an unrecognised diffusion model"
        ident.variant = {"inner_family": inner.family, **inner.variant}
        ident.name = f"a ComfyUI all-in-one checkpoint ({ident.inner} + VAE/text encoders)"
    if ident.family == "ideogram4_dit":
        model_type = header.metadata.get("model_type", "")
        ident.variant["model_type"] = model_type
        if model_type == "ideogram4_uncond":
            ident.name = "Ideogram 4 unconditional DiT"
        elif model_type == "ideogram4_cond":
            ident.name = "Ideogram 4 conditional DiT"
    if not ident.family:
        _from_config(header, ident)
    return ident


def _from_config(header: Header, ident: Identity) -> None:
    config = header.config
    if not config:
        return
    if config.get("__file__") == "model_index.json":
        ident.component, ident.family = "pipeline", "pipeline_folder"
        ident.name = f"a whole diffusers pipeline folder ({config.get('_class_name', 'model_index.json')})"
        return
    cls = config.get("_class_name") or ", ".join(config.get("architectures") or []) or config.get("model_type")
    if cls:
        ident.variant["config_class"] = str(cls)
        ident.name = f"a model folder of {cls} (its weights were not recognised)"


def _signature(path: str) -> Optional[tuple]:
    """(path, size, mtime) of every file a read would open; None when ``path`` is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    sig = [(path, st.st_size, st.st_mtime_ns)]
    if os.path.isdir(path):
        try:
            with os.scandir(path) as it:
                for entry in it:
                    if entry.is_file():
                        est = entry.stat()
                        sig.append((entry.name, est.st_size, est.st_mtime_ns))
        except OSError:
            pass
    else:
        for part in split_parts(path) or ():
            try:
                pst = os.stat(part)
                sig.append((part, pst.st_size, pst.st_mtime_ns))
            except OSError:
                sig.append((part, -1, 0))
    return tuple(sorted(sig))


def identify(path: str) -> Identity:
    """Identify ``path`` (a file, the first part of a split model, or a folder). Never raises
    for a bad file; cached until the file changes."""
    path = os.fspath(path)
    key = _signature(path)
    if key is not None:
        with _lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                return hit
    ident = identify_header(read_header(path))
    if key is not None:
        with _lock:
            _cache[key] = ident
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return ident


def clear_cache() -> None:
    with _lock:
        _cache.clear()

"""What a model file is: the ``Identity`` a header gives, and ``View``, the helpers the
fingerprints (dits.py, encoders.py) use to look at a header's keys and shapes.

An Identity says component (dit, vae, text_encoder, image_encoder, lora, checkpoint),
family (``wan_dit``, ``flux1_ae``, ``umt5_hf`` ...), the model's name, its variant facts,
dtype and quantization, key layout and prefix, completeness, and what the header cannot tell
(those pairs are told apart by the file name only, and a check says so). Standard library only.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional

from .header import Header, TensorInfo, human_size

__all__ = ["Identity", "View", "COMPONENT_NAMES", "DTYPE_NAMES"]

COMPONENT_NAMES = {"dit": "DiT (diffusion model)", "vae": "VAE", "text_encoder": "text encoder",
                   "image_encoder": "image encoder", "lora": "LoRA", "checkpoint": "all-in-one checkpoint",
                   "unknown": "model file"}
DTYPE_NAMES = {"BF16": "bf16", "F16": "fp16", "F32": "fp32", "F64": "fp64", "F8_E4M3": "fp8_e4m3fn",
               "F8_E5M2": "fp8_e5m2", "F8_E8M0": "fp8_e8m0", "F4": "fp4", "I8": "int8", "U8": "uint8"}
_FLOATS = {"BF16", "F16", "F32", "F64", "F8_E4M3", "F8_E5M2", "I8", "U8", "F4"}


@dataclass
class Identity:
    """The identification of one model file (or split model, or folder)."""

    path: str
    component: str = "unknown"
    family: str = ""
    name: str = ""  # "Wan 2.1/2.2 DiT 14B, image-to-video (Wan 2.1)"
    variant: dict[str, Any] = field(default_factory=dict)
    dtype: str = ""  # bf16 | fp16 | fp32 | fp8_e4m3fn ...
    quant: str = ""  # "" | fp8 | fp8_scaled | comfy_quant | bnb4 | gguf
    quant_detail: str = ""
    layout: str = ""  # original | comfy | diffusers | hf | bfl
    prefix: str = ""
    format: str = ""
    tensors: int = 0
    size: int = 0
    expected_size: Optional[int] = None
    broken: str = ""
    problems: list[str] = field(default_factory=list)
    undecidable: str = ""  # what only the file name can tell
    unsupported: str = ""  # a variant musubi has no model for, and why
    wrapper: str = ""
    split_parts: int = 0  # a split safetensors model: how many parts were read
    inner: str = ""  # an all-in-one checkpoint: what its diffusion model is
    notes: list[str] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        return re.split(r"[\\/]", self.path.rstrip("/\\"))[-1]

    @property
    def known(self) -> bool:
        return bool(self.family)

    @property
    def usable(self) -> bool:
        """Readable and complete (whatever it is)."""
        return not self.broken and not self.problems

    def label(self) -> str:
        """A short name: "Wan 2.1/2.2 DiT 1.3B, text-to-video"."""
        if self.broken:
            return "a broken file"
        if self.name:
            return self.name
        return f"an unrecognised {COMPONENT_NAMES.get(self.component, 'model file')}"

    def describe(self) -> str:
        """One line: what it is, dtype/quantization, layout, completeness."""
        if self.broken:
            return f"{self.file_name}: {self.broken}"
        bits = [self.label()]
        kind = self.dtype
        if self.quant == "fp8_scaled":
            kind = "fp8 scaled (ComfyUI's old fp8_scaled format)"
        elif self.quant == "comfy_quant":
            kind = f"ComfyUI quantized ({self.quant_detail or 'mixed'})"
        elif self.quant == "bnb4":
            kind = "bitsandbytes 4-bit"
        if kind:
            bits.append(kind)
        if self.layout:
            bits.append(_LAYOUTS.get(self.layout, self.layout) + (f", prefix {self.prefix!r}" if self.prefix else ""))
        text = ", ".join(bits)
        if self.problems:
            text += "; " + "; ".join(self.problems)
        return text

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["file_name"] = self.file_name
        out["description"] = self.describe()
        out["size_text"] = human_size(self.size)
        return out


_LAYOUTS = {"original": "original key layout", "comfy": "ComfyUI repackaged layout",
            "diffusers": "diffusers layout", "hf": "transformers layout", "bfl": "BFL layout",
            "comfy-checkpoint": "ComfyUI all-in-one layout"}


class View:
    """Keys and shapes of a header with one prefix taken off (``prefix``)."""

    def __init__(self, tensors: dict[str, TensorInfo], prefix: str = "") -> None:
        self.prefix = prefix
        if prefix:
            n = len(prefix)
            self.tensors = {k[n:]: v for k, v in tensors.items() if k.startswith(prefix)}
        else:
            self.tensors = tensors
        self._blocks: dict[str, int] = {}

    def has(self, *keys: str) -> bool:
        return all(k in self.tensors for k in keys)

    def any_has(self, *keys: str) -> bool:
        return any(k in self.tensors for k in keys)

    def starts(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.tensors)

    def ends(self, suffix: str) -> Optional[str]:
        """The first key ending with ``suffix`` (shortest first), or None."""
        found = [k for k in self.tensors if k.endswith(suffix)]
        return min(found, key=len) if found else None

    def shape(self, key: Optional[str]) -> tuple[int, ...]:
        info = self.tensors.get(key or "")
        return info.shape if info else ()

    def dim(self, key: Optional[str], index: int) -> Optional[int]:
        shape = self.shape(key)
        try:
            return shape[index]
        except IndexError:
            return None

    def blocks(self, prefix: str) -> int:
        """How many ``prefix.N.`` blocks there are (highest N + 1)."""
        if prefix not in self._blocks:
            pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
            top = -1
            for k in self.tensors:
                m = pattern.match(k)
                if m:
                    top = max(top, int(m.group(1)))
            self._blocks[prefix] = top + 1
        return self._blocks[prefix]


def dominant_dtype(tensors: Iterable[TensorInfo]) -> tuple[str, Counter]:
    """The dtype most weight elements have (matrices and convs; norms and biases are often
    kept in fp32 in fp16/fp8 files), and the element count of every dtype."""
    counts: Counter = Counter()
    for t in tensors:
        if len(t.shape) >= 2 and t.dtype in _FLOATS:
            n = 1
            for s in t.shape:
                n *= s
            counts[t.dtype] += n
    if not counts:
        for t in tensors:
            counts[t.dtype] += 1
    return (counts.most_common(1)[0][0] if counts else ""), counts


def quantization(header: Header) -> tuple[str, str]:
    """(quant, detail) from the header's scale keys, metadata and dtypes."""
    keys = header.tensors
    dtype, counts = dominant_dtype(keys.values())
    if "_quantization_metadata" in header.metadata or any(
            k.endswith((".comfy_quant", ".weight_scale", ".weight_scale_2", ".input_scale")) for k in keys):
        kinds = []
        if any(k.endswith(".weight_scale_2") for k in keys):
            kinds.append("nvfp4")
        if "F8_E8M0" in counts or any(v.dtype == "F8_E8M0" for v in keys.values()):
            kinds.append("mxfp8")
        if "I8" in counts:
            kinds.append("int8")
        if not kinds and ("F8_E4M3" in counts or "F8_E5M2" in counts):
            kinds.append("fp8mixed")
        return "comfy_quant", "/".join(kinds) or "mixed"
    if "scaled_fp8" in keys or any(k.endswith(".scale_weight") for k in keys):
        return "fp8_scaled", ""
    if any(".quant_state.bitsandbytes__" in k for k in keys):
        return "bnb4", ""
    if dtype in ("F8_E4M3", "F8_E5M2"):
        return "fp8", DTYPE_NAMES[dtype]
    return "", ""

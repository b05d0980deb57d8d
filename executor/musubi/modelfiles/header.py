"""Read what a model file holds (tensor names, dtypes, shapes, metadata) without its tensor data.

- safetensors: the 8-byte length and the JSON header; split ``…-0000N-of-0000M`` files are
  read part by part and merged, as musubi loads them (a missing part is a problem).
- PyTorch ``.pt/.pth/.bin/.ckpt``: the pickle, walked without executing it (torchpickle.py).
- Diffusers / transformers folders: ``config.json`` and the weight files beside it (an
  ``*.index.json`` names the shards).
A 30 GB file answers in milliseconds: only headers are read. Completeness is the file size
against the header's last data offset, so a cut-short download is named as such.
Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Optional

from .torchpickle import TorchReadError, read_torch_file

__all__ = ["TensorInfo", "Header", "read_header", "split_parts", "human_size", "MAX_HEADER"]

MAX_HEADER = 100 * 1024 * 1024  # safetensors refuses larger headers too
SAFETENSORS_EXTENSIONS = (".safetensors", ".sft")
TORCH_EXTENSIONS = (".pt", ".pth", ".bin", ".ckpt")
_SPLIT = re.compile(r"^(.*?)(\d+)-of-(\d+)\.safetensors$")


@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # safetensors names: BF16 F16 F32 F8_E4M3 ...
    shape: tuple[int, ...]


@dataclass
class Header:
    """The readable facts of one model (a file, its split parts, or a folder).

    ``broken`` is set when the file is not a usable model at all (empty, an HTML page, a Git
    LFS pointer, a damaged header); ``problems`` lists what is wrong with a readable one
    (truncated data, a missing split part). ``expected_size`` is what the header says the
    file(s) need, ``size`` what is on disk.
    """

    path: str
    format: str = ""  # safetensors | pytorch-zip | pytorch-legacy | folder | gguf | unknown
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)
    size: int = 0
    expected_size: Optional[int] = None
    broken: str = ""
    problems: list[str] = field(default_factory=list)
    wrapper: str = ""  # a PyTorch file's top-level key holding the weights (``module``...)
    top_keys: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)  # a folder's config.json

    @property
    def truncated(self) -> bool:
        return self.expected_size is not None and self.size < self.expected_size


def human_size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover - the loop always returns


def split_parts(path: str) -> Optional[list[str]]:
    """Every part's path of a split safetensors file (as musubi names them), or None when the
    name is not a split name. Parts need not exist."""
    base = os.path.basename(path)
    match = _SPLIT.match(base)
    if not match:
        return None
    prefix, count = base[: match.start(2)], int(match.group(3))
    if count < 1 or count > 10000:
        return None
    folder = os.path.dirname(path)
    return [os.path.join(folder, f"{prefix}{i:05d}-of-{count:05d}.safetensors") for i in range(1, count + 1)]


def _sniff(head: bytes, size: int) -> str:
    if size == 0:
        return "the file is empty (an interrupted download?)"
    if head.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the model (the download fetched only the pointer)"
    if head.lstrip().lower().startswith((b"<!doctype", b"<html")):
        return "it is an HTML page (a failed download), not a model"
    return ""


def _read_safetensors(path: str, head: bytes, size: int, out: Header) -> int:
    """Merge one safetensors file's header into ``out``; returns the bytes the file needs."""
    if len(head) < 8:
        raise ValueError("too short to be a safetensors file")
    (length,) = struct.unpack("<Q", head[:8])
    if length < 2 or length > MAX_HEADER:
        raise ValueError("not a valid safetensors file (bad header length; renamed, or damaged?)")
    if 8 + length > size:
        raise _Truncated(8 + length)
    with open(path, "rb") as fh:
        fh.seek(8)
        raw = fh.read(length)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a valid safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError("not a valid safetensors file (its header is not a JSON object)")
    end = 0
    for key, value in header.items():
        if key == "__metadata__":
            if isinstance(value, dict):
                out.metadata.update({str(k): str(v) for k, v in value.items()})
            continue
        if not isinstance(value, dict) or "dtype" not in value or "shape" not in value:
            raise ValueError(f"not a valid safetensors file (entry {key!r} has no dtype/shape)")
        offsets = value.get("data_offsets") or (0, 0)
        try:
            end = max(end, int(offsets[1]))
            shape = tuple(int(s) for s in value["shape"])
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"not a valid safetensors file (entry {key!r} is malformed)") from None
        out.tensors[key] = TensorInfo(str(value["dtype"]), shape)
    return 8 + length + end


class _Truncated(Exception):
    def __init__(self, needed: int) -> None:
        super().__init__(needed)
        self.needed = needed


def _head(path: str) -> tuple[bytes, int]:
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        return fh.read(64), size


def _read_file(path: str, out: Header) -> None:
    try:
        head, size = _head(path)
    except OSError as exc:
        out.broken = f"cannot read it ({exc.strerror or exc})"
        return
    out.size += size
    why = _sniff(head, size)
    if why:
        out.broken = why
        return
    ext = os.path.splitext(path)[1].lower()
    if head.startswith(b"GGUF") or ext == ".gguf":
        out.format = "gguf"
        return
    # The extension decides (a safetensors header length may begin with byte 0x80, as a
    # pickle does); an unknown extension is sniffed: zip, then safetensors, then pickle.
    torch_like = ext in TORCH_EXTENSIONS or (ext not in SAFETENSORS_EXTENSIONS and (
        head.startswith(b"PK\x03\x04") or (head.startswith(b"\x80") and head[8:9] != b"{")))
    if torch_like:
        try:
            contents = read_torch_file(path, head, size)
        except (TorchReadError, OSError) as exc:
            # A zip whose central directory is missing is a cut-short download.
            out.broken = f"not a readable PyTorch checkpoint: {exc}"
            return
        out.format = contents.format
        out.tensors.update({k: TensorInfo(d, s) for k, (d, s) in contents.tensors.items()})
        out.wrapper, out.top_keys = contents.wrapper, contents.top_keys
        if contents.expected_size is not None:
            out.expected_size = (out.expected_size or 0) + contents.expected_size
        return
    try:
        needed = _read_safetensors(path, head, size, out)
    except _Truncated as cut:
        out.broken = (f"the file is cut short: {human_size(size)} on disk, but even its header needs "
                      f"{human_size(cut.needed)} (an interrupted download)")
        return
    except OSError as exc:
        out.broken = f"cannot read it ({exc.strerror or exc})"
        return
    except ValueError as exc:
        out.broken = str(exc)
        return
    out.format = "safetensors"
    out.expected_size = (out.expected_size or 0) + needed


def _read_split(path: str, parts: list[str], out: Header) -> None:
    missing = [p for p in parts if not os.path.isfile(p)]
    if missing:
        names = ", ".join(os.path.basename(p) for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
        out.problems.append(f"{len(missing)} of {len(parts)} parts of this split model are missing ({names}); "
                            "musubi loads every part and stops with FileNotFoundError")
    for part in parts:
        if part in missing:
            continue
        sub = Header(part)
        _read_file(part, sub)
        out.parts.append(part)
        out.size += sub.size
        if sub.broken:
            out.problems.append(f"part {os.path.basename(part)}: {sub.broken}")
            continue
        out.format = out.format or sub.format
        out.tensors.update(sub.tensors)
        out.metadata.update(sub.metadata)
        if sub.truncated:
            out.problems.append(_truncated_text(sub, os.path.basename(part)))
        if sub.expected_size is not None:
            out.expected_size = (out.expected_size or 0) + sub.expected_size
    if not out.tensors and not out.broken:
        out.broken = "no part of this split model could be read"


def _truncated_text(header: Header, what: str = "the file") -> str:
    assert header.expected_size is not None
    share = 100.0 * header.size / header.expected_size if header.expected_size else 0.0
    return (f"{what} is cut short: {human_size(header.size)} of the {human_size(header.expected_size)} "
            f"its header describes ({share:.0f} %); an interrupted download")


def _weight_files(folder: str) -> list[str]:
    """The weight files of a diffusers/transformers folder: the shards an index names, else the
    safetensors (then PyTorch) files in it."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    for name in names:
        if name.endswith(".index.json"):
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as fh:
                    weight_map = json.load(fh).get("weight_map") or {}
                shards = sorted(set(str(v) for v in weight_map.values()))
                if shards:
                    return [os.path.join(folder, s) for s in shards]
            except (OSError, ValueError, AttributeError):
                continue
    for exts in (SAFETENSORS_EXTENSIONS, TORCH_EXTENSIONS):
        found = [os.path.join(folder, n) for n in names if n.lower().endswith(exts)]
        if found:
            return found
    return []


def _read_folder(path: str, out: Header) -> None:
    out.format = "folder"
    for name in ("config.json", "model_index.json"):
        try:
            with open(os.path.join(path, name), encoding="utf-8") as fh:
                config = json.load(fh)
        except (OSError, ValueError):
            continue
        if isinstance(config, dict):
            out.config = config
            out.config.setdefault("__file__", name)
            break
    files = _weight_files(path)
    if not files and not out.config:
        out.broken = "the folder has no config.json and no model files"
        return
    for file in files:
        if not os.path.isfile(file):
            out.problems.append(f"{os.path.basename(file)} is missing (named in the folder's index)")
            continue
        sub = Header(file)
        _read_file(file, sub)
        out.parts.append(file)
        out.size += sub.size
        if sub.broken:
            out.problems.append(f"{os.path.basename(file)}: {sub.broken}")
            continue
        out.tensors.update(sub.tensors)
        out.metadata.update(sub.metadata)
        if sub.truncated:
            out.problems.append(_truncated_text(sub, os.path.basename(file)))


def read_header(path: str) -> Header:
    """Everything readable about ``path`` without reading tensor data. Never raises for a bad
    file: ``broken``/``problems`` say what is wrong."""
    path = os.fspath(path)
    out = Header(path)
    if os.path.isdir(path):
        _read_folder(path, out)
        return out
    if not os.path.exists(path):
        out.broken = "the file does not exist"
        return out
    parts = split_parts(path) if path.lower().endswith(".safetensors") else None
    if parts and len(parts) > 1:
        _read_split(path, parts, out)
        return out
    _read_file(path, out)
    if out.truncated:
        out.problems.append(_truncated_text(out))
    return out

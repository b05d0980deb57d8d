"""Putting a finished LoRA where LoraLoader finds it: a free name under ``<loras>/musubi-tuner/``,
never replacing a file, never showing a half-written one under a model extension; and the
HiDream-O1 key rename done on the safetensors header in pure Python (tensor bytes copied unchanged,
no torch). No ComfyUI imports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
from typing import Callable, Optional

SUFFIX = ".safetensors"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
# safetensors refuses headers above 100 MB; a LoRA header is a few hundred kB at most.
MAX_HEADER = 100 * 1024 * 1024


def safe_name(name: str) -> str:
    """A file-name stem from user text: no folders, no odd characters, never empty."""
    stem = name.strip()
    if stem.lower().endswith(SUFFIX):
        stem = stem[: -len(SUFFIX)]
    stem = _UNSAFE.sub("_", os.path.basename(stem.replace("\\", "/"))).strip("._")
    return stem or "lora"


def unique_target(folder: str, stem: str) -> str:
    candidate = os.path.join(folder, stem + SUFFIX)
    n = 2
    while os.path.exists(candidate):
        candidate = os.path.join(folder, f"{stem}_{n}{SUFFIX}")
        n += 1
    return candidate


def temp_path(folder: str, stem: str) -> str:
    """A temporary file in ``folder`` whose name ends in ``.tmp`` (never listed as a model)."""
    os.makedirs(folder, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=folder)
    os.close(fd)
    return path


def place(finished: str, folder: str, stem: str) -> str:
    """Move ``finished`` (a temp file in ``folder``) to a free ``<stem>[_N].safetensors``.

    ``os.link`` fails when the target exists, so a file created meanwhile by someone else
    is never replaced; where hard links are unavailable, check-then-``os.replace``.
    """
    for _ in range(1000):
        target = unique_target(folder, stem)
        try:
            os.link(finished, target)
        except FileExistsError:
            continue
        except OSError:
            if os.path.exists(target):
                continue
            os.replace(finished, target)
            return target
        os.unlink(finished)
        return target
    raise OSError(f"no free file name for {stem} in {folder}")


def copy_to_temp(source: str, folder: str, stem: str) -> str:
    tmp = temp_path(folder, stem)
    try:
        shutil.copyfile(source, tmp)
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def read_header(path: str) -> tuple[dict, int]:
    """The safetensors JSON header and the offset where tensor data starts."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path} is not a safetensors file (shorter than 8 bytes)")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_HEADER:
            raise ValueError(f"{path} is not a safetensors file (header length {length})")
        header = json.loads(fh.read(length).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file (header is not an object)")
    return header, 8 + length


def rename_keys(source: str, target: str, rename: Callable[[str], str]) -> int:
    """Write ``source`` to ``target`` with every tensor name passed through ``rename``.

    Tensor offsets are relative to the data section, so only the header changes; it is
    padded with spaces to a multiple of 8 bytes, as the safetensors writer does. Returns
    the number of renamed tensors; refuses a rename that would merge two tensors.
    """
    header, data_start = read_header(source)
    new: dict = {}
    renamed = 0
    for key, value in header.items():
        new_key = key if key == "__metadata__" else rename(key)
        if new_key in new:
            raise ValueError(f"renaming {key!r} to {new_key!r} would clash with another tensor")
        renamed += new_key != key
        new[new_key] = value
    blob = json.dumps(new, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    with open(source, "rb") as src, open(target, "wb") as dst:
        dst.write(struct.pack("<Q", len(blob)))
        dst.write(blob)
        src.seek(data_start)
        shutil.copyfileobj(src, dst, 1024 * 1024)
        dst.flush()
        os.fsync(dst.fileno())
    return renamed


def prefix_renamer(old: str, new: str) -> Callable[[str], str]:
    def rename(key: str) -> str:
        return new + key[len(old):] if key.startswith(old) else key
    return rename


def _remove(path: Optional[str]) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass

"""What pre-flight knows about files and folders: model file extensions and a header sniff,
output names that work on every OS, the LoRA files a run would produce, and whether a path lies
inside a set of allowed folders. Imports only the standard library.
"""

from __future__ import annotations

import os
import re
import struct
from typing import Any, Iterable, Optional

from ..problems import Problem

__all__ = ["MODEL_EXTENSIONS", "sniff_model_file", "check_output_name", "existing_outputs", "free_name",
           "inside_roots", "resolve", "listdir"]


# What musubi's loaders open: safetensors (most DiTs must be), torch pickles/zips.
MODEL_EXTENSIONS = (".safetensors", ".sft", ".pt", ".pth", ".bin", ".ckpt")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                     *(f"lpt{i}" for i in range(1, 10))}
_BAD_NAME_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')

def resolve(path: str, cwd: Optional[str]) -> str:
    path = os.path.expanduser(path)
    if os.path.isabs(path) or not cwd:
        return path
    return os.path.join(cwd, path)


def sniff_model_file(path: str) -> Optional[str]:
    """None when ``path`` looks like a model file of its extension, else why not.
    Reads at most 32 bytes."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(32)
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if size == 0:
        return "the file is empty (an interrupted download?)"
    if head.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the model (the download fetched only the pointer)"
    if head.lstrip().lower().startswith((b"<!doctype", b"<html")):
        return "it is an HTML page (a failed download), not a model"
    ext = os.path.splitext(path)[1].lower()
    if ext in (".safetensors", ".sft"):
        if len(head) < 9:
            return "too short to be a safetensors file"
        (header_len,) = struct.unpack("<Q", head[:8])
        if header_len < 2 or header_len > 100 * 1024 * 1024 or 8 + header_len > size or head[8:9] != b"{":
            return "not a valid safetensors file (bad header; truncated or renamed?)"
    elif ext == ".gguf" or head.startswith(b"GGUF"):
        return "it is a GGUF file; musubi-tuner reads only .safetensors / PyTorch checkpoints"
    elif ext in (".pt", ".pth", ".bin", ".ckpt"):
        if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
            return "not a PyTorch checkpoint (neither a zip nor a pickle)"
    return None


def check_output_name(name: Any, input_name: str = "output_name") -> list[Problem]:
    """A LoRA name becomes a file name on every OS, and a command-line value."""
    fix = "use letters, digits, '-' and '_' only, e.g. my_lora"
    if not isinstance(name, str) or not name.strip():
        return [Problem(input_name, "no output name", "give the LoRA a name, e.g. my_lora")]
    out: list[Problem] = []
    if "\x00" in name:
        return [Problem(input_name, "contains a NUL character", fix)]
    if name.startswith("-"):
        out.append(Problem(input_name, f"{name!r} starts with '-', so musubi would read it as a flag", fix))
    if _BAD_NAME_CHARS.search(name) or name in (".", ".."):
        out.append(Problem(input_name, f"{name!r} contains path separators or characters Windows forbids "
                           "in file names", fix))
    if name.endswith((".", " ")):
        out.append(Problem(input_name, f"{name!r} ends with a dot or space, which Windows strips", fix))
    if name.split(".")[0].strip().lower() in _WINDOWS_RESERVED:
        out.append(Problem(input_name, f"{name!r} is a reserved device name on Windows", fix))
    if len(name) > 150:
        out.append(Problem(input_name, f"the name is {len(name)} characters long", "use at most 150 characters"))
    if name.lower().endswith(".safetensors"):
        out.append(Problem(input_name, "musubi adds .safetensors itself",
                           f"write {name[:-len('.safetensors')]!r}"))
    return out


def existing_outputs(output_dir: str, output_name: str) -> list[str]:
    """LoRA files (final and per-epoch/step) a training run named ``output_name`` would write over."""
    try:
        names = os.listdir(output_dir)
    except OSError:
        return []
    pattern = re.compile(re.escape(output_name) + r"(-\d{6}|-step\d{8})?\.safetensors$")
    return sorted(os.path.join(output_dir, n) for n in names if pattern.match(n))


def free_name(output_dir: str, output_name: str) -> str:
    base = re.sub(r"-\d+$", "", output_name)
    for n in range(2, 1000):
        candidate = f"{base}-{n}"
        if not existing_outputs(output_dir, candidate):
            return candidate
    return f"{base}-new"


def listdir(path: str) -> Optional[list[str]]:
    try:
        with os.scandir(path) as it:
            # musubi globs with '*', which skips dot-files.
            return [e.name for e in it if not e.name.startswith(".")]
    except OSError:
        return None


def inside_roots(path: str, roots: Iterable[str]) -> bool:
    """``path`` is one of ``roots`` or inside one (symlinks resolved, case as the OS compares)."""
    real = os.path.normcase(os.path.realpath(path))
    for root in roots:
        base = os.path.normcase(os.path.realpath(root))
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return True
    return False

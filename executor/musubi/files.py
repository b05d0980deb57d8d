"""What pre-flight knows about files and folders: model file extensions (what a model file is
comes from its header: modelfiles/), output names that work on every OS, the LoRA files a run
would produce, and whether a path lies inside a set of allowed folders. Imports only the
standard library.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Optional

from ..problems import Problem

__all__ = ["MODEL_EXTENSIONS", "check_output_name", "existing_outputs", "free_name",
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

"""Checks of the text inputs that name folders, files and output names, for the nodes'
VALIDATE_INPUTS, so a hostile or mistaken value is refused when the prompt is queued (HTTP 400)
with one clear sentence: NUL bytes, absurd lengths, a file where a folder belongs (and back),
folders the pack may not write to, unusable LoRA names, optimizer names that are no class.
Each check returns None when the value is fine, else the message. ComfyUI is reached via host.
"""

from __future__ import annotations

import math
import os
import re
import sys
from typing import Any, Iterable, Mapping, Optional

from . import host

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux; Windows long paths allow ~32k, nobody types those
SHOWN_CHARS = 240
_OPTIMIZER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_GPU_IDS = re.compile(r"^\d{1,4}(,\d{1,4})*$")


def shown(text: str) -> str:
    """A path or value short enough to quote in a message."""
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:150]}...{text[-60:]} ({len(text)} characters)"


def labelled(name: str, problem: Optional[str]) -> Optional[str]:
    """``name: problem``. ComfyUI lists a VALIDATE_INPUTS message under every input the method
    names, so each message must say which input it is about."""
    if not problem or problem.startswith(name):
        return problem
    return f"{name}: {problem}"


def _text_problem(value: str, what: str) -> Optional[str]:
    if "\x00" in value:
        return f"{what} contains a NUL character"
    if len(value) > MAX_PATH_CHARS:
        return f"{what} is {len(value)} characters long: {shown(value)}"
    return None


def folder_problem(value: str, what: str = "folder", *, readable: bool = False) -> Optional[str]:
    """A folder that must exist (dataset, control images); ``readable``: and lie inside the read
    roots (checked before existence, so a refused path does not tell whether it exists)."""
    problem = _text_problem(value, what) or (readable_problem(value, what) if readable else None)
    if problem:
        return problem
    path = host.resolve_user_path(value)
    if os.path.isfile(path):
        return f"{shown(path)} is a file, not a folder: give the folder that holds the files"
    if not os.path.isdir(path):
        return f"{what} not found: {shown(path)}"
    return None


def file_problem(value: str, what: str = "file", *, readable: bool = False) -> Optional[str]:
    """A file that must exist (a dataset config, a prompt file); ``readable``: as folder_problem."""
    problem = _text_problem(value, what) or (readable_problem(value, what) if readable else None)
    if problem:
        return problem
    path = host.resolve_user_path(value)
    if os.path.isdir(path):
        return f"{shown(path)} is a folder, not a file: give the file itself"
    if not os.path.isfile(path):
        return f"{what} not found: {shown(path)}"
    return None


def write_roots(configured: Iterable[str] = ()) -> list[str]:
    """Folders the pack may write into: ComfyUI's output and input folders and every folder
    named in ``output_roots`` in the settings (server-side files only, never a workflow)."""
    return list(dict.fromkeys([host.output_directory(), host.input_directory(), *configured]))


def writable_folder_problem(value: str, what: str, configured: Iterable[str]) -> Optional[str]:
    """A folder the pack will write (and musubi will delete stale caches in)."""
    problem = _text_problem(value, what)
    if problem:
        return problem
    path = host.resolve_user_path(value)
    if os.path.isfile(path):
        return f"{what} {shown(path)} is a file, not a folder"
    from ..executor.musubi.files import inside_roots

    roots = write_roots(configured)
    if not inside_roots(path, roots):
        return (f"{what} {shown(path)} is outside the folders this pack may write to ({', '.join(roots)}); "
                "choose a folder inside one of them, or add the folder to output_roots in the pack's "
                "settings file on the server")
    return None


def read_roots(configured_writes: Iterable[str] = (), configured_reads: Iterable[str] = ()) -> list[str]:
    """Folders whose files a workflow may have musubi read: ComfyUI's input, output and models
    folders, the folders the pack may write to (``output_roots``) and every folder named in
    ``read_roots`` in the settings (server-side files only, never a workflow)."""
    return list(dict.fromkeys([*write_roots(configured_writes), *host.model_directories(), *configured_reads]))


def readable_problem(value: str, what: str) -> Optional[str]:
    """A path musubi will read (and may echo into the log every client sees) must lie inside
    the read roots; the message says which line to add to which settings file."""
    return read_roots_problem([(what, host.resolve_user_path(value))])


def read_roots_problem(items: Iterable[tuple[str, str]]) -> Optional[str]:
    """``(label, path)`` pairs outside the read roots, as one message, or None."""
    from ..executor.musubi.reads import read_problems

    found = read_problems(items, server_settings())
    return "; ".join(f"{p.input} {p.message}; {p.fix}" for p in found) or None


def server_settings() -> Any:
    """The settings as the nodes see them; a broken settings file leaves only ComfyUI's own
    folders (for reading and writing) rather than none."""
    from ..executor.errors import TrainerError
    from ..executor.setup.settings import Settings
    from .check import settings

    try:
        return settings()
    except TrainerError:
        return Settings(output_roots=tuple(write_roots()), read_roots=tuple(read_roots()),
                        local_config_file=host.user_config_file() or "")


def caption_extension_problem(value: str) -> Optional[str]:
    """musubi opens ``<image stem><caption_extension>``: a separator would leave the folder."""
    if not value or not value.strip():
        return None
    if "\x00" in value or "/" in value or "\\" in value or ".." in value or len(value) > 64:
        return (f"caption_extension {shown(value)!r} is not a file extension: write the ending of the caption "
                "files, e.g. .txt (no folders, no '..')")
    return None


def output_name_problem(value: str) -> Optional[str]:
    """The LoRA's file name, as pre-flight judges it (every OS's rules). A trailing
    .safetensors is fine here: the node drops it (musubi adds its own)."""
    from ..executor.musubi.files import check_output_name

    stem = value[:-len(".safetensors")] if value.lower().endswith(".safetensors") else value
    problems = check_output_name(stem)
    if not problems:
        return None
    text = "; ".join(f"{p.message} ({p.fix})" for p in problems)
    return text if len(text) <= 2000 else text[:2000] + "..."


def optimizer_problem(value: str) -> Optional[str]:
    """``package.module.Class`` of an optimizer installed in musubi's venv, or a bare name
    (musubi looks that up in ``torch.optim``).

    musubi imports the module by name and calls the class with the parameters. This is a
    guard against mistakes and the obvious abuse (``os.system``), not a sandbox: anyone who can
    queue prompts can name any installed class.
    """
    if not value or not value.strip():
        return None
    name = value.strip()
    if not _OPTIMIZER.match(name):
        return (f"optimizer_custom {shown(name)!r} is not a class name: write package.Class, e.g. "
                "came_pytorch.CAME, or a torch.optim name such as RAdam")
    top = name.split(".")[0]
    if "." in name and (top in getattr(sys, "stdlib_module_names", ()) or top == "builtins"):
        return (f"optimizer_custom {name!r} names the Python standard library ({top}), which has no "
                "optimizers: write the optimizer's package.Class, e.g. came_pytorch.CAME")
    return None


def finite_problem(name: str, value: Any) -> Optional[str]:
    """A FLOAT that is NaN or infinite. JSON prompts may carry ``NaN``/``Infinity`` and ComfyUI's
    own min/max checks let NaN through (every comparison with it is false)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name}: {value} is not a usable number; give a finite number"
    return None


def number_problems(node: type, values: Mapping[str, Any]) -> list[str]:
    """NaN/infinity, then ComfyUI's own min/max rule, for the FLOAT/INT inputs a node's
    VALIDATE_INPUTS names: ComfyUI skips its range check for every input VALIDATE_INPUTS receives
    (execution.py validate_inputs, 0.3.75 and current), so it is repeated here, worded the same."""
    spec = node.INPUT_TYPES()
    options = {name: entry[1] if len(entry) > 1 else {}
               for group in ("required", "optional") for name, entry in spec.get(group, {}).items()}
    problems = []
    for name, value in values.items():
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # wired (checked when the node runs)
        found = finite_problem(name, value)
        extra = options.get(name, {})
        if found is None and "min" in extra and value < extra["min"]:
            found = f"{name}: Value {value} smaller than min of {extra['min']}"
        elif found is None and "max" in extra and value > extra["max"]:
            found = f"{name}: Value {value} bigger than max of {extra['max']}"
        if found:
            problems.append(found)
    return problems


def gpu_ids_problem(value: Optional[str]) -> Optional[str]:
    """accelerate's ``--gpu_ids``: empty (all), ``all``, or GPU indexes separated by commas."""
    if value is None:
        return None
    text = value.replace(" ", "")
    if not text or text == "all":
        return None
    if len(text) > 200 or not _GPU_IDS.match(text):
        return (f"gpu_ids {shown(value)!r} is not a list of GPU numbers: write all, or the GPUs' indexes "
                "separated by commas, e.g. 0 or 0,1 (empty = all)")
    ids = text.split(",")
    if len(set(ids)) != len(ids):
        return f"gpu_ids {value!r} names a GPU twice: list each GPU once, e.g. 0,1"
    return None

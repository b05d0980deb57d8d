"""What a planned step makes musubi read, and whether each path lies inside the folders the
settings allow reading from (``read_roots``).

musubi logs much of what it reads (every sample prompt as ``prompt: ...``, dataset folders and
their counts, model paths), the log tail reaches every client of a ComfyUI server, and the run log
lies in ComfyUI's output folder; so a path that a workflow names for musubi to read is a way to
read files from the server. The paths are the dataset config file, each dataset's media, JSONL,
control and cache folders (captions sit beside the media), the files a JSONL lists, the sample
prompt file, the initial LoRA weights and every model file given as a local path. Imports only
the standard library, its own room and ``setup``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping, Optional, Sequence

from ..problems import Problem
from ..setup.settings import read_root_fix
from .dataset import SOURCE_KEYS, DatasetConfig
from .files import inside_roots, resolve

__all__ = ["dataset_reads", "option_reads", "model_reads", "read_problems", "READ_OPTIONS"]

# Options whose value is a file musubi opens (the resume state is judged by its own rules).
READ_OPTIONS = ("sample_prompts", "network_weights")
MAX_JSONL_LINES = 100_000


def dataset_reads(config: DatasetConfig, cwd: Optional[str] = None) -> list[tuple[str, str]]:
    """(label, path) of everything the dataset makes musubi read, paths as musubi opens them."""
    items: list[tuple[str, str]] = []
    if config.path:
        items.append(("dataset_config", os.path.abspath(config.path)))
    for i, ds in enumerate(config.datasets):
        for key in (*SOURCE_KEYS, "control_directory", "cache_directory"):
            value = getattr(ds, key, None)
            if isinstance(value, str) and value.strip():
                items.append((f"datasets[{i}].{key}", resolve(value, cwd)))
        jsonl = ds.jsonl_file
        if isinstance(jsonl, str) and jsonl.strip():
            key = "video_jsonl_file" if ds.kind == "video" else "image_jsonl_file"
            items += [(f"datasets[{i}].{key} lists", resolve(p, cwd)) for p in _jsonl_paths(resolve(jsonl, cwd))]
    return items


def _jsonl_paths(path: str) -> list[str]:
    """Every ``*_path`` value (image_path, video_path, control_path, control_path_0, ...) of a JSONL."""
    out: list[str] = []
    try:
        with open(path, "rb") as fh:
            for n, raw in enumerate(fh):
                if n >= MAX_JSONL_LINES:
                    break
                try:
                    item = json.loads(raw)
                except ValueError:
                    continue  # reported by pre-flight's JSONL check
                if isinstance(item, dict):
                    out += [v for k, v in item.items() if "_path" in k and isinstance(v, str) and v.strip()]
    except OSError:
        pass  # a missing JSONL is pre-flight's to report
    return out


def option_reads(options: Mapping[str, Any], cwd: Optional[str] = None) -> list[tuple[str, str]]:
    return [(f"options.{k}", resolve(options[k], cwd)) for k in READ_OPTIONS
            if isinstance(options.get(k), str) and options[k].strip()]


def model_reads(models: Mapping[str, Any], cwd: Optional[str] = None) -> list[tuple[str, str]]:
    """Model inputs that are local paths (a Hugging Face id that is no local path is fetched by musubi)."""
    out = []
    for name, value in models.items():
        if isinstance(value, str) and value.strip() and "\x00" not in value:
            path = resolve(value, cwd)
            if os.path.isabs(os.path.expanduser(value)) or os.path.exists(path):
                out.append((f"models.{name}", path))
    return out


def read_problems(items: Iterable[tuple[str, str]], settings: Any,
                  roots: Optional[Sequence[str]] = None) -> list[Problem]:
    """One Problem per input whose path lies outside ``roots`` (default ``settings.read_roots``;
    empty: reading is not confined), with the exact settings line that would allow it."""
    roots = tuple(roots if roots is not None else getattr(settings, "read_roots", ()) or ())
    if not roots:
        return []
    outside: dict[str, list[str]] = {}
    for label, path in items:
        if "\x00" in path or inside_roots(path, roots):
            continue
        outside.setdefault(label, []).append(path)
    problems = []
    for label, paths in outside.items():
        first = os.path.abspath(paths[0])
        folder = first if os.path.isdir(first) else os.path.dirname(first)
        many = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
        problems.append(Problem(label, f"{first}{many} is outside the folders this pack may read from (inside "
                                "ComfyUI: its input, output and models folders; and the settings' read_roots)",
                                "move it into ComfyUI's input folder, or allow its folder on the server: "
                                + read_root_fix(settings, folder)))
    return problems

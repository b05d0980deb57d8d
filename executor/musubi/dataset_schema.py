"""The dataset config schema musubi-tuner v0.3.4 applies ([general] and [[datasets]] keys, their
kinds, deprecated names) and ``validate_dataset_dict``, which reports every problem of a loaded
config at once: unknown keys with suggestions, wrong kinds with the literal to write, keys not
allowed in [general], missing sources. Imports only the standard library.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from typing import Any, Iterable, Optional, Sequence, Union

from ..problems import ERROR, WARNING, Problem

__all__ = ["validate_dataset_dict", "IMAGE_SCHEMA", "VIDEO_SCHEMA", "GENERAL_SCHEMA", "PATH_KEYS",
           "DEPRECATED_KEYS", "FRAME_EXTRACTIONS", "DEFAULT_RESOLUTION"]


FRAME_EXTRACTIONS = ("head", "chunk", "slide", "uniform", "full")
DEFAULT_RESOLUTION = (960, 544)

# The schema, as facts (dataset/config_utils.py). Kinds: str, int, bool, float, ints, size.
_SHARED = {"caption_extension": "str", "batch_size": "int", "num_repeats": "int",
           "resolution": "size", "enable_bucket": "bool", "bucket_no_upscale": "bool"}
IMAGE_KEYS = {"image_directory": "str", "image_jsonl_file": "str", "cache_directory": "str",
          "control_directory": "str", "multiple_target": "bool", "fp_latent_window_size": "int",
          "fp_1f_clean_indices": "ints", "fp_1f_target_index": "int", "fp_1f_no_post": "bool",
          "no_resize_control": "bool", "control_resolution": "size"}
_VIDEO = {"video_directory": "str", "video_jsonl_file": "str", "control_directory": "str",
          "target_frames": "ints", "frame_extraction": "str", "frame_stride": "int",
          "frame_sample": "int", "max_frames": "int", "cache_directory": "str",
          "source_fps": "float", "fp_latent_window_size": "int"}
IMAGE_SCHEMA = {**_SHARED, **IMAGE_KEYS}
VIDEO_SCHEMA = {**_SHARED, **_VIDEO}
GENERAL_SCHEMA = dict(_SHARED)
# musubi renames these (with a warning) before validating, in [general] too.
DEPRECATED_KEYS = {"flux_kontext_no_resize_control": "no_resize_control",
                   "qwen_image_edit_no_resize_control": "no_resize_control",
                   "qwen_image_edit_control_resolution": "control_resolution"}
PATH_KEYS = ("image_directory", "image_jsonl_file", "video_directory", "video_jsonl_file",
             "cache_directory", "control_directory")
SOURCE_KEYS = ("image_directory", "image_jsonl_file", "video_directory", "video_jsonl_file")
_POSITIVE_INTS = ("batch_size", "num_repeats", "frame_stride", "frame_sample", "max_frames",
                  "fp_latent_window_size")

Size = Union[int, Sequence[int]]
_KIND_WORDS = {"str": "a string in quotes", "int": "a whole number", "bool": "true or false",
               "float": "a decimal number such as 30.0", "ints": "a list of whole numbers such as [1, 25]",
               "size": "a whole number or [width, height]"}


def _type_ok(kind: str, value: Any) -> bool:
    def is_int(v: Any) -> bool:
        # voluptuous would accept true/false as an int (bool subclasses int); that is
        # never what the user meant, so we reject it.
        return isinstance(v, int) and not isinstance(v, bool)

    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return is_int(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "float":
        return isinstance(value, float)
    if kind == "ints":
        return isinstance(value, list) and all(is_int(v) for v in value)
    if kind == "size":
        return is_int(value) or (isinstance(value, list) and len(value) == 2 and all(is_int(v) for v in value))
    raise AssertionError(kind)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {json.dumps(value)}"
    if isinstance(value, float):
        return f"the decimal number {value!r}"
    if isinstance(value, int):
        return f"the whole number {value}"
    if isinstance(value, list):
        return f"the list {json.dumps(value, default=str)}"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _type_fix(key: str, kind: str, value: Any) -> str:
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return f"write {key} = {value}.0"
    if kind in ("int", "size") and isinstance(value, float) and value.is_integer():
        return f"write {key} = {int(value)}"
    if kind == "bool" and value in (0, 1) and not isinstance(value, bool):
        return f"write {key} = {'true' if value else 'false'}"
    if kind == "str" and not isinstance(value, str):
        return f'put the value in quotes: {key} = "..."'
    if kind == "ints" and not isinstance(value, list):
        return f"write a list: {key} = [{value if isinstance(value, int) else 1}]"
    if kind == "size":
        return f"write {key} = 512 or {key} = [768, 512]"
    return f"make {key} {_KIND_WORDS[kind]}"


class _Locator:
    """Best-effort line numbers for keys in TOML text (for messages only)."""

    def __init__(self, text: Optional[str]) -> None:
        self.lines = text.splitlines() if text else []

    def line(self, section: str, index: Optional[int], key: Optional[str]) -> Optional[int]:
        if not self.lines:
            return None
        start, count = None, -1
        header = re.compile(r"^\s*\[\[\s*datasets\s*\]\]" if section == "datasets" else r"^\s*\[\s*general\s*\]")
        for n, line in enumerate(self.lines):
            if header.match(line):
                count += 1
                if section == "general" or count == index:
                    start = n
                    break
        if start is None:
            return None
        if key is None:
            return start + 1
        pattern = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
        for n in range(start + 1, len(self.lines)):
            if re.match(r"^\s*\[", self.lines[n]):
                break
            if pattern.match(self.lines[n]):
                return n + 1
        return None


def validate_dataset_dict(data: Any, *, text: Optional[str] = None) -> tuple[list[Problem], dict[str, Any]]:
    """Check parsed dataset-config data as musubi v0.3.4 does (config_utils schema, plus
    the runtime failures it would hit later: no source, no caption extension, shared cache
    folder, ...). Returns (problems, data with deprecated keys renamed)."""
    problems: list[Problem] = []
    where = _Locator(text)

    def add(name: str, message: str, fix: str, level: str = ERROR,
            section: str = "", index: Optional[int] = None, key: Optional[str] = None) -> None:
        line = where.line(section, index, key) if section else None
        problems.append(Problem(name, message + (f" (line {line})" if line else ""), fix, level))

    if not isinstance(data, dict):
        add("dataset_config", f"the file holds {_describe(data)}, not tables",
            "start from the example in the pack's docs/datasets.md")
        return problems, {}
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    if isinstance(data.get("datasets"), list):
        data["datasets"] = [dict(t) if isinstance(t, dict) else t for t in data["datasets"]]

    for key in data:
        if key not in ("general", "datasets"):
            add(key, "unknown top-level key; a dataset config has only [general] and [[datasets]]",
                _suggest(key, ("general", "datasets")) or f"remove {key}, or move it into [general] or a [[datasets]] table")

    general = data.get("general", {})
    if not isinstance(general, dict):
        add("general", f"expected a [general] table, got {_describe(general)}", "write it as a [general] section")
        general = {}
    else:
        _rename_deprecated(general, "general", add)
        for key, value in general.items():
            name = f"general.{key}"
            if key not in GENERAL_SCHEMA:
                if key in IMAGE_SCHEMA or key in VIDEO_SCHEMA:
                    add(name, f"{key} is not allowed in [general] (musubi: extra keys not allowed)",
                        f"move {key} into each [[datasets]] table", section="general", key=key)
                else:
                    add(name, "unknown key", _suggest(key, GENERAL_SCHEMA) or f"remove {key}",
                        section="general", key=key)
            elif not _type_ok(GENERAL_SCHEMA[key], value):
                add(name, f"expected {_KIND_WORDS[GENERAL_SCHEMA[key]]}, got {_describe(value)}",
                    _type_fix(key, GENERAL_SCHEMA[key], value), section="general", key=key)

    datasets = data.get("datasets")
    if datasets is None:
        add("datasets", "no [[datasets]] table: there is nothing to train on",
            'add a [[datasets]] table with image_directory = "..." (or video_directory)')
        datasets = []
    elif not isinstance(datasets, list):
        add("datasets", f"expected [[datasets]] tables, got {_describe(datasets)}",
            "write each dataset as its own [[datasets]] section")
        datasets = []
    elif not datasets:
        add("datasets", "the datasets list is empty: there is nothing to train on",
            'add a [[datasets]] table with image_directory = "..." (or video_directory)')

    cache_dirs: dict[str, int] = {}
    for i, table in enumerate(datasets):
        prefix = f"datasets[{i}]"
        if not isinstance(table, dict):
            add(prefix, f"expected a table, got {_describe(table)}", "write it as a [[datasets]] section")
            continue
        _rename_deprecated(table, prefix, add)
        _check_dataset(i, table, general, add)
        # Same rule as musubi: each dataset needs its own cache folder, and a dataset
        # without cache_directory caches into its media folder.
        cache = table.get("cache_directory")
        if cache is None:
            cache = table.get("video_directory") if ("video_directory" in table or "video_jsonl_file" in table) \
                else table.get("image_directory")
        if isinstance(cache, str):
            norm = os.path.normcase(os.path.normpath(cache))
            if norm in cache_dirs:
                j = cache_dirs[norm]
                add(f"{prefix}.cache_directory",
                    f"datasets[{j}] and datasets[{i}] use the same cache folder {cache} (a dataset without "
                    "cache_directory caches into its image/video folder); musubi refuses this",
                    f"give datasets[{i}] its own cache_directory", section="datasets", index=i)
            else:
                cache_dirs[norm] = i
    return problems, data


def _rename_deprecated(table: dict, where: str, add: Any) -> None:
    for old, new in DEPRECATED_KEYS.items():
        if old not in table:
            continue
        if new in table:
            add(f"{where}.{old}", f"deprecated key {old} is ignored because {new} is also set",
                f"remove {old}", WARNING)
        else:
            table[new] = table[old]
            add(f"{where}.{old}", f"deprecated key; musubi reads it as {new}", f"rename it to {new}", WARNING)
        del table[old]


def _check_dataset(i: int, table: dict, general: dict, add: Any) -> None:
    prefix = f"datasets[{i}]"
    is_video = "video_directory" in table or "video_jsonl_file" in table
    schema = VIDEO_SCHEMA if is_video else IMAGE_SCHEMA
    kind_word = "a video" if is_video else "an image"

    def at(key: Optional[str] = None) -> dict[str, Any]:
        return {"section": "datasets", "index": i, "key": key}

    for key, value in table.items():
        name = f"{prefix}.{key}"
        if key not in schema:
            if key in IMAGE_KEYS and is_video:
                fix = (f"a dataset is either images or videos: move {key} into a separate [[datasets]] table"
                       if key in SOURCE_KEYS else f"remove {key}: it only applies to image datasets")
                add(name, f"{key} is not allowed in a video dataset (it has video_directory/video_jsonl_file)",
                    fix, **at(key))
            elif key in _VIDEO:
                add(name, f"{key} is a video-dataset key, but {prefix} is an image dataset",
                    f"remove {key}, or use video_directory for video clips", **at(key))
            elif key == "debug_dataset":
                add(name, "debug_dataset is a command-line option, not a dataset key", f"remove {key}", **at(key))
            else:
                add(name, "unknown key (musubi: extra keys not allowed)",
                    _suggest(key, schema) or f"remove {key}", **at(key))
        elif not _type_ok(schema[key], value):
            add(name, f"expected {_KIND_WORDS[schema[key]]}, got {_describe(value)}",
                _type_fix(key, schema[key], value), **at(key))

    sources = [k for k in SOURCE_KEYS if k in table]
    if not sources:
        add(prefix, "no image or video source", 'set image_directory = "..." (or image_jsonl_file, video_directory, '
            "video_jsonl_file)", **at())
        return
    kind_keys = ("video_directory", "video_jsonl_file") if is_video else ("image_directory", "image_jsonl_file")
    if all(k in table for k in kind_keys):
        add(f"{prefix}.{kind_keys[1]}", f"both {kind_keys[0]} and {kind_keys[1]} are set; musubi uses only "
            f"{kind_keys[0]}", "remove one of them (or split into two datasets)", WARNING, **at(kind_keys[1]))

    def value(key: str) -> Any:
        v = table.get(key)
        return general.get(key) if v is None else v

    directory_source = kind_keys[0] in table
    caption = value("caption_extension")
    if directory_source and isinstance(table.get(kind_keys[0]), str):
        if caption is None:
            add(f"{prefix}.caption_extension", f"{kind_word} folder needs caption files, but no caption_extension is "
                "set (musubi then fails reading captions)", 'set caption_extension = ".txt" in [general] or here',
                **at())
        elif isinstance(caption, str) and not caption.startswith("."):
            add(f"{prefix}.caption_extension", f"caption_extension {caption!r} has no leading dot; musubi appends "
                f"it to the file name without one (image{caption})", f'write caption_extension = ".{caption}"',
                **at("caption_extension"))
    if not directory_source and "cache_directory" not in table:
        add(f"{prefix}.cache_directory", f"{kind_keys[1]} datasets have no folder to cache into",
            'set cache_directory = "..." to an empty folder of its own', **at())
    for key in PATH_KEYS:
        v = table.get(key)
        if isinstance(v, str):
            if not v.strip():
                add(f"{prefix}.{key}", "empty path", f"set {key} to a folder or remove it", **at(key))
            elif not os.path.isabs(v) and not v.startswith("~"):
                add(f"{prefix}.{key}", f"relative path {v!r}: musubi resolves it against its own working folder "
                    "(the musubi-tuner root), not against this TOML's folder", "use an absolute path",
                    WARNING, **at(key))

    for key in _POSITIVE_INTS:
        v = table.get(key, general.get(key) if key in GENERAL_SCHEMA else None)
        if _type_ok("int", v) and v < 1:
            add(f"{prefix}.{key}", f"{key} must be at least 1, got {v}", f"set {key} = 1 or more", **at(key))
    for key in ("resolution", "control_resolution"):
        v = table.get(key, general.get(key) if key == "resolution" else None)
        if _type_ok("size", v) and any(n < 1 for n in (v if isinstance(v, list) else [v])):
            add(f"{prefix}.{key}", f"{key} must be positive, got {v}", f"set {key} = [W, H] in pixels", **at(key))
    if is_video:
        fe = table.get("frame_extraction")
        if isinstance(fe, str) and fe not in FRAME_EXTRACTIONS:
            add(f"{prefix}.frame_extraction", f"frame_extraction {fe!r} is not one of {', '.join(FRAME_EXTRACTIONS)}",
                'use frame_extraction = "%s"' % (difflib.get_close_matches(fe, FRAME_EXTRACTIONS, n=1) or ["head"])[0],
                **at("frame_extraction"))
        tf = table.get("target_frames")
        if _type_ok("ints", tf):
            if not tf or any(n < 1 for n in tf):
                add(f"{prefix}.target_frames", f"target_frames must be positive frame counts, got {tf}",
                    "use counts of the form 4*N+1, e.g. [1, 25, 45]", **at("target_frames"))
            else:
                rounded = sorted({(n - 1) // 4 * 4 + 1 for n in tf})
                if rounded != sorted(set(tf)):
                    add(f"{prefix}.target_frames", f"musubi rounds target_frames {tf} to {rounded} (frame counts "
                        "must be 4*N+1)", f"write target_frames = {rounded}", WARNING, **at("target_frames"))
        fps = table.get("source_fps")
        if isinstance(fps, float) and not (math.isfinite(fps) and fps > 0):
            add(f"{prefix}.source_fps", f"source_fps must be a positive number, got {fps}",
                "set the clips' real frame rate, e.g. 30.0, or remove source_fps", **at("source_fps"))
    if value("resolution") is None:
        add(f"{prefix}.resolution", f"no resolution set; musubi trains at {DEFAULT_RESOLUTION[0]}x"
            f"{DEFAULT_RESOLUTION[1]}", "set resolution = [W, H] in [general]", WARNING, **at())


def _suggest(key: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return f"rename {key} to {close[0]} (did you mean {close[0]}?)" if close else ""

"""musubi-tuner dataset configs: build one from structured inputs, write it atomically,
and load a user's TOML/JSON with the schema rules musubi-tuner v0.3.4 applies.

Paths: musubi opens dataset paths as given, so relative ones resolve against the
*trainer's* working folder (our plans run with cwd = the musubi-tuner root), not the
TOML's folder. Configs we write therefore hold absolute paths only; relative paths in
a user's file are reported as warnings. Imports only the standard library and tomllib/tomli.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

try:
    import tomllib  # Python 3.11+
except ImportError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .errors import ConfigError
from .problems import ERROR, WARNING, Problem

__all__ = [
    "GeneralSpec", "DatasetSpec", "DatasetConfig", "build_dataset_config", "render_toml",
    "write_atomic", "save_dataset_config", "load_dataset_config", "parse_dataset_dict",
    "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "FRAME_EXTRACTIONS", "MARKER",
]

# First line of every file this pack writes; write_atomic only replaces files that carry it.
MARKER = "# Written by musubi-tuner-nodes."

# musubi's media globs are case-sensitive: lower- or upper-case extensions only
# (dataset/media_utils.py). `.jxl` needs an optional Pillow plugin, so it is not counted.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".avif",
                    ".PNG", ".JPG", ".JPEG", ".WEBP", ".BMP", ".AVIF")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".flv", ".wmv", ".m4v", ".mpg", ".mpeg",
                    ".MP4", ".WEBM", ".AVI", ".MKV", ".MOV", ".FLV", ".WMV", ".M4V", ".MPG", ".MPEG")
FRAME_EXTRACTIONS = ("head", "chunk", "slide", "uniform", "full")
DEFAULT_RESOLUTION = (960, 544)

# The schema, as facts (dataset/config_utils.py). Kinds: str, int, bool, float, ints, size.
_SHARED = {"caption_extension": "str", "batch_size": "int", "num_repeats": "int",
           "resolution": "size", "enable_bucket": "bool", "bucket_no_upscale": "bool"}
_IMAGE = {"image_directory": "str", "image_jsonl_file": "str", "cache_directory": "str",
          "control_directory": "str", "multiple_target": "bool", "fp_latent_window_size": "int",
          "fp_1f_clean_indices": "ints", "fp_1f_target_index": "int", "fp_1f_no_post": "bool",
          "no_resize_control": "bool", "control_resolution": "size"}
_VIDEO = {"video_directory": "str", "video_jsonl_file": "str", "control_directory": "str",
          "target_frames": "ints", "frame_extraction": "str", "frame_stride": "int",
          "frame_sample": "int", "max_frames": "int", "cache_directory": "str",
          "source_fps": "float", "fp_latent_window_size": "int"}
IMAGE_SCHEMA = {**_SHARED, **_IMAGE}
VIDEO_SCHEMA = {**_SHARED, **_VIDEO}
GENERAL_SCHEMA = dict(_SHARED)
# musubi renames these (with a warning) before validating, in [general] too.
DEPRECATED_KEYS = {"flux_kontext_no_resize_control": "no_resize_control",
                   "qwen_image_edit_no_resize_control": "no_resize_control",
                   "qwen_image_edit_control_resolution": "control_resolution"}
PATH_KEYS = ("image_directory", "image_jsonl_file", "video_directory", "video_jsonl_file",
             "cache_directory", "control_directory")
_SOURCE_KEYS = ("image_directory", "image_jsonl_file", "video_directory", "video_jsonl_file")
_POSITIVE_INTS = ("batch_size", "num_repeats", "frame_stride", "frame_sample", "max_frames",
                  "fp_latent_window_size")

Size = Union[int, Sequence[int]]


@dataclass
class GeneralSpec:
    """``[general]``: defaults every dataset inherits (only these six keys are allowed)."""

    resolution: Optional[Size] = None
    caption_extension: Optional[str] = None
    batch_size: Optional[int] = None
    num_repeats: Optional[int] = None
    enable_bucket: Optional[bool] = None
    bucket_no_upscale: Optional[bool] = None


@dataclass
class DatasetSpec:
    """One ``[[datasets]]`` table. Set exactly one source: image_directory,
    image_jsonl_file, video_directory or video_jsonl_file. ``None`` = not written."""

    image_directory: Optional[str] = None
    image_jsonl_file: Optional[str] = None
    video_directory: Optional[str] = None
    video_jsonl_file: Optional[str] = None
    cache_directory: Optional[str] = None
    control_directory: Optional[str] = None
    caption_extension: Optional[str] = None
    resolution: Optional[Size] = None
    batch_size: Optional[int] = None
    num_repeats: Optional[int] = None
    enable_bucket: Optional[bool] = None
    bucket_no_upscale: Optional[bool] = None
    # image datasets
    multiple_target: Optional[bool] = None
    fp_latent_window_size: Optional[int] = None
    fp_1f_clean_indices: Optional[Sequence[int]] = None
    fp_1f_target_index: Optional[int] = None
    fp_1f_no_post: Optional[bool] = None
    no_resize_control: Optional[bool] = None
    control_resolution: Optional[Size] = None
    # video datasets
    target_frames: Optional[Sequence[int]] = None
    frame_extraction: Optional[str] = None
    frame_stride: Optional[int] = None
    frame_sample: Optional[int] = None
    max_frames: Optional[int] = None
    source_fps: Optional[float] = None

    @property
    def kind(self) -> Optional[str]:
        """"video", "image" or None (no source). musubi validates a table as video when
        it has a video key, else as image."""
        if self.video_directory is not None or self.video_jsonl_file is not None:
            return "video"
        if self.image_directory is not None or self.image_jsonl_file is not None:
            return "image"
        return None

    @property
    def source(self) -> Optional[str]:
        """The media folder or JSONL file (a folder wins over a JSONL, as in musubi)."""
        for key in _SOURCE_KEYS:
            value = getattr(self, key)
            if value is not None:
                return value
        return None

    @property
    def directory(self) -> Optional[str]:
        return self.video_directory if self.kind == "video" else self.image_directory

    @property
    def jsonl_file(self) -> Optional[str]:
        return self.video_jsonl_file if self.kind == "video" else self.image_jsonl_file


@dataclass
class DatasetConfig:
    """A whole dataset config plus what loading it found (``problems``)."""

    general: GeneralSpec = field(default_factory=GeneralSpec)
    datasets: list[DatasetSpec] = field(default_factory=list)
    path: Optional[str] = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.is_error for p in self.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]

    def value(self, index: int, key: str, default: Any = None) -> Any:
        """musubi's fallback: the dataset's value, else [general], else ``default``."""
        value = getattr(self.datasets[index], key, None)
        if value is None:
            value = getattr(self.general, key, None)
        return default if value is None else value

    def caption_extension(self, index: int) -> Optional[str]:
        return self.value(index, "caption_extension")

    def cache_directory(self, index: int) -> Optional[str]:
        """Where musubi writes and reads caches: cache_directory, else the media folder."""
        ds = self.datasets[index]
        return ds.cache_directory if ds.cache_directory is not None else ds.directory

    def resolve(self, value: str, cwd: Union[str, os.PathLike, None] = None) -> str:
        """A path from the config as musubi will open it: relative to ``cwd`` (the
        trainer's working folder), with ``~`` left alone as musubi does."""
        if os.path.isabs(value) or cwd is None:
            return value
        return os.path.join(os.fspath(cwd), value)

    def to_dict(self) -> dict[str, Any]:
        """The TOML-shaped data (keys with ``None`` left out)."""
        return {"general": _spec_dict(self.general, GENERAL_SCHEMA),
                "datasets": [_spec_dict(ds, VIDEO_SCHEMA if ds.kind == "video" else IMAGE_SCHEMA,
                                        keep_all=True) for ds in self.datasets]}


def _spec_dict(spec: Any, schema: dict[str, str], keep_all: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(spec):
        value = getattr(spec, f.name)
        if value is None or (not keep_all and f.name not in schema):
            continue
        if isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


# ---------------------------------------------------------------- building and writing

def build_dataset_config(datasets: Iterable[DatasetSpec], general: Optional[GeneralSpec] = None, *,
                         base_dir: Union[str, os.PathLike, None] = None) -> DatasetConfig:
    """A config from structured inputs, ready to render: relative paths made absolute
    against ``base_dir`` (default: our cwd), ints given for float keys made floats, and
    validated with the same rules as a loaded file (see ``DatasetConfig.problems``)."""
    base = os.path.abspath(os.fspath(base_dir) if base_dir is not None else os.getcwd())
    fixed: list[DatasetSpec] = []
    for ds in datasets:
        changes: dict[str, Any] = {}
        for key in PATH_KEYS:
            value = getattr(ds, key)
            if isinstance(value, (str, os.PathLike)):
                value = os.fspath(value)
                changes[key] = value if os.path.isabs(value) else os.path.normpath(os.path.join(base, value))
        if isinstance(ds.source_fps, int) and not isinstance(ds.source_fps, bool):
            changes["source_fps"] = float(ds.source_fps)
        for key in ("resolution", "control_resolution", "target_frames", "fp_1f_clean_indices"):
            value = getattr(ds, key)
            if isinstance(value, tuple):
                changes[key] = list(value)
        fixed.append(replace(ds, **changes))
    general = replace(general) if general is not None else GeneralSpec()
    if isinstance(general.resolution, tuple):
        general.resolution = list(general.resolution)
    config = DatasetConfig(general=general, datasets=fixed)
    config.problems = validate_dataset_dict(config.to_dict())[0]
    return config


def _toml_string(value: str) -> str:
    # Basic string with escapes: Windows paths keep their backslashes, quotes and
    # control characters survive; both tomllib and musubi's `toml` read it back exactly.
    out = []
    for ch in value:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"cannot write the number {value!r} into a dataset config",
                              hint="use a finite number")
        return repr(value)  # always has a '.' or an exponent, so it stays a float
    if isinstance(value, str):
        if "\x00" in value:
            raise ConfigError("a dataset config value contains a NUL byte", hint="remove it")
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write a {type(value).__name__} into a dataset config",
                      hint="use strings, numbers, true/false or lists of integers")


def render_toml(config: DatasetConfig) -> str:
    """The config as TOML text (our own writer; keys in schema order), starting with
    ``MARKER`` so that a later write may replace it."""
    data = config.to_dict()
    lines = [MARKER + " A musubi-tuner dataset config; edits are kept only under a new name.", ""]
    general = data["general"]
    if general:
        lines.append("[general]")
        lines += [f"{key} = {_toml_value(general[key])}" for key in GENERAL_SCHEMA if key in general]
        lines.append("")
    for table in data["datasets"]:
        lines.append("[[datasets]]")
        order = list(_SOURCE_KEYS) + [k for k in VIDEO_SCHEMA if k not in _SOURCE_KEYS] + list(_IMAGE)
        seen: set[str] = set()
        for key in order:
            if key in table and key not in seen:
                seen.add(key)
                lines.append(f"{key} = {_toml_value(table[key])}")
        lines.append("")
    return "\n".join(lines)


def write_atomic(path: Union[str, os.PathLike], text: str, *, overwrite: str = "ours") -> Path:
    """Write ``text`` (UTF-8, ``\\n`` line ends) via a temp file in the same folder and
    ``os.replace``, so readers never see half a file.

    overwrite: ``"ours"`` replaces only a file whose first line is ``MARKER`` (never a
    user's own file), ``"never"`` refuses any existing file, ``"always"`` replaces it.
    """
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{target} is a folder, not a file", hint="give a file name")
    if target.exists() and overwrite != "always":
        if overwrite == "never" or not _is_ours(target):
            raise ConfigError(f"{target} already exists and was not written by this pack; it was left untouched",
                              hint="choose another file name, or delete or rename that file yourself")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(target.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target


def _is_ours(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MARKER.encode())) == MARKER.encode()
    except OSError:
        return False


def save_dataset_config(config: DatasetConfig, path: Union[str, os.PathLike], *, overwrite: str = "ours") -> Path:
    """render_toml + write_atomic; refuses a config that has errors."""
    if not config.ok:
        raise ConfigError("the dataset config has problems; it was not written",
                          hint="; ".join(str(p) for p in config.errors))
    return write_atomic(path, render_toml(config), overwrite=overwrite)


# ---------------------------------------------------------------- loading and validating

def load_dataset_config(path: Union[str, os.PathLike]) -> DatasetConfig:
    """Read a ``.toml`` or ``.json`` dataset config and check it the way musubi will.

    Never raises for a bad file: every problem (syntax error with its line, unknown key,
    wrong type, ...) is in ``problems``, named by its TOML path (``datasets[0].source_fps``).
    """
    p = Path(path)
    config = DatasetConfig(path=str(p))
    where = "dataset_config"
    if not p.exists():
        config.problems.append(Problem(where, f"file not found: {p}",
                                       "check the path; musubi opens it from its own working folder "
                                       "when it is relative, so give an absolute path"))
        return config
    if not p.is_file():
        config.problems.append(Problem(where, f"{p} is a folder, not a dataset config file",
                                       "give the .toml file inside it"))
        return config
    suffix = p.name.lower()
    if not (suffix.endswith(".toml") or suffix.endswith(".json")):
        config.problems.append(Problem(where, f"musubi only reads .toml or .json dataset configs: {p}",
                                       "rename the file to end in .toml"))
        return config
    try:
        raw = p.read_bytes()
    except OSError as exc:
        config.problems.append(Problem(where, f"cannot read {p}: {exc.strerror or exc}",
                                       "check the file's permissions"))
        return config
    if raw.startswith(b"\xef\xbb\xbf"):
        config.problems.append(Problem(where, f"{p} starts with a UTF-8 byte-order mark, which musubi's "
                                       "TOML reader rejects", "save the file as UTF-8 without BOM"))
        return config
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        config.problems.append(Problem(where, f"{p} is not UTF-8 text (line {line})",
                                       "save the file as UTF-8"))
        return config
    try:
        data = json.loads(text) if suffix.endswith(".json") else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        config.problems.append(Problem(where, f"JSON syntax error in {p} at line {exc.lineno}, "
                                       f"column {exc.colno}: {exc.msg}", "fix the JSON at that line"))
        return config
    except tomllib.TOMLDecodeError as exc:
        config.problems.append(Problem(where, f"TOML syntax error in {p}: {exc}",
                                       _toml_syntax_fix(str(exc), text)))
        return config
    parsed = parse_dataset_dict(data, path=str(p), text=text)
    return parsed


def _toml_syntax_fix(message: str, text: str) -> str:
    m = re.search(r"line (\d+)", message)
    fix = f"fix line {m.group(1)}" if m else "fix the TOML syntax"
    if m:
        line = text.splitlines()[int(m.group(1)) - 1] if int(m.group(1)) <= len(text.splitlines()) else ""
        if re.search(r"=\s*[A-Za-z]:\\|=\s*/", line):
            fix += "; paths must be quoted, e.g. image_directory = \"C:\\\\data\\\\images\" or 'C:\\data\\images'"
        elif re.search(r'=\s*".*\\[^\\"nrtbfuU]', line):
            fix += "; backslashes in \"...\" strings must be doubled, or use '...' (literal) strings for Windows paths"
    return fix


def parse_dataset_dict(data: Any, *, path: Optional[str] = None, text: Optional[str] = None) -> DatasetConfig:
    """A DatasetConfig from already-parsed TOML/JSON data, with its problems."""
    problems, normalized = validate_dataset_dict(data, text=text)
    config = DatasetConfig(path=path, problems=problems)
    general = normalized.get("general")
    if isinstance(general, dict):
        config.general = GeneralSpec(**{k: v for k, v in general.items() if k in GENERAL_SCHEMA})
    known = {f.name for f in fields(DatasetSpec)}
    for table in normalized.get("datasets") or []:
        if isinstance(table, dict):
            config.datasets.append(DatasetSpec(**{k: v for k, v in table.items() if k in known}))
    return config


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
            if key in _IMAGE and is_video:
                fix = (f"a dataset is either images or videos: move {key} into a separate [[datasets]] table"
                       if key in _SOURCE_KEYS else f"remove {key}: it only applies to image datasets")
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

    sources = [k for k in _SOURCE_KEYS if k in table]
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

"""musubi-tuner dataset configs: build one from structured inputs, write it atomically,
and load a user's TOML/JSON with the schema rules musubi-tuner v0.3.4 applies.

Paths: musubi opens dataset paths as given, so relative ones resolve against the
*trainer's* working folder (our plans run with cwd = the musubi-tuner root), not the
TOML's folder. Configs we write therefore hold absolute paths only; relative paths in
a user's file are reported as warnings. The schema and its validation are ``dataset_schema``.
Imports only the standard library and tomllib/tomli.
"""

from __future__ import annotations

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

from ..errors import ConfigError
from ..problems import Problem
from .dataset_schema import (FRAME_EXTRACTIONS, GENERAL_SCHEMA, IMAGE_KEYS, IMAGE_SCHEMA, PATH_KEYS, SOURCE_KEYS,  # noqa: F401
                             VIDEO_SCHEMA, Size, validate_dataset_dict)

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
        for key in SOURCE_KEYS:
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
        order = list(SOURCE_KEYS) + [k for k in VIDEO_SCHEMA if k not in SOURCE_KEYS] + list(IMAGE_KEYS)
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



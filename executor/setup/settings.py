"""Settings: ``config.json`` (pack root) < the user settings file outside the pack <
the ``MUSUBI_TUNER_*`` environment overrides, validated against one schema, each value
remembering where it came from. Finding the install they point at is ``discovery``.
Imports only the standard library and ``process.command`` (accelerate's precisions).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ..errors import ConfigError
from ..process.command import MIXED_PRECISIONS

__all__ = [
    "Settings", "load_settings", "user_config_path", "user_data_dir", "home_dir", "read_root_fix",
    "SUPPORTED_PYTHON", "MIXED_PRECISIONS", "ENV_VENV", "ENV_ROOT", "ENV_USER_CONFIG", "IS_WINDOWS", "PACK_DIR",
]

IS_WINDOWS = os.name == "nt"

ENV_VENV = "MUSUBI_TUNER_ENV"
ENV_ROOT = "MUSUBI_TUNER_ROOT"
ENV_USER_CONFIG = "MUSUBI_TUNER_NODES_CONFIG"
APP_DIR = "musubi-tuner-nodes"

# musubi-tuner v0.3.4 pyproject: requires-python = ">=3.10, <3.13".
SUPPORTED_PYTHON = ((3, 10), (3, 12))

PACK_DIR = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    """The merged settings. Empty paths mean "find it" (see ``resolve_install``).

    ``sources`` lists what contributed, lowest precedence first; ``origins``
    maps each dotted key that was set (``musubi_tuner.venv_path``) to the file
    or environment variable that set it last. Timeouts of 0 mean "none". ``gpus`` (None:
    detect with nvidia-smi) are the GPU indexes background jobs are scheduled on, minus
    ``reserved_gpus`` (kept free for ComfyUI's own generation).
    ``env`` and ``origins`` are plain dicts (so ``asdict`` and copies work): treat them as read-only.
    ``output_roots``/``read_roots``: where steps may write / what paths musubi may be given to read
    (empty: anywhere; inside ComfyUI the nodes add ComfyUI's folders). ``read_roots`` add up across
    the files. ``local_config_file`` is the extra file the caller named (ComfyUI's user folder).
    """

    venv_path: str = ""
    root_path: str = ""
    num_cpu_threads_per_process: int = 1
    mixed_precision: str = "bf16"
    progress_update_interval: float = 0.5
    command_timeout: float = 0.0
    stall_timeout: float = 0.0
    env: Mapping[str, str] = field(default_factory=dict)
    output_roots: tuple[str, ...] = ()
    read_roots: tuple[str, ...] = ()
    gpus: Optional[tuple[int, ...]] = None
    reserved_gpus: tuple[int, ...] = ()
    sources: tuple[str, ...] = ()
    origins: Mapping[str, str] = field(default_factory=dict)
    pack_dir: str = str(PACK_DIR)
    user_config_file: str = ""
    local_config_file: str = ""

    def origin(self, key: str) -> str:
        """Where ``key`` came from, for messages (``"default"`` when nobody set it)."""
        return self.origins.get(key, "default")


# --- the settings files -------------------------------------------------------------------

# Shape of config.json: key -> validator name. Nested objects are dicts.
_SCHEMA: dict[str, Any] = {
    "musubi_tuner": {"venv_path": "path", "root_path": "path"},
    "default_accelerate_config": {"num_cpu_threads_per_process": "threads",
                                  "mixed_precision": "precision"},
    "progress_update_interval": "seconds",
    "command_timeout": "seconds",
    "stall_timeout": "seconds",
    "env": "env",
    "output_roots": "paths",
    "read_roots": "paths",
    "gpus": "gpu_list",
    "reserved_gpus": "gpu_list",
}

_DEFAULTS: dict[str, Any] = {
    "musubi_tuner": {"venv_path": "", "root_path": ""},
    "default_accelerate_config": {"num_cpu_threads_per_process": 1, "mixed_precision": "bf16"},
    "progress_update_interval": 0.5,
    "command_timeout": 0,
    "stall_timeout": 0,
    "env": {},
    "output_roots": [],
    "read_roots": [],
    "gpus": None,
    "reserved_gpus": [],
}

_ENV_NAME = re.compile(r"^[^=\x00]+$")


def user_config_path(environ: Optional[Mapping[str, str]] = None) -> Path:
    """The per-user settings file, outside the pack so updates never overwrite it.

    ``MUSUBI_TUNER_NODES_CONFIG`` if set; else ``%APPDATA%\\musubi-tuner-nodes\\config.json``
    on Windows; else ``$XDG_CONFIG_HOME`` (or ``~/.config``)``/musubi-tuner-nodes/config.json``.
    """
    env = os.environ if environ is None else environ
    explicit = env.get(ENV_USER_CONFIG, "").strip()
    if explicit:
        return Path(os.path.expanduser(explicit))
    if IS_WINDOWS:
        appdata = env.get("APPDATA", "").strip()
        base = Path(appdata) if appdata else home_dir(env) / "AppData" / "Roaming"
        return base / APP_DIR / "config.json"
    xdg = env.get("XDG_CONFIG_HOME", "").strip()
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else home_dir(env) / ".config"
    return base / APP_DIR / "config.json"


def user_data_dir(environ: Optional[Mapping[str, str]] = None) -> Path:
    """The per-user data folder: ``%LOCALAPPDATA%\\musubi-tuner-nodes`` on Windows (local, not
    roaming: a venv is gigabytes), else ``$XDG_DATA_HOME`` (or ``~/.local/share``)``/musubi-tuner-nodes``."""
    env = os.environ if environ is None else environ
    if IS_WINDOWS:
        local = env.get("LOCALAPPDATA", "").strip()
        return (Path(local) if local else home_dir(env) / "AppData" / "Local") / APP_DIR
    xdg = env.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg) if xdg and os.path.isabs(xdg) else home_dir(env) / ".local" / "share"
    return base / APP_DIR


def home_dir(env: Mapping[str, str]) -> Path:
    home = env.get("USERPROFILE" if IS_WINDOWS else "HOME", "").strip()
    return Path(home) if home else Path.home()


def load_settings(pack_dir: Optional[os.PathLike[str] | str] = None, *,
                  environ: Optional[Mapping[str, str]] = None,
                  user_config: Optional[os.PathLike[str] | str] = None) -> Settings:
    """Merge defaults < ``<pack>/config.json`` < user file < ``user_config`` < env vars.

    The user file is ``user_config_path()``; ``user_config`` is an extra file a
    caller knows about (the nodes pass one in ComfyUI's user directory). Missing
    files are skipped, except one named by ``MUSUBI_TUNER_NODES_CONFIG``. Relative
    paths in a file are relative to that file's folder. Raises ``ConfigError``
    naming the file and key for malformed JSON, unknown keys, wrong types or
    out-of-range values.
    """
    env = os.environ if environ is None else environ
    pack = Path(os.path.abspath(pack_dir)) if pack_dir is not None else PACK_DIR
    user_file = user_config_path(env)

    merged = _copy(_DEFAULTS)
    origins: dict[str, str] = {}
    sources = ["defaults"]

    files: list[tuple[Path, bool]] = [(pack / "config.json", False),
                                      (user_file, bool(env.get(ENV_USER_CONFIG, "").strip()))]
    if user_config is not None:
        files.append((Path(user_config), False))
    seen: set[str] = set()
    for path, required in files:
        key = os.path.normcase(os.path.abspath(path))
        if key in seen:
            continue
        seen.add(key)
        if not path.is_file():
            if required:
                raise ConfigError(
                    f"{ENV_USER_CONFIG} names a settings file that does not exist: {path}",
                    hint=f"create it, or unset {ENV_USER_CONFIG} to use the default location")
            continue
        data = _read_json(path)
        _validate(data, str(path), base_dir=path.parent)
        _merge(merged, data, origins, str(path))
        sources.append(str(path))

    for var, key in ((ENV_VENV, "venv_path"), (ENV_ROOT, "root_path")):
        value = env.get(var, "").strip()
        if value:
            where = f"environment variable {var}"
            merged["musubi_tuner"][key] = _absolute(value, Path.cwd())
            origins[f"musubi_tuner.{key}"] = where
            sources.append(where)

    accel = merged["default_accelerate_config"]
    return Settings(
        venv_path=merged["musubi_tuner"]["venv_path"],
        root_path=merged["musubi_tuner"]["root_path"],
        num_cpu_threads_per_process=accel["num_cpu_threads_per_process"],
        mixed_precision=accel["mixed_precision"],
        progress_update_interval=float(merged["progress_update_interval"]),
        command_timeout=float(merged["command_timeout"]),
        stall_timeout=float(merged["stall_timeout"]),
        env=dict(merged["env"]),
        output_roots=tuple(merged["output_roots"]),
        read_roots=tuple(dict.fromkeys(merged["read_roots"])),
        gpus=None if merged["gpus"] is None else tuple(merged["gpus"]),
        reserved_gpus=tuple(merged["reserved_gpus"]),
        sources=tuple(sources),
        origins=origins,
        pack_dir=str(pack),
        user_config_file=str(user_file),
        local_config_file=str(user_config) if user_config is not None else "",
    )


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return list(value)
    return value


def _read_json(path: Path) -> dict[str, Any]:
    try:
        # utf-8-sig: Windows Notepad may save the file with a BOM.
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc}",
                          hint="save it as UTF-8 JSON", path=str(path)) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            hint="JSON needs double quotes, no trailing commas and no comments; on Windows "
                 "write backslashes in paths as \\\\ or use forward slashes",
            path=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a JSON object {{...}}, "
                          f"not {_json_type(data)}", path=str(path))
    return data


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _validate(data: dict[str, Any], where: str, *, base_dir: Path) -> None:
    """Check one file's (partial) settings in place; normalise paths. Raises ConfigError."""
    problems: list[str] = []
    _check_object(data, _SCHEMA, "", problems, base_dir)
    if problems:
        if len(problems) == 1:
            message = f"{where}: {problems[0]}"
        else:
            message = f"{where}: {len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(message, hint=f"fix the key(s) named above in {where}", path=where)


def _check_object(data: dict[str, Any], schema: dict[str, Any], prefix: str,
                  problems: list[str], base_dir: Path) -> None:
    for key in list(data):
        dotted = f"{prefix}{key}"
        if key.startswith("_"):
            # "_comment"-style keys: JSON has no comments, so people write them as keys.
            del data[key]
            continue
        if key not in schema:
            known = ", ".join(sorted(schema))
            problems.append(f"unknown key \"{dotted}\" (known keys here: {known})")
            continue
        kind = schema[key]
        value = data[key]
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                problems.append(f"\"{dotted}\" must be an object {{...}}, not {_json_type(value)}")
                continue
            _check_object(value, kind, f"{dotted}.", problems, base_dir)
            continue
        error = _check_value(kind, value, data, key, base_dir)
        if error:
            # An error about one entry of a map starts with ".NAME".
            problems.append(f"\"{dotted}{error}" if error.startswith(".")
                            else f"\"{dotted}\" {error}")


def _check_value(kind: str, value: Any, parent: dict[str, Any], key: str,
                 base_dir: Path) -> Optional[str]:
    """Return an error text, or None after normalising ``parent[key]``."""
    if kind == "path":
        if value is None:
            parent[key] = ""
            return None
        if not isinstance(value, str):
            return f"must be a string path, not {_json_type(value)}"
        parent[key] = _absolute(value, base_dir) if value.strip() else ""
        return None
    if kind == "paths":
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            return "must be a list of non-empty string paths"
        parent[key] = [_absolute(v, base_dir) for v in value]
        return None
    if kind == "threads":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a whole number, not {_json_type(value)} ({value!r})"
        if value < 1:
            return f"must be 1 or more, got {value}"
        return None
    if kind == "precision":
        if value not in MIXED_PRECISIONS:
            return f"must be one of {', '.join(MIXED_PRECISIONS)}, got {json.dumps(value)}"
        return None
    if kind == "seconds":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"must be a number of seconds, not {_json_type(value)} ({value!r})"
        if value < 0:
            return f"must not be negative, got {value}" + (" (0 means no limit)" if key.endswith("timeout") else "")
        return None
    if kind == "gpu_list":
        if value is None and key == "gpus":
            return None  # detect
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                  for v in value):
            return (f"must be a list of GPU numbers such as [0, 1] (as nvidia-smi counts them), not "
                    f"{json.dumps(value)}")
        if len(set(value)) != len(value):
            return f"lists a GPU twice: {json.dumps(value)}"
        return None
    if kind == "env":
        if not isinstance(value, dict):
            return f"must be an object of NAME: \"value\" strings, not {_json_type(value)}"
        for name, val in value.items():
            if not name or not _ENV_NAME.match(name):
                return f"has an invalid variable name {json.dumps(name)}"
            if not isinstance(val, str):
                shown = json.dumps(val if not isinstance(val, bool) else str(val).lower())
                return (f".{name}\" must be a string (write \"{shown.strip(chr(34))}\" in quotes), "
                        f"not {_json_type(val)}")
            if "\x00" in val:
                return f".{name}\" contains a NUL character"
        return None
    raise AssertionError(kind)


def _absolute(path: str, base_dir: Path) -> str:
    # abspath, not resolve(): a venv's bin/python is a symlink whose target is the
    # base interpreter, and following it would leave the venv.
    return os.path.abspath(os.path.join(base_dir, os.path.expanduser(path.strip())))


def _merge(into: dict[str, Any], data: dict[str, Any], origins: dict[str, str], where: str,
           prefix: str = "") -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key), dict) and key != "env":
            _merge(into[key], value, origins, where, f"{dotted}.")
        elif key == "env":
            # Variables add up across files; a later file overrides one name at a time.
            into[key].update(value)
            for name in value:
                origins[f"env.{name}"] = where
        elif key == "read_roots":
            # Folders add up across files, so adding one line to any settings file allows a folder.
            into[key].extend(value)
            origins[dotted] = where
        else:
            into[key] = _copy(value)
            origins[dotted] = where




def read_root_fix(settings: Settings, folder: str) -> str:
    """Exactly what to write into which settings file so that paths inside ``folder`` may be read:
    the file ComfyUI's user folder holds for this pack (``local_config_file``) when there is one,
    else the per-user file. A workflow cannot write either (see docs/security.md)."""
    target = settings.local_config_file or settings.user_config_file or str(user_config_path())
    entry = json.dumps(folder, ensure_ascii=False)
    try:
        data = json.loads(Path(target).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        return f'create the settings file {target} containing: {{"read_roots": [{entry}]}}'
    except (OSError, ValueError):
        data = {}
    existing = data.get("read_roots") if isinstance(data, dict) else None
    if isinstance(existing, list):
        listed = ", ".join(json.dumps(v, ensure_ascii=False) for v in [*existing, folder])
        return f'in the settings file {target}, change the "read_roots" line to: "read_roots": [{listed}],'
    return f'add this line inside the {{ }} of the settings file {target}: "read_roots": [{entry}],'

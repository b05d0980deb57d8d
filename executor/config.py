"""Settings and the musubi-tuner install they point at.

Owns reading ``config.json`` (pack root), the user settings file outside the
pack, and the ``MUSUBI_TUNER_*`` environment overrides, and finding the
musubi-tuner checkout and venv to run. Imports only the standard library and
sibling modules; never ComfyUI.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from .errors import ConfigError, TrainerNotFound

__all__ = [
    "Settings", "load_settings", "user_config_path", "user_data_dir", "MusubiInstall", "resolve_install",
    "candidate_roots", "venv_python", "venv_accelerate", "venv_python_version",
    "SUPPORTED_PYTHON", "MIXED_PRECISIONS", "ENV_VENV", "ENV_ROOT", "ENV_USER_CONFIG",
]

IS_WINDOWS = os.name == "nt"

ENV_VENV = "MUSUBI_TUNER_ENV"
ENV_ROOT = "MUSUBI_TUNER_ROOT"
ENV_USER_CONFIG = "MUSUBI_TUNER_NODES_CONFIG"
APP_DIR = "musubi-tuner-nodes"

# musubi-tuner v0.3.4 pyproject: requires-python = ">=3.10, <3.13".
SUPPORTED_PYTHON = ((3, 10), (3, 12))
MIXED_PRECISIONS = ("no", "fp16", "bf16", "fp8")  # accelerate launch --mixed_precision choices
CHECKOUT_NAMES = ("musubi-tuner", "musubi_tuner")
VENV_NAMES = (".venv", "venv")
VERSION_QUERY_TIMEOUT = 15.0

PACK_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """The merged settings. Empty paths mean "find it" (see ``resolve_install``).

    ``sources`` lists what contributed, lowest precedence first; ``origins``
    maps each dotted key that was set (``musubi_tuner.venv_path``) to the file
    or environment variable that set it last. Timeouts of 0 mean "none".
    ``env`` and ``origins`` are plain dicts (so ``asdict`` and copies work): treat them as read-only.
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
    sources: tuple[str, ...] = ()
    origins: Mapping[str, str] = field(default_factory=dict)
    pack_dir: str = str(PACK_DIR)
    user_config_file: str = ""

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
}

_DEFAULTS: dict[str, Any] = {
    "musubi_tuner": {"venv_path": "", "root_path": ""},
    "default_accelerate_config": {"num_cpu_threads_per_process": 1, "mixed_precision": "bf16"},
    "progress_update_interval": 0.5,
    "command_timeout": 0,
    "stall_timeout": 0,
    "env": {},
    "output_roots": [],
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
        base = Path(appdata) if appdata else _home(env) / "AppData" / "Roaming"
        return base / APP_DIR / "config.json"
    xdg = env.get("XDG_CONFIG_HOME", "").strip()
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else _home(env) / ".config"
    return base / APP_DIR / "config.json"


def user_data_dir(environ: Optional[Mapping[str, str]] = None) -> Path:
    """The per-user data folder: ``%LOCALAPPDATA%\\musubi-tuner-nodes`` on Windows (local, not
    roaming: a venv is gigabytes), else ``$XDG_DATA_HOME`` (or ``~/.local/share``)``/musubi-tuner-nodes``."""
    env = os.environ if environ is None else environ
    if IS_WINDOWS:
        local = env.get("LOCALAPPDATA", "").strip()
        return (Path(local) if local else _home(env) / "AppData" / "Local") / APP_DIR
    xdg = env.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg) if xdg and os.path.isabs(xdg) else _home(env) / ".local" / "share"
    return base / APP_DIR


def _home(env: Mapping[str, str]) -> Path:
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
        sources=tuple(sources),
        origins=origins,
        pack_dir=str(pack),
        user_config_file=str(user_file),
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
        else:
            into[key] = _copy(value)
            origins[dotted] = where


# --- finding the install ------------------------------------------------------------------

@dataclass(frozen=True)
class MusubiInstall:
    """A musubi-tuner checkout and the venv that runs it; ``chosen_by`` says why these."""

    root: str
    venv: str
    python: str
    accelerate: Optional[str]
    python_version: str
    chosen_by: str

    @property
    def src(self) -> str:
        return os.path.join(self.root, "src")

    @property
    def package_dir(self) -> str:
        return os.path.join(self.root, "src", "musubi_tuner")

    @property
    def bin_dir(self) -> str:
        return os.path.dirname(self.python)


def venv_python(venv: os.PathLike[str] | str) -> Optional[str]:
    """The venv's interpreter (``Scripts/python.exe`` or ``bin/python``), or None.

    Also accepts a conda environment (``python.exe`` at its root on Windows).
    """
    venv = os.fspath(venv)
    names = ([os.path.join("Scripts", "python.exe"), "python.exe"] if IS_WINDOWS
             else [os.path.join("bin", "python"), os.path.join("bin", "python3")])
    for name in names:
        path = os.path.join(venv, name)
        if os.path.isfile(path):
            return os.path.abspath(path)
    return None


def venv_accelerate(venv: os.PathLike[str] | str) -> Optional[str]:
    """The venv's ``accelerate`` launcher, or None. (Commands use ``python -m`` instead.)"""
    name = os.path.join("Scripts", "accelerate.exe") if IS_WINDOWS else os.path.join("bin", "accelerate")
    path = os.path.join(os.fspath(venv), name)
    return os.path.abspath(path) if os.path.isfile(path) else None


_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?")


def venv_python_version(venv: os.PathLike[str] | str, python: Optional[str] = None, *,
                        timeout: float = VERSION_QUERY_TIMEOUT) -> str:
    """``"3.11.7"`` from ``pyvenv.cfg`` (``version`` or ``version_info``), else by asking the python once.

    Raises TrainerNotFound when the interpreter cannot be started or does not answer.
    """
    cfg = Path(os.fspath(venv)) / "pyvenv.cfg"
    try:
        lines = cfg.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    values: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip().lower()] = value.strip()
    # venv writes "version", uv and virtualenv write "version_info" (3.10.12.final.0).
    for name in ("version", "version_info"):
        match = _VERSION.match(values.get(name, ""))
        if match:
            return ".".join(g for g in match.groups() if g is not None)

    python = python or venv_python(venv)
    if python is None:
        raise TrainerNotFound(f"no Python interpreter in the venv {venv}")
    argv = [python, "-I", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, text=True, errors="replace")
    except subprocess.TimeoutExpired as exc:
        raise TrainerNotFound(f"the venv's Python {python} did not answer within {timeout:g} s",
                              hint="run it by hand to see what it is waiting for",
                              path=python) from exc
    except OSError as exc:
        raise TrainerNotFound(f"cannot start the venv's Python {python}: {exc}",
                              hint="the venv may be broken or made on another system; recreate it",
                              path=python) from exc
    match = _VERSION.match(done.stdout)
    if done.returncode != 0 or not match:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise TrainerNotFound(f"the venv's Python {python} failed to report its version "
                              f"(exit code {done.returncode}): {' / '.join(tail)}",
                              hint="the venv may be broken; recreate it", path=python)
    return ".".join(g for g in match.groups() if g is not None)


def candidate_roots(settings: Settings, environ: Optional[Mapping[str, str]] = None) -> list[Path]:
    """Folders that may hold a musubi-tuner checkout, most likely first.

    Next to the pack and next to ComfyUI (``custom_nodes``' parent and the one
    above it, which is where the Windows portable build lives), ``~/musubi-tuner``,
    ``~/src/musubi-tuner``, ``C:\\musubi-tuner`` on Windows, and the current folder.
    """
    env = os.environ if environ is None else environ
    pack = Path(settings.pack_dir)
    parents: list[Path] = [pack.parent]
    if pack.parent.name == "custom_nodes":
        comfy = pack.parent.parent
        parents += [comfy, comfy.parent, comfy.parent.parent]
    home = _home(env)
    parents += [home, home / "src"]
    if IS_WINDOWS:
        parents.append(Path("C:\\"))
    cwd = Path.cwd()
    out = [parent / name for parent in parents + [cwd] for name in CHECKOUT_NAMES]
    out.append(cwd)  # last: when ComfyUI starts the pack, the current folder is ComfyUI's
    return _unique(out)


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: set[str] = set()
    out = []
    for p in paths:
        key = os.path.normcase(os.path.abspath(p))
        if key not in seen:
            seen.add(key)
            out.append(Path(os.path.abspath(p)))
    return out


def _is_checkout(path: Path) -> bool:
    return (path / "src" / "musubi_tuner").is_dir()


def _venv_in(root: Path) -> Optional[Path]:
    for name in VENV_NAMES:
        if venv_python(root / name):
            return root / name
    return None


def _where_to_set(settings: Settings, key: str, var: str) -> str:
    user = settings.user_config_file or str(user_config_path())
    return (f"set \"musubi_tuner\": {{\"{key}\": \"...\"}} in {user} "
            f"(or in {Path(settings.pack_dir) / 'config.json'}), or the environment variable {var}")


def resolve_install(settings: Settings, *,
                    search_roots: Optional[Sequence[os.PathLike[str] | str]] = None) -> MusubiInstall:
    """Find and check the checkout and venv, before anything is launched.

    Set paths are checked as given; an unset root is looked for in
    ``search_roots`` (default ``candidate_roots(settings)``; each folder is tried
    as a checkout itself and for a ``musubi-tuner`` subfolder), an unset venv as
    ``.venv`` / ``venv`` inside the checkout. Raises TrainerNotFound (missing) or
    ConfigError (wrong: a file where a folder belongs, Python outside 3.10–3.12).
    """
    root: Optional[Path] = Path(settings.root_path) if settings.root_path else None
    venv: Optional[Path] = Path(settings.venv_path) if settings.venv_path else None
    why: list[str] = []

    if venv is not None:
        _check_venv_path(venv, settings)
        why.append(f"venv from {settings.origin('musubi_tuner.venv_path')}")
    if root is not None:
        _check_root(root, settings)
        why.append(f"checkout from {settings.origin('musubi_tuner.root_path')}")
    else:
        if search_roots is None:
            candidates = candidate_roots(settings)
        else:
            candidates = _unique(p for s in search_roots
                                 for p in [Path(s)] + [Path(s) / n for n in CHECKOUT_NAMES])
        # A venv inside a checkout names its checkout.
        if venv is not None and _is_checkout(venv.parent):
            root = venv.parent
            why.append("checkout = the folder holding the venv")
        else:
            found = [c for c in candidates if _is_checkout(c)]
            if not found:
                looked = "\n".join(f"    {c}" for c in candidates)
                raise TrainerNotFound(
                    "no musubi-tuner checkout found (a folder with src/musubi_tuner/); looked in:\n" + looked,
                    hint="clone https://github.com/kohya-ss/musubi-tuner and "
                         + _where_to_set(settings, "root_path", ENV_ROOT))
            with_venv = [c for c in found if _venv_in(c)] if venv is None else found
            root = (with_venv or found)[0]
            others = [str(c) for c in found if c != root]
            why.append(f"checkout found at {root}"
                       + (f" (also found: {', '.join(others)})" if others else ""))

    if venv is None:
        venv = _venv_in(root)
        if venv is None:
            raise TrainerNotFound(
                f"the musubi-tuner checkout {root} has no venv (looked for "
                f"{', '.join(str(root / n) for n in VENV_NAMES)})",
                hint=f"create one there with Python 3.10-3.12 (cd {root}; python -m venv venv; then install "
                     "torch and `pip install -e .` with that venv's python), or "
                     + _where_to_set(settings, "venv_path", ENV_VENV),
                path=str(root))
        why.append(f"venv found inside the checkout ({venv.name})")

    python = venv_python(venv)
    assert python is not None  # checked above
    version = venv_python_version(venv, python)
    _check_version(version, venv, settings)
    return MusubiInstall(root=str(root), venv=str(venv), python=python,
                         accelerate=venv_accelerate(venv), python_version=version,
                         chosen_by="; ".join(why))


def _check_venv_path(venv: Path, settings: Settings) -> None:
    origin = settings.origin("musubi_tuner.venv_path")
    fix = _where_to_set(settings, "venv_path", ENV_VENV)
    if venv.is_file():
        parent = venv.parent.parent if venv.parent.name.lower() in ("bin", "scripts") else venv.parent
        raise ConfigError(
            f"venv_path {venv} (from {origin}) is a file; it must be the venv folder",
            hint=f"use the folder that contains {'Scripts' if IS_WINDOWS else 'bin'}, probably {parent}: {fix}",
            path=str(venv))
    if not venv.exists():
        raise TrainerNotFound(f"the musubi-tuner venv {venv} (from {origin}) does not exist",
                              hint=f"create it or correct the path: {fix}", path=str(venv))
    if venv_python(venv) is None:
        expected = venv / ("Scripts\\python.exe" if IS_WINDOWS else "bin/python")
        raise TrainerNotFound(
            f"no Python in the venv {venv} (from {origin}): {expected} is missing",
            hint=f"point venv_path at a folder made by `python -m venv` (it holds "
                 f"{'Scripts' if IS_WINDOWS else 'bin'} and pyvenv.cfg): {fix}",
            path=str(venv))


def _check_root(root: Path, settings: Settings) -> None:
    origin = settings.origin("musubi_tuner.root_path")
    fix = _where_to_set(settings, "root_path", ENV_ROOT)
    if root.is_file():
        raise ConfigError(f"root_path {root} (from {origin}) is a file; it must be the "
                          "musubi-tuner checkout folder", hint=fix, path=str(root))
    if not root.is_dir():
        raise TrainerNotFound(f"the musubi-tuner checkout {root} (from {origin}) does not exist",
                              hint=f"clone https://github.com/kohya-ss/musubi-tuner there or {fix}",
                              path=str(root))
    if not _is_checkout(root):
        nested = [c for c in (root / n for n in CHECKOUT_NAMES) if _is_checkout(c)]
        guess = f"; did you mean {nested[0]}?" if nested else ""
        raise TrainerNotFound(
            f"{root} (from {origin}) is not a musubi-tuner checkout: {root / 'src' / 'musubi_tuner'} "
            f"is missing{guess}",
            hint=f"root_path must be the folder that holds src/musubi_tuner (the git clone): {fix}",
            path=str(root))


def _check_version(version: str, venv: Path, settings: Settings) -> None:
    parts = tuple(int(p) for p in version.split(".")[:2])
    low, high = SUPPORTED_PYTHON
    if low <= parts <= high:
        return
    raise ConfigError(
        f"the musubi-tuner venv {venv} uses Python {version}; musubi-tuner supports "
        f"Python {low[0]}.{low[1]} to {high[0]}.{high[1]}",
        hint=f"recreate the venv with Python 3.10, 3.11 or 3.12 (e.g. `py -3.10 -m venv venv` on "
             f"Windows, `python3.10 -m venv venv` elsewhere) and reinstall torch and musubi-tuner into it, "
             f"or {_where_to_set(settings, 'venv_path', ENV_VENV)}",
        path=str(venv))

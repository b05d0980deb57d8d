"""Finding the musubi-tuner install to run: the checkout and its venv (settings, environment,
the usual folders beside ComfyUI and the pack), the venv's interpreter and accelerate, and the
Python version check, each with a ``chosen_by`` that says why. Imports only the standard library
and its room.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

from ..errors import ConfigError, TrainerNotFound
from .settings import ENV_ROOT, ENV_VENV, IS_WINDOWS, SUPPORTED_PYTHON, Settings, home_dir, user_config_path

__all__ = ["MusubiInstall", "resolve_install", "candidate_roots", "venv_python", "venv_accelerate",
           "venv_python_version"]

CHECKOUT_NAMES = ("musubi-tuner", "musubi_tuner")
VENV_NAMES = (".venv", "venv")
VERSION_QUERY_TIMEOUT = 15.0


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
    home = home_dir(env)
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

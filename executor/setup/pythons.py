"""Finding a Python 3.10-3.12 to make musubi-tuner's venv with.

Tried in order: ``--python``, the ``py`` launcher (``py -3.12`` ...), ``python3.12`` ...
``python`` on PATH, then ``uv`` (on PATH or in ComfyUI's own Python folder), which can
also download a Python when none fits. Every candidate is started once and asked for
its version, bitness and ``venv``/``ensurepip``, because names lie: pyenv shims exist
for versions that are not selected, and Windows' ``python.exe`` may be the Store alias.
Standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

from .settings import IS_WINDOWS, SUPPORTED_PYTHON

__all__ = ["FoundPython", "find_python", "inspect_python", "find_uv", "supported", "NoPython"]

MINORS = tuple(range(SUPPORTED_PYTHON[1][1], SUPPORTED_PYTHON[0][1] - 1, -1))  # 12, 11, 10
RANGE_TEXT = f"{SUPPORTED_PYTHON[0][0]}.{SUPPORTED_PYTHON[0][1]}-{SUPPORTED_PYTHON[1][0]}.{SUPPORTED_PYTHON[1][1]}"
ASK_TIMEOUT = 30.0
UV_INSTALL_TIMEOUT = 900.0

# Runs in the candidate with -I (no user site, no PYTHONPATH). Python 2 must parse it too
# (a bare "python" may still be one), hence no f-strings.
_ASK = r"""
import json, os, struct, sys
info = {"version": list(sys.version_info[:3]), "executable": sys.executable,
        "bits": struct.calcsize("P") * 8, "venv": None}
try:
    import venv, ensurepip
    bundled = os.path.join(os.path.dirname(ensurepip.__file__), "_bundled")
    if not [n for n in os.listdir(bundled) if n.startswith("pip-")]:
        info["venv"] = "ensurepip has no pip wheel"
except Exception as exc:
    info["venv"] = "%s: %s" % (type(exc).__name__, exc)
sys.stdout.write(json.dumps(info) + "\n")
"""


class NoPython(Exception):
    """No usable interpreter; ``tried`` lists each candidate and why it was not used."""

    def __init__(self, message: str, tried: Sequence[str]) -> None:
        super().__init__(message)
        self.tried = list(tried)


@dataclass(frozen=True)
class FoundPython:
    executable: str
    version: tuple[int, int, int]
    source: str  # how it was found: "--python", "py launcher", "PATH (python3.12)", "uv"

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def supported(version: Sequence[int]) -> bool:
    low, high = SUPPORTED_PYTHON
    return low <= tuple(version[:2]) <= high


def inspect_python(argv: Sequence[str], source: str, *, environ: Optional[Mapping[str, str]] = None,
                   timeout: float = ASK_TIMEOUT) -> tuple[Optional[FoundPython], str]:
    """Start ``argv`` once; (the interpreter if it fits, else None, and why not)."""
    env = _clean_env(environ)
    try:
        done = subprocess.run([*argv, "-I", "-c", _ASK], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, env=env, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return None, f"did not answer within {timeout:g} s"
    except OSError as exc:
        return None, f"cannot be started ({exc.strerror or exc})"
    line = next((ln for ln in done.stdout.decode("utf-8", "replace").splitlines() if ln.startswith("{")), "")
    try:
        info = json.loads(line)
    except ValueError:
        said = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()
        return None, f"does not run (exit code {done.returncode}{': ' + said[0] if said else ''})"
    version = tuple(int(v) for v in info["version"])
    label = f"Python {'.'.join(map(str, version))}"
    if not supported(version):
        return None, f"{label}, outside {RANGE_TEXT}"
    if info.get("bits") != 64:
        return None, f"{label} is {info.get('bits')}-bit; torch needs a 64-bit Python"
    if info.get("venv"):
        hint = (f" (on Debian/Ubuntu: sudo apt install python{version[0]}.{version[1]}-venv)"
                if not IS_WINDOWS else "")
        return None, f"{label} cannot make venvs: {info['venv']}{hint}"
    return FoundPython(info["executable"], version, source), label  # type: ignore[arg-type]


def _clean_env(environ: Optional[Mapping[str, str]]) -> dict[str, str]:
    env = dict(os.environ if environ is None else environ)
    for name in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(name, None)
    return env


def find_uv(environ: Optional[Mapping[str, str]] = None, comfy_python: Optional[str] = None) -> Optional[str]:
    """``uv`` on PATH, else next to ComfyUI's Python (its venv's bin/Scripts folder, or
    ``python_embeded\\Scripts`` after ``python -m pip install uv`` in the portable build)."""
    env = os.environ if environ is None else environ
    found = shutil.which("uv", path=env.get("PATH"))
    if found:
        return found
    python = comfy_python or sys.executable
    if not python:
        return None
    home = os.path.dirname(os.path.abspath(python))
    name = "uv.exe" if IS_WINDOWS else "uv"
    for folder in (home, os.path.join(home, "Scripts"), os.path.join(home, "bin")):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def find_python(explicit: Optional[str] = None, *, environ: Optional[Mapping[str, str]] = None,
                comfy_python: Optional[str] = None, allow_download: bool = True,
                on_status: Callable[[str], None] = lambda text: None,
                log: Callable[[str], None] = lambda text: None) -> FoundPython:
    """The first fitting interpreter; raises NoPython saying what was tried and what to do."""
    env = dict(os.environ if environ is None else environ)
    tried: list[str] = []

    def attempt(argv: Sequence[str], source: str, shown: str) -> Optional[FoundPython]:
        on_status(f"trying {shown}")
        found, why = inspect_python(argv, source, environ=env)
        log(f"{shown}: {why}")
        if found is None:
            tried.append(f"{shown}: {why}")
        return found

    if explicit:
        found = attempt([explicit], "--python", explicit)
        if found:
            return found
        raise NoPython(f"--python {explicit} cannot be used: {tried[-1].split(': ', 1)[1]}", tried)

    seen: set[str] = set()
    py = shutil.which("py", path=env.get("PATH"))
    if py:
        for minor in MINORS:
            found = attempt([py, f"-3.{minor}"], "py launcher", f"py -3.{minor}")
            if found:
                return found
    names = [f"python3.{m}" for m in MINORS] + ["python3", "python"]
    for name in names:
        path = shutil.which(name, path=env.get("PATH"))
        if not path or os.path.normcase(os.path.realpath(path)) in seen:
            continue
        seen.add(os.path.normcase(os.path.realpath(path)))
        found = attempt([path], f"PATH ({name})", f"{name} ({path})")
        if found:
            return found

    uv = find_uv(env, comfy_python)
    if uv:
        found = _from_uv(uv, env, allow_download, attempt, on_status, log, tried)
        if found:
            return found
    else:
        tried.append("uv: not found (on PATH or next to ComfyUI's Python)")
    raise NoPython(f"no Python {RANGE_TEXT} found", tried)


def _from_uv(uv: str, env: dict[str, str], allow_download: bool, attempt, on_status, log,
             tried: list[str]) -> Optional[FoundPython]:
    request = f">={SUPPORTED_PYTHON[0][0]}.{SUPPORTED_PYTHON[0][1]},<{SUPPORTED_PYTHON[1][0]}.{SUPPORTED_PYTHON[1][1] + 1}"
    # Run outside any project folder: uv prefers a .venv it finds in the current folder.
    run = dict(stdin=subprocess.DEVNULL, capture_output=True, env=_clean_env(env),
               cwd=tempfile.gettempdir())
    try:
        done = subprocess.run([uv, "python", "find", request], timeout=ASK_TIMEOUT, **run)
    except (OSError, subprocess.TimeoutExpired) as exc:
        tried.append(f"uv ({uv}): cannot be started ({exc})")
        return None
    path = done.stdout.decode("utf-8", "replace").strip().splitlines()
    if done.returncode == 0 and path:
        found = attempt([path[-1]], "uv", f"uv python find -> {path[-1]}")
        if found:
            return found
    else:
        log(f"uv python find: exit code {done.returncode}: {done.stderr.decode('utf-8', 'replace').strip()}")
    if not allow_download:
        tried.append(f"uv ({uv}): no Python {RANGE_TEXT} installed")
        return None
    on_status(f"uv is downloading Python 3.{MINORS[0]}")
    try:
        done = subprocess.run([uv, "python", "install", f"3.{MINORS[0]}"], timeout=UV_INSTALL_TIMEOUT, **run)
    except (OSError, subprocess.TimeoutExpired) as exc:
        tried.append(f"uv python install 3.{MINORS[0]}: {exc}")
        return None
    said = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
    log(f"uv python install 3.{MINORS[0]} (exit code {done.returncode}):\n{said}")
    if done.returncode != 0:
        last = said.splitlines()[-1] if said else f"exit code {done.returncode}"
        tried.append(f"uv python install 3.{MINORS[0]}: failed ({last})")
        return None
    done = subprocess.run([uv, "python", "find", f"3.{MINORS[0]}"], timeout=ASK_TIMEOUT, **run)
    path = done.stdout.decode("utf-8", "replace").strip().splitlines()
    return attempt([path[-1]], "uv (downloaded)", f"uv-installed {path[-1]}") if path else None


def no_python_hint(comfy_python: Optional[str] = None) -> str:
    """What to do when nothing fits, for this OS."""
    comfy = comfy_python or sys.executable
    uv_line = (f"or let uv fetch one: install uv (into ComfyUI's Python: \"{comfy}\" -m pip install uv) "
               "and run this command again")
    if IS_WINDOWS:
        return ("install Python 3.12 from https://www.python.org/downloads/windows/ (it comes with the "
                "py launcher) or run `winget install Python.Python.3.12`, open a new terminal and run "
                f"this command again; {uv_line}; or pass --python C:\\path\\to\\python.exe")
    return ("install Python 3.12 with its venv module (Debian/Ubuntu: sudo apt install python3.12 "
            "python3.12-venv; Fedora: sudo dnf install python3.12) and run this command again; "
            f"{uv_line}; or pass --python /path/to/python3.12")

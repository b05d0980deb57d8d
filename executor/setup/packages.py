"""What goes into musubi-tuner's venv: torch + torchvision, then musubi-tuner itself (editable)
with its dependencies. Each step looks at the venv's package metadata first and installs
only what is missing or wrong. Standard library only (tomllib/tomli for pyproject.toml).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote, urlparse

from .runner import InstallError
from .steps import TORCH_REQUIREMENTS, PipWatcher, Session, pip, venv_state
from .torch_index import index_url, variant_of_version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["TorchSource", "ensure_torch", "ensure_musubi", "pick_wheels"]


class TorchSource:
    """Where torch comes from: a build of the PyTorch index (``variant``), another index
    (``index``), or wheel files in a folder (``wheels``: offline installs, and the tests'
    stand-in for a multi-GB download)."""

    def __init__(self, variant: Optional[str], *, explicit: bool, index: Optional[str] = None,
                 wheels: Optional[Path] = None, reason: str = "") -> None:
        self.variant = variant
        self.explicit = explicit
        self.default_index = index is None and wheels is None
        self.index = index or (index_url(variant) if variant else None)
        self.wheels = wheels
        self.reason = reason

    def describe(self) -> str:
        if self.wheels is not None:
            return f"the wheel files in {self.wheels}"
        return f"{self.variant or 'torch'} build from {self.index}"


def pick_wheels(folder: Path, python: tuple[int, ...]) -> list[Path]:
    """The torch and torchvision wheels in ``folder`` that fit ``python`` (the venv's
    version) on this system; the newest of each when several fit."""
    tag = f"cp{python[0]}{python[1]}"
    system = ("win" if os.name == "nt" else "macosx" if sys.platform == "darwin" else "linux")
    chosen: list[Path] = []
    for name in ("torch", "torchvision"):
        fitting = []
        for wheel in sorted(folder.glob(f"{name}-*.whl")):
            parts = wheel.name[:-4].split("-")
            if len(parts) < 5 or parts[0] != name:
                continue
            python_tag, platform = parts[-3], parts[-1]
            fits_python = tag in python_tag.split(".") or python_tag.startswith("py3")
            fits_system = platform == "any" or system in platform or (system == "linux" and "manylinux" in platform)
            if fits_python and fits_system:
                fitting.append(wheel)
        if not fitting:
            raise InstallError(f"no {name} wheel for Python {python[0]}.{python[1]} "
                               f"on this system in {folder}",
                               hint=f"put the {name} wheel for this Python ({tag}) there, or drop --torch-wheels")
        chosen.append(fitting[-1])
    return chosen


_TORCH_CHECK = r"""
import json, torch, torchvision
print(json.dumps({"torch": torch.__version__, "cuda": getattr(torch.version, "cuda", None),
                  "torchvision": torchvision.__version__}))
"""


def ensure_torch(s: Session, python: str, source: TorchSource) -> dict[str, Any]:
    """Install torch + torchvision unless a fitting pair is there; returns the venv state."""
    state = venv_state(s, python)
    have, have_vision = state.get("torch"), state.get("torchvision")
    if have and have_vision:
        label = variant_of_version(have)
        wrong = source.explicit and source.default_index and label is not None and label != source.variant
        if not wrong:
            s.ui.done(f"torch {have} and torchvision {have_vision} are already installed")
            if source.variant and label and label != source.variant and not source.explicit:
                s.ui.note(f"this machine would get the {source.variant} build; to switch, run again "
                          f"with --torch {source.variant}")
            return state
        s.ui.status(f"replacing torch {have} with the {source.variant} build", important=True)
    watcher = PipWatcher(s)
    if source.wheels is not None:
        version = tuple(int(p) for p in str(state.get("python", "")).split(".")[:2] if p.isdigit())
        args = ["install", *[str(w) for w in pick_wheels(source.wheels, version or sys.version_info[:2])]]
    else:
        args = ["install", *TORCH_REQUIREMENTS, "--index-url", source.index]
    if have:
        args += ["--upgrade", "--force-reinstall"]
    s.ui.status(f"installing torch + torchvision: {source.describe()}", important=True)
    result = pip(s, python, args, watcher=watcher)
    if not result.ok:
        raise s.failed(f"installing torch from {source.describe()} failed", result,
                       hint="see the output above; the full pip output is in the log")
    checked = subprocess.run([python, "-c", _TORCH_CHECK], stdin=subprocess.DEVNULL, capture_output=True,
                             env=s.child_env(), timeout=600)
    s.log.write("torch import check:\n" + (checked.stdout + checked.stderr).decode("utf-8", "replace"))
    if checked.returncode != 0:
        tail = checked.stderr.decode("utf-8", "replace").strip().splitlines()[-8:]
        hint = ("install the Microsoft Visual C++ Redistributable (https://aka.ms/vs/17/release/vc_redist.x64.exe) "
                "and run this again" if os.name == "nt" and "DLL" in "\n".join(tail) else
                "see the error above; run this again after fixing it")
        raise InstallError("torch was installed but does not import", hint=hint, log_path=str(s.log.path),
                           tail=tail)
    info = json.loads(checked.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
    if source.default_index and source.variant not in (None, "cpu") and not info.get("cuda"):
        raise InstallError(
            f"pip installed a CPU-only torch ({info['torch']}) instead of the {source.variant} build",
            hint="your pip configuration adds another package index that won (see `pip config list`); "
                 "remove its extra-index-url, then run this again with --torch " + source.variant,
            log_path=str(s.log.path))
    downloaded = f"; {watcher.summary()}" if watcher.downloads else ""
    s.ui.done(f"torch {info['torch']} (CUDA {info.get('cuda') or 'none'}), torchvision {info['torchvision']}"
              + downloaded)
    s.done.append(f"installed torch {info['torch']}")
    return venv_state(s, python)


# --- musubi-tuner and its dependencies -------------------------------------------------------

def _project(root: Path) -> dict[str, Any]:
    try:
        with open(root / "pyproject.toml", "rb") as f:
            return tomllib.load(f).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _norm(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower().replace("_", "-")


def _editable_at(info: dict[str, Any], root: Path) -> bool:
    try:
        direct = json.loads(info.get("direct_url") or "{}")
    except ValueError:
        return False
    url = urlparse(direct.get("url", ""))
    if url.scheme != "file" or not direct.get("dir_info", {}).get("editable"):
        return False
    path = unquote(url.path)
    if os.name == "nt" and re.match(r"^/[A-Za-z]:", path):
        path = path[1:]
    return os.path.normcase(os.path.abspath(path)) == os.path.normcase(os.path.abspath(root))


def _up_to_date(s: Session, python: str, state: dict[str, Any]) -> bool:
    """musubi-tuner is installed editable from this checkout, with this checkout's version and
    dependency list, and pip finds every requirement in the venv satisfied."""
    info = state.get("musubi")
    project = _project(s.root)
    if not info or not _editable_at(info, s.root) or info.get("version") != project.get("version"):
        return False
    installed = {_norm(r) for r in info.get("requires", []) if "extra==" not in _norm(r)}
    if installed != {_norm(r) for r in project.get("dependencies", [])}:
        return False
    checked = pip(s, python, ["check"], progress=False)
    return checked.ok


def ensure_musubi(s: Session, python: str, state: dict[str, Any], moved: bool) -> None:
    """``pip install -e <checkout>`` unless it is installed and complete; torch stays pinned."""
    if not moved and _up_to_date(s, python, state):
        s.ui.done(f"musubi-tuner {state['musubi']['version']} is installed (editable) with its dependencies")
        return
    pins = [f"{name}=={state[name]}" for name in ("torch", "torchvision") if state.get(name)]
    constraints = s.log.path.with_name(s.log.path.stem + "-constraints.txt")
    constraints.write_text("".join(p + "\n" for p in pins), encoding="utf-8")
    s.log.write(f"constraints ({constraints}): {', '.join(pins) or 'none'}")
    result = pip(s, python, ["install", "-e", str(s.root), "-c", str(constraints)])
    if not result.ok:
        pinned = any(f"torch=={state.get('torch')}" in line or "conflicting dependencies" in line
                     for line in result.tail)
        raise s.failed("installing musubi-tuner and its dependencies failed", result,
                       hint=("a dependency wants another torch than the installed " + str(state.get("torch"))
                             + "; see the log" if pinned else "see the output above; the full pip output is in the log"))
    after = venv_state(s, python)
    if not after.get("musubi") or not _editable_at(after["musubi"], s.root):
        raise InstallError("pip finished but musubi-tuner is not installed from the checkout",
                           hint="see the log", log_path=str(s.log.path))
    count = next((len(line.split()) - 2 for line in result.tail if line.startswith("Successfully installed")), 0)
    s.ui.done(f"musubi-tuner {after['musubi']['version']} installed (editable); pip added or updated "
              f"{count} package{'s' if count != 1 else ''}")
    s.done.append("installed musubi-tuner's dependencies")

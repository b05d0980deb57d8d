"""What the installer tests install: a local git repository holding a tiny musubi-like
project, torch/torchvision wheels that stand in for the multi-GB download, and an
environment that keeps every file the installer writes under the test's folder.

The project is shaped like musubi-tuner v0.3.4 (hatchling, ``src/musubi_tuner``,
``requires-python >=3.10,<3.13``) with one real, small dependency from PyPI (easydict,
which musubi-tuner also pins). Its heavy dependencies (accelerate, diffusers, ...) are
stand-in packages inside ``src/``, found by the probe through ``PYTHONPATH=src`` exactly
like musubi_tuner itself.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Mapping, Optional

from executor.setup.probe import REQUIRED_MODULES

PROJECT_ROOT = Path(__file__).resolve().parent.parent

PYPROJECT = """\
[project]
name = "musubi-tuner"
version = "{version}"
description = "a tiny stand-in for musubi-tuner, made by the tests"
requires-python = ">=3.10, <3.13"
dependencies = [
    "easydict==1.13",
]

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["src/musubi_tuner"]
"""

FAKE_TORCH = '''\
__version__ = "2.5.1+cpu"
class version:
    cuda = None
class cuda:
    @staticmethod
    def is_available():
        return False
    @staticmethod
    def device_count():
        return 0
'''


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def make_musubi_repo(path: Path) -> Path:
    """A git repository with tags v0.3.4 and v0.3.5 (version bump, one more script)."""
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    package = path / "src" / "musubi_tuner"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "wan_train_network.py").write_text("print('wan training stand-in')\n")
    for module in REQUIRED_MODULES:
        if module in ("easydict", "torchvision"):
            continue  # easydict is the real PyPI dependency, torchvision comes with torch
        stub = path / "src" / module
        stub.mkdir()
        (stub / "__init__.py").write_text('__version__ = "1.6.0"\n' if module == "accelerate" else "")
    (path / "pyproject.toml").write_text(PYPROJECT.format(version="0.3.4"))
    (path / "README.md").write_text("stand-in\n")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "v0.3.4 stand-in", cwd=path)
    git("tag", "v0.3.4", cwd=path)
    (path / "pyproject.toml").write_text(PYPROJECT.format(version="0.3.5"))
    (package / "qwen_image_train_network.py").write_text("print('qwen training stand-in')\n")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "v0.3.5 stand-in", cwd=path)
    git("tag", "v0.3.5", cwd=path)
    return path


def _wheel(folder: Path, name: str, version: str, files: Mapping[str, str], requires: tuple[str, ...] = ()) -> Path:
    dist_info = f"{name}-{version}.dist-info"
    contents = dict(files)
    contents[f"{dist_info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                         + "".join(f"Requires-Dist: {r}\n" for r in requires))
    contents[f"{dist_info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for member, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{member},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in contents.items():
            zf.writestr(member, text)
    return path


def make_torch_wheels(folder: Path) -> Path:
    """torch 2.5.1+cpu and torchvision 0.20.1+cpu stand-ins: importable, no CUDA."""
    folder.mkdir(parents=True, exist_ok=True)
    _wheel(folder, "torch", "2.5.1+cpu", {"torch/__init__.py": FAKE_TORCH})
    _wheel(folder, "torchvision", "0.20.1+cpu", {"torchvision/__init__.py": '__version__ = "0.20.1+cpu"\n'},
           requires=("torch==2.5.1",))
    return folder


def tool_dir(folder: Path, *, python: bool = True, git_tool: bool = True) -> Path:
    """A PATH folder holding only what the test allows the installer to find."""
    folder.mkdir(parents=True, exist_ok=True)
    if git_tool and not (folder / "git").exists():
        os.symlink(shutil.which("git"), folder / "git")
    if python and not (folder / "python3.12").exists():
        # The name says 3.12, the interpreter is the test's own: the finder must ask, not trust names.
        os.symlink(sys.executable, folder / "python3.12")
    return folder


def install_env(base: Path, repo: Optional[Path], *, path: Optional[Path] = None) -> dict[str, str]:
    """The installer's environment: its settings file, data folder and PATH under ``base``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MUSUBI_TUNER", "PYTHON", "VIRTUAL_ENV", "XDG_"))}
    home = base / "home"
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local" / "share"),
               XDG_CACHE_HOME=str(home / ".cache"),
               # Keep pip's download cache where it was: the tests need not fetch hatchling each time.
               PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR") or os.path.expanduser("~/.cache/pip"),
               MUSUBI_TUNER_NODES_CONFIG=str(base / "settings" / "config.json"),
               PATH=str(path if path is not None else tool_dir(base / "bin")))
    if repo is not None:
        env["MUSUBI_TUNER_GIT"] = repo.as_uri()
    return env


def run_install(env: Mapping[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m executor install ARGS`` from the pack folder, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "executor", "install", *args], cwd=PROJECT_ROOT, env=dict(env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def log_of(output: str) -> Path:
    line = next(line for line in output.splitlines() if line.startswith("full log: "))
    return Path(line[len("full log: "):].strip())

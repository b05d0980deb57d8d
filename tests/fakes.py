"""A fake musubi-tuner in a REAL separate venv, for tests that run children.

``build_fake_musubi(base)`` makes ``base/venv`` (``python -m venv --without-pip``)
and a fake checkout ``base/musubi-tuner/src/musubi_tuner/<script>.py`` for every
script name, each a wrapper around ``_fake.py`` (tests/fixtures/fake_musubi),
which prints what the real v0.3.4 prints and writes real cache / LoRA files (its
modules by subject, copied beside it: ``_fake_io``, ``_fake_data``, ``_fake_train``,
``_fake_state``). The
venv also gets a fake ``accelerate`` (``python -m accelerate.commands.launch``)
and a tiny ``torch`` stub. Misbehaviour is chosen per run with FAKE_MUSUBI_SCENARIO
(names in ``SCENARIOS``). Use the session fixture ``fake_musubi`` (tests get it
via ``pytest_plugins = ["fakes"]`` or by importing it).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "fake_musubi"
IS_WINDOWS = sys.platform == "win32"


def _fake_module():
    """The fake's implementation module, imported from the fixture folder (it is
    stdlib only) so tests can read SCENARIOS and SCRIPTS."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_fake_musubi_impl", FIXTURES / "_fake.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_IMPL = _fake_module()
SCENARIOS: dict[str, str] = dict(_IMPL.SCENARIOS)
SCRIPTS: tuple[str, ...] = tuple(_IMPL.SCRIPTS)
CONVERTERS: tuple[str, ...] = tuple(_IMPL.CONVERTERS)

WRAPPER = '''from musubi_tuner._fake import main

if __name__ == "__main__":
    main("{script}")
'''

TORCH_STUB = '''"""Fake torch for the fake musubi venv: importable, reports no CUDA."""
__version__ = "2.14.1+fake"
from . import cuda, version  # noqa: E402,F401
'''

# No CUDA, unless FAKE_TORCH_CUDA_DEVICES=N (in the settings' env) makes the probe see N fake GPUs.
TORCH_CUDA_STUB = '''import os

_COUNT = int(os.environ.get("FAKE_TORCH_CUDA_DEVICES", "0") or 0)


def is_available():
    return _COUNT > 0


def device_count():
    return _COUNT


def get_device_name(index=0):
    return "Fake GPU %d" % index
'''


@dataclass(frozen=True)
class FakeMusubi:
    """Paths of one fake install: ``root`` is the checkout (``root/src/musubi_tuner``),
    ``venv`` its virtual environment, ``python`` that venv's interpreter."""

    root: Path
    venv: Path
    python: Path
    site_packages: Path

    @property
    def src(self) -> Path:
        return self.root / "src"

    def script(self, name: str) -> Path:
        return self.root / "src" / "musubi_tuner" / f"{name}.py"

    def argv(self, script: str, *args: str, accelerate: bool = False,
             accelerate_options: Iterable[str] = ("--num_cpu_threads_per_process", "1")) -> list[str]:
        """``python <script> args`` or ``python -m accelerate.commands.launch [opts] <script> args``."""
        if accelerate:
            return [str(self.python), "-m", "accelerate.commands.launch", *accelerate_options,
                    str(self.script(script)), *args]
        return [str(self.python), str(self.script(script)), *args]

    def env(self, scenario: Optional[str] = None, *, unbuffered: bool = True, **extra: str) -> dict[str, str]:
        """The child environment the pack would give musubi, plus fake knobs
        (``FAKE_MUSUBI_*`` keyword arguments, e.g. ``FAKE_MUSUBI_STEP_SECONDS="0.5"``)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PYTHONUNBUFFERED")
               and not k.startswith("FAKE_MUSUBI_")}
        env["PYTHONPATH"] = str(self.src)
        env["PYTHONIOENCODING"] = "utf-8"
        env["PYTHONUTF8"] = "1"
        if unbuffered:
            env["PYTHONUNBUFFERED"] = "1"
        if scenario:
            env["FAKE_MUSUBI_SCENARIO"] = scenario
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def make_dataset(self, folder: Path, *, images: int = 3, size: tuple[int, int] = (64, 64),
                     captions: bool = True, caption_extension: str = ".txt", batch_size: int = 1,
                     num_repeats: int = 1) -> Path:
        """``folder/images`` with PNGs (+ captions), ``folder/cache`` and the dataset
        TOML the way musubi reads it; returns the TOML path."""
        image_dir, cache_dir = folder / "images", folder / "cache"
        image_dir.mkdir(parents=True, exist_ok=True)
        cache_dir.mkdir(parents=True, exist_ok=True)
        for i in range(1, images + 1):
            (image_dir / f"img{i}.png").write_bytes(png_bytes(*size))
            if captions:
                (image_dir / f"img{i}{caption_extension}").write_text(f"a photo number {i}", encoding="utf-8")
        toml = folder / "dataset.toml"
        toml.write_text(
            "[general]\n"
            f"resolution = [{size[0]}, {size[1]}]\n"
            f'caption_extension = "{caption_extension}"\n'
            f"batch_size = {batch_size}\n"
            "enable_bucket = false\n\n"
            "[[datasets]]\n"
            f"image_directory = {_toml_str(image_dir)}\n"
            f"cache_directory = {_toml_str(cache_dir)}\n"
            f"num_repeats = {num_repeats}\n", encoding="utf-8")
        return toml

    def make_model(self, path: Path) -> Path:
        """A placeholder weights file (the fake only checks that it exists)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
        return path


def _toml_str(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    """A tiny valid RGB PNG."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    rows = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def build_fake_musubi(base: Path, python: str = sys.executable) -> FakeMusubi:
    """Create (or reuse, if complete) the fake install under ``base``."""
    base = Path(base)
    venv = base / "venv"
    root = base / "musubi-tuner"
    py = venv / ("Scripts/python.exe" if IS_WINDOWS else "bin/python")
    marker = base / ".complete"
    if not marker.exists():
        if venv.exists():
            shutil.rmtree(venv)
        subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONHOME"})
    site = Path(subprocess.run([str(py), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    fake = FakeMusubi(root=root, venv=venv, python=py, site_packages=site)
    if marker.exists():
        return fake

    package = root / "src" / "musubi_tuner"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    for part in sorted(FIXTURES.glob("_fake*.py")):  # _fake.py and its modules by subject
        shutil.copyfile(part, package / part.name)
    for script in SCRIPTS:
        (package / f"{script}.py").write_text(WRAPPER.format(script=script), encoding="utf-8")
        (root / f"{script}.py").write_text(WRAPPER.format(script=script), encoding="utf-8")
    (package / "networks").mkdir(exist_ok=True)
    (package / "networks" / "__init__.py").write_text("", encoding="utf-8")
    for script in CONVERTERS:  # src/musubi_tuner/networks/convert_*.py (no root wrapper, as in the real checkout)
        (package / f"{script}.py").write_text(WRAPPER.format(script=script), encoding="utf-8")
    (root / "pyproject.toml").write_text('[project]\nname = "musubi-tuner"\nversion = "0.3.4"\n'
                                         'requires-python = ">=3.10, <3.13"\n', encoding="utf-8")

    accelerate = site / "accelerate"
    (accelerate / "commands").mkdir(parents=True, exist_ok=True)
    (accelerate / "__init__.py").write_text('__version__ = "1.6.0"\n', encoding="utf-8")
    (accelerate / "commands" / "__init__.py").write_text("", encoding="utf-8")
    shutil.copyfile(FIXTURES / "accelerate_launch.py", accelerate / "commands" / "launch.py")
    (accelerate / "commands" / "accelerate_cli.py").write_text(
        "import sys\n\nfrom accelerate.commands import launch\n\n\n"
        "def main():\n"
        "    if len(sys.argv) < 2 or sys.argv[1] != 'launch':\n"
        "        sys.stderr.write('usage: accelerate <command> [<args>]\\n')\n"
        "        sys.exit(2)\n"
        "    launch.main(sys.argv[2:])\n", encoding="utf-8")
    if not IS_WINDOWS:
        launcher = venv / "bin" / "accelerate"
        launcher.write_text(f"#!{py}\nimport sys\nfrom accelerate.commands.accelerate_cli import main\n"
                            "sys.exit(main())\n", encoding="utf-8")
        launcher.chmod(0o755)

    torch = site / "torch"
    (torch / "cuda").mkdir(parents=True, exist_ok=True)
    (torch / "__init__.py").write_text(TORCH_STUB, encoding="utf-8")
    (torch / "version.py").write_text('cuda = None\n__version__ = "2.14.1+fake"\n', encoding="utf-8")
    (torch / "cuda" / "__init__.py").write_text(TORCH_CUDA_STUB, encoding="utf-8")

    if sys.version_info < (3, 11):  # the fake reads TOML with tomllib, or tomli before 3.11
        import tomli  # a runtime dependency of the pack on 3.10

        shutil.copytree(Path(tomli.__file__).parent, site / "tomli", dirs_exist_ok=True)
    marker.write_text("ok\n", encoding="utf-8")
    return fake


@pytest.fixture(scope="session")
def fake_musubi(tmp_path_factory: pytest.TempPathFactory) -> FakeMusubi:
    """One fake musubi install (real venv) per test session."""
    return build_fake_musubi(tmp_path_factory.mktemp("fake-musubi"))

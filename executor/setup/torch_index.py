"""Which torch build to install: read the NVIDIA driver's CUDA version from ``nvidia-smi``.

The header of plain ``nvidia-smi`` says ``CUDA Version: 12.4``: the newest CUDA the
driver can run, not an installed toolkit. torch's CUDA wheels carry their own CUDA
runtime, so the right build is the newest one not above that number. Standard
library only; ``query_nvidia_smi`` is the only function that starts a process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

__all__ = ["VARIANTS", "AUTO_CEILING", "DEFAULT_INDEX_BASE", "GpuInfo", "TorchChoice",
           "parse_nvidia_smi", "cuda_from_driver", "choose_variant", "query_nvidia_smi",
           "index_url", "variant_of_version"]

# torch build name -> the CUDA version it needs from the driver (None: CPU).
VARIANTS: dict[str, Optional[tuple[int, int]]] = {
    "cu118": (11, 8), "cu121": (12, 1), "cu124": (12, 4), "cu126": (12, 6),
    "cu128": (12, 8), "cu130": (13, 0), "cpu": None,
}
# "auto" stops at cu128: CUDA 13 builds dropped GPUs older than Turing (GTX 10xx and
# earlier still run on 580 drivers, ComfyUI #9929 shows cu129 already failing there),
# and musubi-tuner v0.3.4's README installs cu124. cu130 stays available by name.
AUTO_CEILING = "cu128"
DEFAULT_INDEX_BASE = "https://download.pytorch.org/whl/"

# Driver release -> newest CUDA it supports (NVIDIA's CUDA toolkit release notes, table 3).
# Used only when the header says "N/A" or "ERR!". Windows drivers of the same CUDA
# generation carry equal or higher numbers (551.61 = 12.4, 572.16 = 12.8), so the
# Linux thresholds never overstate a Windows driver.
_DRIVER_CUDA = ((580, (13, 0)), (575, (12, 9)), (570, (12, 8)), (560, (12, 6)), (555, (12, 5)),
                (550, (12, 4)), (545, (12, 3)), (535, (12, 2)), (530, (12, 1)), (525, (12, 0)),
                (520, (11, 8)), (515, (11, 7)), (510, (11, 6)), (495, (11, 5)), (470, (11, 4)),
                (465, (11, 3)), (460, (11, 2)), (455, (11, 1)), (450, (11, 0)))

_DRIVER = re.compile(r"Driver Version:\s*([0-9]+(?:\.[0-9]+)*)")
_CUDA = re.compile(r"CUDA Version:\s*([0-9]+)\.([0-9]+)")
_GPU_ROW = re.compile(r"^\|\s+(\d+)\s+(.+?)\s+(?:On|Off|WDDM|TCC)\s+\|")


@dataclass(frozen=True)
class GpuInfo:
    """What ``nvidia-smi`` said. ``found`` is False when there is no ``nvidia-smi`` at all;
    ``error`` holds its complaint when it ran but reported no driver or no device."""

    found: bool
    driver: Optional[str] = None
    cuda: Optional[tuple[int, int]] = None
    cuda_from_table: bool = False
    gpus: tuple[str, ...] = ()
    error: Optional[str] = None
    no_devices: bool = False

    def describe(self) -> str:
        if not self.found:
            return "no NVIDIA driver found (nvidia-smi is not installed)"
        if self.error:
            return f"nvidia-smi failed: {self.error}"
        names = ", ".join(self.gpus) or "NVIDIA GPU"
        cuda = f"{self.cuda[0]}.{self.cuda[1]}" if self.cuda else "unknown"
        source = " (from the driver version)" if self.cuda_from_table else ""
        return f"{names}, driver {self.driver or '?'}, CUDA {cuda}{source}"


@dataclass(frozen=True)
class TorchChoice:
    """The build to install and why; ``error`` set means: do not guess, ask the user."""

    variant: Optional[str]
    reason: str
    warnings: tuple[str, ...] = field(default_factory=tuple)
    error: Optional[str] = None


def cuda_from_driver(driver: str) -> Optional[tuple[int, int]]:
    """The newest CUDA a driver release supports, from its major number, or None when older
    than CUDA 11 or unreadable."""
    match = re.match(r"\s*(\d+)", driver or "")
    if not match:
        return None
    major = int(match.group(1))
    for floor, cuda in _DRIVER_CUDA:
        if major >= floor:
            return cuda
    return None


def parse_nvidia_smi(output: str, returncode: int = 0) -> GpuInfo:
    """Read plain ``nvidia-smi`` output (header and GPU rows; the rest is ignored)."""
    text = output.replace("\r\n", "\n")
    driver_match = _DRIVER.search(text)
    if driver_match is None:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        message = lines[0] if lines else f"no output (exit code {returncode})"
        no_devices = "no devices were found" in text.lower()
        return GpuInfo(found=True, error=message, no_devices=no_devices)
    driver = driver_match.group(1)
    cuda_match = _CUDA.search(text)
    from_table = cuda_match is None  # "N/A" (no CUDA-capable driver part) or "ERR!"
    cuda = ((int(cuda_match.group(1)), int(cuda_match.group(2))) if cuda_match
            else cuda_from_driver(driver))
    gpus = tuple(m.group(2).strip() for m in map(_GPU_ROW.match, text.splitlines()) if m)
    return GpuInfo(found=True, driver=driver, cuda=cuda, cuda_from_table=from_table, gpus=gpus)


def choose_variant(info: GpuInfo) -> TorchChoice:
    """``--torch auto``: the newest build the driver can run, up to ``AUTO_CEILING``."""
    if not info.found:
        return TorchChoice("cpu", "no NVIDIA GPU driver found (no nvidia-smi): CPU build",
                           warnings=("training on the CPU is far too slow for real use; with an "
                                     "NVIDIA GPU, install its driver and run this again with "
                                     "--torch cu128 (or the build your driver supports)",))
    if info.no_devices:
        return TorchChoice("cpu", "nvidia-smi found no NVIDIA GPU: CPU build",
                           warnings=("training on the CPU is far too slow for real use",))
    if info.error:
        return TorchChoice(None, info.describe(), error=(
            f"nvidia-smi is installed but failed ({info.error}). Fix the NVIDIA driver (after a "
            "driver update, restart the computer) and run this again, or choose the torch build "
            "yourself: --torch cu128 for drivers 570 and newer, --torch cu124 for 550-569, "
            "--torch cu121 for 530-549, --torch cpu without a GPU"))
    cuda = info.cuda
    if cuda is None or cuda < (11, 0):
        return TorchChoice(None, info.describe(), error=(
            f"the NVIDIA driver {info.driver} is too old for torch 2.5 or newer, which musubi-tuner "
            "needs (it needs a driver for CUDA 11.8 or newer, release 520+). Update the driver "
            "from nvidia.com and run this again"))
    if cuda < (11, 8):
        return TorchChoice("cu118", f"{info.describe()}: cu118", warnings=(
            f"driver {info.driver} supports CUDA {cuda[0]}.{cuda[1]}; the cu118 build runs on it "
            "through CUDA's minor-version compatibility, but a driver update (release 520 or "
            "newer) avoids surprises",))
    ceiling = VARIANTS[AUTO_CEILING]
    fitting = [name for name, need in VARIANTS.items()
               if need is not None and need <= cuda and need <= ceiling]
    best = max(fitting, key=lambda name: VARIANTS[name])
    warnings: list[str] = []
    if cuda >= (13, 0):
        warnings.append("the driver also supports CUDA 13 (--torch cu130); cu128 is chosen because "
                        "CUDA 13 builds no longer run on GPUs older than the RTX 20 series")
    if info.cuda_from_table:
        warnings.append(f"nvidia-smi did not say which CUDA version the driver supports; "
                        f"CUDA {cuda[0]}.{cuda[1]} is assumed from driver {info.driver}")
    return TorchChoice(best, f"{info.describe()}: {best}", warnings=tuple(warnings))


def _nvidia_smi_paths(environ: Mapping[str, str]) -> list[str]:
    found = shutil.which("nvidia-smi", path=environ.get("PATH"))
    paths = [found] if found else []
    if os.name == "nt":
        # Drivers since 2019 put it in System32; older ones under Program Files\NVSMI.
        windir = environ.get("SystemRoot") or environ.get("WINDIR") or "C:\\Windows"
        program_files = environ.get("ProgramW6432") or environ.get("ProgramFiles") or "C:\\Program Files"
        paths += [os.path.join(windir, "System32", "nvidia-smi.exe"),
                  os.path.join(program_files, "NVIDIA Corporation", "NVSMI", "nvidia-smi.exe")]
    return [p for p in paths if p and os.path.isfile(p)]


def query_nvidia_smi(environ: Optional[Mapping[str, str]] = None, *, timeout: float = 30.0,
                     executables: Optional[Sequence[str]] = None) -> tuple[GpuInfo, str]:
    """Run ``nvidia-smi`` once: (what it said, its raw output for the install log)."""
    env = dict(os.environ if environ is None else environ)
    candidates = list(executables) if executables is not None else _nvidia_smi_paths(env)
    if not candidates:
        return GpuInfo(found=False), ""
    try:
        done = subprocess.run([candidates[0]], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        # A hung driver: seen on machines mid driver-update.
        return GpuInfo(found=True, error=f"no answer within {timeout:g} s"), ""
    except OSError as exc:
        return GpuInfo(found=True, error=str(exc)), ""
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    return parse_nvidia_smi(output, done.returncode), output


def index_url(variant: str, base: str = DEFAULT_INDEX_BASE) -> str:
    """``https://download.pytorch.org/whl/cu124`` for ``cu124``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown torch build {variant!r}; known: {', '.join(VARIANTS)}")
    return base.rstrip("/") + "/" + variant


def variant_of_version(version: str) -> Optional[str]:
    """The build named by a torch version's local label (``2.6.0+cu124`` -> ``cu124``),
    or None when it has none (PyPI's own wheels: CUDA on Linux, CPU on Windows)."""
    _, plus, label = version.partition("+")
    if not plus:
        return None
    label = label.split(".")[0].lower()
    return label if label in VARIANTS or re.match(r"^cu\d+$", label) else None

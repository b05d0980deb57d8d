"""The GPUs of this machine, without importing torch (ComfyUI's process must not initialise CUDA
for a list): ``nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader``. No
nvidia-smi (no NVIDIA driver, a Mac, a CPU box) means no GPU. And which of them background jobs
may use: the settings' ``gpus`` (exactly these; also how tests fake two GPUs) or the detected
ones, minus ``reserved_gpus``. Imports only the standard library.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

__all__ = ["Gpu", "list_gpus", "parse_nvidia_smi", "schedulable_gpus", "QUERY"]

QUERY = ["--query-gpu=index,name,memory.total", "--format=csv,noheader"]
CACHE_SECONDS = 60.0
TIMEOUT = 10.0


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_mib: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "memory_mib": self.memory_mib}


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """``0, NVIDIA GeForce RTX 4090, 24564 MiB`` lines; anything else is skipped."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        memory = parts[-1].split()[0] if parts[-1] else ""
        gpus.append(Gpu(int(parts[0]), ", ".join(parts[1:-1]), int(memory) if memory.isdigit() else None))
    return gpus


_cache: dict[str, tuple[float, list[Gpu]]] = {}
_lock = threading.Lock()


def list_gpus(*, refresh: bool = False, environ: Optional[dict[str, str]] = None,
              clock: Callable[[], float] = time.monotonic) -> list[Gpu]:
    """The NVIDIA GPUs nvidia-smi reports (cached a minute), [] when there is none or no nvidia-smi."""
    from .torch_index import _nvidia_smi_paths  # where the installer finds it too (PATH, then Windows' places)

    env = dict(os.environ if environ is None else environ)
    found = _nvidia_smi_paths(env)
    if not found:
        return []
    program = found[0]
    with _lock:
        cached = _cache.get(program)
        if cached is not None and not refresh and clock() - cached[0] < CACHE_SECONDS:
            return list(cached[1])
    # Unlike torch, nvidia-smi numbers GPUs in PCI bus order; CUDA_DEVICE_ORDER=PCI_BUS_ID
    # (set per job) makes CUDA_VISIBLE_DEVICES mean the same numbers.
    try:
        out = subprocess.run([program, *QUERY], stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
                             env=env, creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        gpus = parse_nvidia_smi(out.stdout.decode("utf-8", "replace")) if out.returncode == 0 else []
    except (OSError, subprocess.SubprocessError):
        gpus = []
    with _lock:
        _cache[program] = (clock(), gpus)
    return list(gpus)


def schedulable_gpus(settings: Any, *, detect: Callable[[], list[Gpu]] = list_gpus) -> list[int]:
    """GPU indexes background jobs may be placed on: ``settings.gpus`` when set (else the
    detected ones) without ``settings.reserved_gpus``. Empty: no GPU, one job at a time."""
    configured = getattr(settings, "gpus", None)
    indexes = list(configured) if configured is not None else [g.index for g in detect()]
    reserved = set(getattr(settings, "reserved_gpus", ()) or ())
    return [i for i in indexes if i not in reserved]

"""Shared pieces of the benchmarks: the child commands, the machine, measurements.

Children are built with the pack's own ``executor.process.command.python_command`` from a
throw-away "checkout" whose ``src/musubi_tuner`` links to ``benchmarks/children``,
so they get exactly the environment a real musubi child gets, inherited from a
parent environment WITHOUT ``PYTHONUNBUFFERED`` (users' machines do not export it).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from executor.process.command import Command, python_command  # noqa: E402
from executor.setup.discovery import MusubiInstall  # noqa: E402
from executor.setup.settings import Settings

CHILDREN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "children")
MB = 1024 * 1024


def parent_environment() -> dict[str, str]:
    """Our environment as a user's ComfyUI would have it: no PYTHONUNBUFFERED."""
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    return env


class Workload:
    """A fake musubi checkout whose scripts are the benchmark children."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="musubi-bench-")
        root = self._tmp.name
        package = os.path.join(root, "src", "musubi_tuner")
        os.makedirs(package)
        for name in os.listdir(CHILDREN):
            if name.endswith(".py"):
                os.symlink(os.path.join(CHILDREN, name), os.path.join(package, name))
        self.install = MusubiInstall(root=root, venv=sys.prefix, python=sys.executable, accelerate=None,
                                     python_version=platform.python_version(), chosen_by="benchmark")
        self.settings = Settings()
        self.base_env = parent_environment()

    def command(self, script: str, *args: str) -> Command:
        return python_command(self.install, script, list(args), self.settings, base_env=self.base_env)

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "Workload":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Row:
    """One line of the results table. Values are already formatted."""

    benchmark: str
    metric: str
    ours: str
    seed: str = "—"
    readline: str = "—"
    reference: str = "—"
    ratio: str = "—"
    target: str = "—"
    met: Optional[bool] = None
    notes: list[str] = field(default_factory=list)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 300 values is a real sample)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil
    return ordered[int(rank) - 1]


class RssSampler:
    """Samples this process's RSS every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.005) -> None:
        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.start_rss = self._proc.memory_info().rss
        self.max_rss = self.start_rss
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss = self._proc.memory_info().rss
            if rss > self.max_rss:
                self.max_rss = rss
            self._stop.wait(self._interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        rss = self._proc.memory_info().rss
        self.max_rss = max(self.max_rss, rss)

    @property
    def growth(self) -> int:
        return self.max_rss - self.start_rss


def descendants() -> list[psutil.Process]:
    """Every living process started (directly or not) by this one."""
    return [p for p in psutil.Process().children(recursive=True) if living(p)]


def living(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class TreeWatch:
    """From ``start()``: polls a set of processes until none lives; ``gone_at`` is
    the ``time.monotonic()`` when that was first seen (None if ``limit`` passed)."""

    def __init__(self, procs: Sequence[psutil.Process], limit: float, interval: float = 0.002) -> None:
        self.procs = list(procs)
        self.limit = limit
        self.interval = interval
        self.started_at = 0.0
        self.gone_at: Optional[float] = None
        self.survivors: list[psutil.Process] = []
        self._thread = threading.Thread(target=self._loop, name="tree-watch", daemon=True)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._thread.start()

    def _loop(self) -> None:
        deadline = self.started_at + self.limit
        while True:
            alive = [p for p in self.procs if living(p)]
            now = time.monotonic()
            if not alive:
                self.gone_at = now
                return
            if now >= deadline:
                self.survivors = alive
                return
            time.sleep(self.interval)

    def join(self) -> None:
        self._thread.join()

    @property
    def seconds(self) -> Optional[float]:
        return None if self.gone_at is None else self.gone_at - self.started_at


def kill_all(procs: Sequence[psutil.Process]) -> None:
    """Clean up whatever a baseline left running."""
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(list(procs), timeout=3)


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    freq = psutil.cpu_freq()
    physical = psutil.cpu_count(logical=False)
    try:
        load = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load = "n/a"
    return {
        "CPU": model + (f" @ {freq.current / 1000:.2f} GHz" if freq and freq.current else ""),
        "Cores": f"{os.cpu_count()} logical / {physical or '?'} physical",
        "Memory": f"{psutil.virtual_memory().total / 1024 ** 3:.1f} GiB",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "OS": platform.platform(),
        "psutil": psutil.__version__,
        "Load average (1/5/15 min) at start": load,
    }


def fmt_ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "never"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def fmt_mb(nbytes: float) -> str:
    return f"{nbytes / MB:.1f} MB"


def compare(ours: Optional[float], other: Optional[float], name: str) -> str:
    """``seed 12.3× ours`` when the other is slower/bigger, else ``ours 2.0× seed``."""
    if ours is None or other is None or ours <= 0 or other <= 0:
        return "—"
    if other >= ours:
        return f"{name} {other / ours:.{0 if other / ours >= 100 else 1}f}× ours"
    return f"ours {ours / other:.1f}× {name}"

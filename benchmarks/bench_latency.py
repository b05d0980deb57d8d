"""Progress latency: child writes a stamped tqdm frame -> the parent's callback sees it.

The child (children/frames.py) stamps each frame with ``time.monotonic_ns()``;
the callback subtracts it from its own ``time.monotonic_ns()`` (the same
system-wide clock on Linux). Ours: ``executor.process.run.run`` with ``on_event``.
Baselines: communicate()+regex (every frame arrives at exit) and text-mode readline.
"""

from __future__ import annotations

import re
import time

import baselines
from harness import Row, Workload, compare, fmt_ms, percentile

FRAMES = 300
INTERVAL = 0.01  # seconds between frames
TARGET_P99 = 0.050

_STAMP = re.compile(r"ts=(\d+)")


class Latencies:
    """First arrival of each stamped frame (a frame reported twice counts once)."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}

    def record(self, stamp: int) -> None:
        now = time.monotonic_ns()
        if stamp not in self.seen:
            self.seen[stamp] = (now - stamp) / 1e9

    def values(self) -> list[float]:
        return list(self.seen.values())


def measure_ours(workload: Workload) -> Latencies:
    from executor.process.run import run

    lat = Latencies()

    def on_event(event: object) -> None:
        if getattr(event, "type", None) == "progress":
            stamp = event.postfix.get("ts")  # type: ignore[attr-defined]
            if stamp:
                lat.record(int(stamp))

    command = workload.command("frames.py", "--frames", str(FRAMES), "--interval", str(INTERVAL))
    run(command, on_event=on_event, check=False)
    return lat


def measure_baseline(workload: Workload, runner) -> Latencies:
    lat = Latencies()

    def on_match(match: "re.Match[str]") -> None:
        stamp = _STAMP.search(match.group("inside"))
        if stamp:
            lat.record(int(stamp.group(1)))

    command = workload.command("frames.py", "--frames", str(FRAMES), "--interval", str(INTERVAL))
    runner(command.argv, command.env, command.cwd, on_match)
    return lat


def run(workload: Workload) -> list[Row]:
    ours = measure_ours(workload).values()
    seed = measure_baseline(workload, baselines.communicate_run).values()
    readline = measure_baseline(workload, baselines.readline_run).values()
    rows = []
    for label, pct in (("p50", 50), ("p99", 99)):
        o, s, r = (percentile(v, pct) for v in (ours, seed, readline))
        rows.append(Row(
            benchmark="Progress latency",
            metric=f"{label} child write → callback ({FRAMES} frames, {INTERVAL * 1000:.0f} ms apart)",
            ours=fmt_ms(o), seed=fmt_ms(s), readline=fmt_ms(r),
            ratio=f"{compare(o, s, 'seed')}; {compare(o, r, 'readline')}",
            target="p99 ≤ 50 ms" if pct == 99 else "—",
            met=(o <= TARGET_P99) if pct == 99 else None))
    counts = f"frames seen: ours {len(ours)}, seed {len(seed)}, readline {len(readline)} of {FRAMES}"
    rows[-1].notes.append(counts)
    return rows

"""Parent RSS growth while a child streams 500 MB of tqdm frames.

The child writes 64 KiB blocks (the fastest producer, so a reader that cannot
keep up must either push back or buffer). RSS is sampled every 5 ms in a
thread; growth = max − RSS just before the run. Baseline: the seed's
communicate()+regex, which holds the whole output (and its decoded text).
"""

from __future__ import annotations

import time

import baselines
from harness import MB, Row, RssSampler, Workload, compare, fmt_mb, fmt_s

SIZE = 500 * 1000 * 1000
TARGET = 10 * MB


def run(workload: Workload) -> list[Row]:
    from executor.process.run import run as executor_run

    command = workload.command("firehose.py", "--bytes", str(SIZE), "--mode", "bulk")
    argv, env, cwd = command.argv, command.env, command.cwd
    events = [0]

    def on_event(event: object) -> None:
        events[0] += 1

    start = time.perf_counter()
    with RssSampler() as ours:
        executor_run(command, on_event=on_event, check=False)
    ours_wall = time.perf_counter() - start

    start = time.perf_counter()
    with RssSampler() as seed:
        baselines.communicate_run(argv, env, cwd)
    seed_wall = time.perf_counter() - start

    row = Row(benchmark="Memory (500 MB streamed)", metric="parent RSS growth (max − start)",
              ours=f"{fmt_mb(ours.growth)} (in {fmt_s(ours_wall)}, {SIZE / MB / ours_wall:.0f} MB/s)",
              seed=f"{fmt_mb(seed.growth)} (in {fmt_s(seed_wall)}, {SIZE / MB / seed_wall:.0f} MB/s)",
              ratio=compare(ours.growth, seed.growth, "seed"),
              target="≤ 10 MB", met=ours.growth <= TARGET)
    row.notes.append(f"ours delivered {events[0]} events; the child wrote 64 KiB blocks")
    return [row]

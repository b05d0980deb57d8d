"""Cancel latency: ``should_cancel`` returns True -> no process of the tree is alive.

(a) a cooperative child (dies on SIGTERM); (b) an accelerate-like launcher whose
worker grandchild ignores SIGTERM, so only SIGKILL after the grace period stops
it. "Alive" is polled with psutil every 2 ms over every descendant of this
process snapshotted just before the cancel (zombies count as gone). Baseline:
``Popen.terminate()`` on the process started, nothing else.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Optional

import psutil

import baselines
from harness import Row, TreeWatch, Workload, compare, descendants, fmt_ms, kill_all

TARGET = 1.5
REPEATS = 3
SETTLE = 0.3  # seconds the tree runs before the cancel
ORPHAN_WAIT = 3.0  # how long the baseline gets before its survivors count as orphans


class Sample:
    def __init__(self) -> None:
        self.gone: Optional[float] = None  # should_cancel True -> tree gone
        self.returned: Optional[float] = None  # should_cancel True -> run() returned
        self.noticed: Optional[float] = None  # cancel requested -> should_cancel True
        self.survivors: list[str] = []
        self.cancelled = False


def measure_ours(workload: Workload, script: str, args: list[str], grace: Optional[float]) -> Sample:
    from executor.process.run import run

    sample = Sample()
    ready = threading.Event()
    requested = threading.Event()
    state: dict = {}

    def on_event(event: object) -> None:
        if "worker pid" in getattr(event, "text", ""):
            ready.set()

    def user() -> None:
        if ready.wait(15):
            time.sleep(SETTLE)
            state["tree"] = descendants()
            state["requested_at"] = time.monotonic()
            requested.set()

    def should_cancel() -> bool:
        if not requested.is_set():
            return False
        if "watch" not in state:
            watch = state["watch"] = TreeWatch(state["tree"], limit=15)
            watch.start()
        return True

    threading.Thread(target=user, name="user", daemon=True).start()
    command = workload.command(script, *args)
    options = {} if grace is None else {"grace_period": grace}
    result = run(command, on_event=on_event, should_cancel=should_cancel, timeout=30, check=False, **options)
    returned_at = time.monotonic()
    watch = state.get("watch")
    if watch is None:
        sample.survivors = ["cancel never requested (no 'worker pid' line seen)"]
        return sample
    watch.join()
    sample.cancelled = bool(getattr(result, "cancelled", False))
    sample.gone = watch.seconds
    sample.returned = returned_at - watch.started_at
    sample.noticed = watch.started_at - state["requested_at"]
    sample.survivors = [f"{p.pid}" for p in watch.survivors]
    kill_all(watch.survivors)
    return sample


def measure_baseline(workload: Workload, script: str, args: list[str], expected: int) -> Sample:
    sample = Sample()
    command = workload.command(script, *args)
    proc = baselines.start_quiet(command.argv, command.env, command.cwd)
    deadline = time.monotonic() + 15
    while len(descendants()) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(SETTLE)
    tree = descendants()
    watch = TreeWatch(tree, limit=ORPHAN_WAIT)
    baselines.terminate_only(proc)
    watch.start()
    watch.join()
    proc.wait()
    sample.gone = watch.seconds
    sample.survivors = [_label(p) for p in watch.survivors if p.is_running()]
    kill_all(watch.survivors)
    return sample


def _label(proc) -> str:
    try:
        return f"{proc.pid} {os.path.basename(proc.cmdline()[1])}"
    except (IndexError, psutil.Error):
        return str(proc.pid)


def _median(values: list[Optional[float]]) -> Optional[float]:
    if not values or any(v is None for v in values):
        return None
    return statistics.median(values)  # type: ignore[arg-type]


def _summary(samples: list[Sample]) -> tuple[Optional[float], str]:
    gone = [s.gone for s in samples]
    med = _median(gone)
    if med is None:
        return None, "never (still alive after the limit)"
    return med, f"{fmt_ms(med)} (max {fmt_ms(max(gone))})"  # type: ignore[type-var]


def _default_grace() -> float:
    import inspect

    from executor.process.run import run

    return float(inspect.signature(run).parameters["grace_period"].default)


def run(workload: Workload) -> list[Row]:
    rows: list[Row] = []
    default_grace = _default_grace()
    cases = [
        ("(a) cooperative child", "worker.py", [], 1, [None]),
        ("(b) launcher + SIGTERM-ignoring grandchild", "launcher.py", ["--ignore-term"], 2,
         [None, 1.0]),
    ]
    for label, script, args, expected, graces in cases:
        # Orphaning is deterministic, so one baseline run of (b) is enough.
        bases = [measure_baseline(workload, script, args, expected)
                 for _ in range(1 if expected > 1 else REPEATS)]
        base = bases[0]
        base.gone = _median([b.gone for b in bases]) if not base.survivors else None
        if base.survivors:
            base_text = (f"never — orphaned ({', '.join(base.survivors)} still running "
                         f"{ORPHAN_WAIT:.0f} s after terminate())")
        else:
            base_text = fmt_ms(base.gone)
        for grace in graces:
            samples = [measure_ours(workload, script, args, grace) for _ in range(REPEATS)]
            med, text = _summary(samples)
            grace_text = f"default grace_period={default_grace:g} s" if grace is None else f"grace_period={grace:g} s"
            row = Row(benchmark="Cancel latency", metric=f"{label}: tree gone ({grace_text})",
                      ours=text, seed=base_text,
                      ratio=("seed: never (orphan)" if base.survivors else compare(med, base.gone, "seed")),
                      target="≤ 1.5 s", met=med is not None and med <= TARGET)
            returned = _median([s.returned for s in samples])
            noticed = _median([s.noticed for s in samples])
            row.notes.append(f"median over {REPEATS}: run() returned {fmt_ms(returned)} after should_cancel; "
                             f"request → should_cancel True {fmt_ms(noticed)}; "
                             f"result.cancelled={all(s.cancelled for s in samples)}")
            if script == "launcher.py":
                row.notes.append("the grandchild ignores SIGTERM, so the tree lives until SIGKILL, sent "
                                 "grace_period seconds after SIGTERM (executor/process/tree.py ProcessTree.stop): "
                                 "tree gone ≈ grace_period, whatever the reader does")
            leftovers = sorted({p for s in samples for p in s.survivors})
            if leftovers:
                row.notes.append("SURVIVORS: " + ", ".join(leftovers))
            rows.append(row)
    return rows

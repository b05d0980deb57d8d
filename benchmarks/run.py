"""Runs every benchmark side by side and prints one markdown table.

Usage, from the project root: ``python benchmarks/run.py [--only NAME,...]``.
Writes the same report to benchmarks/results.md. Not part of the test run
(pytest collects only tests/). Linux/POSIX: the children and clocks assume it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402  (puts the project root on sys.path)
from harness import Row, Workload  # noqa: E402

BENCHMARKS = ("latency", "throughput", "memory", "cancel")
COLUMNS = ("Benchmark", "Metric", "Ours (executor.process.run.run)", "Seed: communicate()+regex",
           "Text-mode readline", "Reference", "Ratio", "Target", "Met")


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        cells = (r.benchmark, r.metric, r.ours, r.seed, r.readline, r.reference, r.ratio, r.target, met)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def report(machine: dict[str, str], rows: list[Row], seconds: float, load_end: str) -> str:
    out = ["# Benchmarks", "",
           f"Run {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} with `python benchmarks/run.py` "
           f"({seconds:.0f} s in all).", "", "Machine:", ""]
    out += [f"- {key}: {value}" for key, value in machine.items()]
    out += [f"- Load average at end: {load_end}", "", table(rows), ""]
    notes = [(r.benchmark, r.metric, n) for r in rows for n in r.notes]
    if notes:
        out += ["Notes:", ""]
        out += [f"- {bench} — {metric}: {note}" for bench, metric, note in notes]
        out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    parser.add_argument("--output", default=os.path.join(HERE, "results.md"))
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")

    machine = harness.machine()
    rows: list[Row] = []
    start = time.perf_counter()
    with Workload() as workload:
        for name in chosen:
            module = __import__(f"bench_{name}")
            t = time.perf_counter()
            print(f"running {name} ...", file=sys.stderr, flush=True)
            rows += module.run(workload)
            print(f"  {name} took {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start
    try:
        load_end = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        load_end = "n/a"
    text = report(machine, rows, elapsed, load_end)
    print(text)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

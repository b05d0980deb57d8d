#!/usr/bin/env python3
"""Render the background-job fault table of docs/background-training.md from the test suite's record
(standard library only), as .ci/hardening_table.py does for docs/security.md.

    python3 .ci/jobs_table.py           print the markdown table
    python3 .ci/jobs_table.py --write   replace the block between the markers in docs/background-training.md
    python3 .ci/jobs_table.py --check   exit 1 when the block there differs

The cases are the ``jobs`` table of tests/hardening_cases.py; the record is test-artifacts/hardening.json,
written by every test tagged ``@pytest.mark.hardening("jobs", case)`` (tests/test_jobs*.py,
tests/test_jobstore.py, tests/test_jobs_e2e.py). A case counts as passed only when every test of it
passed. Each test also records the processes it left and the jobs it left in a non-final state.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "background-training.md"
START = "<!-- jobs-faults:start (python3 .ci/jobs_table.py --write) -->"
END = "<!-- jobs-faults:end -->"
KIND = "jobs"


def _hardening_table():
    spec = importlib.util.spec_from_file_location("hardening_table", ROOT / ".ci" / "hardening_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def render(cases: dict[str, dict[str, object]], record: dict) -> str:
    table = cases[KIND]
    tests = [t for t in record.get("tests", []) if isinstance(t, dict) and t.get("kind") == KIND]
    lines = [f"| Fault (from the test suite's last run, {str(record.get('updated', ''))[:10] or 'never'}) "
             "| What the job does | Tests |", "|---|---|---|"]
    passed = 0
    for case, (fault, outcome) in table.items():  # type: ignore[misc]
        runs = [t for t in tests if t.get("case") == case]
        statuses = {t.get("status") for t in runs}
        if not runs:
            result = "not run"
        elif "failed" in statuses:
            result = "**FAILED**"
        elif statuses == {"skipped"}:
            result = "skipped"
        else:
            result = f"passed ({len(runs)})"
            passed += 1
        lines.append(f"| {fault} | {outcome} | {result} |")
    counted = [t for t in tests if t.get("case") in table]
    left = sum(int(t.get("measured", {}).get("processes_left", 0) or 0) for t in counted)
    stuck = sum(int(t.get("measured", {}).get("jobs_stuck", 0) or 0) for t in counted)
    checked_left = sum(1 for t in counted if "processes_left" in t.get("measured", {}))
    checked_stuck = sum(1 for t in counted if "jobs_stuck" in t.get("measured", {}))
    lines.append("")
    lines.append(f"{passed} / {len(table)} faults with their defined outcome; processes left: {left} (checked in "
                 f"{checked_left} tests), jobs stuck in a non-final state: {stuck} (checked in {checked_stuck} tests).")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="FILE", nargs="?", const=str(DOC))
    parser.add_argument("--check", metavar="FILE", nargs="?", const=str(DOC))
    parser.add_argument("--results", default=None, help="the record (default test-artifacts/hardening.json)")
    args = parser.parse_args(argv)
    hardening = _hardening_table()
    path = Path(args.results) if args.results else hardening.results_path()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read {path} ({exc}); run the job tests first", file=sys.stderr)
        return 2
    table = render(hardening.load_cases(), record)
    target = args.write or args.check
    if target is None:
        sys.stdout.write(table)
        return 0
    doc = Path(target)
    text = doc.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"{doc} has no {START} ... {END} block", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    new = f"{head}{START}\n{table}{END}{rest.split(END, 1)[1]}"
    if args.write:
        doc.write_text(new, encoding="utf-8")
        return 0
    if new != text:
        print(f"{doc}'s job fault table differs from {path}; run: python3 .ci/jobs_table.py --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

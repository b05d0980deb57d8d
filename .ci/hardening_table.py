#!/usr/bin/env python3
"""Render the hardening figures of docs/security.md from the test suite's record (standard library only).

    python3 .ci/hardening_table.py           print the markdown table
    python3 .ci/hardening_table.py --write   replace the block between the markers in docs/security.md
    python3 .ci/hardening_table.py --check   exit 1 when the block in docs/security.md differs
    (--write FILE / --check FILE use another file that holds the markers)

The record is test-artifacts/hardening.json, written by the catalogue's tests (tests/hardening.py)
whenever they run (``bash .ci/test``; MUSUBI_TEST_ARTIFACTS moves it); the catalogue itself,
what each row counts out of, is tests/hardening_cases.py. A case counts as passed only when every
test of it passed; a case without a result is shown as not run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "security.md"
START = "<!-- hardening:start (python3 .ci/hardening_table.py --write) -->"
END = "<!-- hardening:end -->"


def load_cases() -> dict[str, dict[str, object]]:
    spec = importlib.util.spec_from_file_location("hardening_cases", ROOT / "tests" / "hardening_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return {kind: dict(table) for kind, table in module.TABLES.items()}


def results_path() -> Path:
    configured = os.environ.get("MUSUBI_TEST_ARTIFACTS")
    return (Path(configured) if configured else ROOT / "test-artifacts") / "hardening.json"


def summarize(cases: dict[str, dict[str, object]], record: dict) -> dict[str, object]:
    """Per kind: passed / failed / not run case ids; totals of what the tests measured."""
    tests = [t for t in record.get("tests", []) if isinstance(t, dict)]
    by_case: dict[tuple[str, str], list[dict]] = {}
    for test in tests:
        by_case.setdefault((test.get("kind", ""), test.get("case", "")), []).append(test)
    out: dict[str, object] = {"updated": record.get("updated", "")}
    for kind, table in cases.items():
        passed, failed, missing, skipped = [], [], [], []
        for case in table:
            runs = by_case.get((kind, case), [])
            statuses = {t.get("status") for t in runs}
            if not runs:
                missing.append(case)
            elif "failed" in statuses:
                failed.append(case)
            elif statuses == {"skipped"}:
                skipped.append(case)
            else:
                passed.append(case)
        out[kind] = {"total": len(table), "passed": passed, "failed": failed, "not_run": missing, "skipped": skipped}
    known = {(k, c) for k, table in cases.items() for c in table}
    counted = [t for t in tests if (t.get("kind"), t.get("case")) in known]
    out["processes_left"] = sum(int(t.get("measured", {}).get("processes_left", 0) or 0) for t in counted)
    out["files_lost"] = sum(int(t.get("measured", {}).get("files_lost", 0) or 0) for t in counted)
    out["measured_processes"] = sum(1 for t in counted if "processes_left" in t.get("measured", {}))
    out["measured_files"] = sum(1 for t in counted if "files_lost" in t.get("measured", {}))
    channels: dict[str, int] = {}
    for case, entry in cases["bad_input"].items():
        channel = entry[1] if isinstance(entry, tuple) else ""
        if case in out["bad_input"]["passed"]:  # type: ignore[index]
            channels[channel] = channels.get(channel, 0) + 1
    out["channels"] = channels
    return out


def _count(summary: dict, kind: str, ids: object = None) -> str:
    info = summary[kind]
    total = info["total"] if ids is None else len(ids)  # type: ignore[index]
    passed = len(info["passed"]) if ids is None else len([c for c in info["passed"] if c in ids])  # type: ignore
    text = f"{passed} / {total}"
    extra = []
    for label in ("failed", "not_run", "skipped"):
        names = [c for c in info[label] if ids is None or c in ids]  # type: ignore[index]
        if names:
            extra.append(f"{len(names)} {label.replace('_', ' ')}")
    return text + (f" ({', '.join(extra)})" if extra else "")


def render(cases: dict[str, dict[str, object]], record: dict) -> str:
    summary = summarize(cases, record)
    bad = cases["bad_input"]
    before = [c for c, entry in bad.items() if entry[1] != "launched"]  # type: ignore[index]
    after = [c for c, entry in bad.items() if entry[1] == "launched"]  # type: ignore[index]
    channels = summary["channels"]
    split = (f" — {channels.get('http_400', 0)} refused when queued (HTTP 400), "
             f"{channels.get('execution_error', 0)} by the node's pre-flight")
    day = str(summary["updated"])[:10] or "never"
    rows = [
        ("Faults survived, each with its defined outcome", _count(summary, "fault")),
        ("Hostile or mistaken inputs refused before anything was launched", _count(summary, "bad_input", before) + split),
        ("Inputs only musubi can judge (a DiT of another size), explained", _count(summary, "bad_input", after)),
        ("Valid but hostile-looking inputs that trained (spaces, non-ASCII, shell metacharacters)",
         _count(summary, "works")),
        ("Security rules enforced by tests", _count(summary, "security")),
        ("Processes left behind", f"{summary['processes_left']} (checked in {summary['measured_processes']} tests)"),
        ("Files lost or overwritten", f"{summary['files_lost']} (hashed in {summary['measured_files']} tests)"),
    ]
    lines = [f"| Hardening, from the test suite's last run ({day}) | |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in rows]
    return "\n".join(lines) + "\n"


def replace_block(text: str, table: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"no hardening block: put the lines\n{START}\n{END}\nwhere the table goes")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}{END}{tail}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="FILE", nargs="?", const=str(DOC),
                        help="replace the block between the markers (default docs/security.md)")
    parser.add_argument("--check", metavar="FILE", nargs="?", const=str(DOC),
                        help="exit 1 when the block differs from the record (default docs/security.md)")
    parser.add_argument("--results", default=None, help="the record (default test-artifacts/hardening.json)")
    args = parser.parse_args(argv)
    path = Path(args.results) if args.results else results_path()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read {path} ({exc}); run the tests first: bash .ci/test", file=sys.stderr)
        return 2
    table = render(load_cases(), record)
    if args.write:
        doc = Path(args.write)
        doc.write_text(replace_block(doc.read_text(encoding="utf-8"), table), encoding="utf-8")
        return 0
    if args.check:
        doc = Path(args.check)
        text = doc.read_text(encoding="utf-8")
        if replace_block(text, table) != text:
            print(f"{doc}'s hardening table differs from {path}; run: python3 .ci/hardening_table.py "
                  f"--write {doc}", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

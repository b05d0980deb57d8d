"""The background-job fault table in docs/background-training.md comes from the test suite:
.ci/jobs_table.py renders the jobs cases of tests/hardening_cases.py against the record the tagged
tests write (test-artifacts/hardening.json), with the processes and jobs they left behind.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from hardening_cases import JOBS

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parent.parent


def jobs_table():
    spec = importlib.util.spec_from_file_location("jobs_table", ROOT / ".ci" / "jobs_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(statuses: dict[str, str], **measured: int) -> dict:
    return {"updated": "2026-12-02T12:00:00+0000",
            "tests": [{"kind": "jobs", "case": case, "test": f"t::{case}", "status": status, "measured": dict(measured)}
                      for case, status in statuses.items()]}


def test_every_case_is_a_row_and_the_totals_count_what_was_left() -> None:
    table = jobs_table()
    text = table.render(table._hardening_table().load_cases(), record(dict.fromkeys(JOBS, "passed"),
                                                                      processes_left=0, jobs_stuck=0))
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| Fault")]
    assert len(rows) == len(JOBS) and all(row.endswith("| passed (1) |") for row in rows)
    assert f"{len(JOBS)} / {len(JOBS)} faults" in text and "last run, 2026-12-02" in text
    assert f"processes left: 0 (checked in {len(JOBS)} tests), jobs stuck in a non-final state: 0" in text


def test_failures_missing_cases_and_leftovers_show() -> None:
    table = jobs_table()
    statuses = dict.fromkeys(JOBS, "passed")
    statuses["power_loss"] = "failed"
    del statuses["stop_route"]
    text = table.render(table._hardening_table().load_cases(), record(statuses, processes_left=1, jobs_stuck=2))
    assert "**FAILED**" in text and "| not run |" in text
    assert f"{len(JOBS) - 2} / {len(JOBS)} faults" in text
    assert f"processes left: {len(JOBS) - 1} " in text and f"jobs stuck in a non-final state: {2 * (len(JOBS) - 1)} " in text


def test_the_committed_table_has_every_case_passed_and_nothing_left() -> None:
    table = jobs_table()
    text = table.DOC.read_text(encoding="utf-8")
    block = text.split(table.START, 1)[1].split(table.END, 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("| ") and not line.startswith("| Fault")]
    assert len(rows) == len(JOBS), block
    assert all(re.search(r"\| passed \(\d+\) \|$", row) for row in rows), block
    assert re.search(r"processes left: 0 \(checked in \d+ tests\), jobs stuck in a non-final state: 0 ", block), block
    assert f"{len(JOBS)} / {len(JOBS)} faults" in block

"""The hardening figures in docs/security.md come from the test suite: .ci/hardening_table.py renders
test-artifacts/hardening.json (written by the catalogue's tests) against the catalogue
(tests/hardening_cases.py). Every catalogue case has a test tagged with it, and the committed table
counts out of the catalogue's real sizes.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import pytest

from hardening_cases import BAD_INPUTS, FAULTS, SECURITY, TABLES, WORKS

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def table_module():
    spec = importlib.util.spec_from_file_location("hardening_table", ROOT / ".ci" / "hardening_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(status: dict[tuple[str, str], str], **measured: int) -> dict:
    tests = [{"kind": k, "case": c, "test": f"t::{k}-{c}", "status": s, "measured": dict(measured)}
             for (k, c), s in status.items()]
    return {"updated": "2026-11-27T23:59:00+0000", "tests": tests}


def every_case(status: str = "passed") -> dict[tuple[str, str], str]:
    return {(kind, case): status for kind, table in TABLES.items() for case in table}


def test_a_clean_run_renders_every_row_with_the_catalogue_sizes() -> None:
    hardening_table = table_module()
    text = hardening_table.render(hardening_table.load_cases(), record(every_case(), processes_left=0, files_lost=0))
    launched = sum(1 for _, channel in BAD_INPUTS.values() if channel == "launched")
    assert f"| Faults survived, each with its defined outcome | {len(FAULTS)} / {len(FAULTS)} |" in text
    assert f"{len(BAD_INPUTS) - launched} / {len(BAD_INPUTS) - launched} — " in text
    assert f"| {len(WORKS)} / {len(WORKS)} |" in text and f"| {len(SECURITY)} / {len(SECURITY)} |" in text
    assert "| Processes left behind | 0 (checked in" in text and "| Files lost or overwritten | 0 (hashed in" in text
    assert "(2026-11-27)" in text


def test_failures_missing_results_and_leftovers_show() -> None:
    hardening_table = table_module()
    status = every_case()
    status[("fault", "sigsegv")] = "failed"
    del status[("fault", "stall")]
    rec = record(status, processes_left=0)
    rec["tests"][0]["measured"] = {"processes_left": 2, "files_lost": 1}
    text = hardening_table.render(hardening_table.load_cases(), rec)
    assert f"{len(FAULTS) - 2} / {len(FAULTS)} (1 failed, 1 not run)" in text
    assert "| Processes left behind | 2 " in text and "| Files lost or overwritten | 1 " in text


def test_the_block_is_replaced_between_the_markers(tmp_path: Path) -> None:
    hardening_table = table_module()
    doc = f"# x\n\n{hardening_table.START}\nold\n{hardening_table.END}\n\nrest\n"
    new = hardening_table.replace_block(doc, "| a | b |\n")
    assert new == f"# x\n\n{hardening_table.START}\n| a | b |\n{hardening_table.END}\n\nrest\n"


def tagged_cases() -> set[tuple[str, str]]:
    """(kind, case) of every ``@pytest.mark.hardening(...)`` in the test files; a marker with the
    kind only (a parametrized test over the table) covers every case of that kind."""
    found: set[tuple[str, str]] = set()
    for path in TESTS.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "hardening":
                args = [a.value for a in node.args if isinstance(a, ast.Constant)]
                if len(args) == 2:
                    found.add((args[0], args[1]))
                elif len(args) == 1:
                    found |= {(args[0], case) for case in TABLES[args[0]]}
    return found


def test_every_catalogue_case_has_a_test() -> None:
    wanted = {(kind, case) for kind, table in TABLES.items() for case in table}
    tagged = tagged_cases()
    assert wanted - tagged == set(), "catalogue cases without a test"
    assert tagged - wanted == set(), "tests tagged with a case the catalogue does not list"


def test_write_fills_the_file_and_check_then_passes(tmp_path: Path) -> None:
    hardening_table = table_module()
    results = tmp_path / "hardening.json"
    results.write_text(json.dumps(record(every_case(), processes_left=0, files_lost=0)), encoding="utf-8")
    doc = tmp_path / "security.md"
    doc.write_text(f"# Security\n\n{hardening_table.START}\nold\n{hardening_table.END}\nrest\n", encoding="utf-8")
    common = ["--results", str(results)]
    assert hardening_table.main(["--check", str(doc), *common]) == 1
    assert hardening_table.main(["--write", str(doc), *common]) == 0
    assert "| Faults survived" in doc.read_text(encoding="utf-8") and "rest" in doc.read_text(encoding="utf-8")
    assert hardening_table.main(["--check", str(doc), *common]) == 0


def test_the_committed_table_counts_out_of_the_catalogue() -> None:
    hardening_table = table_module()
    text = hardening_table.DOC.read_text(encoding="utf-8")
    assert hardening_table.START in text and hardening_table.END in text, \
        "docs/security.md lost its hardening markers"
    block = text.split(hardening_table.START, 1)[1].split(hardening_table.END, 1)[0]
    launched = sum(1 for _, channel in BAD_INPUTS.values() if channel == "launched")
    totals = [int(n) for n in re.findall(r"\| \d+ / (\d+)", block)]
    assert totals == [len(FAULTS), len(BAD_INPUTS) - launched, launched, len(WORKS), len(SECURITY)], block
    assert re.search(r"\| Processes left behind \| 0 ", block), block
    assert re.search(r"\| Files lost or overwritten \| 0 ", block), block

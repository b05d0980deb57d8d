"""pytest plugin that records the hardening catalogue's results (tests/hardening_cases.py).

A catalogue test carries ``@pytest.mark.hardening(kind, case)`` and may use the ``hardening``
fixture to record what it measured (``processes_left``, ``files_lost``, ``channel``). At the end
of the session every recorded test is merged into ``test-artifacts/hardening.json`` (tests not
run this time keep their last result), which ``python3 .ci/hardening_table.py`` renders as the
table in docs/security.md. Loaded by the catalogue's test files with ``pytest_plugins = ["hardening"]``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_NAME = "hardening.json"

_RESULTS: dict[str, dict[str, Any]] = {}  # nodeid -> entry


def results_path() -> Path:
    configured = os.environ.get("MUSUBI_TEST_ARTIFACTS")
    return (Path(configured) if configured else PROJECT_ROOT / "test-artifacts") / RESULTS_NAME


class Measurements:
    """What one catalogue test measured; ``record`` may be called several times."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def record(self, **values: Any) -> None:
        self.values.update(values)


MARKER = ("hardening(kind, case): a case of the hardening catalogue (tests/hardening_cases.py); "
          "its result goes to test-artifacts/hardening.json")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)


def _register_marker_now() -> None:
    """Test modules import this before their decorators run (pytest_plugins loads it only after
    the module body), so the marker is known when ``pytest.mark.hardening`` is first used."""
    config = getattr(pytest.mark, "_config", None)
    if config is not None and not any(line.startswith("hardening(") for line in config.getini("markers")):
        config.addinivalue_line("markers", MARKER)


_register_marker_now()


@pytest.fixture
def hardening(request: pytest.FixtureRequest) -> Iterator[Measurements]:
    measurements = Measurements()
    request.node._hardening = measurements
    yield measurements


def _marker_case(item: pytest.Item) -> tuple[str, str] | None:
    marker = item.get_closest_marker("hardening")
    if marker is None:
        return None
    kind = marker.kwargs.get("kind", marker.args[0] if marker.args else None)
    case = marker.kwargs.get("case", marker.args[1] if len(marker.args) > 1 else None)
    if case is None and hasattr(item, "callspec"):
        case = item.callspec.params.get("case")
    return (str(kind), str(case)) if kind and case else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    found = _marker_case(item)
    if found is None:
        return
    kind, case = found
    entry = _RESULTS.get(item.nodeid)
    if report.when == "setup" or entry is None:
        entry = {"kind": kind, "case": case, "test": item.nodeid, "status": "passed", "measured": {},
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _RESULTS[item.nodeid] = entry
    measured = getattr(item, "_hardening", None)
    if measured is not None:
        entry["measured"] = dict(measured.values)
    # the worst phase wins: a failing teardown (processes left) fails the case
    if report.failed:
        entry["status"] = "failed"
        entry["error"] = str(report.longrepr)[-1500:]
    elif report.skipped and entry["status"] == "passed":
        entry["status"] = "skipped"
        entry["reason"] = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _RESULTS or session.config.option.collectonly:
        return
    path = results_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        tests = {t["test"]: t for t in data.get("tests", []) if isinstance(t, dict) and "test" in t}
    except (OSError, ValueError, TypeError, KeyError):
        tests = {}
    tests.update(_RESULTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "tests": sorted(tests.values(), key=lambda t: (t["kind"], t["case"], t["test"]))}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)

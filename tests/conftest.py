"""Test set-up shared by every test file.

The project root is on sys.path (pyproject's ``pythonpath``), so tests import
``parsers`` and ``executor`` as top-level packages. Executor tests must see the
environment a user's ComfyUI has: without ``PYTHONUNBUFFERED``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = PROJECT_ROOT.parent / "shared"
CAPTURES = SHARED / "captures"

# Shared fixtures: the real-ComfyUI server (comfy_fixtures) and the fake musubi venv (fakes),
# registered here so pytest rewrites their asserts before any test module imports them.
pytest_plugins = ["comfy_fixtures", "fakes"]


@pytest.fixture(autouse=True)
def _no_inherited_unbuffered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)


@pytest.fixture
def captures_dir() -> Path:
    if not CAPTURES.is_dir():
        pytest.skip("../shared/captures is not available")
    return CAPTURES

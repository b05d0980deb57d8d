"""Test set-up common to every test file.

The project root is on sys.path (pyproject's ``pythonpath``), so tests import
``parsers`` and ``executor`` as top-level packages. Executor tests must see the
environment a user's ComfyUI has: without ``PYTHONUNBUFFERED``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Raw output of the real musubi-tuner, recorded (tests/fixtures/captures/README.md says how).
CAPTURES = PROJECT_ROOT / "tests" / "fixtures" / "captures"

# Fixtures for many test files: the real-ComfyUI server (comfy_fixtures) and the fake musubi venv (fakes),
# registered here so pytest rewrites their asserts before any test module imports them.
pytest_plugins = ["comfy_fixtures", "fakes"]


@pytest.fixture(scope="session", autouse=True)
def _scratch_cache_home(tmp_path_factory: pytest.TempPathFactory):
    """The venv-probe cache the pack keeps under XDG_CACHE_HOME goes to a scratch folder: every
    test venv is new, and each would otherwise leave a cache file in the user's ~/.cache.
    (The pinned ComfyUI and the test venv live under MUSUBI_NODES_CACHE / ~/.cache, untouched.)"""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session", autouse=True)
def _scratch_data_dir(tmp_path_factory: pytest.TempPathFactory):
    """The pack's per-user data folder (the record of training states, the background job store)
    goes to a scratch folder for the session, for the executor in this process and every ComfyUI
    server the tests start (they inherit the environment), never the user's own
    (~/.local/share/musubi-tuner-nodes); a test that restarts ComfyUI passes its own."""
    previous = os.environ.get("MUSUBI_TUNER_NODES_DATA_DIR")
    os.environ["MUSUBI_TUNER_NODES_DATA_DIR"] = str(tmp_path_factory.mktemp("data-dir"))
    yield
    if previous is None:
        os.environ.pop("MUSUBI_TUNER_NODES_DATA_DIR", None)
    else:
        os.environ["MUSUBI_TUNER_NODES_DATA_DIR"] = previous


@pytest.fixture(autouse=True)
def _no_inherited_unbuffered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)


@pytest.fixture
def captures_dir() -> Path:
    return CAPTURES

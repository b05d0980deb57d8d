"""Opt-in: the installer with the REAL musubi-tuner from a local mirror and a real CPU torch.

    MUSUBI_TUNER_GIT=file:///path/to/musubi-tuner-mirror bash .ci/test -m real_musubi tests/test_install_real.py

torch comes from download.pytorch.org/whl/cpu unless ``MUSUBI_TUNER_TEST_TORCH_WHEELS`` names a
folder with a torch and a torchvision wheel (``--torch-wheels``) or ``MUSUBI_TUNER_TEST_TORCH_INDEX``
another index (``--torch-index-url``). musubi-tuner's own dependencies come from the package index
pip is configured with (about 1 GB). Afterwards ``python -m executor check`` must call it usable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from install_fixtures import PROJECT_ROOT, install_env, log_of, run_install

pytestmark = [
    pytest.mark.real_musubi,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(not os.environ.get("MUSUBI_TUNER_GIT", "").startswith("file://"),
                       reason="set MUSUBI_TUNER_GIT=file://<a local musubi-tuner mirror>"),
]


def test_the_real_musubi_tuner_installs_and_the_check_calls_it_usable(tmp_path: Path) -> None:
    env = install_env(tmp_path, None, path=tmp_path)
    env["PATH"] = os.environ["PATH"]  # the machine's Pythons and git, as a user has them
    env["MUSUBI_TUNER_GIT"] = os.environ["MUSUBI_TUNER_GIT"]
    args = ["--torch", "cpu"]
    if os.environ.get("MUSUBI_TUNER_TEST_TORCH_WHEELS"):
        args += ["--torch-wheels", os.environ["MUSUBI_TUNER_TEST_TORCH_WHEELS"]]
    elif os.environ.get("MUSUBI_TUNER_TEST_TORCH_INDEX"):
        args += ["--torch-index-url", os.environ["MUSUBI_TUNER_TEST_TORCH_INDEX"]]

    started = time.monotonic()
    first = run_install(env, *args, timeout=3000)
    took = time.monotonic() - started
    print(first.stdout)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "usable: yes" in first.stdout

    started = time.monotonic()
    again = run_install(env, *args, timeout=600)
    took_again = time.monotonic() - started
    assert again.returncode == 0 and "are already installed" in again.stdout
    print(f"first install {took:.0f} s, second run {took_again:.1f} s; log {log_of(first.stdout)}")

    check = subprocess.run([sys.executable, "-m", "executor", "check"], cwd=PROJECT_ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    print(check.stdout)
    assert check.returncode == 0 and "usable: yes" in check.stdout
    assert "musubi_tuner imports from the checkout" in check.stdout

"""GPUs without torch: nvidia-smi's CSV (a real child process: a stand-in nvidia-smi script on
PATH prints what the real one prints), nothing when there is no nvidia-smi, and the GPUs
background jobs may use (the settings' ``gpus`` / ``reserved_gpus``)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from executor.setup import gpus

pytestmark = pytest.mark.timeout(60)

# nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader (driver 550, two cards)
OUTPUT = "0, NVIDIA GeForce RTX 4090, 24564 MiB\n1, NVIDIA RTX A6000, 49140 MiB\n"


def fake_nvidia_smi(folder: Path, output: str, code: int = 0) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    record = folder / "argv.txt"
    script.write_text(f"#!{sys.executable}\nimport sys\nopen({str(record)!r}, 'w').write(' '.join(sys.argv[1:]))\n"
                      f"sys.stdout.write({output!r})\nsys.exit({code})\n", encoding="utf-8")
    script.chmod(0o755)
    return {"PATH": str(folder)}


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in is a POSIX script")
def test_the_gpus_nvidia_smi_reports_are_listed(tmp_path: Path) -> None:
    env = fake_nvidia_smi(tmp_path / "bin", OUTPUT)
    found = gpus.list_gpus(refresh=True, environ=env)
    assert found == [gpus.Gpu(0, "NVIDIA GeForce RTX 4090", 24564), gpus.Gpu(1, "NVIDIA RTX A6000", 49140)]
    assert (tmp_path / "bin" / "argv.txt").read_text() == " ".join(gpus.QUERY)


@pytest.mark.skipif(sys.platform == "win32", reason="the stand-in is a POSIX script")
def test_a_failing_nvidia_smi_means_no_gpu(tmp_path: Path) -> None:
    env = fake_nvidia_smi(tmp_path / "bin", "NVIDIA-SMI has failed because it couldn't communicate with the "
                                           "NVIDIA driver.\n", code=9)
    assert gpus.list_gpus(refresh=True, environ=env) == []


def test_no_nvidia_smi_means_no_gpu(tmp_path: Path) -> None:
    assert gpus.list_gpus(refresh=True, environ={"PATH": str(tmp_path)}) == []


def test_odd_lines_are_skipped_and_names_with_commas_kept() -> None:
    text = "No devices were found\n0, Tesla K80, rev 2, 11441 MiB\n1, GPU, [N/A]\n"
    assert gpus.parse_nvidia_smi(text) == [gpus.Gpu(0, "Tesla K80, rev 2", 11441), gpus.Gpu(1, "GPU", None)]


def test_the_settings_choose_the_gpus_and_reserved_ones_are_left_out() -> None:
    two = lambda: [gpus.Gpu(0, "a"), gpus.Gpu(1, "b")]  # noqa: E731
    assert gpus.schedulable_gpus(SimpleNamespace(gpus=None, reserved_gpus=()), detect=two) == [0, 1]
    assert gpus.schedulable_gpus(SimpleNamespace(gpus=None, reserved_gpus=(0,)), detect=two) == [1]
    assert gpus.schedulable_gpus(SimpleNamespace(gpus=(3, 2), reserved_gpus=()), detect=two) == [3, 2]
    assert gpus.schedulable_gpus(SimpleNamespace(gpus=(), reserved_gpus=()), detect=two) == []


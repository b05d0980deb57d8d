"""The torch build chosen from recorded ``nvidia-smi`` outputs (tests/fixtures/nvidia_smi)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from executor.setup.torch_index import (AUTO_CEILING, GpuInfo, choose_variant, cuda_from_driver,
                                        index_url, parse_nvidia_smi, query_nvidia_smi,
                                        variant_of_version)

SMI = Path(__file__).resolve().parent / "fixtures" / "nvidia_smi"


def recorded(name: str) -> GpuInfo:
    return parse_nvidia_smi((SMI / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name, driver, cuda, gpus, variant", [
    ("linux-535-quadro-rtx4000.txt", "535.129.03", (12, 2), ("Quadro RTX 4000", "Quadro RTX 4000"), "cu121"),
    ("linux-550-rtx4070.txt", "550.40.07", (12, 4), ("NVIDIA GeForce RTX 4070",), "cu124"),
    ("linux-550-rtx4090d.txt", "550.107.02", (12, 4), ("NVIDIA GeForce RTX 4090 D",), "cu124"),
    ("wsl-572-rtx5090.txt", "572.70", (12, 8), ("NVIDIA GeForce RTX 5090",), "cu128"),
    ("linux-575-cuda-12.9-header.txt", "575.57.08", (12, 9), (), "cu128"),
    ("linux-580-rtx3060.txt", "580.95.05", (13, 0), ("NVIDIA GeForce RTX 3060",), "cu128"),
    ("linux-470-a10g.txt", "470.256.02", (11, 4), ("NVIDIA A10G",), "cu118"),
    ("linux-450-titanxp.txt", "450.57", (11, 0), ("TITAN Xp",), "cu118"),
])
def test_recorded_outputs_choose_the_newest_build_the_driver_runs(name, driver, cuda, gpus, variant) -> None:
    info = recorded(name)
    assert (info.driver, info.cuda, info.gpus, info.error) == (driver, cuda, gpus, None)
    choice = choose_variant(info)
    assert choice.variant == variant and choice.error is None
    assert variant in choice.reason and driver in choice.reason


def test_driver_535_gets_the_cuda_12_1_build_not_12_4() -> None:
    # CUDA 12.2 drivers cannot run cu124 wheels: the pick must never round up.
    assert choose_variant(recorded("linux-535-quadro-rtx4000.txt")).variant == "cu121"


def test_a_cuda_13_driver_stays_on_cu128_and_says_cu130_exists() -> None:
    choice = choose_variant(recorded("linux-580-rtx3060.txt"))
    assert choice.variant == AUTO_CEILING == "cu128"
    assert any("--torch cu130" in w for w in choice.warnings)


def test_an_old_cuda_11_driver_gets_cu118_with_a_warning() -> None:
    choice = choose_variant(recorded("linux-470-a10g.txt"))
    assert choice.variant == "cu118"
    assert any("driver update" in w for w in choice.warnings)


@pytest.mark.parametrize("name, driver, cuda, variant", [
    ("freebsd-575-cuda-na-rtx5070.txt", "575.64.03", (12, 9), "cu128"),  # "CUDA Version: N/A"
    ("wsl-546-cuda-err.txt", "546.80", (12, 3), "cu121"),                # "CUDA Version: ERR!"
])
def test_without_a_cuda_version_the_driver_number_decides(name, driver, cuda, variant) -> None:
    info = recorded(name)
    assert (info.driver, info.cuda, info.cuda_from_table) == (driver, cuda, True)
    choice = choose_variant(info)
    assert choice.variant == variant
    assert any("assumed from driver" in w for w in choice.warnings)


def test_no_nvidia_smi_means_cpu_with_a_warning() -> None:
    choice = choose_variant(GpuInfo(found=False))
    assert choice.variant == "cpu" and choice.error is None
    assert any("--torch cu128" in w for w in choice.warnings)


def test_a_driver_that_does_not_answer_stops_with_the_builds_to_choose_from() -> None:
    info = parse_nvidia_smi((SMI / "driver-not-loaded.txt").read_text(encoding="utf-8"), 9)
    assert info.found and info.error.startswith("NVIDIA-SMI has failed")
    choice = choose_variant(info)
    assert choice.variant is None
    assert "--torch cu128" in choice.error and "--torch cpu" in choice.error and "restart" in choice.error


def test_no_devices_found_means_cpu() -> None:
    info = parse_nvidia_smi("No devices were found\n", 6)
    assert info.no_devices
    assert choose_variant(info).variant == "cpu"


def test_a_driver_older_than_cuda_11_is_refused() -> None:
    info = parse_nvidia_smi("| NVIDIA-SMI 440.33.01    Driver Version: 440.33.01    CUDA Version: 10.2     |")
    choice = choose_variant(info)
    assert choice.variant is None and "too old" in choice.error and "440.33.01" in choice.error


@pytest.mark.parametrize("driver, cuda", [
    ("535.104.05", (12, 2)), ("537.58", (12, 2)), ("551.61", (12, 4)), ("560.94", (12, 6)),
    ("572.16", (12, 8)), ("520.61.05", (11, 8)), ("418.67", None), ("garbage", None),
])
def test_driver_table(driver: str, cuda) -> None:
    assert cuda_from_driver(driver) == cuda


def test_index_urls_and_version_labels() -> None:
    assert index_url("cu124") == "https://download.pytorch.org/whl/cu124"
    assert index_url("cpu", "https://mirror.example/torch/") == "https://mirror.example/torch/cpu"
    with pytest.raises(ValueError):
        index_url("cu999")
    assert variant_of_version("2.6.0+cu124") == "cu124"
    assert variant_of_version("2.5.1+cpu") == "cpu"
    assert variant_of_version("2.8.0+cu129") == "cu129"
    assert variant_of_version("2.6.0") is None
    assert variant_of_version("2.14.1+fake") is None


@pytest.mark.skipif(os.name == "nt", reason="a POSIX shell script stands in for nvidia-smi")
def test_query_runs_the_program_and_keeps_its_output(tmp_path: Path) -> None:
    program = tmp_path / "nvidia-smi"
    program.write_text("#!/bin/sh\n/bin/cat '%s'\n" % (SMI / "wsl-572-rtx5090.txt"))
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    info, raw = query_nvidia_smi({"PATH": str(tmp_path)})
    assert info.driver == "572.70" and info.cuda == (12, 8) and "RTX 5090" in raw

    failing = tmp_path / "failing"
    failing.mkdir()
    (failing / "nvidia-smi").write_text("#!/bin/sh\n/bin/cat '%s'\nexit 9\n" % (SMI / "driver-not-loaded.txt"))
    (failing / "nvidia-smi").chmod(0o755)
    info, _ = query_nvidia_smi({"PATH": str(failing)})
    assert info.found and "couldn't communicate" in info.error

    assert query_nvidia_smi({"PATH": str(tmp_path / "empty")})[0] == GpuInfo(found=False)

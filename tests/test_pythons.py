"""Finding a Python 3.10-3.12 for musubi-tuner's venv: every candidate is started and asked."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from executor.setup.pythons import NoPython, find_python, find_uv, inspect_python, supported

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(os.name == "nt", reason="POSIX shell scripts and symlinks stand in for the tools"),
]
FITS = (3, 10) <= sys.version_info[:2] <= (3, 12)


def script(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def pyenv_shim(folder: Path, name: str) -> Path:
    # What pyenv's shim prints for a version that is installed but not selected (seen on this machine).
    return script(folder, name, f"echo \"pyenv: {name}: command not found\" >&2\nexit 127\n")


@pytest.mark.parametrize("version, fits", [((3, 9, 18), False), ((3, 10, 0), True), ((3, 12, 9), True),
                                          ((3, 13, 0), False)])
def test_supported_versions(version, fits) -> None:
    assert supported(version) is fits


@pytest.mark.skipif(not FITS, reason="the test's own Python must be 3.10-3.12")
def test_a_shim_that_does_not_run_is_skipped_and_the_next_name_is_asked(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    pyenv_shim(bin_dir, "python3.12")
    os.symlink(sys.executable, bin_dir / "python3.11")
    messages: list[str] = []
    found = find_python(environ={"PATH": str(bin_dir)}, comfy_python=str(tmp_path / "no" / "python"),
                        log=messages.append)
    assert found.version == tuple(sys.version_info[:3]) and found.source == "PATH (python3.11)"
    assert any("python3.12" in m and "does not run (exit code 127: pyenv: python3.12: command not found)" in m
               for m in messages)


@pytest.mark.skipif(not FITS, reason="the test's own Python must be 3.10-3.12")
def test_the_py_launcher_is_asked_for_each_version_newest_first(tmp_path: Path) -> None:
    # The launcher's protocol: "py -3.11 ARGS" runs that version, or fails when it is not installed.
    bin_dir = tmp_path / "bin"
    script(bin_dir, "py", f'if [ "$1" = "-3.11" ]; then shift; exec "{sys.executable}" "$@"; fi\n'
                          'echo "No suitable Python runtime found" >&2\nexit 103\n')
    messages: list[str] = []
    found = find_python(environ={"PATH": str(bin_dir)}, comfy_python=str(tmp_path / "no" / "python"),
                        log=messages.append)
    assert found.source == "py launcher"
    assert [m.split(":")[0] for m in messages] == ["py -3.12", "py -3.11"]


def test_nothing_found_lists_what_was_tried(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    pyenv_shim(bin_dir, "python3.10")
    with pytest.raises(NoPython) as caught:
        find_python(environ={"PATH": str(bin_dir)}, comfy_python=str(tmp_path / "no" / "python"))
    assert "no Python 3.10-3.12 found" in str(caught.value)
    assert any(t.startswith("python3.10 (") for t in caught.value.tried)
    assert caught.value.tried[-1].startswith("uv: not found")


def test_an_explicit_python_is_checked_and_never_replaced(tmp_path: Path) -> None:
    with pytest.raises(NoPython) as caught:
        find_python(str(tmp_path / "missing-python"), environ={"PATH": ""})
    assert "cannot be used: cannot be started" in str(caught.value)


def test_an_interpreter_outside_the_range_says_its_version(tmp_path: Path) -> None:
    # A real interpreter is asked; only the range check is moved, by asking with a fake answer
    # printed the way the question's answer looks.
    answer = '{"version": [3, 13, 1], "executable": "/x/python3.13", "bits": 64, "venv": null}'
    fake = script(tmp_path, "python3.13", f"echo '{answer}'\n")
    found, why = inspect_python([str(fake)], "PATH")
    assert found is None and why == "Python 3.13.1, outside 3.10-3.12"


def test_uv_is_found_on_path_or_next_to_comfyuis_python(tmp_path: Path) -> None:
    comfy = tmp_path / "python_embeded"
    uv = script(comfy / "Scripts", "uv", "exit 0\n")
    python = comfy / "python"
    assert find_uv({"PATH": ""}, str(python)) == str(uv)
    on_path = script(tmp_path / "bin", "uv", "exit 0\n")
    assert find_uv({"PATH": str(tmp_path / "bin")}, str(python)) == str(on_path)
    assert find_uv({"PATH": ""}, str(tmp_path / "elsewhere" / "python")) is None

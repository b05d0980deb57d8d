"""The Setup Check node's text when musubi-tuner is missing: the exact install command for this
pack folder and this Python, which runs as shown. The pack is loaded as ComfyUI loads it (by file
location, as a package); ComfyUI's folder_paths is not needed for this path."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACK = "musubi_nodes_check_under_test"


@pytest.fixture(scope="module")
def check() -> Iterator[types.ModuleType]:
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    try:
        spec.loader.exec_module(module)
        yield importlib.import_module(f"{PACK}.nodes.check")
    finally:
        for name in [n for n in sys.modules if n == PACK or n.startswith(PACK + ".")]:
            del sys.modules[name]


def test_without_musubi_the_node_shows_the_install_command_that_works(check, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    settings = tmp_path / "config.json"
    settings.write_text(json.dumps({}))
    for name in ("MUSUBI_TUNER_ROOT", "MUSUBI_TUNER_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MUSUBI_TUNER_NODES_CONFIG", str(settings))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    # ComfyUI's folders, which only ComfyUI knows:
    monkeypatch.setattr(check.host, "user_config_file", lambda: None)
    monkeypatch.setattr(check.host, "output_directory", lambda: str(tmp_path / "output"))
    monkeypatch.setattr(check.host, "input_directory", lambda: str(tmp_path / "input"))
    monkeypatch.setattr(check.host, "model_directories", lambda: [str(tmp_path / "models")])

    text, usable = check.report_text()
    assert not usable and "TrainerNotFound: no musubi-tuner checkout found" in text
    command = f"(cd {ROOT} && {sys.executable} -m executor install)"
    assert "  in a terminal:\n    " + command in text
    # Pasted into a shell as shown (with --help, so nothing is installed), it runs the installer.
    done = subprocess.run(["sh", "-c", command[:-1] + " --help)"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "--torch-wheels" in done.stdout


def test_on_windows_the_node_shows_cmd_and_powershell_forms(check) -> None:
    lines = check.install_instructions("C:\\ComfyUI\\custom_nodes\\musubi-tuner-nodes",
                                       "C:\\ComfyUI\\venv\\Scripts\\python.exe", windows=True)
    text = "\n".join(lines)
    assert "  in Command Prompt (cmd):\n    cd /d ^\"C:\\ComfyUI\\custom_nodes\\musubi-tuner-nodes^\"\n" \
           "    \"C:\\ComfyUI\\venv\\Scripts\\python.exe\" -m executor install" in text
    assert "  in PowerShell:\n    Set-Location -LiteralPath 'C:\\ComfyUI\\custom_nodes\\musubi-tuner-nodes'\n" \
           "    & 'C:\\ComfyUI\\venv\\Scripts\\python.exe' '-m' 'executor' 'install'" in text

"""``python -m executor install`` end to end against a local git repository holding a tiny
musubi-like project (tests/install_fixtures.py): a real clone, a real venv, real pip
installs (easydict and hatchling from PyPI), torch from stand-in wheel files through the
documented ``--torch-wheels`` seam, the real check, and the user settings file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from executor.musubi.flagfacts import load_flags
from executor.setup import install as install_module
from executor.setup import install_hint
from install_fixtures import (PROJECT_ROOT, git, install_env, log_of, make_musubi_repo, make_torch_wheels, run_install,
                              tool_dir)

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(not ((3, 10) <= sys.version_info[:2] <= (3, 12)),
                       reason="the musubi venv is made from the test's Python, which must be 3.10-3.12"),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
    pytest.mark.skipif(os.name == "nt", reason="the tool folder uses symlinks"),
]

OTHER_KEYS = {"stall_timeout": 900, "env": {"HF_HOME": "/data/hf"}, "_note": "written by me"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("install-world")
    return {"repo": make_musubi_repo(base / "repo"), "wheels": make_torch_wheels(base / "wheels")}


def settings_with_other_keys(env: dict[str, str]) -> Path:
    path = Path(env["MUSUBI_TUNER_NODES_CONFIG"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(OTHER_KEYS, indent=1))
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wheels_args(world: dict[str, Path]) -> list[str]:
    return ["--torch", "cpu", "--torch-wheels", str(world["wheels"])]


@pytest.fixture(scope="module")
def installed(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("installed")
    env = install_env(base, world["repo"])
    settings = settings_with_other_keys(env)
    done = run_install(env, *wheels_args(world))
    return {"env": env, "base": base, "settings": settings, "run": done,
            "root": base / "home" / ".local" / "share" / "musubi-tuner-nodes" / "musubi-tuner"}


def test_a_fresh_install_clones_makes_the_venv_installs_checks_and_writes_the_settings(installed: dict) -> None:
    run, root = installed["run"], installed["root"]
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    for number in range(1, 8):
        assert f"[{number}/7]" in out
    assert "cloned v0.3.4" in out and "made the venv" in out and "usable: yes" in out
    assert git("describe", "--tags", cwd=root) == "v0.3.4"
    venv_python = root / ".venv" / "bin" / "python"
    assert venv_python.exists()
    # The settings: our two paths added, everything else kept as it was.
    data = json.loads(installed["settings"].read_text())
    assert data["musubi_tuner"] == {"root_path": str(root), "venv_path": str(root / ".venv")}
    assert {k: data[k] for k in OTHER_KEYS} == OTHER_KEYS
    # The full pip output is in the log file, not on the screen.
    log = log_of(out).read_text()
    assert "Successfully installed easydict-1.13 musubi-tuner-0.3.4" in log
    assert "Successfully installed easydict" not in out
    # musubi-tuner is an editable install of the checkout, torch the stand-in wheels.
    shown = subprocess.run([str(venv_python), "-m", "pip", "show", "-f", "musubi-tuner"], capture_output=True,
                           text=True, env=installed["env"])
    assert f"Editable project location: {root}" in shown.stdout


def test_python_m_executor_check_then_finds_the_install_usable(installed: dict) -> None:
    assert installed["run"].returncode == 0
    done = subprocess.run([sys.executable, "-m", "executor", "check"], cwd=PROJECT_ROOT, env=installed["env"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usable: yes" in done.stdout and str(installed["root"]) in done.stdout


def test_running_it_again_redoes_nothing(installed: dict, world: dict[str, Path]) -> None:
    assert installed["run"].returncode == 0
    root, settings = installed["root"], installed["settings"]
    before = (digest(settings), (root / ".venv" / "pyvenv.cfg").stat().st_mtime_ns, git("rev-parse", "HEAD", cwd=root))
    again = run_install(installed["env"], *wheels_args(world))
    assert again.returncode == 0, again.stdout + again.stderr
    after = (digest(settings), (root / ".venv" / "pyvenv.cfg").stat().st_mtime_ns, git("rev-parse", "HEAD", cwd=root))
    assert after == before
    commands = [line.split(" $ ", 1)[1] for line in log_of(again.stdout).read_text().splitlines()
                if line.startswith("===== ") and " $ " in line]
    assert commands, "the log names every command it ran"
    assert not [c for c in commands if " clone " in c or " -m venv " in c or " install " in c], commands
    assert "already at v0.3.4" in again.stdout and "are already installed" in again.stdout
    assert "already points at this install" in again.stdout


def test_upgrade_moves_the_checkout_to_another_tag(world: dict[str, Path], tmp_path: Path) -> None:
    env = install_env(tmp_path, world["repo"])
    settings = settings_with_other_keys(env)
    first = run_install(env, *wheels_args(world))
    assert first.returncode == 0, first.stdout + first.stderr
    root = Path(json.loads(settings.read_text())["musubi_tuner"]["root_path"])

    kept = run_install(env, "--ref", "v0.3.5", *wheels_args(world))
    assert kept.returncode == 0
    assert "run with --upgrade" in kept.stdout and git("describe", "--tags", cwd=root) == "v0.3.4"

    moved = run_install(env, "--ref", "v0.3.5", "--upgrade", *wheels_args(world))
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert git("describe", "--tags", cwd=root) == "v0.3.5"
    assert "flag checks were recorded for musubi-tuner v0.3.4" in moved.stdout
    assert "musubi-tuner 0.3.5 installed (editable)" in moved.stdout
    assert (root / "src" / "musubi_tuner" / "qwen_image_train_network.py").exists()

    (root / "src" / "musubi_tuner" / "__init__.py").write_text("# my local change\n")
    refused = run_install(env, "--ref", "v0.3.4", "--upgrade", *wheels_args(world))
    assert refused.returncode == 1 and "has local changes" in refused.stdout and "git stash" in refused.stdout
    assert (root / "src" / "musubi_tuner" / "__init__.py").read_text() == "# my local change\n"


# --- failures: exit code, a message saying what to do, the settings file untouched ------------

def assert_failed_cleanly(done: subprocess.CompletedProcess, settings: Path, before: str, *words: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    for word in words:
        assert word in done.stdout, done.stdout
    assert "Nothing was written to the settings." in done.stdout
    assert "Traceback" not in done.stderr  # the installer itself did not crash
    assert digest(settings) == before


def test_without_git(world: dict[str, Path], tmp_path: Path) -> None:
    env = install_env(tmp_path, world["repo"], path=tool_dir(tmp_path / "bin", git_tool=False))
    settings = settings_with_other_keys(env)
    done = run_install(env, *wheels_args(world))
    assert_failed_cleanly(done, settings, digest(settings), "git is not installed", "hint: install git")


def test_git_server_unreachable(world: dict[str, Path], tmp_path: Path) -> None:
    env = install_env(tmp_path, None)
    env["MUSUBI_TUNER_GIT"] = "http://127.0.0.1:9/kohya-ss/musubi-tuner.git"  # nothing listens on port 9
    settings = settings_with_other_keys(env)
    done = run_install(env, *wheels_args(world))
    assert_failed_cleanly(done, settings, digest(settings), "git clone", "failed", "network is not reachable",
                          "run the same command again")
    data_dir = tmp_path / "home" / ".local" / "share" / "musubi-tuner-nodes"
    assert not (data_dir / "musubi-tuner").exists()
    assert not [p for p in data_dir.iterdir() if ".partial-" in p.name]  # no half clone left behind


def test_package_index_unreachable(world: dict[str, Path], tmp_path: Path) -> None:
    env = {k: v for k, v in install_env(tmp_path, world["repo"]).items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_RETRIES="1",
               PIP_NO_CACHE_DIR="1")
    settings = settings_with_other_keys(env)
    done = run_install(env, *wheels_args(world))
    assert_failed_cleanly(done, settings, digest(settings), "failed", "network is not reachable",
                          "what is already done is kept")


def test_no_compatible_python(world: dict[str, Path], tmp_path: Path) -> None:
    env = install_env(tmp_path, world["repo"], path=tool_dir(tmp_path / "bin", python=False))
    settings = settings_with_other_keys(env)
    done = run_install(env, *wheels_args(world))
    assert_failed_cleanly(done, settings, digest(settings), "no Python 3.10-3.12 found", "uv: not found",
                          "install Python 3.12", "--python")


def test_a_python_given_with_the_wrong_version_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    env = install_env(tmp_path, world["repo"])
    settings = settings_with_other_keys(env)
    done = run_install(env, "--python", str(tmp_path / "no-such-python"), *wheels_args(world))
    assert_failed_cleanly(done, settings, digest(settings), "cannot be used", "cannot be started")


def test_a_settings_file_that_is_not_json_stops_before_anything(world: dict[str, Path], tmp_path: Path) -> None:
    env = install_env(tmp_path, world["repo"])
    settings = Path(env["MUSUBI_TUNER_NODES_CONFIG"])
    settings.parent.mkdir(parents=True)
    settings.write_text('{"stall_timeout": 900,}')
    done = run_install(env, *wheels_args(world))
    assert_failed_cleanly(done, settings, digest(settings), "not valid JSON")
    assert not (tmp_path / "home" / ".local" / "share" / "musubi-tuner-nodes" / "musubi-tuner").exists()


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-Urm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(os.name == "nt" or shutil.which("unshare") is None or not _unshare_works(),
                    reason="needs unshare -Urm (a private mount namespace) to make a small full disk")
@pytest.mark.parametrize("where", ["install folder", "temp folder"])
def test_a_full_disk(world: dict[str, Path], tmp_path: Path, where: str) -> None:
    # A real small filesystem (tmpfs in a private mount namespace): the install folder on it is
    # refused up front; a temp folder on it fills up while the venv is made (ensurepip unpacks pip there).
    env = install_env(tmp_path, world["repo"])
    settings = settings_with_other_keys(env)
    before = digest(settings)
    small = tmp_path / "small"
    small.mkdir()
    args = [*wheels_args(world)]
    if where == "install folder":
        args += ["--dir", str(small / "musubi-tuner")]
    else:
        env["TMPDIR"] = str(small)
    script = f'{shutil.which("mount")} -t tmpfs -o size=256k tmpfs "$0" && exec "$@"'
    done = subprocess.run([shutil.which("unshare"), "-Urm", "/bin/sh", "-c", script, str(small), sys.executable, "-m", "executor",
                           "install", *args], cwd=PROJECT_ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert_failed_cleanly(done, settings, before, "disk", "--dir", "again")
    if where == "install folder":
        assert "not enough disk space" in done.stdout and "GB needed" in done.stdout
    else:
        assert "a disk is full" in done.stdout and f"{small}: 0 MB free" in done.stdout


# --- smaller pieces -------------------------------------------------------------------------

def test_the_default_ref_is_the_one_the_flag_facts_were_recorded_from() -> None:
    recorded = load_flags()["musubi_tuner"]
    assert install_module.PACK_REF == "v" + recorded["version"]
    assert install_module.PACK_COMMIT == recorded["commit"]


def test_the_shown_command_runs_from_any_folder(tmp_path: Path) -> None:
    pack = str(PROJECT_ROOT)
    text = install_module.install_command(pack, sys.executable, "posix", extra=["--help"])
    assert text == f"(cd {pack} && {sys.executable} -m executor install --help)"
    done = subprocess.run(["sh", "-c", text], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "usage: python -m executor install" in done.stdout


def test_an_embedded_python_gets_a_command_that_finds_the_pack_itself(tmp_path: Path) -> None:
    # ComfyUI's portable build: python_embeded/python312._pth puts Python in isolated mode, so
    # "-m executor" from the pack folder would not find the pack.
    embedded = tmp_path / "python_embeded"
    embedded.mkdir()
    (embedded / "python312._pth").write_text("python312.zip\n.\nimport site\n")
    python = str(embedded / "python.exe")
    pack = str(PROJECT_ROOT)
    for shell in ("cmd", "powershell", "posix"):
        assert "runpy.run_module" in install_module.install_command(pack, python, shell)
    # The same bootstrap, run isolated (-I: no current folder on sys.path) from the pack folder:
    done = subprocess.run([sys.executable, "-I", "-c", install_hint._BOOTSTRAP, "install", "--help"],
                          cwd=pack, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--torch-wheels" in done.stdout
    cmd = install_module.install_command(pack, python, "cmd").splitlines()
    assert cmd[0] == f'cd /d ^"{pack}^"' and cmd[1].startswith(f'"{python}" -c ^"import runpy')


def test_executor_check_without_musubi_names_the_install_command(tmp_path: Path) -> None:
    env = install_env(tmp_path, None)
    settings_with_other_keys(env)
    done = subprocess.run([sys.executable, "-m", "executor", "check"], cwd=tmp_path, env={
        **env, "PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "no musubi-tuner checkout found" in done.stdout and "python -m executor install" in done.stdout


def test_pip_output_becomes_one_progress_line_and_a_download_summary() -> None:
    from executor.setup.steps import PipWatcher

    shown: list[str] = []
    ui = type("UI", (), {"status": lambda self, text, important=False: shown.append(text)})()
    watcher = PipWatcher(type("S", (), {"ui": ui})())
    for line in ["Collecting torch>=2.5.1",
                 "  Downloading https://download.pytorch.org/whl/cu124/torch-2.6.0%2Bcu124-cp311-cp311-win_amd64.whl (2449.3 MB)",
                 "Progress 1224650000 of 2449300000",
                 "Downloading filelock-4.3.1-py3-none-any.whl (244 kB)",
                 "Installing collected packages: filelock, torch"]:
        watcher(line)
    assert shown == ["collecting torch>=2.5.1 (1 requirements so far)",
                     "downloading torch-2.6.0+cu124-cp311-cp311-win_amd64.whl (2449.3 MB)",
                     "downloading torch-2.6.0+cu124-cp311-cp311-win_amd64.whl: 1,225 of 2,449 MB (50 %)",
                     "downloading filelock-4.3.1-py3-none-any.whl (244 kB)",
                     "installing 2 packages"]
    assert watcher.summary() == ("downloaded 2 files, 2,450 MB; the largest "
                                 "torch-2.6.0+cu124-cp311-cp311-win_amd64.whl (2449.3 MB)")

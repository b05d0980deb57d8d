"""The venv probe against REAL separate venvs holding fake torch / accelerate packages,
and ``python -m executor check`` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from executor.setup import probe as probe_module
from executor.setup.discovery import MusubiInstall, resolve_install
from executor.setup.settings import Settings, load_settings
from executor.setup.probe import (OPTIONAL_MODULES, REQUIRED_MODULES, ProbeReport, attention_available,
                            format_report, probe)

pytestmark = pytest.mark.timeout(120)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

FAKE_TORCH = '''\
__version__ = "2.5.1+cu124"
class version:
    cuda = "12.4"
class cuda:
    @staticmethod
    def is_available():
        return True
    @staticmethod
    def device_count():
        return 2
    @staticmethod
    def get_device_name(i):
        if i == 1:
            raise RuntimeError("CUDA error: busy")
        return "Fake GeForce RTX 4090"
'''


def site_packages(venv: Path) -> Path:
    if os.name == "nt":
        return venv / "Lib" / "site-packages"
    return next(venv.glob("lib/python*/site-packages"))


def make_real_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    return path


def add_package(venv: Path, name: str, init: str = "", version: str | None = None,
                dist: str | None = None) -> None:
    pkg = site_packages(venv) / name
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(init)
    if version is not None:
        info = site_packages(venv) / f"{(dist or name).replace('-', '_')}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist or name}\nVersion: {version}\n")


def make_checkout(root: Path) -> Path:
    pkg = root / "src" / "musubi_tuner"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "wan_train_network.py").write_text("")
    return root


@pytest.fixture(scope="session")
def full(tmp_path_factory: pytest.TempPathFactory) -> MusubiInstall:
    """A checkout whose .venv has everything musubi needs (fakes), plus flash-attn."""
    root = make_checkout(tmp_path_factory.mktemp("full") / "musubi-tuner")
    venv = make_real_venv(root / ".venv")
    add_package(venv, "torch", FAKE_TORCH)
    add_package(venv, "accelerate", "raise ImportError('must not be imported when metadata has it')",
                version="1.6.0")
    add_package(venv, "flash_attn", version="2.7.4", dist="flash-attn")
    add_package(venv, "bitsandbytes")  # present, no metadata: version unknown
    for module in REQUIRED_MODULES:
        if module not in ("accelerate",):
            add_package(venv, module)
    return resolve_install(Settings(root_path=str(root)))


@pytest.fixture(scope="session")
def bare(tmp_path_factory: pytest.TempPathFactory) -> MusubiInstall:
    """A checkout with a fresh venv: musubi_tuner imports (via PYTHONPATH) but nothing else is there."""
    root = make_checkout(tmp_path_factory.mktemp("bare") / "musubi-tuner")
    make_real_venv(root / "venv")
    return resolve_install(Settings(root_path=str(root)))


@pytest.fixture(autouse=True)
def _fresh_memo() -> None:
    probe_module._MEMO.clear()


def test_a_complete_venv_is_usable(full: MusubiInstall) -> None:
    report = probe(full, Settings())
    assert report.problems == ()
    assert report.python_version == "%d.%d.%d" % sys.version_info[:3]
    assert report.musubi_ok and report.musubi_from_checkout
    assert Path(report.musubi_file) == Path(full.package_dir) / "__init__.py"
    assert report.torch_version == "2.5.1+cu124" and report.cuda_available and report.cuda_version == "12.4"
    assert report.devices[0] == "Fake GeForce RTX 4090" and "CUDA error: busy" in report.devices[1]
    assert report.accelerate_version == "1.6.0"
    assert report.missing_modules == ()
    assert report.optional["flash_attn"] == "2.7.4" and report.optional["bitsandbytes"] == ""
    assert report.optional["xformers"] is None and report.optional["sageattention"] is None
    assert report.usable
    text = format_report(report, full)
    assert "✓ torch 2.5.1+cu124, CUDA 12.4: Fake GeForce RTX 4090" in text
    assert "✓ accelerate 1.6.0" in text and "✓ flash-attn 2.7.4 (for --flash_attn)" in text
    assert "– xformers not installed; optional, needed only for --xformers" in text
    assert "usable: yes" in text


def test_missing_pieces_are_reported_with_fixes(bare: MusubiInstall) -> None:
    report = probe(bare, Settings())
    assert report.musubi_ok and report.musubi_from_checkout  # src is first on PYTHONPATH
    assert report.torch_version is None and "No module named 'torch'" in report.torch_error
    assert report.accelerate_version is None
    assert set(report.missing_modules) == set(REQUIRED_MODULES)
    assert not report.usable
    text = format_report(report, bare)
    assert "✗ torch does not import: ModuleNotFoundError: No module named 'torch'" in text
    assert f"fix: {bare.python} -m pip install torch torchvision --index-url" in text
    assert "✗ accelerate is missing" in text
    assert f"fix: cd {bare.root} && {bare.python} -m pip install -e ." in text
    assert "usable: NO" in text
    ascii_text = format_report(report, bare, ascii_only=True)
    assert not {"✓", "✗", "–"} & set(ascii_text)  # for consoles whose code page lacks them
    assert "[X]  torch does not import" in ascii_text


def test_the_probe_sees_the_settings_environment(full: MusubiInstall, tmp_path: Path) -> None:
    # A PYTHONPATH from the settings (the CUDA shim case) comes after musubi's src.
    shim = tmp_path / "shim"
    add_dir = shim / "xformers"
    add_dir.mkdir(parents=True)
    (add_dir / "__init__.py").write_text("")
    report = probe(full, Settings(env={"PYTHONPATH": str(shim)}))
    assert report.optional["xformers"] == "" and report.musubi_from_checkout


def test_musubi_that_does_not_import(tmp_path: Path, full: MusubiInstall) -> None:
    root = tmp_path / "broken"
    pkg = root / "src" / "musubi_tuner"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("import voluptuous_missing_dependency\n")
    install = MusubiInstall(root=str(root), venv=full.venv, python=full.python, accelerate=None,
                            python_version=full.python_version, chosen_by="test")
    report = probe(install, Settings())
    assert not report.musubi_ok and "voluptuous_missing_dependency" in report.musubi_error
    assert "✗ musubi_tuner does not import" in format_report(report, install)
    assert not report.usable


def test_an_installed_copy_shadowing_the_checkout_is_flagged() -> None:
    report = ProbeReport(python="/v/bin/python", python_version="3.10.12", musubi_ok=True,
                         musubi_file="/v/lib/python3.10/site-packages/musubi_tuner/__init__.py",
                         musubi_expected_dir="/m/src/musubi_tuner", torch_version="2.5.1",
                         accelerate_version="1.6.0", checked=("python", "musubi_tuner", "modules"))
    assert not report.musubi_from_checkout and not report.usable
    text = format_report(report)
    assert "not from the checkout /m/src/musubi_tuner" in text and "pip uninstall musubi-tuner" in text


def test_cpu_only_torch_is_explained() -> None:
    report = ProbeReport(python="/v/bin/python", torch_version="2.5.1+cpu", cuda_available=False,
                         checked=("torch",))
    assert "CPU-only build of torch" in format_report(report)
    report = ProbeReport(python="/v/bin/python", torch_version="2.5.1+cu124", cuda_version="12.4",
                         cuda_available=False, checked=("torch",))
    text = format_report(report)
    assert "! CUDA is not available: torch is built for CUDA 12.4" in text and "CUDA_VISIBLE_DEVICES" in text


def test_results_are_cached_per_venv_until_it_changes(full: MusubiInstall, tmp_path: Path) -> None:
    settings = Settings()
    first = probe(full, settings, cache_dir=tmp_path)
    assert not first.cached
    again = probe(full, settings, cache_dir=tmp_path)
    assert again.cached and again.torch_version == first.torch_version
    assert not probe(full, settings, refresh=True).cached
    # Another process (empty memory) reads the disk cache.
    probe_module._MEMO.clear()
    from_disk = probe(full, settings, cache_dir=tmp_path)
    assert from_disk.cached and from_disk.optional == first.optional and from_disk.devices == first.devices
    # Other settings env -> another answer; installing a package -> the cache is stale.
    assert not probe(full, Settings(env={"CUDA_VISIBLE_DEVICES": "0"}), cache_dir=tmp_path).cached
    time.sleep(0.01)
    add_package(Path(full.venv), "xformers_probe_cache_test")
    os.utime(site_packages(Path(full.venv)), None)
    assert not probe(full, settings, cache_dir=tmp_path).cached


@pytest.mark.skipif(os.name == "nt", reason="POSIX shell-script interpreter stand-ins")
def test_a_hanging_or_crashing_interpreter(tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "m")
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(0o755)
    install = MusubiInstall(root=str(root), venv=str(tmp_path), python=str(script), accelerate=None,
                            python_version="3.10.0", chosen_by="test")
    started = time.monotonic()
    report = probe(install, Settings(), timeout=1)
    assert time.monotonic() - started < 20
    assert "did not finish the check within 1 s" in report.problems[0] and not report.usable
    assert "did not finish" in format_report(report, install)

    script.write_text("#!/bin/sh\necho 'Fatal Python error: init_fs_encoding' >&2\nexit 1\n")
    report = probe(install, Settings())
    assert "stopped before 'python' (exit code 1)" in report.problems[0]
    assert "init_fs_encoding" in report.problems[0]
    # A failed probe is not remembered.
    assert not probe(install, Settings()).cached


@pytest.mark.parametrize("backend, expected", [("sdpa", True), ("--sdpa", True), ("flash_attn", True),
                                               ("flash", True), ("xformers", False), ("sage_attn", False),
                                               ("sageattention", False), ("flash3", False)])
def test_attention_available(full: MusubiInstall, backend: str, expected: bool) -> None:
    assert attention_available(probe(full, Settings()), backend) is expected


def test_attention_available_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="sdpa"):
        attention_available(ProbeReport(python="p"), "flex")
    assert not attention_available(ProbeReport(python="p"), "sdpa")  # no torch


def test_optional_module_table_shape() -> None:
    for module, (dist, needed_by, fix) in OPTIONAL_MODULES.items():
        assert module.isidentifier() and dist and needed_by and fix
        fix.format(python="py", torch="2")


# --- python -m executor check ----------------------------------------------------------------

def run_check(tmp_path: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSUBI_TUNER")}
    env.update(HOME=str(tmp_path), USERPROFILE=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "cfg"),
               APPDATA=str(tmp_path / "cfg"), PYTHONIOENCODING="utf-8", **env_vars)
    return subprocess.run([sys.executable, "-m", "executor", "check", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=90)


def test_check_end_to_end_usable(tmp_path: Path, full: MusubiInstall) -> None:
    done = run_check(tmp_path, MUSUBI_TUNER_ROOT=full.root, MUSUBI_TUNER_ENV=full.venv)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "environment variable MUSUBI_TUNER_ENV" in out and str(PROJECT_ROOT / "config.json") in out
    assert f"checkout: {full.root}" in out and f"venv:     {full.venv}" in out
    assert "✓ musubi_tuner imports from the checkout" in out and "usable: yes" in out
    assert str(tmp_path / "cfg" / "musubi-tuner-nodes" / "config.json") in out  # where user settings go


def test_check_end_to_end_missing_pieces(tmp_path: Path, bare: MusubiInstall) -> None:
    done = run_check(tmp_path, MUSUBI_TUNER_ROOT=bare.root)
    assert done.returncode == 1
    assert "✗ torch does not import" in done.stdout and "fix:" in done.stdout
    assert "venv found inside the checkout (venv)" in done.stdout


def test_check_end_to_end_setup_error(tmp_path: Path, bare: MusubiInstall) -> None:
    done = run_check(tmp_path, MUSUBI_TUNER_ROOT=bare.root, MUSUBI_TUNER_ENV=str(tmp_path / "no-venv"))
    assert done.returncode == 1
    assert "TrainerNotFound" in done.stdout and str(tmp_path / "no-venv") in done.stdout
    assert "MUSUBI_TUNER_ENV" in done.stdout


def test_check_json(tmp_path: Path, full: MusubiInstall) -> None:
    user = tmp_path / "cfg" / "musubi-tuner-nodes" / "config.json"
    user.parent.mkdir(parents=True)
    user.write_text(json.dumps({"musubi_tuner": {"root_path": full.root},
                                "env": {"HF_TOKEN": "hf_value", "HF_HOME": "/hf"}}))
    done = run_check(tmp_path, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["install"]["root"] == full.root and data["report"]["usable"] is True
    assert data["settings"]["env"] == {"HF_TOKEN": "***", "HF_HOME": "/hf"}
    assert str(user) in data["settings"]["sources"] and data["error"] is None
    assert "hf_value" not in done.stdout


def test_check_json_setup_error(tmp_path: Path) -> None:
    user = tmp_path / "cfg" / "musubi-tuner-nodes" / "config.json"
    user.parent.mkdir(parents=True)
    user.write_text('{"stall_timeout": -1}')
    done = run_check(tmp_path, "--json")
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["error"]["type"] == "ConfigError" and "stall_timeout" in data["error"]["message"]


def test_load_settings_sees_the_same_sources_as_check(tmp_path: Path, full: MusubiInstall) -> None:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "MUSUBI_TUNER_ROOT": full.root}
    s = load_settings(PROJECT_ROOT, environ=env)
    assert s.sources[-1] == "environment variable MUSUBI_TUNER_ROOT"


def test_check_lists_the_folders_steps_may_write_into_and_read_from(tmp_path: Path, full: MusubiInstall) -> None:
    user = tmp_path / "cfg" / "musubi-tuner-nodes" / "config.json"
    user.parent.mkdir(parents=True)
    user.write_text(json.dumps({"musubi_tuner": {"root_path": full.root},
                                "read_roots": ["/data/datasets", "prompts"]}))
    out = run_check(tmp_path).stdout
    listed = f"read_roots (musubi may be given files from):  [{user}]\n    /data/datasets\n    {user.parent / 'prompts'}"
    assert listed in out, out
    assert "output_roots: not set, so steps may write into any folder (inside ComfyUI: its own folders only)" in out
    data = json.loads(run_check(tmp_path, "--json").stdout)
    assert data["settings"]["read_roots"] == ["/data/datasets", str(user.parent / "prompts")]

"""The fault catalogue at plan level (executor.runs.plan with the fake musubi venv): the faults that
happen between two lines of one node call, or need a real full file system.

- the venv disappears after pre-flight and before launch (a race inside one node call);
- two runs write into one output folder at once (the second is refused; file hashes prove that
  nothing of the first was touched);
- the run folder's disk fills up (a real 1 MB tmpfs in a private mount namespace; skipped where
  ``unshare -Urm`` is not allowed): the run goes on, the LoRA is written, the result says so.

The same faults through the nodes in a real ComfyUI are in tests/test_faults_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("hardening")

import hardening  # noqa: E402,F401  (registers the marker before the decorators below)
import media  # noqa: E402
from executor.setup.settings import Settings  # noqa: E402
from executor.setup.discovery import resolve_install
from executor.errors import TrainerNotFound  # noqa: E402
from executor.runs.plan import PlanSpec, make_plan  # noqa: E402
from executor.runs.locks import RunLocked
from executor.runs.execute import execute_plan
from fakes import FakeMusubi, fake_musubi  # noqa: E402,F401  (session fixture)
from procs import wait_all_gone  # noqa: E402

pytest_plugins = ["hardening"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IS_LINUX = sys.platform.startswith("linux")


class Work:
    """A cached dataset, model files and settings for one fake musubi venv."""

    def __init__(self, tmp: Path, fake: FakeMusubi, venv: Path | None = None, **env: str) -> None:
        self.tmp = tmp
        self.fake = fake
        self.pidfile = tmp / "pids.txt"
        self.toml = fake.make_dataset(tmp / "data")
        self.models = {name: str(media.fake_safetensors(tmp / "models" / f"{name}.safetensors"))
                       for name in ("dit", "vae", "t5")}
        self.settings = Settings(venv_path=str(venv or fake.venv), root_path=str(fake.root),
                                 env={"FAKE_MUSUBI_PIDFILE": str(self.pidfile), **env})
        self.install = resolve_install(self.settings)
        self.out = tmp / "out"
        self.runs = tmp / "runs"

    def spec(self, step: str, **kwargs: Any) -> PlanSpec:
        values: dict[str, Any] = dict(
            architecture="wan", step=step, dataset_config=str(self.toml), models=self.models,
            selectors={"task": "t2v-1.3B"}, options={"max_train_epochs": 2, "optimizer_type": "adamw"},
            output_dir=str(self.out), output_name="my_lora", runs_dir=str(self.runs))
        values.update(kwargs)
        return PlanSpec(**values)

    def plan(self, step: str, **kwargs: Any) -> Any:
        return make_plan(self.settings, self.spec(step, **kwargs), install=self.install, use_probe=False)

    def cache_all(self) -> None:
        for step in ("cache_latents", "cache_text_encoder"):
            assert execute_plan(self.plan(step)).ok

    def pids(self) -> list[int]:
        if not self.pidfile.exists():
            return []
        return [int(line.split()[1]) for line in self.pidfile.read_text().splitlines() if line.strip()]


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def cli_env(work: Work, **fake: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MUSUBI_TUNER", "FAKE_MUSUBI"))}
    config = work.tmp / "cli-settings.json"
    config.write_text(json.dumps({"env": {"FAKE_MUSUBI_PIDFILE": str(work.pidfile), **fake}}), encoding="utf-8")
    env.update(MUSUBI_TUNER_ENV=str(work.fake.venv), MUSUBI_TUNER_ROOT=str(work.fake.root),
               MUSUBI_TUNER_NODES_CONFIG=str(config), XDG_CACHE_HOME=str(work.tmp / "cache-home"))
    return env


# ---------------------------------------------------------------------------------------- the venv vanishes

@pytest.mark.hardening("fault", "venv_vanishes")
@pytest.mark.timeout(120)
def test_a_venv_deleted_between_pre_flight_and_launch_is_a_setup_error(fake_musubi: FakeMusubi,  # noqa: F811
                                                                     tmp_path: Path, hardening: Any) -> None:
    venv = tmp_path / "musubi venv"
    shutil.copytree(fake_musubi.venv, venv, symlinks=True)
    work = Work(tmp_path, fake_musubi, venv=venv)
    work.cache_all()
    plan = work.plan("train")  # pre-flight passes: the venv is there
    started = work.pids()
    shutil.rmtree(venv)
    with pytest.raises(TrainerNotFound) as caught:
        execute_plan(plan)
    message = str(caught.value)
    assert str(venv) in message and "was not found" in message, message
    assert "venv_path" in caught.value.hint
    assert work.pids() == started, "nothing may start"
    record = json.loads((Path(plan.run_dir) / "result.json").read_text(encoding="utf-8"))
    assert record["status"] == "error" and record["failure_kind"] == "TrainerNotFound"
    assert not (work.out / "my_lora.safetensors").exists()
    hardening.record(processes_left=0, files_lost=0)


# ---------------------------------------------------------------------------------------- two runs, one folder

@pytest.mark.hardening("fault", "same_output_folder")
@pytest.mark.timeout(180)
def test_a_second_run_into_a_busy_output_folder_is_refused_and_touches_nothing(
        fake_musubi: FakeMusubi, tmp_path: Path, hardening: Any) -> None:  # noqa: F811
    work = Work(tmp_path, fake_musubi)
    work.cache_all()
    work.out.mkdir()
    (work.out / "earlier_lora.safetensors").write_bytes(media.fake_safetensors(tmp_path / "x.safetensors")
                                                        .read_bytes())
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"architecture": "wan", "step": "train", "dataset_config": str(work.toml),
                                "models": work.models, "selectors": {"task": "t2v-1.3B"},
                                "options": {"max_train_epochs": 2, "optimizer_type": "adamw"},
                                "output_dir": str(work.out), "output_name": "first"}), encoding="utf-8")
    # The first run sits in its silent model loading while the second one tries.
    first = subprocess.Popen([sys.executable, "-m", "executor", "plan", str(spec), "--run", "--runs-dir",
                              str(tmp_path / "first runs")], cwd=PROJECT_ROOT,
                             env=cli_env(work, FAKE_MUSUBI_LOAD_SECONDS="8"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, encoding="utf-8")
    try:
        for line in first.stdout:
            if "Loading DiT model" in line:
                break
        assert first.poll() is None, first.stderr.read()
        before = hashes(work.out)
        assert ".musubi-tuner-nodes.lock" in before
        second = work.plan("train", output_name="second")
        with pytest.raises(RunLocked) as caught:
            execute_plan(second)
        after = hashes(work.out)
        rest, errors = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    message = str(caught.value)
    assert "another run" in message and "refused and touched nothing" in message and str(work.out) in message
    assert after == before, "the refused run changed the busy folder"
    assert not Path(second.run_dir).exists(), "the refused run made a run folder"
    assert first.returncode == 0, errors
    assert json.loads(rest.strip().splitlines()[-1])["result"]["status"] == "succeeded"
    final = hashes(work.out)
    lost = [name for name, digest in before.items() if name != ".musubi-tuner-nodes.lock" and final.get(name) != digest]
    hardening.record(files_lost=len(lost), processes_left=len(wait_all_gone(work.pids())))
    assert lost == []
    assert "first.safetensors" in final and "second.safetensors" not in final


# ---------------------------------------------------------------------------------------- a full disk

def _private_mounts_work() -> bool:
    if not IS_LINUX or shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    try:
        return subprocess.run(["unshare", "-Urm", "true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


CHILD = textwrap.dedent("""
    import json, subprocess, sys
    sys.path.insert(0, {root!r})
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", {runs!r}], check=True)
    from executor.setup.settings import Settings
    from executor.setup.discovery import resolve_install
    from executor.runs.plan import PlanSpec, make_plan
    from executor.runs.execute import execute_plan

    settings = Settings(venv_path={venv!r}, root_path={root_musubi!r}, env={env!r})
    install = resolve_install(settings)
    spec = PlanSpec(**{spec!r})
    plan = make_plan(settings, spec, install=install, use_probe=False)
    result = execute_plan(plan)
    print(json.dumps({{"ok": result.ok, "warnings": result.warnings, "run_dir": plan.run_dir}}))
""")


@pytest.mark.hardening("fault", "log_disk_full")
@pytest.mark.skipif(not _private_mounts_work(), reason="needs `unshare -Urm` (user and mount namespaces)")
@pytest.mark.timeout(180)
def test_a_full_disk_under_the_run_folder_does_not_stop_the_run(fake_musubi: FakeMusubi,  # noqa: F811
                                                               tmp_path: Path, hardening: Any) -> None:
    work = Work(tmp_path, fake_musubi)
    work.cache_all()
    runs = tmp_path / "runs on a 1 MB disk"
    runs.mkdir()
    spec = dict(architecture="wan", step="train", dataset_config=str(work.toml), models=work.models,
                selectors={"task": "t2v-1.3B"}, options={"max_train_epochs": 2, "optimizer_type": "adamw"},
                output_dir=str(work.out), output_name="full_disk", runs_dir=str(runs))
    env = {"FAKE_MUSUBI_PIDFILE": str(work.pidfile), "FAKE_MUSUBI_SCENARIO": "long_line",
           "FAKE_MUSUBI_LONG_LINE_BYTES": str(3 * 1024 * 1024)}
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(PROJECT_ROOT), runs=str(runs), venv=str(work.fake.venv),
                                   root_musubi=str(work.fake.root), env=env, spec=spec), encoding="utf-8")
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("MUSUBI_TUNER", "FAKE_MUSUBI"))}
    done = subprocess.run(["unshare", "-Urm", sys.executable, str(script)], capture_output=True, text=True,
                          timeout=150, env=child_env)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["ok"], outcome
    warnings = " ".join(outcome["warnings"])
    assert "run.log could not be written" in warnings and "No space left on device" in warnings, warnings
    assert "result.json could not be written" in warnings, warnings
    assert (work.out / "full_disk.safetensors").is_file(), "the LoRA was written"
    hardening.record(processes_left=len(wait_all_gone(work.pids())), files_lost=0)

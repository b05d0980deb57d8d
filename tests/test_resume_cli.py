"""``python -m executor resume`` / ``trust-state`` and a plan spec's ``resume``, as a user runs
them from a terminal (real subprocesses, the fake musubi venv, the session's scratch data folder)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import PROJECT_ROOT
from executor.errors import Cancelled
from executor.runs.execute import execute_plan
from executor.runs.trust import Registry
from fakes import fake_musubi  # noqa: F401  (session fixture)
from test_resume_run import SPE, Runs, loras, stop_after_state

pytestmark = pytest.mark.timeout(180)


def cli(args: list[str], tmp: Path, fake: Any) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MUSUBI_TUNER_ENV", "MUSUBI_TUNER_ROOT",
                                                                    "FAKE_MUSUBI", "PYTHONUNBUFFERED"))}
    config = tmp / "user-config.json"
    config.write_text(json.dumps({"env": {"FAKE_MUSUBI_STEP_SECONDS": "0.05"}}), encoding="utf-8")
    env.update(MUSUBI_TUNER_ENV=str(fake.venv), MUSUBI_TUNER_ROOT=str(fake.root), MUSUBI_TUNER_NODES_CONFIG=str(config))
    return subprocess.run([sys.executable, "-m", "executor", *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=150)


@pytest.fixture
def stopped(tmp_path: Path, fake_musubi: Any) -> tuple[Runs, Path]:  # noqa: F811
    runs = Runs(tmp_path, fake_musubi)
    runs.cache()
    plan = runs.plan("cli-first", settings=runs.settings(FAKE_MUSUBI_PAUSE_AFTER_STEP=str(2 * SPE)))
    with pytest.raises(Cancelled):
        execute_plan(plan, should_cancel=stop_after_state(Registry(), Path(plan.run_dir) / "my_lora-000002-state"),
                     check=True)
    return runs, Path(plan.run_dir)


def test_resume_continues_a_stopped_run_in_a_new_folder_beside_it(stopped: tuple[Runs, Path], tmp_path: Path) -> None:
    runs, first = stopped
    listed = cli(["resume", "--list"], tmp_path, runs.fake)
    assert listed.returncode == 0, listed.stderr
    entry = next(r for r in json.loads(listed.stdout)["runs"] if r["run_id"] == "cli-first")
    assert (entry["epoch"], entry["step"], entry["epochs"]) == (2, 2 * SPE, 8)

    dry = cli(["resume", str(first), "--dry-run"], tmp_path, runs.fake)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["continues"]["parent_run"] == "cli-first" and plan["continues"]["resumed_at"]["step"] == 2 * SPE
    assert "--max_train_epochs" in plan["argv"] and plan["argv"][plan["argv"].index("--max_train_epochs") + 1] == "6"

    done = cli(["resume", "cli-first"], tmp_path, runs.fake)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[-1]["result"]["status"] == "succeeded"
    new = Path(lines[0]["plan"]["run_dir"])
    assert new.parent == first.parent and new != first
    assert loras(new) == [f"my_lora-{n:06d}.safetensors" for n in range(3, 8)] + ["my_lora.safetensors"]
    again = cli(["resume", "cli-first"], tmp_path, runs.fake)
    assert again.returncode == 1 and "was already continued by " + new.name in again.stderr


def test_trust_state_registers_an_outside_state_only_when_complete(stopped: tuple[Runs, Path], tmp_path: Path) -> None:
    runs, first = stopped
    outside = tmp_path / "elsewhere" / "lora-000002-state"
    shutil.copytree(first / "my_lora-000002-state", outside)
    partial = tmp_path / "elsewhere" / "partial-state"
    shutil.copytree(outside, partial)
    (partial / "random_states_0.pkl").unlink()
    refused = cli(["trust-state", str(partial)], tmp_path, runs.fake)
    assert refused.returncode == 1 and "not a complete training state" in refused.stderr
    assert Registry().state(str(partial)) is None

    # before it is registered, a plan naming it is refused; afterwards it is used (verified)
    spec = {"architecture": "wan", "step": "train", "dataset_config": str(runs.toml), "models": runs.models,
            "selectors": {"task": "t2v-1.3B"}, "launcher": "python",
            "options": {"max_train_epochs": 2, "optimizer_type": "adamw", "resume": str(outside)},
            "output_dir": str(tmp_path / "out"), "output_name": "again"}
    (tmp_path / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    before = cli(["plan", str(tmp_path / "spec.json")], tmp_path, runs.fake)
    assert before.returncode == 1 and "is not a training state or run this pack recorded" in before.stdout
    registered = cli(["trust-state", str(outside)], tmp_path, runs.fake)
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["files"] == ["model.safetensors", "optimizer.bin", "random_states_0.pkl",
                                                     "scheduler.bin"]
    ran = cli(["plan", str(tmp_path / "spec.json"), "--run", "--runs-dir", str(tmp_path / "cli-runs")], tmp_path,
              runs.fake)
    assert ran.returncode == 0, ran.stdout[-2000:]
    lines = [json.loads(line) for line in ran.stdout.splitlines()]
    assert any("registered from the command line" in w["message"] for w in lines[0]["plan"]["warnings"])
    assert sorted(p.name for p in (tmp_path / "out").glob("*.safetensors")) == ["again-000001.safetensors",
                                                                               "again.safetensors"]
    # a registered state that changed is refused again
    (outside / "optimizer.bin").write_bytes(b"changed")
    (tmp_path / "spec2.json").write_text(json.dumps(dict(spec, output_dir=str(tmp_path / "out2"))), encoding="utf-8")
    changed = cli(["plan", str(tmp_path / "spec2.json"), "--run", "--runs-dir", str(tmp_path / "cli-runs-2")],
                  tmp_path, runs.fake)
    assert changed.returncode == 1 and "optimizer.bin changed since musubi wrote it" in changed.stdout

"""Continuing a stopped background job (the Jobs panel's Continue), at executor level with real
processes: the job stopped after epoch 3 is continued from the pack's record as a new job, which
records its states from its tail, renames its files to the run's numbering before it is judged,
follows the original learning-rate schedule, and removes the verified copy of the state; a job
whose state was changed meanwhile is refused with nothing queued.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("hardening", "jobs_support")

import hardening  # noqa: E402,F401  (registers the marker before the decorators below)

from executor.errors import PreflightError  # noqa: E402
from executor.runs.continue_run import continuation_plan  # noqa: E402
from executor.runs.folders import default_data_dir  # noqa: E402
from executor.runs.resume import ResumeRefused  # noqa: E402
from executor.runs.trust import Registry  # noqa: E402
from jobs_support import Bench  # noqa: E402
from test_resume_run import assert_one_curve, loras, lr_log  # noqa: E402

pytest_plugins = ["hardening", "jobs_support"]
pytestmark = pytest.mark.timeout(180)
SPE = 3


def stopped_after_epoch_3(bench: Bench, lr: Path) -> Any:
    """A cosine job of 8 epochs, stopped (as the panel's Stop does) once its epoch-3 state is recorded."""
    bench.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.05", "FAKE_MUSUBI_PAUSE_AFTER_STEP": str(3 * SPE),
                         "FAKE_MUSUBI_LR_LOG": str(lr)})
    manager = bench.manager()
    plan = bench.plan(epochs=8, options={"max_train_epochs": 8, "optimizer_type": "adamw", "lr_scheduler": "cosine",
                                         "lr_warmup_steps": 2, "save_every_n_epochs": 1, "save_state": True},
                      output_dir=str(bench.tmp / "runs" / "first"), run_dir=str(bench.tmp / "runs" / "first"))
    job = manager.submit(plan, kind="train", name="first")
    state = Path(job.run_dir) / "lora-000003-state"
    registry = Registry()
    bench.until(manager, job.id, lambda j: registry.state(str(state)) is not None)
    manager.stop(job.id)
    done = bench.final(manager, job.id)
    assert done.state == "cancelled", done
    return manager, done


def test_a_stopped_job_is_continued_as_a_new_job_to_the_planned_end(bench: Bench, tmp_path: Path) -> None:
    first_lr, second_lr, whole_lr = tmp_path / "first-lr", tmp_path / "second-lr", tmp_path / "whole-lr"
    manager, first = stopped_after_epoch_3(bench, first_lr)
    first_dir = Path(first.run_dir)
    assert loras(first_dir) == ["lora-000001.safetensors", "lora-000002.safetensors", "lora-000003.safetensors"]

    bench.configure(env={"FAKE_MUSUBI_PAUSE_AFTER_STEP": "", "FAKE_MUSUBI_LR_LOG": str(second_lr)})
    plan = continuation_plan(first.run_dir, bench.settings, install=bench.install, use_probe=False)
    staging = Path(plan.continuation.staging)
    assert staging.parent.parent == Path(default_data_dir()) / "staging"
    job = manager.submit(plan, kind="train", name="second", meta={"parent": first.id})
    assert staging.is_dir(), "the verified copy is made when the job is queued"
    done = bench.final(manager, job.id)
    assert done.state == "succeeded", (done.reason, done.tail)
    second_dir = Path(done.run_dir)
    assert second_dir.parent == first_dir.parent
    assert loras(second_dir) == [f"lora-{n:06d}.safetensors" for n in range(4, 8)] + ["lora.safetensors"]
    assert not staging.exists(), "the copy is removed when the job ends"
    assert done.progress["step"] == done.progress["total"] == 24 and done.progress["epochs"] == 8
    points = [json.loads(line) for line in (second_dir / "loss.jsonl").read_text(encoding="utf-8").splitlines()]
    assert_one_curve([p["step"] for p in points], first_dir, 3 * SPE, 24)
    assert json.loads((second_dir / "result.json").read_text(encoding="utf-8"))["status"] == "succeeded"
    states = {os.path.basename(s["path"]) for s in Registry().states(str(second_dir))}
    assert states == {"lora-000007-state", "lora-state"}, states

    # the learning rate of every step is an uninterrupted run's
    bench.configure(env={"FAKE_MUSUBI_LR_LOG": str(whole_lr)})
    whole = bench.plan(epochs=8, options={"max_train_epochs": 8, "optimizer_type": "adamw", "lr_scheduler": "cosine",
                                          "lr_warmup_steps": 2, "save_every_n_epochs": 1},
                       output_dir=str(tmp_path / "whole"), run_dir=str(tmp_path / "whole"))
    assert bench.final(manager, manager.submit(whole, kind="train", name="whole").id).state == "succeeded"
    got = lr_log(first_lr)[:3 * SPE] + lr_log(second_lr)
    assert len(got) == 24 and all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(got, lr_log(whole_lr)))


def test_a_job_whose_state_changed_is_refused_and_nothing_is_queued(bench: Bench, tmp_path: Path) -> None:
    manager, first = stopped_after_epoch_3(bench, tmp_path / "lr")
    (Path(first.run_dir) / "lora-000003-state" / "optimizer.bin").write_bytes(b"not what musubi wrote")
    bench.configure(env={"FAKE_MUSUBI_PAUSE_AFTER_STEP": ""})
    plan = continuation_plan(first.run_dir, bench.settings, install=bench.install, use_probe=False)
    before = set(os.listdir(Path(first.run_dir).parent))
    with pytest.raises(Exception) as refused:
        manager.submit(plan, kind="train", name="second")
    assert "optimizer.bin changed since musubi wrote it" in str(refused.value)
    assert [j.id for j in bench.store.list()] == [first.id], "nothing was queued"
    assert set(os.listdir(Path(first.run_dir).parent)) == before, "no run folder was made"
    assert not Path(plan.continuation.staging).exists()
    with pytest.raises(ResumeRefused) as unknown:
        continuation_plan("nope-no-run", bench.settings, install=bench.install)
    assert "is not a training run this pack recorded" in unknown.value.message


def test_a_finished_job_is_not_continued(bench: Bench, tmp_path: Path) -> None:
    manager = bench.manager()
    job = manager.submit(bench.plan(epochs=2, options={"max_train_epochs": 2, "optimizer_type": "adamw",
                                                       "save_every_n_epochs": 1, "save_state": True}),
                         kind="train", name="done")
    assert bench.final(manager, job.id).state == "succeeded"
    with pytest.raises(PreflightError) as refused:
        continuation_plan(job.run_dir, bench.settings, install=bench.install, use_probe=False)
    assert "finished its plan" in str(refused.value)

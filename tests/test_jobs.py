"""The job manager with real processes (the fake musubi venv): a background job ends exactly as
the same plan run in the foreground, survives its manager (re-attach, progress and loss history
continue without duplicates), converges to a final state whatever was killed while no manager
ran, queues per GPU with the right CUDA_VISIBLE_DEVICES, and stops, removes and dedupes jobs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

pytest.register_assert_rewrite("hardening", "jobs_support")

import hardening  # noqa: E402,F401  (registers the marker before the decorators below)

from executor.errors import RunError
from executor.runs.execute import execute_plan
from executor.runs.history import read_history
from executor.runs.jobs import BACKSTOP
from jobs_support import Bench  # noqa: E402
from procs import alive, wait_all_gone

pytest_plugins = ["hardening", "jobs_support"]
pytestmark = pytest.mark.timeout(180)
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")



def running(job: Any) -> bool:
    return job.state == "running" and (job.progress.get("step") or 0) >= 2


def result_json(run_dir: str) -> dict[str, Any]:
    return json.loads(Path(run_dir, "result.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------- same as foreground

@pytest.mark.hardening("jobs", "trainer_crash")
@pytest.mark.parametrize("scenario,launcher", [("ok", "accelerate"), ("oom", "accelerate"), ("sigkill", "python"),
                                               ("no_output", "accelerate"), ("missing_module", "python")])
def test_a_background_job_ends_as_the_same_run_in_the_foreground(bench: Bench, scenario: str, launcher: str) -> None:
    bench.configure(env={"FAKE_MUSUBI_SCENARIO": scenario})
    front = bench.plan(name="frontrun", launcher=launcher)
    try:
        execute_plan(front, check=True)
        message, hint = None, None
    except RunError as exc:
        message, hint = exc.message, exc.hint
    manager = bench.manager()
    back = bench.plan(name="backrun", launcher=launcher)
    job = bench.final(manager, manager.submit(back, kind="train", name="backrun").id)
    fg, bg = result_json(front.run_dir), result_json(back.run_dir)

    def same(text: Any) -> Any:
        return text.replace(back.run_dir, "RUN").replace("backrun", "X") if isinstance(text, str) else text

    def same_fg(text: Any) -> Any:
        return text.replace(front.run_dir, "RUN").replace("frontrun", "X") if isinstance(text, str) else text

    for key in ("status", "exit_code", "failure_kind", "steps", "total_steps", "epochs", "final_loss", "best_loss"):
        assert same(bg[key]) == same_fg(fg[key]), (key, bg[key], fg[key])
    assert same(bg["failure_hint"]) == same_fg(fg["failure_hint"])
    # The same lines; a foreground run reads stdout and stderr from two pipes, so its order of
    # lines printed close together may differ (the job's one pipe keeps a terminal's order).
    assert {same(line) for line in bg["tail"][-6:]} <= {same_fg(line) for line in fg["tail"]}
    steps = lambda d: [(p["step"], p["avr_loss"]) for p in read_history(os.path.join(d, "loss.jsonl"))]  # noqa: E731
    assert steps(back.run_dir) == steps(front.run_dir)
    expected = {"succeeded": "succeeded"}.get(fg["status"], "failed")
    assert job.state == expected and job.exit_code == fg["exit_code"]
    assert same(job.reason) == same_fg(message) and same(job.hint) == same_fg(hint)
    if expected == "succeeded":
        assert job.progress["step"] == job.progress["total"] == fg["total_steps"]
        assert job.progress["loss"] == fg["final_loss"] and job.progress["phase"] == "done"


# ---------------------------------------------------------------------------------------- restarts

def test_a_new_manager_re_attaches_and_the_job_continues_without_duplicates(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.25"})
    first = bench.manager()
    job = first.submit(bench.plan(epochs=12), kind="train", name="long")
    before = bench.until(first, job.id, running)
    first.close()  # ComfyUI goes away; the job does not
    time.sleep(1.5)
    second = bench.manager()
    started = time.monotonic()
    second.tick()
    took = time.monotonic() - started
    again = bench.store.get(job.id)
    assert second.reconciled and again.state == "running", again
    assert again.progress["step"] >= before.progress["step"]
    print(f"re-attach: {took * 1000:.0f} ms for one running job")
    done = bench.final(second, job.id)
    assert done.state == "succeeded"
    points = read_history(os.path.join(done.run_dir, "loss.jsonl"))
    assert [p["step"] for p in points] == list(range(1, 37)), "every step once, in order"
    assert result_json(done.run_dir)["status"] == "succeeded"


@pytest.mark.hardening("jobs", "ended_while_down")
def test_a_job_that_ended_while_no_manager_ran_gets_its_verdict(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.3"})
    first = bench.manager()
    job = first.submit(bench.plan(epochs=3), kind="train", name="away")
    bench.until(first, job.id, lambda j: j.state == "running")
    first.close()
    assert bench.until(None, job.id, lambda j: os.path.exists(os.path.join(j.run_dir, "exit.json")))
    second = bench.manager()
    second.tick()
    done = bench.store.get(job.id)
    assert done.state == "succeeded" and done.progress["step"] == done.progress["total"] == 9


@pytest.mark.hardening("jobs", "trainer_killed_while_down")
@POSIX
def test_a_trainer_killed_while_no_manager_ran_is_failed_with_its_tail_never_running(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.25"})
    first = bench.manager()
    job = first.submit(bench.plan(epochs=20, launcher="python"), kind="train", name="killed")
    bench.until(first, job.id, running)
    first.close()
    for pid in bench.pids(("script",)):
        os.kill(pid, signal.SIGKILL)
    bench.until(None, job.id, lambda j: os.path.exists(os.path.join(j.run_dir, "exit.json")))
    second = bench.manager()
    second.tick()
    done = bench.store.get(job.id)
    assert done.state == "failed" and "killed" in done.reason and done.exit_code == -signal.SIGKILL, done
    assert "system RAM" in done.hint and any("epoch" in line for line in done.tail), done
    assert result_json(done.run_dir)["status"] == "failed"


@pytest.mark.hardening("jobs", "power_loss")
@POSIX
def test_a_job_whose_whole_tree_died_with_no_record_is_lost_with_its_log_tail(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.25"})
    first = bench.manager()
    job = first.submit(bench.plan(epochs=20), kind="train", name="power")
    job = bench.until(first, job.id, running)
    first.close()
    wrapper = psutil.Process(job.pid)
    tree = [wrapper] + wrapper.children(recursive=True)
    for proc in tree:  # a power cut, as far as the processes can tell
        proc.kill()
    psutil.wait_procs(tree, timeout=5)
    second = bench.manager()
    second.tick()
    lost = bench.store.get(job.id)
    assert lost.state == "lost" and "exit.json is missing" in lost.reason
    assert lost.tail and lost.hint and lost.run_dir in lost.hint
    record = result_json(lost.run_dir)
    assert record["status"] == "lost" and record["tail"]


@pytest.mark.hardening("jobs", "launch_not_recorded")
def test_a_start_whose_launch_was_never_recorded_is_queued_again(bench: Bench) -> None:
    manager = bench.manager(schedule=False)
    job = manager.submit(bench.plan(), kind="train", name="half")
    bench.store.update(job.id, {"queued"}, state="starting", gpus=[0])  # the launcher died right here
    manager.tick()
    assert bench.store.get(job.id).state == "queued"
    manager.schedule = True
    assert bench.final(manager, job.id).state == "succeeded"


# ---------------------------------------------------------------------------------------- the GPU queue

def overlap(a: Any, b: Any) -> bool:
    return a.started_at < b.ended_at and b.started_at < a.ended_at


def test_two_jobs_on_one_gpu_run_one_after_the_other(bench: Bench) -> None:
    bench.configure(gpus=(0,), env={"FAKE_MUSUBI_STEP_SECONDS": "0.3"})
    manager = bench.manager()
    a = manager.submit(bench.plan(name="a"), kind="train", name="a")
    b = manager.submit(bench.plan(name="b"), kind="train", name="b")
    queued = bench.until(manager, b.id, lambda j: j.state == "queued" and bench.store.get(a.id).state == "running")
    assert manager.position(queued) == 1
    a, b = bench.final(manager, a.id), bench.final(manager, b.id)
    assert a.state == b.state == "succeeded" and not overlap(a, b) and b.started_at >= a.ended_at
    assert [r["CUDA_VISIBLE_DEVICES"] for r in bench.env_records()] == ["0", "0"]


def test_two_jobs_on_two_gpus_run_side_by_side_each_on_its_own(bench: Bench) -> None:
    bench.configure(gpus=(0, 1), env={"FAKE_MUSUBI_STEP_SECONDS": "0.2"})
    manager = bench.manager()
    a = manager.submit(bench.plan(name="a", epochs=3), kind="train", name="a")
    b = manager.submit(bench.plan(name="b", epochs=3), kind="train", name="b")
    a, b = bench.final(manager, a.id), bench.final(manager, b.id)
    assert a.state == b.state == "succeeded" and overlap(a, b)
    assert sorted((a.gpus[0], b.gpus[0])) == [0, 1]
    records = bench.env_records()
    assert sorted(r["CUDA_VISIBLE_DEVICES"] for r in records) == ["0", "1"]
    assert {r["CUDA_DEVICE_ORDER"] for r in records} == {"PCI_BUS_ID"}


@pytest.mark.hardening("jobs", "gpu_unavailable")
def test_pinned_and_reserved_gpus(bench: Bench) -> None:
    bench.configure(gpus=(0, 1), reserved_gpus=(0,))
    manager = bench.manager()
    on_one = manager.submit(bench.plan(name="one", accelerate={"gpu_ids": "1"}), kind="train", name="one")
    on_zero = manager.submit(bench.plan(name="zero", accelerate={"gpu_ids": "0"}), kind="train", name="zero")
    refused = bench.final(manager, on_zero.id)
    assert refused.state == "failed" and "GPU 0 is not available" in refused.reason and "reserved_gpus" in refused.hint
    done = bench.final(manager, on_one.id)
    assert done.state == "succeeded" and done.gpus == [1]
    assert [r["CUDA_VISIBLE_DEVICES"] for r in bench.env_records()] == ["1"]


@pytest.mark.hardening("jobs", "folder_busy")
def test_a_job_waits_for_a_folder_another_job_writes_to(bench: Bench) -> None:
    bench.configure(gpus=(0, 1), env={"FAKE_MUSUBI_STEP_SECONDS": "0.1"})
    shared = str(bench.tmp / "out" / "shared")
    manager = bench.manager()
    a = manager.submit(bench.plan(name="a", output_dir=shared), kind="train", name="a")
    b = manager.submit(bench.plan(name="b", output_dir=shared), kind="train", name="b")
    a, b = bench.final(manager, a.id), bench.final(manager, b.id)
    assert a.state == b.state == "succeeded" and b.started_at >= a.ended_at
    assert not os.path.exists(os.path.join(shared, ".musubi-tuner-nodes.lock"))


# ---------------------------------------------------------------------------------------- stop, remove, dedupe

def test_stop_ends_the_whole_tree_within_two_seconds_and_the_job_is_cancelled(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_SCENARIO": "workers", "FAKE_MUSUBI_STEP_SECONDS": "0.3",
                         "FAKE_MUSUBI_WORKER_LINGER": "60"})
    manager = bench.manager()
    job = bench.until(manager, manager.submit(bench.plan(epochs=20), kind="train", name="s").id, running)
    tree = bench.pids() + [job.pid]
    started = time.monotonic()
    assert manager.stop(job.id).state == "stopping"
    assert wait_all_gone(tree, 2.0) == []
    done = bench.final(manager, job.id, timeout=10)
    took = time.monotonic() - started
    assert done.state == "cancelled" and done.reason == "stopped by request"
    assert result_json(done.run_dir)["status"] == "cancelled"
    print(f"stop -> tree gone and job cancelled in {took:.2f} s")


@pytest.mark.hardening("jobs", "stop_ignored")
@POSIX
def test_a_wrapper_that_does_not_stop_is_killed_by_the_backstop(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.3"})
    manager = bench.manager()
    job = bench.until(manager, manager.submit(bench.plan(epochs=20), kind="train", name="b").id, running)
    os.kill(job.pid, signal.SIGSTOP)  # frozen: it will never act on the request
    manager.stop(job.id)
    done = bench.final(manager, job.id, timeout=BACKSTOP + 15)
    assert done.state == "cancelled" and "were killed" in done.reason
    assert alive(bench.pids() + [job.pid]) == []


def test_queued_jobs_can_be_stopped_or_removed_and_running_ones_not_removed(bench: Bench) -> None:
    bench.configure(gpus=(0,), env={"FAKE_MUSUBI_STEP_SECONDS": "0.2"})
    manager = bench.manager()
    first = manager.submit(bench.plan(name="first", epochs=10), kind="train", name="first")
    second = manager.submit(bench.plan(name="second"), kind="train", name="second")
    third = manager.submit(bench.plan(name="third"), kind="train", name="third")
    bench.until(manager, first.id, running)
    assert not manager.remove(first.id)
    cancelled = manager.stop(second.id)
    assert cancelled.state == "cancelled" and result_json(second.run_dir)["status"] == "cancelled"
    assert manager.remove(third.id) and bench.store.get(third.id) is None
    assert not os.path.exists(third.run_dir)
    manager.stop(first.id)
    assert bench.final(manager, first.id).state == "cancelled"


def test_the_same_key_while_active_returns_the_same_job(bench: Bench) -> None:
    manager = bench.manager(schedule=False)
    plan = bench.plan(name="k")
    job = manager.submit(plan, kind="train", name="k", key="abc")
    twin_plan = bench.plan(name="k2")
    assert manager.submit(twin_plan, kind="train", name="k", key="abc").id == job.id
    assert not os.path.exists(twin_plan.run_dir), "the twin left a run folder"
    manager.stop(job.id)
    assert manager.submit(bench.plan(name="k3"), kind="train", name="k", key="abc").id != job.id
    for queued in bench.store.list({"queued"}):
        manager.stop(queued.id)


def test_listeners_hear_every_state_and_the_progress(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.2"})
    manager = bench.manager()
    heard: list[tuple[str, tuple[str, ...], Any]] = []
    manager.listeners.append(lambda job, events: heard.append((job.state, tuple(events), job.progress.get("step"))))
    job = manager.submit(bench.plan(epochs=3), kind="train", name="l")
    bench.final(manager, job.id)
    states = [state for state, _, _ in heard]
    assert states[0] in ("queued", "running") and states[-1] == "succeeded"
    assert "running" in states
    steps = [step for state, events, step in heard if "progress" in events and step]
    assert len(steps) >= 3 and steps == sorted(steps)


@pytest.mark.hardening("jobs", "second_manager")
def test_two_managers_of_one_store_one_leads_and_a_stop_from_the_other_works(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.3"})
    leader, watcher = bench.manager(), bench.manager()
    job = leader.submit(bench.plan(epochs=20), kind="train", name="two")
    leader.tick()
    watcher.tick()
    assert leader.leading and not watcher.leading
    bench.until(leader, job.id, running)
    heard: list[str] = []
    watcher.listeners.append(lambda j, events: heard.append(j.state))
    assert watcher.stop(job.id).state == "stopping"
    for _ in range(3):
        watcher.tick()  # only watches: it never finishes a job itself
    done = bench.final(leader, job.id, timeout=20)
    assert done.state == "cancelled"
    watcher.tick()
    assert "cancelled" in heard

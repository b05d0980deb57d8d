"""Background training in a real ComfyUI 0.3.75 with the fake musubi venv, over HTTP and the
websocket as a user or an API script meets it: ComfyUI stays usable while a LoRA trains; a job
survives ComfyUI being stopped (SIGTERM) or killed (SIGKILL) and is re-attached, finished and
delivered after the next start; a trainer killed while ComfyUI is down ends failed, never running;
one GPU runs jobs in turn, two side by side; Stop ends the whole tree; Wait for Job chains on a
job; the routes validate ids. Every test ends with no process and no active job left.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

pytest.register_assert_rewrite("hardening", "jobs_e2e")

import hardening  # noqa: E402,F401  (registers the marker before the decorators below)
from comfy_harness import ComfyHTTPError, ComfyInstall  # noqa: E402
from fakes import FakeMusubi, fake_musubi  # noqa: E402,F401  (session fixture)
from jobs_e2e import running_comfy, JOB_EVENT, JobsComfy, job_steps  # noqa: E402
from procs import wait_all_gone  # noqa: E402

pytestmark = [pytest.mark.comfyui, pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]
pytest_plugins = ["hardening"]

CORE_PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
               "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "while_training"}}}


@pytest.fixture
def comfy(comfy_install: ComfyInstall, fake_musubi: FakeMusubi, tmp_path: Path,  # noqa: F811
          hardening: Any) -> Iterator[JobsComfy]:
    yield from running_comfy(comfy_install, fake_musubi, tmp_path, hardening)


def steps_at_least(n: int) -> Any:
    return lambda job: job["state"] == "running" and (job["progress"]["step"] or 0) >= n


def when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.timeout(300)
def test_comfyui_stays_usable_while_a_background_training_runs(comfy: JobsComfy) -> None:
    comfy.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.3"})
    folder = comfy.image_folder("bg_core")
    comfy.cache(folder)
    with comfy.client().socket() as sock:
        [job_id] = comfy.queue(folder, ("bg_core",), max_train_epochs=6)
        comfy.until(job_id, steps_at_least(1))
        core = comfy.client().run(CORE_PROMPT, timeout=60)
        assert core.outcome == "success", core.types
        assert comfy.job(job_id)["state"] == "running", "the image was to be made while the LoRA trains"
        done = comfy.until(job_id, lambda j: j["lora"] is not None)
        sock.wait_for(lambda m: m.type == JOB_EVENT and m.data["id"] == job_id and m.data["lora"], 30)
    assert done["state"] == "succeeded" and done["lora"]["name"] == "musubi-tuner/bg_core.safetensors"
    assert (comfy.loras / "bg_core.safetensors").is_file()
    assert list((comfy.base / "output").glob("while_training_*.png")), "the core prompt saved its image"
    steps = job_steps(sock.seen, job_id)
    assert len(set(steps)) >= 3 and steps == sorted(steps), steps
    events = [m.data for m in sock.seen if m.type == JOB_EVENT and m.data["id"] == job_id]
    assert [e["state"] for e in events][-1] == "succeeded" and events[-1]["lora"] is not None
    assert done["loss_history"] and [p["step"] for p in done["loss_history"]] == list(range(1, 19))


@pytest.mark.timeout(400)
@pytest.mark.parametrize("sig", [pytest.param(signal.SIGTERM, marks=pytest.mark.hardening("jobs", "comfyui_sigterm")),
                                 pytest.param(signal.SIGKILL, marks=pytest.mark.hardening("jobs", "comfyui_sigkill"))],
                         ids=["SIGTERM", "SIGKILL"])
def test_a_job_outlives_a_comfyui_stop_and_is_re_attached_finished_and_delivered(comfy: JobsComfy, sig: int) -> None:
    comfy.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.4"})
    folder = comfy.image_folder("bg_restart")
    comfy.cache(folder)
    [job_id] = comfy.queue(folder, ("bg_restart",), max_train_epochs=30)
    before = comfy.until(job_id, steps_at_least(3))
    [wrapper] = comfy.wrappers()
    log = Path(before["run_dir"]) / "run.log"
    comfy.stop(sig)
    size = log.stat().st_size
    time.sleep(2.0)
    assert psutil.pid_exists(wrapper) and comfy.wrappers() == [wrapper], "the job died with ComfyUI"
    assert log.stat().st_size > size, "the training stood still while ComfyUI was down"
    started = time.monotonic()
    comfy.start()
    up = time.monotonic() - started
    again = comfy.until(job_id, lambda j: j["state"] == "running" and j["progress"]["step"] > before["progress"]["step"])
    reattached = time.monotonic() - started
    done = comfy.until(job_id, lambda j: j["lora"] is not None, timeout=120)
    assert done["state"] == "succeeded" and done["lora"]["name"] == "musubi-tuner/bg_restart.safetensors"
    assert (comfy.loras / "bg_restart.safetensors").is_file()
    assert [p["step"] for p in done["loss_history"]] == list(range(1, 91)), "every step once, across the restart"
    assert again["progress"]["total"] == 90
    print(f"{signal.Signals(sig).name}: ComfyUI answered {up:.1f} s after its start; the job showed new progress "
          f"{reattached:.1f} s after the start")


@pytest.mark.timeout(300)
@pytest.mark.hardening("jobs", "trainer_killed_while_down")
def test_a_trainer_killed_while_comfyui_is_down_is_failed_with_its_tail_never_running(comfy: JobsComfy) -> None:
    comfy.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.4"})
    folder = comfy.image_folder("bg_victim")
    comfy.cache(folder)
    [job_id] = comfy.queue(folder, ("bg_victim",), max_train_epochs=20)
    comfy.until(job_id, steps_at_least(2))
    comfy.stop(signal.SIGTERM)
    for pid in comfy.pids(("script",)):
        os.kill(pid, signal.SIGKILL)
    assert wait_all_gone(comfy.wrappers(), 15) == [], "the wrapper records the end and exits"
    comfy.start()
    first = comfy.job(job_id)  # the first answer after the start is already the truth
    assert first["state"] in ("failed", "lost"), first["state"]
    assert first["log_tail"] and first["reason"] and first["hint"]
    assert not (comfy.loras / "bg_victim.safetensors").exists()


@pytest.mark.timeout(300)
@pytest.mark.hardening("jobs", "ended_while_down")
def test_a_job_that_ended_while_comfyui_was_down_is_delivered_at_the_start(comfy: JobsComfy) -> None:
    comfy.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.3"})
    folder = comfy.image_folder("bg_away")
    comfy.cache(folder)
    [job_id] = comfy.queue(folder, ("bg_away",), max_train_epochs=3)
    run_dir = Path(comfy.until(job_id, steps_at_least(1))["run_dir"])
    comfy.stop(signal.SIGKILL)
    deadline = time.monotonic() + 60
    while not (run_dir / "exit.json").exists():
        assert time.monotonic() < deadline, "the training did not end"
        time.sleep(0.2)
    comfy.start()
    done = comfy.until(job_id, lambda j: j["lora"] is not None, timeout=60)
    assert done["state"] == "succeeded" and (comfy.loras / "bg_away.safetensors").is_file()


@pytest.mark.timeout(300)
@pytest.mark.hardening("jobs", "stop_route")
def test_stop_from_the_route_ends_the_whole_tree_within_two_seconds(comfy: JobsComfy) -> None:
    comfy.configure(env={"FAKE_MUSUBI_SCENARIO": "workers", "FAKE_MUSUBI_STEP_SECONDS": "0.4",
                         "FAKE_MUSUBI_WORKER_LINGER": "60"})
    folder = comfy.image_folder("bg_stop")
    comfy.cache(folder)
    [job_id] = comfy.queue(folder, ("bg_stop",), max_train_epochs=30)
    comfy.until(job_id, steps_at_least(2))
    tree = comfy.pids() + comfy.wrappers()
    assert len(tree) >= 5, tree  # wrapper, launcher, trainer, two workers
    started = time.monotonic()
    answer = comfy.client().post(f"/api/musubi-tuner/jobs/{job_id}/stop")
    assert answer["job"]["state"] in ("stopping", "cancelled") and answer["job"]["can_stop"] in (True, False)
    assert wait_all_gone(tree, 2.0) == [], "processes of the job outlived the stop by more than 2 s"
    gone = time.monotonic() - started
    done = comfy.until(job_id, lambda j: j["state"] != "stopping" and j["state"] != "running", timeout=10)
    assert done["state"] == "cancelled" and not done["can_stop"]
    print(f"stop route: whole tree gone in {gone:.2f} s, job {done['state']} after {time.monotonic() - started:.2f} s")


@pytest.mark.timeout(400)
def test_one_gpu_runs_jobs_in_turn_and_two_gpus_side_by_side(comfy: JobsComfy) -> None:
    comfy.configure(gpus=[0], env={"FAKE_MUSUBI_STEP_SECONDS": "0.2"})
    folder = comfy.image_folder("bg_gpus")
    comfy.cache(folder)
    done = [comfy.until(i, lambda j: j["state"] == "succeeded") for i in comfy.queue(folder, ("one_a", "one_b"))]
    a, b = sorted(done, key=lambda j: when(j["started_at"]))  # ComfyUI may run either Train node first
    assert when(b["started_at"]) >= when(a["ended_at"]) - 1, (a, b)  # ISO times are whole seconds
    assert a["gpus"] == b["gpus"] == [0]
    comfy.configure(gpus=[0, 1], env={"FAKE_MUSUBI_STEP_SECONDS": "0.2"})
    done = [comfy.until(i, lambda j: j["state"] == "succeeded") for i in comfy.queue(folder, ("two_a", "two_b"))]
    c, d = sorted(done, key=lambda j: when(j["started_at"]))
    assert sorted(c["gpus"] + d["gpus"]) == [0, 1]
    assert when(d["started_at"]) < when(c["ended_at"]), "two GPUs: side by side"
    devices = [r["CUDA_VISIBLE_DEVICES"] for r in comfy.env_records()]
    assert devices[:2] == ["0", "0"] and sorted(devices[2:]) == ["0", "1"], devices


@pytest.mark.timeout(400)
def test_wait_for_job_outputs_what_train_outputs_and_its_cancel_only_stops_waiting(comfy: JobsComfy) -> None:
    comfy.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.2"})
    folder = comfy.image_folder("bg_wait")
    comfy.cache(folder)
    prompt = comfy.workflow(folder, cache=False, trains=("waited",), max_train_epochs=3)
    prompt["9"] = {"class_type": "MusubiWaitForJob", "inputs": {"job_id": ["5", 5]}}
    run = comfy.client().run(prompt, timeout=180)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    waited = next(m.data["output"] for m in run.of_type("executed") if m.data["node"] == "9")
    assert waited["lora"] == ["musubi-tuner/waited.safetensors"] and waited["images"]
    bars = [(m.data["value"], m.data["max"]) for m in run.of_type("progress") if m.data.get("node") == "9"]
    assert bars and bars[-1] == (9, 9), bars

    comfy.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.4"})
    long = comfy.workflow(folder, cache=False, trains=("waited_long",), max_train_epochs=30)
    long["9"] = {"class_type": "MusubiWaitForJob", "inputs": {"job_id": ["5", 5]}}
    client = comfy.client()
    with client.socket() as sock:
        prompt_id = client.queue_prompt(long)["prompt_id"]
        sock.wait_for(lambda m: m.type == "progress" and m.data.get("node") == "9" and m.data["value"] >= 2, 90)
        client.interrupt()
        ended = sock.collect(prompt_id, timeout=60)
    assert ended.outcome == "interrupted", ended.types[-10:]
    job_id = next(j["id"] for j in comfy.client().get("/api/musubi-tuner/jobs")["jobs"] if j["name"] == "waited_long")
    time.sleep(1.0)
    assert comfy.job(job_id)["state"] == "running", "Cancel stopped the job, not only the waiting"
    comfy.client().post(f"/api/musubi-tuner/jobs/{job_id}/stop")
    assert comfy.until(job_id, lambda j: j["state"] == "cancelled", timeout=20)


@pytest.mark.timeout(300)
def test_the_routes_validate_ids_remove_only_queued_jobs_and_a_requeue_is_the_same_job(comfy: JobsComfy) -> None:
    client = comfy.client()
    for path, status in (("/api/musubi-tuner/jobs/not-a-job", 400), ("/api/musubi-tuner/jobs/" + "0" * 32, 404)):
        with pytest.raises(ComfyHTTPError) as caught:
            client.get(path)
        assert caught.value.status == status
    with pytest.raises(ComfyHTTPError) as caught:
        client.post("/api/musubi-tuner/jobs/../../etc/stop")
    assert 400 <= caught.value.status < 500
    refused = client.run({"1": {"class_type": "MusubiWaitForJob", "inputs": {"job_id": "../../etc/passwd"}}}, timeout=60)
    assert refused.outcome == "error" and "is not a job id" in refused.terminal.data["exception_message"]
    comfy.configure(gpus=[0], env={"FAKE_MUSUBI_STEP_SECONDS": "0.4"})
    folder = comfy.image_folder("bg_routes")
    comfy.cache(folder)
    ids = comfy.queue(folder, ("r_one", "r_two"), max_train_epochs=20)
    deadline = time.monotonic() + 60
    while not any(comfy.job(i)["state"] == "running" for i in ids):  # ComfyUI may run either node first
        assert time.monotonic() < deadline
        time.sleep(0.2)
    first, second = sorted(ids, key=lambda i: comfy.job(i)["state"] != "running")
    assert sorted(comfy.queue(folder, ("r_one", "r_two"), max_train_epochs=20)) == sorted(ids), \
        "queued again while active: the same jobs"
    listed = client.get("/api/musubi-tuner/jobs")["jobs"]
    assert [j["id"] for j in listed][:2] == [second, first], "newest first"
    queued = comfy.job(second)
    assert queued["state"] == "queued" and queued["position"] == 1 and queued["can_remove"]
    assert queued["command"].startswith("(cd ") and queued["run_id"] in queued["run_dir"]
    with pytest.raises(ComfyHTTPError) as caught:
        client.post(f"/api/musubi-tuner/jobs/{first}/remove")
    assert caught.value.status == 409
    assert client.post(f"/api/musubi-tuner/jobs/{second}/remove") == {"ok": True}
    with pytest.raises(ComfyHTTPError):
        comfy.job(second)
    client.post(f"/api/musubi-tuner/jobs/{first}/stop")
    assert comfy.until(first, lambda j: j["state"] == "cancelled", timeout=20)

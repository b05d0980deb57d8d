"""Continue for background jobs in a real ComfyUI 0.3.75 (the Jobs panel's button calls this route):
a background job stopped after epoch 3 says ``can_continue``; ``POST /musubi-tuner/jobs/{id}/continue``
queues the rest of its plan as a new job (parent: the stopped one) that ends as one run and is
delivered; the stopped job no longer offers it and a second Continue is refused; a job whose state
was replaced through ComfyUI's upload route is refused with the reason and nothing is queued.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.register_assert_rewrite("hardening", "jobs_e2e")

import hardening  # noqa: E402,F401  (registers the marker before the decorators below)
from comfy_harness import ComfyHTTPError, ComfyInstall  # noqa: E402
from executor.runs.trust import Registry  # noqa: E402
from fakes import FakeMusubi, fake_musubi  # noqa: E402,F401  (session fixture)
from jobs_e2e import running_comfy, JobsComfy  # noqa: E402
from test_resume_e2e import upload  # noqa: E402
from test_resume_run import assert_one_curve  # noqa: E402

pytestmark = [pytest.mark.comfyui, pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]
pytest_plugins = ["hardening"]


@pytest.fixture
def comfy(comfy_install: ComfyInstall, fake_musubi: FakeMusubi, tmp_path: Path,  # noqa: F811
          hardening: Any) -> Iterator[JobsComfy]:
    yield from running_comfy(comfy_install, fake_musubi, tmp_path, hardening)


def stopped_job(comfy: JobsComfy, name: str) -> tuple[dict[str, Any], Path]:
    """A background cosine job of 8 epochs, stopped from the route once its epoch-3 state is recorded."""
    folder = comfy.image_folder(f"{name}_images")
    comfy.cache(folder)
    comfy.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.05", "FAKE_MUSUBI_PAUSE_AFTER_STEP": "9"})
    (job_id,) = comfy.queue(folder, (name,), max_train_epochs=8, lr_scheduler="cosine", lr_warmup_steps=2)
    registry = Registry(str(comfy.data_dir / "states.db"))  # the server's record, in its data folder
    job = comfy.until(job_id, lambda j: j["state"] == "running")
    state = Path(job["run_dir"]) / f"{name}-000003-state"
    comfy.until(job_id, lambda j: registry.state(str(state)) is not None)
    comfy.client().post(f"/api/musubi-tuner/jobs/{job_id}/stop")
    job = comfy.until(job_id, lambda j: j["state"] == "cancelled")
    comfy.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.05"})
    return job, state


@pytest.mark.timeout(300)
def test_continue_queues_the_rest_of_a_stopped_jobs_plan_as_one_run(comfy: JobsComfy) -> None:
    job, _ = stopped_job(comfy, "bgc")
    assert job["can_continue"] is True and job["can_stop"] is False
    client = comfy.client()
    new = client.post(f"/api/musubi-tuner/jobs/{job['id']}/continue")["job"]
    assert new["parent"] == job["id"] and new["state"] in ("queued", "starting", "running") and new["kind"] == "train"
    done = comfy.until(new["id"], lambda j: j["state"] == "succeeded" and j["lora"] is not None, timeout=120)
    first, second = Path(job["run_dir"]), Path(done["run_dir"])
    assert second.parent == first.parent
    assert sorted(p.name for p in second.glob("*.safetensors")) == (
        [f"bgc-{n:06d}.safetensors" for n in range(4, 8)] + ["bgc.safetensors"])
    assert done["progress"]["step"] == done["progress"]["total"] == 24
    detail = client.get(f"/api/musubi-tuner/jobs/{new['id']}")
    assert_one_curve([p["step"] for p in detail["loss_history"]], first, 9, 24)
    assert (comfy.loras / "bgc.safetensors").is_file() and done["lora"]["name"] == "musubi-tuner/bgc.safetensors"
    assert comfy.job(job["id"])["can_continue"] is False and done["can_continue"] is False
    with pytest.raises(ComfyHTTPError) as again:
        client.post(f"/api/musubi-tuner/jobs/{job['id']}/continue")
    assert again.value.status == 409 and "was already continued by" in again.value.body["error"]
    with pytest.raises(ComfyHTTPError) as bad:
        client.post("/api/musubi-tuner/jobs/not-a-job/continue")
    assert bad.value.status == 400


@pytest.mark.timeout(300)
def test_continue_refuses_a_job_whose_state_was_replaced_through_the_upload_route(comfy: JobsComfy) -> None:
    job, state = stopped_job(comfy, "bgx")
    output = comfy.base / "output"
    assert upload(comfy.client(), "output", str(state.relative_to(output)), "optimizer.bin", b"not musubi's") == 200
    before = [j["id"] for j in comfy.client().get("/api/musubi-tuner/jobs")["jobs"]]
    runs_before = set(state.parent.parent.iterdir())
    with pytest.raises(ComfyHTTPError) as refused:
        comfy.client().post(f"/api/musubi-tuner/jobs/{job['id']}/continue")
    assert refused.value.status == 409
    assert "optimizer.bin changed since musubi wrote it" in refused.value.body["error"]
    assert "resume list" in refused.value.body["hint"]
    assert [j["id"] for j in comfy.client().get("/api/musubi-tuner/jobs")["jobs"]] == before, "nothing was queued"
    assert set(state.parent.parent.iterdir()) == runs_before, "no run folder was made"

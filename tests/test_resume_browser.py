"""Continue in the Jobs panel, in a real browser on a real ComfyUI with the fake musubi: a
background training of 8 epochs stopped after epoch 3 shows a Continue button on its card; a
click queues the rest of its plan as a new job (a toast says so), whose card runs to done with
one loss curve marked where it resumed, while the stopped card offers Continue no more. The run
ends with files -000004..-000007 + the final LoRA. Screenshot: .ci/screenshots/jobs-continue.png
(test-artifacts/jobs-continue.png each run).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from comfy_browser import CdpPage, Chromium
from comfy_fixtures import put_tiny_models
from comfy_harness import ComfyServer
from executor.runs.trust import Registry
from fakes import FakeMusubi, fake_musubi  # noqa: F401  (fake_musubi is a fixture)
from test_comfy_browser import dismiss_banner, frontend
from test_jobs_browser import card, click_in_card, open_tab, server_env, toast_with
from test_nodes_e2e import image_folder, workflow

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.timeout(300)]
SPE = 4  # four images, batch 1


def configure(server: ComfyServer, **env: str) -> None:
    settings = server.base_dir / "user" / "__musubi-tuner-nodes" / "config.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"progress_update_interval": 0.5,
                                    "env": {"FAKE_MUSUBI_STEP_SECONDS": "0.2", **env}}), encoding="utf-8")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("resume-jobs-data")


@pytest.fixture(scope="module")
def server(comfy_servers: Any, fake_musubi: FakeMusubi, data_dir: Path) -> ComfyServer:  # noqa: F811
    server = comfy_servers.start("browser-resume", env=server_env(fake_musubi, data_dir))
    put_tiny_models(server)
    return server


@pytest.fixture
def page(chromium: Chromium, server: ComfyServer) -> Iterator[CdpPage]:
    with frontend(chromium, server) as page:
        yield page


def card_view(job_id: str) -> str:
    return (f"(() => {{ const c = {card(job_id)}; if (!c) return null; const q = s => c.querySelector(s);"
            " return {state: c.dataset.state, line: q('.musubi-job-line').innerText,"
            " resume: !q('.musubi-job-continue').hidden, curve: !!q('.musubi-job-curve path'),"
            " mark: !!q('.musubi-job-curve .musubi-jobs-curve-resume')}; })()")


def wait_view(page: CdpPage, job_id: str, condition: str, timeout: float) -> dict[str, Any]:
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = page.evaluate(card_view(job_id))
        if view and page.evaluate(f"(s => !!({condition}))({json.dumps(view)})"):
            return view
        if not seen or seen[-1] != view:
            seen.append(view)
        time.sleep(0.25)
    raise AssertionError(f"the card never had {condition}; it showed: {seen[-10:]}")


@pytest.mark.timeout(300)
def test_continue_in_the_jobs_panel_trains_the_rest_of_a_stopped_run(
        page: CdpPage, server: ComfyServer, data_dir: Path, artifacts_dir: Path) -> None:
    dismiss_banner(page)
    page.evaluate("app.extensionManager.setting.set('Comfy.Minimap.Visible', false)")
    client = server.client()
    configure(server, FAKE_MUSUBI_PAUSE_AFTER_STEP=str(3 * SPE))
    folder = image_folder(server, "panel_resume", count=SPE)
    prompt = workflow(folder, output_name="panel_resume", max_train_epochs=8, lr_scheduler="cosine",
                      lr_warmup_steps=2, run_as="background")
    run = client.run(prompt, timeout=120)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    (job,) = [j for j in client.get("/musubi-tuner/jobs")["jobs"] if j["name"] == "panel_resume"]
    registry = Registry(str(data_dir / "states.db"))  # the server's record of states
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/musubi-tuner/jobs/{job['id']}")
        state = Path(job["run_dir"]) / "panel_resume-000003-state"
        if registry.state(str(state)) is not None:
            break
        time.sleep(0.3)
    client.post(f"/musubi-tuner/jobs/{job['id']}/stop")
    configure(server)  # the continuation runs to its end

    open_tab(page)
    stopped = wait_view(page, job["id"], "s.state === 'cancelled' && s.resume", timeout=30)
    assert "step" in stopped["line"]
    click_in_card(page, job["id"], ".musubi-job-continue")
    page.wait_for(toast_with("Continuing panel_resume"), timeout=15)
    jobs = client.get("/musubi-tuner/jobs")["jobs"]
    (new,) = [j for j in jobs if j["parent"] == job["id"]]
    done = wait_view(page, new["id"], "s.state === 'succeeded' && s.curve && s.mark", timeout=120)
    assert "step 32/32" in done["line"], done
    assert not wait_view(page, job["id"], "!s.resume", timeout=10)["resume"], "the stopped card still offers it"
    page.evaluate(f"{card(new['id'])}.scrollIntoView({{block: 'start'}})")
    page.screenshot(artifacts_dir / "jobs-continue.png")

    finished = client.get(f"/musubi-tuner/jobs/{new['id']}")
    assert finished["resume_points"] == [3 * SPE] and finished["loss_history"][-1]["step"] == 8 * SPE
    run_dir = Path(finished["run_dir"])
    assert sorted(p.name for p in run_dir.glob("*.safetensors")) == (
        [f"panel_resume-{n:06d}.safetensors" for n in range(4, 8)] + ["panel_resume.safetensors"])

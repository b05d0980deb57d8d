"""The Jobs panel in a real browser: two background trainings queued through the API on a real
ComfyUI with the fake musubi (one second per step, samples every epoch; no GPU, so one job at a
time). The panel (sidebar tab "Jobs", web/musubi_jobs.js) shows the first one moving: state,
progress bar, step, loss curve, newest sample, log tail, run folder, command, and a badge with
the running count; the second one waits and its Remove button takes it off the queue. Stop on
the running one (pressed twice: it asks once more) cancels it: the trainer's whole process tree
is gone within 2 s, the card says cancelled and a toast says so. The texts follow the
frontend's language setting (Japanese). Screenshots go to test-artifacts/ (jobs-*.png); the
README's is .ci/screenshots/jobs-panel.png.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from comfy_browser import BrowserError, CdpPage, Chromium
from comfy_fixtures import put_tiny_models
from comfy_harness import ComfyServer
from fakes import FakeMusubi, fake_musubi  # noqa: F401  (fake_musubi is a fixture)
from procs import alive, wait_all_gone
from test_comfy_browser import center, dismiss_banner, frontend
from test_nodes_e2e import image_folder, run_processes, workflow

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.timeout(300)]

TAB = "button.musubi-tuner-jobs-tab-button"
PROMPTS = "a red cube --w 160 --h 100 --s 20 --d 42"
GONE_WITHIN = 2.0
# the badge's text (PrimeVue's badge in frontend 1.32, the frontend's own in 1.49), '' without one
BADGE = (f"(document.querySelector({json.dumps(TAB)}).querySelector('.p-badge, .sidebar-icon-badge')"
         "?.innerText ?? '').trim()")


def server_env(fake: FakeMusubi, data_dir: Path) -> dict[str, str]:
    return {"MUSUBI_TUNER_ROOT": str(fake.root), "MUSUBI_TUNER_ENV": str(fake.venv),
            "MUSUBI_TUNER_NODES_DATA_DIR": str(data_dir)}


def configure(server: ComfyServer, scenario: str = "samples", step_seconds: float = 1.0) -> None:
    """The pack's settings for the next jobs (a job takes them when it is queued): the fake's
    behaviour and pace."""
    settings = server.base_dir / "user" / "__musubi-tuner-nodes" / "config.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"progress_update_interval": 0.5, "env": {
        "FAKE_MUSUBI_STEP_SECONDS": str(step_seconds), "FAKE_MUSUBI_SCENARIO": scenario}}), encoding="utf-8")


@pytest.fixture(scope="module")
def jobs_server(comfy_servers: Any, fake_musubi: FakeMusubi,  # noqa: F811
                tmp_path_factory: pytest.TempPathFactory) -> ComfyServer:
    """The fake musubi at one second per step with a sample every epoch; its own job store."""
    server = comfy_servers.start("browser-jobs", env=server_env(fake_musubi, tmp_path_factory.mktemp("jobs-data")))
    put_tiny_models(server)
    configure(server)
    return server


@pytest.fixture
def jobs_page(chromium: Chromium, jobs_server: ComfyServer) -> Iterator[CdpPage]:
    with frontend(chromium, jobs_server) as page:
        yield page


def submit(server: ComfyServer, name: str, epochs: int) -> str:
    """A background training through the API; the prompt ends at once with the job's id."""
    folder = image_folder(server, name, count=4)
    prompt = workflow(folder, output_name=name, max_train_epochs=epochs, sample_prompts=PROMPTS,
                      run_as="background")
    run = server.client().run(prompt, timeout=120)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    jobs = [j for j in server.client().get("/musubi-tuner/jobs")["jobs"] if j["name"] == name]
    assert len(jobs) == 1, jobs
    return jobs[0]["id"]


def card(job_id: str) -> str:
    return f"document.querySelector('.musubi-job[data-job-id=\"{job_id}\"]')"


def card_state(job_id: str) -> str:
    """A card's drawn state as JSON: what the user reads there."""
    return (f"(() => {{ const c = {card(job_id)}; if (!c) return null;"
            " const q = s => c.querySelector(s); const img = q('.musubi-job-sample img');"
            " return {state: c.dataset.state, chip: q('.musubi-job-state').innerText,"
            " line: q('.musubi-job-line').innerText, fill: parseFloat(q('.musubi-job-fill').style.width) || 0,"
            " curve: !!q('.musubi-job-curve path'), sample: img ? img.complete && img.naturalWidth : 0, src: img ? img.src : null,"
            " log: q('.musubi-job-log').textContent, folder: q('.musubi-job-folder code').textContent,"
            " command: q('.musubi-job-command code').textContent,"
            " stop: !q('.musubi-job-stop').hidden, remove: !q('.musubi-job-remove').hidden}; })()")


def wait_card(page: CdpPage, server: ComfyServer, job_id: str, condition: str, timeout: float) -> dict[str, Any]:
    """The card's state once `condition` (JS over `s`, the card state) holds; on a timeout the
    error lists what the card showed meanwhile and what the server says."""
    seen: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = page.evaluate(f"(() => {{ const s = {card_state(job_id)}; return {{s, ok: !!(s && ({condition}))}}; }})()")
        if got["ok"]:
            return got["s"]
        brief = got["s"] and {k: got["s"].get(k) for k in ("state", "line", "fill", "curve", "sample", "src")}
        if not seen or seen[-1] != brief:
            seen.append(brief)
        time.sleep(0.25)
    job = server.client().get(f"/musubi-tuner/jobs/{job_id}")
    job.pop("loss_history", None)
    shown = "\n".join(map(str, seen[-30:]))
    raise AssertionError(f"the card never had {condition} in {timeout:.0f} s; it showed:\n{shown}\nserver: {job}")


def click_in_card(page: CdpPage, job_id: str, button: str) -> None:
    selector = f'.musubi-job[data-job-id="{job_id}"] {button}'
    page.evaluate(f"document.querySelector({json.dumps(selector)}).scrollIntoView({{block: 'center'}})")
    page.click(*center(page, selector))


def open_tab(page: CdpPage) -> None:
    """Click the sidebar's Jobs button until the panel is open: frontend 1.49 ignores the first
    click on any sidebar button (its own Node Library too) just after the page loaded."""
    for _ in range(3):
        page.click(*center(page, TAB))
        try:
            page.wait_for("document.querySelector('.musubi-jobs')", timeout=3)
            return
        except BrowserError:
            if page.evaluate("app.extensionManager.sidebarTab.activeSidebarTabId") == "musubi-tuner-jobs":
                break  # open, yet not drawn: waiting longer will tell
    page.wait_for("document.querySelector('.musubi-jobs')", timeout=10)


@pytest.mark.timeout(300)
def test_the_jobs_panel_shows_a_job_moving_removes_a_queued_one_and_stops_the_running_one(
        jobs_page: CdpPage, jobs_server: ComfyServer, fake_musubi: FakeMusubi,  # noqa: F811
        artifacts_dir: Path) -> None:
    page = jobs_page
    dismiss_banner(page)
    page.evaluate("app.extensionManager.setting.set('Comfy.Minimap.Visible', false)")
    running = submit(jobs_server, "panel_first", epochs=10)
    waiting = submit(jobs_server, "panel_second", epochs=1)
    open_tab(page)

    # the first job moves: bar, step, curve, the newest sample (after epoch 1), log tail
    first = wait_card(page, jobs_server, running, "s.state === 'running' && s.fill > 0 && s.curve && s.sample > 0",
                      timeout=120)
    assert "step" in first["line"] and "/40" in first["line"] and "loss" in first["line"], first
    assert first["log"].strip() and first["folder"] and "train_network" in first["command"], first
    assert first["stop"] and not first["remove"]
    later = wait_card(page, jobs_server, running, f"s.fill > {first['fill']}", timeout=30)
    assert later["state"] == "running"
    # the badge on the sidebar button counts the running job
    assert page.evaluate(BADGE) == "1"
    queued = page.evaluate(card_state(waiting))
    assert queued["state"] == "queued" and queued["remove"] and not queued["stop"], queued
    page.evaluate(f"{card(running)}.scrollIntoView({{block: 'start'}})")
    page.screenshot(artifacts_dir / "jobs-panel.png")

    # Remove takes the queued job off the queue and out of the panel
    click_in_card(page, waiting, ".musubi-job-remove")
    page.wait_for(f"!{card(waiting)}", timeout=10)
    assert [j["id"] for j in jobs_server.client().get("/musubi-tuner/jobs")["jobs"]] == [running]

    # Stop asks once more, then stops the whole tree
    tree = alive(run_processes(fake_musubi))
    assert tree, "no trainer processes found while the job runs"
    click_in_card(page, running, ".musubi-job-stop")
    page.wait_for(f"{card(running)}.querySelector('.musubi-job-confirm')", timeout=5)
    assert page.evaluate(card_state(running))["state"] == "running"  # the first click only asks
    click_in_card(page, running, ".musubi-job-stop")
    pressed = time.monotonic()
    left = wait_all_gone(tree, within=GONE_WITHIN)
    took = time.monotonic() - pressed
    assert left == [], f"still running {took:.1f} s after Stop: {left}"
    done = wait_card(page, jobs_server, running, "s.state === 'cancelled'", timeout=15)
    assert not done["stop"] and not done["remove"]
    page.wait_for("[...document.querySelectorAll('.p-toast-message')]"
                  ".some(m => m.innerText.includes('cancelled') && m.innerText.includes('panel_first'))", timeout=10)
    assert jobs_server.client().get(f"/musubi-tuner/jobs/{running}")["state"] == "cancelled"
    page.wait_for(f"{BADGE} === ''", timeout=5)
    assert page.evaluate(f"!{card(waiting)}"), "the removed job came back"
    page.screenshot(artifacts_dir / "jobs-cancelled.png")

    # in Japanese (the frontend's language setting) the panel draws with the Japanese texts
    page.evaluate("app.extensionManager.setting.set('Comfy.Locale', 'ja')")
    page.click(*center(page, TAB))  # hide
    page.wait_for("!document.querySelector('.musubi-jobs')", timeout=10)
    open_tab(page)
    japanese = page.wait_for(f"(() => {{ const s = {card_state(running)}; return s && s; }})()", timeout=10,
                             value=True)
    assert japanese["chip"] == "中止", japanese
    assert "Musubi Tuner のジョブ" in page.evaluate("document.querySelector('.musubi-jobs-title').innerText")
    page.evaluate("app.extensionManager.setting.set('Comfy.Locale', 'en')")


def toast_with(*parts: str) -> str:
    """Whether a toast on the page contains every one of `parts`."""
    return (f"[...document.querySelectorAll('.p-toast-message')].some(m => {json.dumps(list(parts))}"
            ".every(p => m.innerText.includes(p)))")


@pytest.mark.timeout(240)
def test_with_the_tab_closed_a_job_end_still_toasts_failed_with_its_reason_and_done_with_its_lora(
        jobs_page: CdpPage, jobs_server: ComfyServer) -> None:
    page = jobs_page
    dismiss_banner(page)
    configure(jobs_server, scenario="oom", step_seconds=0.3)
    failing = submit(jobs_server, "toast_oom", epochs=2)
    configure(jobs_server, scenario="ok", step_seconds=0.3)
    fine = submit(jobs_server, "toast_ok", epochs=1)
    configure(jobs_server)
    assert page.evaluate("!document.querySelector('.musubi-jobs')")  # the tab is not open

    page.wait_for(f"{BADGE} === '1'", timeout=60)  # the extension counts without the tab
    page.wait_for(toast_with("Training failed: toast_oom"), timeout=60)
    failed = jobs_server.client().get(f"/musubi-tuner/jobs/{failing}")
    assert failed["state"] == "failed" and failed["reason"] and failed["hint"], failed
    page.wait_for(toast_with("Training failed: toast_oom", failed["reason"][:40], "What to do:"), timeout=5)
    page.wait_for(toast_with("Training done: toast_ok", "LoRA:", "toast_ok"), timeout=90)
    done = jobs_server.client().get(f"/musubi-tuner/jobs/{fine}")
    assert done["state"] == "succeeded" and done["lora"], done

    open_tab(page)
    shown = wait_card(page, jobs_server, failing, "s.state === 'failed'", timeout=10)
    assert shown["chip"] == "failed"
    problem = page.evaluate(f"{card(failing)}.querySelector('.musubi-job-problem').innerText")
    assert problem == failed["reason"]
    assert done["lora"]["name"] in page.evaluate(f"{card(fine)}.querySelector('.musubi-job-lora').innerText")


@pytest.mark.timeout(300)
def test_after_a_comfyui_restart_the_panel_fetches_the_jobs_again_and_toasts_the_one_that_ended_meanwhile(
        chromium: Chromium, comfy_install: Any, fake_musubi: FakeMusubi,  # noqa: F811
        tmp_path: Path, artifacts_dir: Path) -> None:
    env = server_env(fake_musubi, tmp_path / "jobs data")
    server = ComfyServer(comfy_install, tmp_path / "comfy", env=env)
    servers = [server]
    try:
        server.start()
        put_tiny_models(server)
        configure(server, scenario="ok", step_seconds=1.0)
        job = submit(server, "across_restart", epochs=3)
        with frontend(chromium, server) as page:
            dismiss_banner(page)
            open_tab(page)
            wait_card(page, server, job, "s.state === 'running' && s.fill > 0", timeout=60)
            run_dir = Path(server.client().get(f"/musubi-tuner/jobs/{job}")["run_dir"])
            server.stop()  # the training goes on without ComfyUI and ends while it is down
            deadline = time.monotonic() + 60
            while not (run_dir / "exit.json").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert (run_dir / "exit.json").exists(), "the job did not finish while ComfyUI was down"
            assert page.evaluate(card_state(job))["state"] == "running"  # what the page saw last

            again = ComfyServer(comfy_install, tmp_path / "comfy", env=env, port=server.port)
            servers.append(again)
            again.start()  # the page's socket reconnects by itself
            wait_card(page, again, job, "s.state === 'succeeded'", timeout=60)
            page.wait_for(toast_with("Training done: across_restart", "LoRA:"), timeout=60)
            page.screenshot(artifacts_dir / "jobs-after-restart.png")
    finally:
        for each in servers:
            each.stop()

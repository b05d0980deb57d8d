"""Continuing a stopped run inside a real ComfyUI 0.3.75, as an API user and as an attacker who
can reach ``/prompt`` and ``/upload/image`` would: a training state planted through ComfyUI's own
upload route (into input/ and into output/) is refused when queued and nothing runs; a run
stopped by Cancel is offered by the Train node's ``resume``, a state file replaced through the
upload route is refused before launch, and the continuation queued through the API finishes the
plan as one run (numbering, curve, status route)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.register_assert_rewrite("hardening", "hardening_e2e")  # before they are imported

import hardening  # noqa: E402,F401  (registers the hardening marker before the decorators below)
from comfy_fixtures import fake_musubi_server  # noqa: E402
from comfy_harness import ComfyClient, ComfyHTTPError, ComfyServer  # noqa: E402
from executor.runs.trust import Registry  # noqa: E402
from fakes import FakeMusubi, fake_musubi  # noqa: E402,F401  (fake_musubi is a fixture)
from test_nodes_e2e import executed_output, image_folder, workflow  # noqa: E402
from test_resume_run import assert_one_curve  # noqa: E402

pytestmark = pytest.mark.comfyui
pytest_plugins = ["hardening"]
STATE_FILES = ("model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl")


@pytest.fixture(scope="module")
def server(comfy_servers: Any, fake_musubi: FakeMusubi) -> ComfyServer:  # noqa: F811
    return fake_musubi_server(comfy_servers, fake_musubi, "resume-e2e")


@pytest.fixture
def client(server: ComfyServer) -> ComfyClient:
    return server.client()


@pytest.fixture
def fake_env(server: ComfyServer) -> Iterator[Any]:
    path = server.base_dir / "user" / "__musubi-tuner-nodes" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    def set_env(**env: str) -> None:
        path.write_text(json.dumps({"env": {k: str(v) for k, v in env.items()}}), encoding="utf-8")

    set_env()
    yield set_env
    set_env()


def upload(client: ComfyClient, kind: str, subfolder: str, filename: str, data: bytes) -> int:
    """ComfyUI's /upload/image, as any client may call it: any bytes, any name, a subfolder."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + (
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"subfolder\"\r\n\r\n{subfolder}"
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\n{kind}"
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue"
        f"\r\n--{boundary}--\r\n").encode()
    request = urllib.request.Request(client.url + "/upload/image", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def run_folders(server: ComfyServer) -> set[Path]:
    return set((server.base_dir / "output" / "musubi-tuner" / "runs").glob("*"))


def resume_choices(client: ComfyClient) -> list[str]:
    return client.object_info("MusubiTrainLoRA")["MusubiTrainLoRA"]["input"]["optional"]["resume"][0]


@pytest.mark.hardening("security", "only_recorded_states")
@pytest.mark.timeout(240)
def test_a_state_planted_through_comfyuis_upload_route_is_refused_and_nothing_runs(
        server: ComfyServer, client: ComfyClient, fake_env: Any, tmp_path: Path) -> None:
    planted = {"input": "planted-state", "output": "musubi-tuner/runs/20990101-000000-planted/planted-000003-state"}
    for kind, subfolder in planted.items():
        for name in STATE_FILES:
            assert upload(client, kind, subfolder, name, b"cos\nsystem\n(S'touch /tmp/pwned'\ntR.") == 200
        assert (server.base_dir / kind / subfolder / "random_states_0.pkl").is_file()
    pids = tmp_path / "pids"
    fake_env(FAKE_MUSUBI_PIDFILE=str(pids))
    before = run_folders(server)
    folder = image_folder(server, "resume_planted", count=2)
    values = [str(server.base_dir / "input" / planted["input"]), planted["input"],
              str(server.base_dir / "output" / planted["output"]), "20990101-000000-planted"]
    for value in values:
        prompt = workflow(folder, output_name="planted", resume=value)
        # training is the prompt's only output (cache nodes are outputs too, and would run on their own)
        prompt = {k: v for k, v in prompt.items() if k not in ("3", "4")}
        prompt["5"]["inputs"]["dataset"] = ["1", 0]
        with pytest.raises(ComfyHTTPError) as refused:
            client.queue_prompt(prompt)
        assert refused.value.status == 400
        details = json.dumps(refused.value.node_errors.get("5", {}))
        assert "resume" in details and ("is not a training state or run this pack recorded" in details
                                        or "there is no run" in details), details
        assert "resume list" in details and "trust-state" in details, details
    assert value not in resume_choices(client)
    assert not pids.exists(), "musubi was launched"
    assert run_folders(server) == before, "a run folder was made"


@pytest.mark.hardening("security", "only_recorded_states")
@pytest.mark.timeout(420)
def test_a_run_stopped_in_comfyui_is_continued_through_the_api_as_one_run(
        server: ComfyServer, client: ComfyClient, fake_env: Any, tmp_path: Path) -> None:
    folder = image_folder(server, "resume_e2e", count=3)
    name = "e2e_resumed"
    prompt = workflow(folder, output_name=name, max_train_epochs=8, lr_scheduler="cosine", lr_warmup_steps=2)
    caching = client.run({k: v for k, v in prompt.items() if k != "5"}, timeout=120)
    assert caching.outcome == "success", caching.terminal.data if caching.terminal else caching.types

    # 1. the run stops after epoch 3 (a Cancel once that state is recorded)
    fake_env(FAKE_MUSUBI_PAUSE_AFTER_STEP="9", FAKE_MUSUBI_STEP_SECONDS="0.05")
    registry = Registry()
    with client.socket() as sock:
        prompt_id = client.queue_prompt(prompt)["prompt_id"]
        deadline = time.monotonic() + 150
        state = None
        while state is None and time.monotonic() < deadline:
            found = sorted((server.base_dir / "output" / "musubi-tuner" / "runs").glob(f"*-{name}/{name}-000003-state"))
            state = found[-1] if found and registry.state(str(found[-1])) else None
            time.sleep(0.2)
        assert state is not None, "the epoch-3 state was not recorded"
        client.interrupt(prompt_id)
        stopped = sock.collect(prompt_id, timeout=60)
    assert stopped.outcome == "interrupted", stopped.types
    first = state.parent
    assert first.name in resume_choices(client)
    first_loras = sorted(p.name for p in first.glob("*.safetensors"))
    assert first_loras == [f"{name}-{n:06d}.safetensors" for n in (1, 2, 3)]

    # 2. a client replaces the state's last file through the upload route: refused before launch
    original = (state / "random_states_0.pkl").read_bytes()
    assert upload(client, "output", f"musubi-tuner/runs/{first.name}/{state.name}", "random_states_0.pkl",
                  b"cos\nsystem\n(S'touch /tmp/pwned'\ntR.") == 200
    pids = tmp_path / "pids"
    fake_env(FAKE_MUSUBI_PIDFILE=str(pids))
    continued = dict(prompt, **{"5": {**prompt["5"], "inputs": {**prompt["5"]["inputs"], "resume": first.name}}})
    before = run_folders(server)
    refused = client.run(continued, timeout=120)
    assert refused.outcome == "error", refused.types
    message = refused.terminal.data["exception_message"]
    assert "random_states_0.pkl changed since musubi wrote it" in message and "resume list" in message, message
    assert not pids.exists() and run_folders(server) == before, "something was launched or written"
    (state / "random_states_0.pkl").write_bytes(original)

    # 3. continued through the API: the rest of the plan, one run
    fake_env(FAKE_MUSUBI_STEP_SECONDS="0.05")
    run = client.run(continued, timeout=240)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    out = executed_output(run, "5")
    second = Path(out["run_dir"][0])
    assert sorted(p.name for p in second.glob("*.safetensors")) == (
        [f"{name}-{n:06d}.safetensors" for n in range(4, 8)] + [f"{name}.safetensors"])
    assert sorted(p.name for p in first.glob("*.safetensors")) == first_loras
    assert (server.base_dir / "models" / "loras" / "musubi-tuner" / f"{name}.safetensors").is_file()
    texts = run.progress_texts("5")
    assert any(f"continuing run {first.name} from epoch 3 of 8, step 9 of 24" in t for t in texts), texts[-3:]
    bars = [(m.data["value"], m.data["max"]) for m in run.of_type("progress") if m.data.get("node") == "5"]
    assert bars and bars[-1] == (24, 24) and all(total == 24 for _, total in bars)
    status = client.get(f"/musubi-tuner/runs/{second.name}")
    assert_one_curve([p["step"] for p in status["history"]], first, 9, 24)
    assert status["resume_points"] == [9] and status["parent_run"] == first.name
    assert status["status"] == "succeeded" and status["can_continue"] is False
    parent = client.get(f"/musubi-tuner/runs/{first.name}")
    assert parent["can_continue"] is False and parent["continue_note"] == f"it was continued by {second.name}"
    assert any(ref["filename"] == "loss_curve.png" for ref in out["images"])
    assert first.name not in resume_choices(client) and second.name not in resume_choices(client)

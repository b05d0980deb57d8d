"""The pack inside a real ComfyUI 0.3.75 server (symlinked, as a developer runs it).

Also proves the harness's API client on every message path (progress, progress text, cache hit,
interrupt, node error, HTTP 400) with the test-only HarnessProbe node, so end-to-end tests of
the pack's nodes can rely on it.
"""

from __future__ import annotations

import uuid

import pytest

from comfy_harness import PACK_FOLDER_NAME, ComfyClient, ComfyHTTPError, ComfyServer

# The first comfyui test also waits for the common server to start (~6 s); the pinned ComfyUI
# itself is set up before any test runs (comfy_fixtures.pytest_collection_finish).
pytestmark = [pytest.mark.comfyui, pytest.mark.timeout(180)]

PACK_MODULE = f"custom_nodes.{PACK_FOLDER_NAME}"


def probe_prompt(*, steps: int = 3, delay: float = 0.05, fail: bool = False, label: str | None = None) -> dict:
    # a fresh label per test: the common server would otherwise serve one test's run from cache
    inputs = {"steps": steps, "delay": delay, "label": label or uuid.uuid4().hex[:8], "fail": fail}
    return {"1": {"class_type": "HarnessProbe", "inputs": inputs}}


def test_server_answers_object_info_with_core_nodes(comfy_client: ComfyClient) -> None:
    info = comfy_client.object_info()
    assert "LoraLoader" in info and "KSampler" in info
    # "loaders" in 0.3.75, "model/loaders" in 0.33
    assert comfy_client.object_info("LoraLoader")["LoraLoader"]["category"].split("/")[-1] == "loaders"


def test_pack_imports_without_failure(comfy_server: ComfyServer) -> None:
    entry = comfy_server.pack_import()
    assert entry is not None, f"no import-times line for the pack\n{comfy_server.log_tail()}"
    assert not entry.failed, f"ComfyUI reports (IMPORT FAILED) for the pack\n{comfy_server.log_tail(80)}"
    assert f"(IMPORT FAILED): {entry.path}" not in comfy_server.log_text()


def test_pack_nodes_carry_the_prefix_and_category(comfy_client: ComfyClient) -> None:
    ours = {name: node for name, node in comfy_client.object_info().items()
            if node.get("python_module") == PACK_MODULE}
    assert ours, f"the pack registered no nodes (no object_info entry from {PACK_MODULE})"
    for name, node in ours.items():
        assert name.startswith("Musubi"), name
        category = node["category"]
        assert category == "Musubi Tuner" or category.startswith("Musubi Tuner/"), (name, category)


def test_probe_run_reports_progress_and_progress_text(comfy_client: ComfyClient) -> None:
    run = comfy_client.run(probe_prompt(steps=3, label="count"), timeout=60)

    assert run.outcome == "success", run.types
    progress = [(m.data["value"], m.data["max"]) for m in run.of_type("progress")]
    # newer ComfyUI (0.33) throttles progress (<= 1 per 100 ms and 0.5 %; first and last always
    # sent), so the middle update may be dropped; 0.3.75 sends all three
    assert progress[0] == (1, 3) and progress[-1] == (3, 3), progress
    assert progress == sorted(set(progress)) and set(progress) <= {(1, 3), (2, 3), (3, 3)}, progress
    assert run.progress_texts(node="1") == ["count 1/3", "count 2/3", "count 3/3"]
    assert run.of_type("executed")[-1].data["output"] == {"text": ["count done"]}
    assert run.types.index("execution_start") < run.types.index("execution_success")
    history = comfy_client.history(run.prompt_id)[run.prompt_id]
    assert history["status"]["status_str"] == "success"
    assert history["outputs"]["1"] == {"text": ["count done"]}


def test_requeue_of_an_unchanged_prompt_is_served_from_cache(comfy_client: ComfyClient) -> None:
    prompt = probe_prompt(steps=2)
    first = comfy_client.run(prompt, timeout=60)
    second = comfy_client.run(prompt, timeout=60)

    assert first.outcome == second.outcome == "success"
    assert second.of_type("execution_cached")[0].data["nodes"] == ["1"]
    assert not second.of_type("progress")


def test_interrupt_ends_a_running_prompt(comfy_client: ComfyClient) -> None:
    with comfy_client.socket() as sock:
        prompt_id = comfy_client.queue_prompt(probe_prompt(steps=600, delay=0.1))["prompt_id"]
        sock.wait_for(lambda m: m.type == "progress" and m.prompt_id == prompt_id, timeout=30)
        comfy_client.interrupt(prompt_id)
        run = sock.collect(prompt_id, timeout=30)

    assert run.outcome == "interrupted", run.types
    assert run.terminal is not None and run.terminal.data["node_type"] == "HarnessProbe"
    assert comfy_client.history(prompt_id)[prompt_id]["status"]["status_str"] == "error"


def test_node_exception_reaches_execution_error(comfy_client: ComfyClient) -> None:
    run = comfy_client.run(probe_prompt(steps=1, fail=True, label="boom"), timeout=60)

    assert run.outcome == "error", run.types
    assert run.terminal is not None
    assert run.terminal.data["exception_type"] == "ValueError"
    assert "boom failed on purpose" in run.terminal.data["exception_message"]
    assert "hint: set fail to false" in run.terminal.data["exception_message"]


def test_invalid_widget_value_is_rejected_with_http_400(comfy_client: ComfyClient) -> None:
    with pytest.raises(ComfyHTTPError) as rejected:
        comfy_client.queue_prompt(probe_prompt(steps=0))

    assert rejected.value.status == 400
    errors = rejected.value.node_errors["1"]["errors"]
    assert errors[0]["type"] == "value_smaller_than_min"

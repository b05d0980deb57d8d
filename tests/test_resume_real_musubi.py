"""Continuing a run of the REAL musubi-tuner v0.3.4 inside a real ComfyUI (opt-in: ``-m real_musubi``;
skipped without MUSUBI_TUNER_ROOT and the tiny Wan fixtures, as tests/test_nodes_real_musubi.py).

A Wan 2.1 1.3B run of 4 epochs (3 images, 12 steps) on the CPU is stopped by Cancel once its
epoch-1 state is recorded, then continued through ComfyUI to the planned end: 12 steps in all,
-000001 in the first run folder, -000002/-000003 + the final LoRA in the continuation's, one loss
curve, and the state musubi really wrote (accelerate's files) is what was recorded and loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from comfy_fixtures import TINY_SAFETENSORS, tiny
from comfy_harness import ComfyServer
from test_nodes_e2e import dataset_node, executed_output, image_folder, models_node
from test_nodes_real_musubi import DIT, TOOLS, VAE, _requirements

from executor.musubi import catalogue as cat
from executor.runs.trust import Registry

pytestmark = [pytest.mark.real_musubi, pytest.mark.comfyui]


@pytest.mark.timeout(1500)
def test_a_real_wan_run_cancelled_after_its_first_epoch_is_continued_to_the_planned_end(
        comfy_servers: Any, comfy_install: Any) -> None:
    root, venv, fixtures = _requirements()
    server: ComfyServer = comfy_servers.start("resume-real-musubi", env={"MUSUBI_TUNER_ROOT": str(root),
                                                                         "MUSUBI_TUNER_ENV": str(venv)})
    models = server.base_dir / "models"
    for folder, name in (("diffusion_models", DIT), ("vae", VAE)):
        link = models / folder / name
        if not link.exists():
            link.symlink_to(fixtures / name)
    (models / "text_encoders" / tiny("text_encoders")).write_bytes(TINY_SAFETENSORS)
    config = server.base_dir / "user" / "__musubi-tuner-nodes" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"env": {"PYTHONPATH": str(TOOLS / "cuda_shim")}}), encoding="utf-8")

    client = server.client()
    folder = image_folder(server, "real_resume", count=3)
    prompt = {"1": dataset_node(folder), "2": models_node(cat.get_architecture("wan"), {"task": "t2v-1.3B"}),
              "3": {"class_type": "MusubiCacheLatents", "inputs": {"dataset": ["1", 0], "models": ["2", 0]}}}
    prompt["2"]["inputs"].update(dit=DIT, vae=VAE, t5=tiny("text_encoders"), clip="(none)", dit_high_noise="(none)")
    caching = client.run(prompt, timeout=300)
    assert caching.outcome == "success", caching.terminal.data if caching.terminal else caching.types
    cache_dir = Path(executed_output(caching, "3")["text"][0].split(" cache files in ")[1].split(" (")[0])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), str(TOOLS / "cuda_shim"), str(TOOLS)])
    made = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import sys, make_wan_fixtures as m\nm.make_te(image_dir=sys.argv[1], cache_dir=sys.argv[2])\n",
                           str(server.base_dir / "input" / folder), str(cache_dir)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=str(cache_dir))
    assert made.returncode == 0, made.stderr[-2000:]

    name = "real_resume"
    prompt["4"] = {"class_type": "MusubiTrainLoRA",
                   "inputs": {"dataset": ["3", 0], "models": ["2", 0], "output_name": name, "network_dim": 4,
                              "max_train_epochs": 4, "optimizer_type": "AdamW", "fp8": "off",
                              "lr_scheduler": "cosine", "lr_warmup_steps": 1}}
    registry = Registry()
    runs = server.base_dir / "output" / "musubi-tuner" / "runs"
    with client.socket() as sock:
        prompt_id = client.queue_prompt(prompt)["prompt_id"]
        deadline, state = time.monotonic() + 900, None
        while state is None and time.monotonic() < deadline:
            found = sorted(runs.glob(f"*-{name}/{name}-000001-state"))
            state = found[-1] if found and registry.state(str(found[-1])) else None
            time.sleep(0.5)
        assert state is not None, "the epoch-1 state was not recorded"
        client.interrupt(prompt_id)
        stopped = sock.collect(prompt_id, timeout=120)
    assert stopped.outcome == "interrupted", stopped.types
    first = state.parent
    recorded = registry.state(str(state))
    assert {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"} <= set(recorded["files"])
    assert (recorded["epoch"], recorded["step"]) == (1, 3)

    prompt["4"]["inputs"]["resume"] = first.name
    training = client.run(prompt, timeout=900)
    assert training.outcome == "success", training.terminal.data if training.terminal else training.types
    second = Path(executed_output(training, "4")["run_dir"][0])
    argv = executed_output(training, "4")["argv"]
    assert argv[argv.index("--max_train_epochs") + 1] == "3" and "--lr_scheduler_type" in argv
    assert sorted(p.name for p in first.glob("*.safetensors")) == [f"{name}-000001.safetensors"]
    assert sorted(p.name for p in second.glob("*.safetensors")) == [
        f"{name}-000002.safetensors", f"{name}-000003.safetensors", f"{name}.safetensors"]
    progress = [(m.data["value"], m.data["max"]) for m in training.of_type("progress") if m.data.get("node") == "4"]
    assert progress and {total for _, total in progress} == {12} and progress[-1] == (12, 12)
    status = client.get(f"/musubi-tuner/runs/{second.name}")
    assert [p["step"] for p in status["history"]] == list(range(1, 13)) and status["resume_points"] == [3]  # (real
    # steps take seconds: every one is recorded)
    assert "resume training from local state" in (second / "run.log").read_text(encoding="utf-8")

"""The nodes driving the REAL musubi-tuner v0.3.4 inside a real ComfyUI (opt-in, slow, big files).

Skipped unless MUSUBI_TUNER_ROOT points at a checkout with a venv (<root>/.venv or
MUSUBI_TUNER_ENV) and the tiny random-weight Wan2.1 fixtures exist (MUSUBI_WAN_FIXTURES, default
~/.cache/musubi-tuner-nodes/wan-fixtures: wan21_vae_random_bf16.safetensors and
wan21_t2v_1.3B_random_fp32.safetensors, made by tests/fixtures/real_musubi/make_wan_fixtures.py). Latents are
cached by the real script; text-encoder caches are written by make_wan_fixtures.py (a real T5 is
11 GB); training is the real wan_train_network.py under accelerate, on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from comfy_harness import ComfyServer
from comfy_fixtures import TINY_SAFETENSORS, tiny
from test_nodes_e2e import dataset_node, executed_output, image_folder, models_node

from executor.musubi import catalogue as cat

pytestmark = [pytest.mark.real_musubi, pytest.mark.comfyui]
TOOLS = Path(__file__).resolve().parent / "fixtures" / "real_musubi"
VAE = "wan21_vae_random_bf16.safetensors"
DIT = "wan21_t2v_1.3B_random_fp32.safetensors"


def _requirements() -> tuple[Path, Path, Path]:
    root = Path(os.environ.get("MUSUBI_TUNER_ROOT", ""))
    if not (root / "src" / "musubi_tuner").is_dir():
        pytest.skip("MUSUBI_TUNER_ROOT does not point at a musubi-tuner checkout")
    venv = Path(os.environ.get("MUSUBI_TUNER_ENV") or root / ".venv")
    if not (venv / "bin" / "python").is_file():
        pytest.skip(f"no musubi venv at {venv}")
    fixtures = Path(os.environ.get("MUSUBI_WAN_FIXTURES")
                    or Path.home() / ".cache" / "musubi-tuner-nodes" / "wan-fixtures")
    if not ((fixtures / VAE).is_file() and (fixtures / DIT).is_file()):
        pytest.skip(f"the tiny Wan fixtures are not in {fixtures}")
    return root, venv, fixtures


@pytest.mark.timeout(900)
def test_real_musubi_caches_trains_and_delivers_a_loadable_lora(comfy_servers: Any, comfy_install: Any) -> None:
    root, venv, fixtures = _requirements()
    server: ComfyServer = comfy_servers.start("nodes-real-musubi", env={"MUSUBI_TUNER_ROOT": str(root),
                                                                        "MUSUBI_TUNER_ENV": str(venv)})
    models = server.base_dir / "models"
    for folder, name in (("diffusion_models", DIT), ("vae", VAE)):
        link = models / folder / name
        if not link.exists():
            link.symlink_to(fixtures / name)
    (models / "text_encoders" / tiny("text_encoders")).write_bytes(TINY_SAFETENSORS)
    # Wan's t5 module calls torch.cuda.current_device() at import: the shim answers on a CPU machine.
    config = server.base_dir / "user" / "__musubi-tuner-nodes" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"env": {"PYTHONPATH": str(TOOLS / "cuda_shim")}}), encoding="utf-8")

    client = server.client()
    folder = image_folder(server, "real_wan", count=3)
    arch = cat.get_architecture("wan")
    prompt = {"1": dataset_node(folder), "2": models_node(arch, {"task": "t2v-1.3B"}),
              "3": {"class_type": "MusubiCacheLatents", "inputs": {"dataset": ["1", 0], "models": ["2", 0]}}}
    prompt["2"]["inputs"].update(dit=DIT, vae=VAE, t5=tiny("text_encoders"), clip="(none)",
                                 dit_high_noise="(none)")
    caching = client.run(prompt, timeout=300)
    assert caching.outcome == "success", caching.terminal.data if caching.terminal else caching.types
    cache_dir = Path(executed_output(caching, "3")["text"][0].split(" cache files in ")[1].split(" (")[0])
    assert sorted(p.name for p in cache_dir.glob("*_wan.safetensors")) == [
        f"img{i}_0064x0064_wan.safetensors" for i in (1, 2, 3)]

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), str(TOOLS / "cuda_shim"),
                                         str(TOOLS)])
    make_te = ("import sys, make_wan_fixtures as m\n"
               "m.make_te(image_dir=sys.argv[1], cache_dir=sys.argv[2])\n")
    made = subprocess.run([str(venv / "bin" / "python"), "-c", make_te, str(server.base_dir / "input" / folder),
                           str(cache_dir)], env=env, capture_output=True, text=True, timeout=300,
                          cwd=str(cache_dir))
    assert made.returncode == 0, made.stderr[-2000:]
    assert len(list(cache_dir.glob("*_wan_te.safetensors"))) == 3

    prompt["4"] = {"class_type": "MusubiTrainLoRA",
                   "inputs": {"dataset": ["3", 0], "models": ["2", 0], "output_name": "real_wan",
                              "network_dim": 4, "max_train_epochs": 2, "optimizer_type": "AdamW", "fp8": "off"}}
    training = client.run(prompt, timeout=800)
    assert training.outcome == "success", training.terminal.data if training.terminal else training.types
    assert "3" in training.of_type("execution_cached")[0].data["nodes"]
    progress = [(m.data["value"], m.data["max"]) for m in training.of_type("progress") if m.data.get("node") == "4"]
    assert progress and {total for _, total in progress} == {6} and progress[-1] == (6, 6)
    assert any("avr_loss" in t for t in training.progress_texts("4"))
    lora = server.base_dir / "models" / "loras" / "musubi-tuner" / "real_wan.safetensors"
    assert lora.is_file()
    loras = client.object_info("LoraLoader")["LoraLoader"]["input"]["required"]["lora_name"][0]
    assert "musubi-tuner/real_wan.safetensors" in loras
    check = ("import sys\nfrom safetensors.torch import load_file\n"
             "t = load_file(sys.argv[1])\n"
             "print(len({k.split('.')[0] for k in t if k.startswith('lora_unet_')}))\n")
    out = subprocess.run([str(comfy_install.python), "-c", check, str(lora)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip().splitlines()[-1]) == 300  # every Wan 1.3B LoRA module

"""Wrong model files in a real ComfyUI 0.3.75: a Wan DiT of the wrong size for the task, a VAE put
in the DiT slot and a text encoder in the VAE slot are refused by pre-flight with what the file
really is (read from its header) and what to pick instead, and nothing is launched: the fake
musubi records every process it starts (FAKE_MUSUBI_PIDFILE) and none may appear, nor a run
folder. The Models node shows the same verdict for each file. The model files are real-shaped
headers written by the test (sparse: their full size, no disk used)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import modelfile_keys as K
from comfy_fixtures import fake_musubi_server
from comfy_harness import ComfyClient, ComfyServer, PromptRun
from fakes import FakeMusubi, fake_musubi, png_bytes  # noqa: F401  (fake_musubi is a fixture)
from modelfile_writers import write_safetensors

pytestmark = pytest.mark.comfyui

DIT_13B = "wan2.1_t2v_1.3B_fp16.safetensors"
VAE = "wan_2.1_vae.safetensors"
T5 = "models_t5_umt5-xxl-enc-bf16.safetensors"


@pytest.fixture(scope="module")
def server(comfy_servers: Any, fake_musubi: FakeMusubi) -> ComfyServer:  # noqa: F811
    server = fake_musubi_server(comfy_servers, fake_musubi, "modelfiles-e2e")
    models = server.base_dir / "models"
    write_safetensors(models / "diffusion_models" / DIT_13B,
                      K.prefixed(K.wan_dit(1536, dtype="F16"), "model.diffusion_model."))
    write_safetensors(models / "diffusion_models" / VAE, K.wan_vae())  # a VAE saved into the DiT folder
    write_safetensors(models / "vae" / VAE, K.wan_vae())
    write_safetensors(models / "vae" / T5, K.umt5_wan())  # a text encoder saved into the VAE folder
    write_safetensors(models / "text_encoders" / T5, K.umt5_wan())
    write_safetensors(models / "checkpoints" / "hidream_o1_image_bf16.safetensors", K.hidream_o1())
    write_safetensors(models / "checkpoints" / "flux1-dev-fp8.safetensors", K.comfy_checkpoint())
    folder = server.base_dir / "input" / "mf_images"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 3):
        (folder / f"img{i}.png").write_bytes(png_bytes(64, 64))
        (folder / f"img{i}.txt").write_text(f"a photo number {i}", encoding="utf-8")
    return server


@pytest.fixture
def pidfile(server: ComfyServer, tmp_path: Path) -> Path:
    """The fake musubi writes every pid it starts here (set through the pack's user settings)."""
    path = tmp_path / "pids.txt"
    config = server.base_dir / "user" / "__musubi-tuner-nodes" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"env": {"FAKE_MUSUBI_PIDFILE": str(path)}}), encoding="utf-8")
    yield path
    config.write_text(json.dumps({"env": {}}), encoding="utf-8")


def workflow(step: str, **models: Any) -> dict[str, Any]:
    inputs = {"task": "t2v-1.3B", "one_frame": False, "dit": DIT_13B, "vae": VAE, "t5": T5, "clip": "(none)",
              "dit_high_noise": "(none)"}
    inputs.update(models)
    dataset = {"media": "image", "directory": "mf_images", "caption_extension": ".txt", "width": 64, "height": 64,
               "batch_size": 1, "num_repeats": 1, "enable_bucket": False, "bucket_no_upscale": False,
               "target_frames": "1", "frame_extraction": "head", "frame_stride": 1, "frame_sample": 1,
               "max_frames": 129, "source_fps": 0.0}
    prompt: dict[str, Any] = {"1": {"class_type": "MusubiDatasetConfig", "inputs": dataset},
                              "2": {"class_type": "MusubiModelsWan", "inputs": inputs}}
    if step == "train":
        prompt["3"] = {"class_type": "MusubiTrainLoRA",
                       "inputs": {"dataset": ["1", 0], "models": ["2", 0], "output_name": "mf_lora",
                                  "max_train_epochs": 1, "optimizer_type": "AdamW"}}
    else:
        prompt["3"] = {"class_type": "MusubiCacheLatents", "inputs": {"dataset": ["1", 0], "models": ["2", 0]}}
    return prompt


def refused(client: ComfyClient, server: ComfyServer, pidfile: Path, prompt: dict[str, Any]) -> tuple[str, PromptRun]:
    runs = server.base_dir / "output" / "musubi-tuner" / "runs"
    before = set(runs.glob("*")) if runs.is_dir() else set()
    start = time.monotonic()
    run = client.run(prompt, timeout=60)
    elapsed = time.monotonic() - start
    assert run.outcome == "error", run.types[-20:]
    assert run.terminal is not None and run.terminal.data.get("node_id") == "3", run.terminal.data
    text = run.terminal.data.get("exception_message", "")
    assert not pidfile.exists() or not pidfile.read_text().strip(), "a musubi process was started"
    assert (set(runs.glob("*")) if runs.is_dir() else set()) == before, "a run folder was made"
    assert elapsed < 30, f"the refusal took {elapsed:.1f} s"  # a sanity bound; the benchmark measures speed
    return text, run


def test_a_wan_dit_of_the_wrong_size_is_refused_before_launch(server: ComfyServer, pidfile: Path) -> None:
    client = server.client()
    text, run = refused(client, server, pidfile, workflow("train", task="t2v-14B"))
    assert (f"models.dit: {DIT_13B} is Wan DiT 1.3B, text-to-video (fp16): task t2v-14B needs a 14B model "
            "(dim 5120) with 16 input channels") in text, text
    assert "set task to t2v-1.3B, or pick wan2.1_t2v_14B_bf16.safetensors" in text
    shown = "\n".join(run.progress_texts("2"))
    assert f"dit: REFUSED {DIT_13B} is Wan DiT 1.3B" in shown, shown


def test_components_in_the_wrong_slots_are_refused_before_launch(server: ComfyServer, pidfile: Path) -> None:
    client = server.client()
    text, _ = refused(client, server, pidfile, workflow("train", dit=VAE))
    assert (f"models.dit: {VAE} is Wan 2.1 VAE or Qwen-Image VAE (bf16): a VAE, not a Wan DiT. It belongs in the "
            "Wan 2.1 VAE input (vae).") in text, text
    text, _ = refused(client, server, pidfile, workflow("cache_latents", vae=T5))
    assert (f"models.vae: {T5} is UMT5-XXL text encoder, Wan's original layout (bf16): a text encoder, not a Wan "
            "2.1 VAE. It belongs in the Wan T5 (umT5-XXL) text encoder input (t5).") in text, text
    assert "pick wan_2.1_vae.safetensors" in text


def test_the_right_files_pass_and_the_models_node_says_so(server: ComfyServer, pidfile: Path) -> None:
    client = server.client()
    prompt = workflow("cache_latents")
    prompt["3"]["inputs"]["dry_run"] = True
    run = client.run(prompt, timeout=60)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    shown = "\n".join(run.progress_texts("2")).splitlines()
    assert f"dit: OK {DIT_13B}: Wan DiT 1.3B, text-to-video (fp16)" in shown, shown
    assert f"vae: OK {VAE}: Wan 2.1 VAE or Qwen-Image VAE (bf16)" in shown, shown


def test_hidream_checkpoints_are_offered_from_models_checkpoints(server: ComfyServer) -> None:
    info = server.client().object_info("MusubiModelsHidreamO1")["MusubiModelsHidreamO1"]
    choices = info["input"]["required"]["dit"][0]
    assert "hidream_o1_image_bf16.safetensors" in choices
    assert "flux1-dev-fp8.safetensors" not in choices  # another checkpoint is not offered

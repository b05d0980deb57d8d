"""The nodes inside a real ComfyUI 0.3.75 server, driven over HTTP and the websocket as an API
user would: node definitions, dry runs for every architecture, a whole dataset -> cache ->
cache -> train workflow against the fake musubi venv (progress, caching, delivery), Cancel
during training and during silent model loading, and errors with their hints.

The server's children get the fake's knobs through the pack's settings file in ComfyUI's
user folder (``user/__musubi-tuner-nodes/config.json`` -> ``env``), rewritten per test.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

from comfy_fixtures import fake_musubi_server, tiny
from comfy_harness import ComfyClient, ComfyServer, PromptRun
from executor.musubi import catalogue as cat
from executor.musubi.flagfacts import load_flags
from fakes import FakeMusubi, fake_musubi, png_bytes  # noqa: F401  (fake_musubi is a fixture)

pytestmark = pytest.mark.comfyui

FACTS = load_flags()["scripts"]
STEPS_NODES = {"MusubiCacheLatents", "MusubiCacheTextEncoder", "MusubiTrainLoRA"}


def models_node_id(arch: cat.Architecture) -> str:
    return "MusubiModels" + "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", arch.id) if p)


@pytest.fixture(scope="module")
def server(comfy_servers: Any, fake_musubi: FakeMusubi) -> ComfyServer:  # noqa: F811
    return fake_musubi_server(comfy_servers, fake_musubi, "nodes-e2e")


@pytest.fixture
def client(server: ComfyServer) -> ComfyClient:
    return server.client()


@pytest.fixture
def fake_env(server: ComfyServer) -> Iterator[Any]:
    """``fake_env(FAKE_MUSUBI_SCENARIO="oom", ...)`` sets the fake's knobs for the next runs."""
    path = server.base_dir / "user" / "__musubi-tuner-nodes" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    def set_env(**env: str) -> None:
        path.write_text(json.dumps({"env": {k: str(v) for k, v in env.items()}}), encoding="utf-8")

    set_env()
    yield set_env
    set_env()


def image_folder(server: ComfyServer, name: str, count: int = 3, *, video: bool = False,
                 control: bool = False) -> str:
    folder = server.base_dir / "input" / name
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        media = folder / (f"clip{i}.mp4" if video else f"img{i}.png")
        media.write_bytes(b"\x00\x00\x00\x18ftypmp42" if video else png_bytes(64, 64))
        media.with_suffix(".txt").write_text(f"a photo number {i}", encoding="utf-8")
    if control:
        ctl = server.base_dir / "input" / f"{name}_control"
        ctl.mkdir(exist_ok=True)
        for i in range(1, count + 1):
            (ctl / f"img{i}.png").write_bytes(png_bytes(64, 64))
    return name


def dataset_node(directory: str, *, video: bool = False, control: str = "") -> dict[str, Any]:
    inputs = {"media": "video" if video else "image", "directory": directory, "caption_extension": ".txt",
              "width": 64, "height": 64, "batch_size": 1, "num_repeats": 1, "enable_bucket": False,
              "bucket_no_upscale": False, "target_frames": "1", "frame_extraction": "head", "frame_stride": 1,
              "frame_sample": 1, "max_frames": 129, "source_fps": 0.0}
    if control:
        inputs["control_directory"] = control
    return {"class_type": "MusubiDatasetConfig", "inputs": inputs}


def models_node(arch: cat.Architecture, selectors: dict[str, Any] | None = None) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for s in arch.selectors:
        value = (selectors or {}).get(s.name, s.default)
        inputs[s.name] = value if isinstance(value, bool) else str(value)
    for m in arch.models:
        inputs[m.name] = (m.default or "") if m.kind == "hf_id" else tiny(m.folder)
    return {"class_type": models_node_id(arch), "inputs": inputs}


def workflow(directory: str, arch_id: str = "wan", *, output_name: str, dry_run: bool = False,
             selectors: dict[str, Any] | None = None, video: bool = False, control: str = "",
             **train: Any) -> dict[str, Any]:
    arch = cat.get_architecture(arch_id)
    if selectors is None and arch_id == "wan":
        selectors = {"task": "t2v-1.3B"}
    return {
        "1": dataset_node(directory, video=video, control=control),
        "2": models_node(arch, selectors),
        "3": {"class_type": "MusubiCacheLatents",
              "inputs": {"dataset": ["1", 0], "models": ["2", 0], "dry_run": dry_run}},
        "4": {"class_type": "MusubiCacheTextEncoder",
              "inputs": {"dataset": ["3", 0], "models": ["2", 0], "dry_run": dry_run}},
        "5": {"class_type": "MusubiTrainLoRA",
              "inputs": {"dataset": ["4", 0], "models": ["2", 0], "output_name": output_name,
                         "max_train_epochs": 2, "optimizer_type": "AdamW", "dry_run": dry_run, **train}},
    }


def train_progress(run: PromptRun) -> list[tuple[int, int]]:
    return [(m.data["value"], m.data["max"]) for m in run.of_type("progress") if m.data.get("node") == "5"]


def executed_output(run: PromptRun, node: str) -> dict[str, Any]:
    for m in run.of_type("executed"):
        if m.data.get("node") == node:
            return m.data["output"]
    raise AssertionError(f"node {node} did not report an output; got {run.types}")


def run_processes(fake: FakeMusubi) -> list[int]:
    """Processes started from the fake musubi install (its venv python, launcher, workers)."""
    root = str(fake.root.parent)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(root in arg for arg in (proc.info["cmdline"] or [])):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def assert_flags_accepted(script: str, args: list[str]) -> None:
    """Every flag is one the script defines (full name), with a value when it takes one, and
    every required flag is present, per the recorded flag facts of musubi-tuner v0.3.4."""
    facts = FACTS[script]["flags"]
    seen = set()
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("--"):
            continue
        assert token in facts, f"{script} has no flag {token}"
        seen.add(token)
        fact = facts[token]
        if fact["takes_value"]:
            assert i < len(args) and not args[i].startswith("--"), f"{script} {token} needs a value"
            if fact["choices"]:
                assert args[i] in [str(c) for c in fact["choices"]], f"{script} {token} {args[i]!r}"
    required = {name for name, fact in facts.items() if fact["required"]}
    assert required <= seen, f"{script}: required {sorted(required - seen)} missing"


# ---------------------------------------------------------------------------- node definitions

@pytest.mark.timeout(120)
def test_object_info_lists_every_node_with_tooltips(client: ComfyClient) -> None:
    info = client.object_info()
    expected = {"MusubiDatasetConfig", "MusubiLoadDatasetConfig", "MusubiSetupCheck", *STEPS_NODES}
    expected |= {models_node_id(a) for a in cat.ARCHITECTURES.values()}
    missing = expected - set(info)
    assert not missing, f"not registered: {sorted(missing)}"
    for node_id in expected:
        node = info[node_id]
        assert node["category"].startswith("Musubi Tuner"), node_id
        assert node["description"], node_id
        for group in ("required", "optional"):
            for name, spec in node["input"].get(group, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert len(node["output_tooltips"]) == len(node["output"]), node_id
        assert all(node["output_tooltips"]), node_id
    for node_id in STEPS_NODES | {"MusubiSetupCheck"}:
        assert info[node_id]["output_node"], f"{node_id} must be an output node so a workflow ending in it runs"
    wan = info[models_node_id(cat.get_architecture("wan"))]["input"]
    assert tiny("diffusion_models") in wan["required"]["dit"][0]
    assert wan["optional"]["dit_high_noise"][0][0] == "(none)"
    assert wan["required"]["task"][0] == [str(c) for c in cat.get_architecture("wan").selector("task").choices]


# ---------------------------------------------------------------------------- dry runs

@pytest.mark.timeout(300)
@pytest.mark.parametrize("arch_id", list(cat.ARCHITECTURES))
def test_dry_run_of_the_whole_chain_gives_commands_musubi_accepts(
        arch_id: str, server: ComfyServer, client: ComfyClient, fake_env: Any) -> None:
    arch = cat.get_architecture(arch_id)
    defaults = {s.name: s.default for s in arch.selectors}
    if arch_id == "wan":
        defaults["task"] = "t2v-1.3B"
    video = "image" not in arch.media_for(defaults)
    control = arch.control_for(defaults) in ("required", "exactly_one")
    folder = image_folder(server, f"dry_{arch_id}", video=video, control=control)
    prompt = workflow(folder, arch_id, output_name=f"dry_{arch_id}", dry_run=True, selectors=defaults,
                      video=video, control=f"{folder}_control" if control else "")
    run = client.run(prompt, timeout=120)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    for node, step in (("3", cat.CACHE_LATENTS), ("4", cat.CACHE_TEXT_ENCODER), ("5", cat.TRAIN)):
        output = executed_output(run, node)
        assert output["text"][0].startswith("DRY RUN: nothing was launched"), output["text"][0]
        argv = output["argv"]
        script = arch.scripts[step]
        index = next(i for i, a in enumerate(argv) if a.replace("\\", "/").endswith("/" + script))
        assert_flags_accepted(script, argv[index + 1:])
        if step == cat.TRAIN:
            assert "accelerate.commands.launch" in argv[:index]
    assert not list((server.base_dir / "models" / "loras").rglob(f"dry_{arch_id}*")), "a dry run delivered a LoRA"


# ---------------------------------------------------------------------------- a real run

@pytest.mark.timeout(240)
def test_whole_workflow_trains_delivers_and_is_cached_until_the_dataset_changes(
        server: ComfyServer, client: ComfyClient, fake_env: Any) -> None:
    folder = image_folder(server, "full_run", count=3)
    prompt = workflow(folder, output_name="e2e_full")

    run = client.run(prompt, timeout=120)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    progress = train_progress(run)
    assert progress, "no progress messages for the Train node"
    assert {total for _, total in progress} == {6}, progress  # 3 images x 2 epochs, batch 1
    assert progress[-1] == (6, 6)
    texts = run.progress_texts("5")
    assert any("avr_loss" in t for t in texts), texts
    assert any("epoch 2/2" in t for t in texts), texts
    caching = [m.data for m in run.of_type("progress") if m.data.get("node") == "3"]
    assert caching and caching[-1]["value"] == caching[-1]["max"] == 3, caching

    output = executed_output(run, "5")
    assert output["lora"] == ["musubi-tuner/e2e_full.safetensors"]
    loras = client.object_info("LoraLoader")["LoraLoader"]["input"]["required"]["lora_name"][0]
    assert "musubi-tuner/e2e_full.safetensors" in loras
    run_dir = Path(output["run_dir"][0])
    assert (run_dir / "e2e_full-000001.safetensors").is_file(), "the epoch save stays in the run folder"

    again = client.run(prompt, timeout=60)
    assert again.outcome == "success"
    cached = again.of_type("execution_cached")[0].data["nodes"]
    assert set(cached) == {"1", "2", "3", "4", "5"}, cached
    assert not train_progress(again)

    (server.base_dir / "input" / folder / "img4.png").write_bytes(png_bytes(64, 64))
    (server.base_dir / "input" / folder / "img4.txt").write_text("a fourth photo", encoding="utf-8")
    changed = client.run(prompt, timeout=120)
    assert changed.outcome == "success", changed.terminal.data if changed.terminal else changed.types
    assert {total for _, total in train_progress(changed)} == {8}
    assert executed_output(changed, "5")["lora"] == ["musubi-tuner/e2e_full_2.safetensors"], \
        "an existing LoRA is never overwritten"


@pytest.mark.timeout(240)
def test_a_deleted_lora_retrains_without_recaching(server: ComfyServer, client: ComfyClient, fake_env: Any) -> None:
    folder = image_folder(server, "deleted_output", count=2)
    prompt = workflow(folder, output_name="e2e_deleted")
    first = client.run(prompt, timeout=120)
    assert first.outcome == "success"
    lora = server.base_dir / "models" / "loras" / "musubi-tuner" / "e2e_deleted.safetensors"
    assert lora.is_file()
    lora.unlink()
    second = client.run(prompt, timeout=120)
    assert second.outcome == "success"
    assert set(second.of_type("execution_cached")[0].data["nodes"]) == {"1", "2", "3", "4"}
    assert train_progress(second) and lora.is_file()
    third = client.run(prompt, timeout=60)
    assert set(third.of_type("execution_cached")[0].data["nodes"]) == {"1", "2", "3", "4", "5"}


def safetensors_keys(path: Path) -> list[str]:
    import struct

    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        return [k for k in json.loads(fh.read(length)) if k != "__metadata__"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("arch_id", ["hv15", "zimage"])
def test_a_lora_comfyui_reads_in_another_format_is_delivered_through_musubis_converter(
        arch_id: str, server: ComfyServer, client: ComfyClient, fake_env: Any) -> None:
    """HunyuanVideo 1.5 and Z-Image LoRAs go through their dedicated converter
    (networks/convert_*_lora_to_comfy.py SRC DST); the fake one renames lora_unet_* keys."""
    arch = cat.get_architecture(arch_id)
    selectors = {s.name: s.default for s in arch.selectors}
    folder = image_folder(server, f"convert_{arch_id}", count=2)
    name = f"e2e_convert_{arch_id}"
    run = client.run(workflow(folder, arch_id, output_name=name, selectors=selectors), timeout=180)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    output = executed_output(run, "5")
    assert output["lora"] == [f"musubi-tuner/{name}.safetensors"]
    assert f"converted with {arch.scripts[cat.CONVERT]}" in output["text"][0]
    run_dir = Path(output["run_dir"][0])
    trained = safetensors_keys(run_dir / f"{name}.safetensors")
    delivered = safetensors_keys(server.base_dir / "models" / "loras" / "musubi-tuner" / f"{name}.safetensors")
    assert trained and all(k.startswith("lora_unet_") for k in trained)
    assert sorted(delivered) == sorted("diffusion_model." + k[len("lora_unet_"):] for k in trained)
    convert_log = (run_dir / "convert" / "run.log").read_text(encoding="utf-8")
    assert "Saving destination file" in convert_log
    assert json.loads((run_dir / "convert" / "result.json").read_text(encoding="utf-8"))["status"] == "succeeded"


# ---------------------------------------------------------------------------- cancel

@pytest.mark.timeout(180)
@pytest.mark.parametrize("moment", ["training", "silent model loading"])
def test_interrupt_ends_the_prompt_quietly_and_leaves_no_process(
        moment: str, server: ComfyServer, client: ComfyClient, fake_env: Any, fake_musubi: FakeMusubi,  # noqa: F811
) -> None:
    folder = image_folder(server, f"interrupt_{moment.split()[-1]}", count=3)
    prompt = workflow(folder, output_name=f"e2e_interrupt_{moment.split()[-1]}", max_train_epochs=20)
    # cache first (the fake's knobs below slow every script), so only training is slow
    caching = client.run({k: v for k, v in prompt.items() if k != "5"}, timeout=120)
    assert caching.outcome == "success", caching.terminal.data if caching.terminal else caching.types
    fake_env(FAKE_MUSUBI_STEP_SECONDS="0.5", FAKE_MUSUBI_LOAD_SECONDS="60" if moment != "training" else "0")
    with client.socket() as sock:
        prompt_id = client.queue_prompt(prompt)["prompt_id"]
        if moment == "training":
            sock.wait_for(lambda m: m.type == "progress" and m.data.get("node") == "5" and m.data["value"] >= 1, 90)
        else:
            sock.wait_for(lambda m: m.type == "progress_text" and m.data["node"] == "5"
                          and "loading model" in m.data["text"], 90)
            time.sleep(1.0)  # the fake now prints nothing until its load time is over
        assert run_processes(fake_musubi), "the training was not running"
        client.interrupt(prompt_id)
        asked = time.monotonic()
        run = sock.collect(prompt_id, timeout=30)
    assert run.outcome == "interrupted", run.terminal.data if run.terminal else run.types
    assert run.terminal.data["node_type"] == "MusubiTrainLoRA"
    while run_processes(fake_musubi) and time.monotonic() - asked < 2.0:
        time.sleep(0.05)
    assert not run_processes(fake_musubi), "a process of the run outlived the Cancel by 2 s"
    assert not run.of_type("execution_error")
    runs = sorted((server.base_dir / "output" / "musubi-tuner" / "runs").glob(f"*-e2e_interrupt_{moment.split()[-1]}"))
    result = json.loads((runs[-1] / "result.json").read_text(encoding="utf-8"))
    assert result["status"] == "cancelled", result


@pytest.mark.timeout(240)
def test_a_cancel_during_conversion_says_where_the_trained_lora_is(
        server: ComfyServer, client: ComfyClient, fake_env: Any, fake_musubi: FakeMusubi,  # noqa: F811
) -> None:
    """Training finished, then Cancel lands while musubi's converter runs: a quiet cancel, no
    process left, nothing half-delivered, and the node names the trained file in the run folder."""
    arch = cat.get_architecture("zimage")
    folder = image_folder(server, "cancel_convert", count=2)
    name = "e2e_cancel_convert"
    prompt = workflow(folder, "zimage", output_name=name, selectors={s.name: s.default for s in arch.selectors})
    fake_env(FAKE_MUSUBI_CONVERT_SECONDS="60")
    with client.socket() as sock:
        prompt_id = client.queue_prompt(prompt)["prompt_id"]
        sock.wait_for(lambda m: m.type == "progress_text" and m.data["node"] == "5"
                      and "delivering" in m.data["text"], 150)
        time.sleep(1.0)  # the fake converter is now silent
        assert run_processes(fake_musubi), "the converter was not running"
        client.interrupt(prompt_id)
        asked = time.monotonic()
        run = sock.collect(prompt_id, timeout=30)
    assert run.outcome == "interrupted", run.terminal.data if run.terminal else run.types
    while run_processes(fake_musubi) and time.monotonic() - asked < 2.0:
        time.sleep(0.05)
    assert not run_processes(fake_musubi), "the converter outlived the Cancel by 2 s"
    assert not (server.base_dir / "models" / "loras" / "musubi-tuner" / f"{name}.safetensors").exists()
    texts = run.progress_texts("5")
    told = [t for t in texts if "The trained LoRA is in the run folder" in t]
    assert told, texts[-3:]
    trained = Path(told[-1].rsplit(": ", 1)[-1].strip())
    assert trained.name == f"{name}.safetensors" and trained.is_file()


# ---------------------------------------------------------------------------- errors

@pytest.mark.timeout(180)
def test_a_failing_run_reports_its_hint_and_keeps_the_run_folder(
        server: ComfyServer, client: ComfyClient, fake_env: Any) -> None:
    fake_env(FAKE_MUSUBI_SCENARIO="oom")
    folder = image_folder(server, "failing", count=2)
    run = client.run(workflow(folder, output_name="e2e_oom"), timeout=120)
    assert run.outcome == "error"
    error = run.terminal.data
    assert error["node_type"] == "MusubiTrainLoRA"
    assert error["exception_type"] == "musubi_tuner.OutOfMemory"
    message = error["exception_message"]
    assert "out of memory" in message.lower() and "\nhint: " in message and "blocks_to_swap" in message
    log = re.search(r"full log: (.+run\.log)", message)
    assert log, message
    run_dir = Path(log.group(1)).parent
    for name in ("command.txt", "dataset.toml", "run.log", "result.json"):
        assert (run_dir / name).is_file(), f"{name} missing from {run_dir}"
    assert json.loads((run_dir / "result.json").read_text(encoding="utf-8"))["status"] == "failed"
    assert not (server.base_dir / "models" / "loras" / "musubi-tuner" / "e2e_oom.safetensors").exists()


@pytest.mark.timeout(120)
def test_pre_flight_problems_reach_execution_error_before_anything_runs(
        server: ComfyServer, client: ComfyClient) -> None:
    folder = image_folder(server, "video_for_image_arch", count=1, video=True)
    prompt = workflow(folder, "qwen_image", output_name="e2e_preflight", video=True)
    run = client.run(prompt, timeout=60)
    assert run.outcome == "error"
    assert run.terminal.data["node_id"] == "3"
    assert "images only" in run.terminal.data["exception_message"]
    assert "hint:" in run.terminal.data["exception_message"]


@pytest.mark.timeout(60)
def test_a_missing_dataset_folder_is_refused_when_queued(client: ComfyClient) -> None:
    from comfy_harness import ComfyHTTPError

    prompt = workflow("no_such_folder_anywhere", output_name="e2e_missing")
    with pytest.raises(ComfyHTTPError) as info:
        client.queue_prompt(prompt)
    assert info.value.status == 400
    assert "folder not found" in json.dumps(info.value.node_errors)


@pytest.mark.timeout(120)
def test_setup_check_shows_the_chosen_install(client: ComfyClient, fake_musubi: FakeMusubi) -> None:  # noqa: F811
    run = client.run({"1": {"class_type": "MusubiSetupCheck", "inputs": {"refresh": True}}}, timeout=90)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    text = executed_output(run, "1")["text"][0]
    assert str(fake_musubi.root) in text
    assert "accelerate" in text
    assert run.progress_texts("1"), "the report is shown on the node"


@pytest.mark.timeout(120)
def test_renamed_hidream_lora_loads_with_the_real_safetensors_library(comfy_install: Any, tmp_path: Path) -> None:
    """The pure-Python header rewrite gives a file the safetensors library (ComfyUI's) reads,
    with the renamed keys and the same tensors."""
    import importlib.util
    import struct
    import subprocess

    spec = importlib.util.spec_from_file_location("delivery_under_test",
                                                  Path(__file__).resolve().parent.parent / "nodes" / "delivery.py")
    delivery = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(delivery)
    names = [f"lora_unet_model_language_model_layers_{i}_mlp.lora_{d}.weight" for i in range(3) for d in ("down", "up")]
    header: dict[str, Any] = {"__metadata__": {"ss_network_module": "networks.lora_hidream_o1"}}
    data = b""
    for name in names:
        header[name] = {"dtype": "F32", "shape": [2, 3], "data_offsets": [len(data), len(data) + 24]}
        data += struct.pack("<6f", *range(6))
    blob = json.dumps(header).encode()
    source = tmp_path / "hidream.safetensors"
    source.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    target = tmp_path / "renamed.safetensors"
    delivery.rename_keys(str(source), str(target), delivery.prefix_renamer("lora_unet_model_", "lora_unet_"))
    check = (
        "import sys, json\n"
        "from safetensors.torch import load_file\n"
        "from safetensors import safe_open\n"
        "t = load_file(sys.argv[1])\n"
        "meta = safe_open(sys.argv[1], 'pt').metadata()\n"
        "print(json.dumps({'keys': sorted(t), 'sum': float(sum(v.sum() for v in t.values())), 'meta': meta}))\n"
    )
    out = subprocess.run([str(comfy_install.python), "-c", check, str(target)], capture_output=True, text=True,
                         timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["keys"] == sorted(n.replace("lora_unet_model_", "lora_unet_") for n in names)
    assert result["sum"] == 15.0 * len(names)
    assert result["meta"] == {"ss_network_module": "networks.lora_hidream_o1"}


@pytest.mark.timeout(120)
def test_lora_name_output_wires_into_lora_loaders_dropdown(server: ComfyServer, client: ComfyClient) -> None:
    """ComfyUI accepts the Train node's lora_name linked to LoraLoaderModelOnly's lora_name
    dropdown (validation would answer 400 return_type_mismatch for a plain STRING)."""
    folder = image_folder(server, "wired_loader", count=1)
    prompt = workflow(folder, output_name="e2e_wired", dry_run=True)
    prompt["6"] = {"class_type": "UNETLoader", "inputs": {"unet_name": tiny("diffusion_models"),
                                                          "weight_dtype": "default"}}
    prompt["7"] = {"class_type": "LoraLoaderModelOnly",
                   "inputs": {"model": ["6", 0], "lora_name": ["5", 0], "strength_model": 1.0}}
    prompt["8"] = {"class_type": "PreviewAny", "inputs": {"source": ["7", 0]}}
    info = client.object_info("MusubiTrainLoRA")["MusubiTrainLoRA"]
    assert info["output"][0] == "COMBO,STRING"
    timesteps = client.object_info("MusubiTimestepOptions")["MusubiTimestepOptions"]
    assert timesteps["input"]["optional"]["seed"][1]["control_after_generate"] is False
    with client.socket() as sock:
        queued = client.queue_prompt(prompt)  # raises ComfyHTTPError on a validation failure
        assert not queued.get("node_errors")
        run = sock.collect(queued["prompt_id"], timeout=60)
    # the tiny placeholder is no real model, so loading it fails; the link itself was accepted
    assert run.outcome == "error"
    assert run.terminal.data["node_type"] in ("UNETLoader", "LoraLoaderModelOnly")


# ---------------------------------------------------------------------------- example workflows

EXAMPLES = Path(__file__).resolve().parent.parent / "example_workflows"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
REGENERATE_EXAMPLES = "regenerate them from the node definitions: python3 .ci/generate_examples.py"
REGENERATE_LOCALES = "regenerate it from the node definitions: python3 .ci/generate_locales.py"


def widget_inputs(node_info: dict[str, Any]) -> list[str]:
    names = []
    for group in ("required", "optional"):
        for name, spec in node_info["input"].get(group, {}).items():
            if isinstance(spec[0], list) or spec[0] in WIDGET_TYPES:
                names.append(name)
    return names


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.json")))
def test_example_workflow_matches_the_node_definitions_and_its_api_twin(name: str, client: ComfyClient) -> None:
    ui = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    api = json.loads((EXAMPLES / "api" / f"{name}.json").read_text(encoding="utf-8"))
    info = client.object_info()
    nodes = {n["id"]: n for n in ui["nodes"]}
    kinds = {n["type"] for n in ui["nodes"]}
    assert {"MusubiDatasetConfig", "MusubiCacheLatents", "MusubiCacheTextEncoder", "MusubiTrainLoRA",
            "LoraLoaderModelOnly"} <= kinds
    for link_id, src, src_slot, dst, dst_slot, kind in ui["links"]:
        assert nodes[src]["outputs"][src_slot]["type"] == kind
        assert nodes[dst]["inputs"][dst_slot]["link"] == link_id
        assert link_id in nodes[src]["outputs"][src_slot]["links"]
    for node in ui["nodes"]:
        if node["type"] == "Note":
            continue
        names = widget_inputs(info[node["type"]])
        assert len(node["widgets_values"]) == len(names), f"{node['type']}: {REGENERATE_EXAMPLES}"
        twin = api[str(node["id"])]
        assert twin["class_type"] == node["type"], REGENERATE_EXAMPLES
        for widget, value in zip(names, node["widgets_values"]):
            if widget in twin["inputs"] and not isinstance(twin["inputs"][widget], list):
                assert twin["inputs"][widget] == value, f"{node['type']}.{widget}: {REGENERATE_EXAMPLES}"
        for entry in node["inputs"]:
            if entry["link"] is not None:
                link = next(link for link in ui["links"] if link[0] == entry["link"])
                assert twin["inputs"][entry["name"]] == [str(link[1]), link[2]]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", sorted(p.stem for p in (EXAMPLES / "api").glob("*.json")))
def test_api_example_runs_as_a_dry_run_with_local_files(name: str, server: ComfyServer, client: ComfyClient) -> None:
    """The API example, with its model and folder names swapped for the test server's, is a valid
    prompt whose three steps give their commands."""
    prompt = json.loads((EXAMPLES / "api" / f"{name}.json").read_text(encoding="utf-8"))
    prompt = {k: v for k, v in prompt.items() if v["class_type"].startswith("Musubi")}
    dataset = prompt["1"]["inputs"]
    control = bool(dataset.get("control_directory"))
    folder = image_folder(server, f"example_{name}", control=control)
    dataset.update(directory=folder, width=64, height=64)
    if control:
        dataset["control_directory"] = f"{folder}_control"
    arch = next(a for a in cat.ARCHITECTURES.values() if models_node_id(a) == prompt["2"]["class_type"])
    for m in arch.models:
        if m.name in prompt["2"]["inputs"] and prompt["2"]["inputs"][m.name] != "(none)" and m.kind != "hf_id":
            prompt["2"]["inputs"][m.name] = tiny(m.folder)
    for node in ("3", "4", "5"):
        prompt[node]["inputs"]["dry_run"] = True
    prompt["5"]["inputs"]["optimizer_type"] = "AdamW"  # the fake venv has no bitsandbytes for adamw8bit
    run = client.run(prompt, timeout=120)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    for node in ("3", "4", "5"):
        assert executed_output(run, node)["argv"]


# ---------------------------------------------------------------------------- translations

LOCALES = Path(__file__).resolve().parent.parent / "locales"


def node_texts(node_info: dict[str, Any]) -> dict[str, Any]:
    inputs = {}
    for group in ("required", "optional"):
        for name, spec in node_info["input"].get(group, {}).items():
            entry = {"name": name}
            if len(spec) > 1 and spec[1].get("tooltip"):
                entry["tooltip"] = spec[1]["tooltip"]
            inputs[name] = entry
    outputs = {str(i): {"name": n, "tooltip": t}
               for i, (n, t) in enumerate(zip(node_info["output_name"], node_info["output_tooltips"]))}
    return {"display_name": node_info["display_name"], "description": node_info["description"],
            "inputs": inputs, "outputs": outputs}


@pytest.mark.timeout(60)
def test_english_locale_is_exactly_what_the_nodes_say(client: ComfyClient) -> None:
    """locales/en overrides the definitions in the UI, so a stale entry would hide a fixed tooltip."""
    ours = {k: v for k, v in client.object_info().items() if k.startswith("Musubi")}
    en = json.loads((LOCALES / "en" / "main.json").read_text(encoding="utf-8"))["nodeDefs"]
    assert set(en) == set(ours), f"locales/en lists other nodes; {REGENERATE_LOCALES}"
    for node_id, node_info in ours.items():
        assert en[node_id] == node_texts(node_info), f"locales/en is stale for {node_id}; {REGENERATE_LOCALES}"


@pytest.mark.timeout(60)
def test_japanese_locale_covers_every_node_and_is_served(client: ComfyClient) -> None:
    ours = {k: v for k, v in client.object_info().items() if k.startswith("Musubi")}
    ja = json.loads((LOCALES / "ja" / "main.json").read_text(encoding="utf-8"))["nodeDefs"]
    assert set(ja) == set(ours), f"locales/ja lists other nodes; {REGENERATE_LOCALES} (it lists what to translate)"
    for node_id, node_info in ours.items():
        entry = ja[node_id]
        assert entry["display_name"] and entry["description"] and entry["display_name"] != node_info["display_name"]
        assert set(entry["outputs"]) == {str(i) for i in range(len(node_info["output"]))}
        if not node_id.startswith("MusubiModels"):
            for group in ("required", "optional"):
                for name in node_info["input"].get(group, {}):
                    assert name in entry["inputs"], f"{node_id}.{name} has no Japanese; {REGENERATE_LOCALES}"
                    assert entry["inputs"][name]["name"] and entry["inputs"][name]["tooltip"], (node_id, name)
    served = client.get("/i18n")
    assert served["ja"]["nodeDefs"]["MusubiTrainLoRA"]["display_name"] == ja["MusubiTrainLoRA"]["display_name"]


# ---------------------------------------------------------------------------- dataset nodes

@pytest.mark.timeout(120)
def test_chained_dataset_nodes_make_one_config_with_both_folders(server: ComfyServer, client: ComfyClient) -> None:
    first = image_folder(server, "chain_a", count=2)
    second = image_folder(server, "chain_b", count=3)
    prompt = workflow(first, output_name="e2e_chain", dry_run=True)
    prompt["9"] = dataset_node(second)
    prompt["9"]["inputs"]["num_repeats"] = 4
    prompt["1"]["inputs"]["previous"] = ["9", 0]
    run = client.run(prompt, timeout=60)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    argv = executed_output(run, "3")["argv"]
    toml_path = Path(argv[argv.index("--dataset_config") + 1])
    text = toml_path.read_text(encoding="utf-8")
    assert text.count("[[datasets]]") == 2 and "num_repeats = 4" in text
    assert str(server.base_dir / "input" / "chain_a") in text and str(server.base_dir / "input" / "chain_b") in text


@pytest.mark.timeout(180)
def test_an_existing_dataset_toml_trains_through_the_load_node(
        server: ComfyServer, client: ComfyClient, fake_env: Any, fake_musubi: FakeMusubi) -> None:  # noqa: F811
    toml = fake_musubi.make_dataset(server.base_dir / "input" / "loaded_toml", images=2)
    prompt = workflow("unused", output_name="e2e_loaded")
    prompt["1"] = {"class_type": "MusubiLoadDatasetConfig", "inputs": {"path": str(toml)}}
    run = client.run(prompt, timeout=120)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    assert {total for _, total in train_progress(run)} == {4}
    assert (server.base_dir / "models" / "loras" / "musubi-tuner" / "e2e_loaded.safetensors").is_file()


@pytest.mark.timeout(60)
def test_a_broken_dataset_toml_lists_every_problem(server: ComfyServer, client: ComfyClient) -> None:
    bad = server.base_dir / "input" / "broken.toml"
    bad.write_text('[general]\nresolution = [64, 64, 3]\ncache_directory = "x"\n\n[[datasets]]\nsource_fps = 30\n',
                   encoding="utf-8")
    prompt = workflow("unused", output_name="e2e_broken", dry_run=True)
    prompt["1"] = {"class_type": "MusubiLoadDatasetConfig", "inputs": {"path": "broken.toml"}}
    run = client.run(prompt, timeout=60)
    assert run.outcome == "error" and run.terminal.data["node_id"] == "1"
    message = run.terminal.data["exception_message"]
    assert "general.resolution" in message and "general.cache_directory" in message and "hint:" in message


# ---------------------------------------------------------------------------- train options

def dry_train_argv(client: ComfyClient, server: ComfyServer, name: str, **train: Any) -> list[str]:
    folder = image_folder(server, f"opts_{name}", count=1)
    run = client.run(workflow(folder, output_name=f"e2e_{name}", dry_run=True, **train), timeout=60)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    return executed_output(run, "5")["argv"]


@pytest.mark.timeout(120)
def test_sample_prompts_become_a_prompt_file_and_bring_the_sampling_models(
        server: ComfyServer, client: ComfyClient) -> None:
    argv = dry_train_argv(client, server, "samples", sample_prompts="a red cube --w 64 --h 64\n\na blue ball\n")
    prompts = Path(argv[argv.index("--sample_prompts") + 1])
    assert prompts.read_text(encoding="utf-8") == "a red cube --w 64 --h 64\na blue ball\n"
    assert argv[argv.index("--sample_every_n_epochs") + 1] == "1"
    assert "--vae" in argv and "--t5" in argv
    # an empty box: the default sample (tests/test_train_options_e2e.py); without it no samples
    folder = image_folder(server, "opts_no_samples", count=1)
    prompt = workflow(folder, output_name="e2e_no_samples", dry_run=True)
    prompt["6"] = {"class_type": "MusubiSampleOptions", "inputs": {"default_sample": False}}
    prompt["5"]["inputs"]["options"] = ["6", 0]
    run = client.run(prompt, timeout=60)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    plain = executed_output(run, "5")["argv"]
    assert "--sample_prompts" not in plain and "--vae" not in plain, "sampling-only models are left out"


@pytest.mark.timeout(120)
def test_python_launcher_and_explicit_options_reach_the_command(server: ComfyServer, client: ComfyClient) -> None:
    argv = dry_train_argv(client, server, "python_launcher", launcher="python", network_dim=8, learning_rate=0.0003,
                          max_train_steps=50, fp8="off", extra_args="--max_grad_norm 0.5")
    assert "accelerate.commands.launch" not in argv and argv[1].endswith("wan_train_network.py")
    assert argv[argv.index("--network_dim") + 1] == "8"
    assert float(argv[argv.index("--learning_rate") + 1]) == 0.0003
    assert argv[argv.index("--max_train_steps") + 1] == "50" and "--max_train_epochs" not in argv
    assert "--fp8_base" not in argv
    assert argv[-2:] == ["--max_grad_norm", "0.5"]


@pytest.mark.timeout(120)
def test_extra_args_may_not_repeat_what_the_node_sets(server: ComfyServer, client: ComfyClient) -> None:
    folder = image_folder(server, "opts_repeat", count=1)
    run = client.run(workflow(folder, output_name="e2e_repeat", dry_run=True, extra_args="--network_dim 4"),
                     timeout=60)
    assert run.outcome == "error"
    assert "network_dim" in run.terminal.data["exception_message"]


@pytest.mark.timeout(120)
def test_cache_nodes_keep_the_documented_cache_settings_unless_changed(server: ComfyServer,
                                                                      client: ComfyClient) -> None:
    folder = image_folder(server, "hv_cache_settings", count=1)
    prompt = workflow(folder, "hv", output_name="e2e_hv_cache", dry_run=True)
    run = client.run(prompt, timeout=60)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    latents = executed_output(run, "3")["argv"]
    assert "--vae_tiling" in latents and latents[latents.index("--vae_chunk_size") + 1] == "32"
    assert executed_output(run, "4")["argv"][-2:] == ["--batch_size", "16"]
    prompt["3"]["inputs"].update(vae_tiling="off", vae_chunk_size=8)
    prompt["4"]["inputs"].update(batch_size=2, skip_existing=True)
    run = client.run(prompt, timeout=60)
    latents = executed_output(run, "3")["argv"]
    assert "--vae_tiling" not in latents and latents[latents.index("--vae_chunk_size") + 1] == "8"
    te = executed_output(run, "4")["argv"]
    assert te[te.index("--batch_size") + 1] == "2" and "--skip_existing" in te

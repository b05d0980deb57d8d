"""The Train node's essentials and the options nodes inside a real ComfyUI, as an API user queues them:
the advanced inputs set on the options nodes reach the command; prompts written before the options
nodes (every committed example of version 0.1.0, and a prompt setting every input the Train node had)
still run with every value they set, refused when a value is bad, never silently dropped; the dry run
lists every value the run uses and where it came from; an empty prompt box gives a default sample.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfy_fixtures import fake_musubi_server, tiny
from comfy_harness import ComfyClient, ComfyHTTPError, ComfyServer
from executor.musubi import catalogue as cat
from fakes import FakeMusubi, fake_musubi  # noqa: F401  (fake_musubi is a fixture)
from test_nodes_e2e import executed_output, image_folder, models_node_id, workflow

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def server(comfy_servers: Any, fake_musubi: FakeMusubi) -> ComfyServer:  # noqa: F811
    return fake_musubi_server(comfy_servers, fake_musubi, "train-options-e2e")


@pytest.fixture
def client(server: ComfyServer) -> ComfyClient:
    return server.client()

OLD_EXAMPLES = Path(__file__).resolve().parent / "fixtures" / "workflows_0.1.0"
# Every input the Train node of version 0.1.0 had besides output_name and the wires, set to a value
# that is not its default, and the argv fragment each must produce (None: checked separately).
EVERY_OLD_INPUT = {
    "network_dim": (8, ["--network_dim", "8"]),
    "network_alpha": (4.0, ["--network_alpha", "4.0"]),
    "learning_rate": (0.0003, ["--learning_rate", "0.0003"]),
    "optimizer_type": ("AdamW", None),  # overridden by optimizer_custom, as it always was
    "optimizer_custom": ("torch.optim.AdamW", ["--optimizer_type", "torch.optim.AdamW"]),
    "optimizer_args": ("weight_decay=0.01", ["--optimizer_args", "weight_decay=0.01"]),
    "lr_scheduler": ("cosine", ["--lr_scheduler", "cosine"]),
    "lr_warmup_steps": (3, ["--lr_warmup_steps", "3"]),
    "max_train_epochs": (5, None),  # max_train_steps wins, as it always did
    "max_train_steps": (7, ["--max_train_steps", "7"]),
    "save_every_n_epochs": (2, ["--save_every_n_epochs", "2"]),
    "seed": (7, ["--seed", "7"]),
    "attention": ("sdpa", ["--sdpa"]),  # the only backend the fake venv has
    "mixed_precision": ("no", ["--mixed_precision", "no"]),
    "fp8": ("fp8_base + fp8_scaled", ["--fp8_scaled"]),
    "blocks_to_swap": (4, ["--blocks_to_swap", "4"]),
    "gradient_checkpointing": (False, None),
    "timestep_sampling": ("sigmoid", ["--timestep_sampling", "sigmoid"]),
    "discrete_flow_shift": (1.5, ["--discrete_flow_shift", "1.5"]),
    "sample_prompts": ("a red cube --w 64 --h 64", ["--sample_prompts"]),
    "sample_every_n_epochs": (2, ["--sample_every_n_epochs", "2"]),
    "sample_every_n_steps": (5, ["--sample_every_n_steps", "5"]),
    "sample_at_first": (True, ["--sample_at_first"]),
    "sample_prompts_file": ("", None),  # excludes sample_prompts; the text is the one set
    "initial_weights": ("(none)", None),  # needs a file in models/loras: test below
    "resume": ("", None),
    "launcher": ("python", None),
    "num_processes": (1, None),
    "gpu_ids": ("", None),
    "extra_args": ("--max_grad_norm 0.5", ["--max_grad_norm", "0.5"]),
    "dry_run": (True, None),
}


def has(argv: list[str], fragment: list[str]) -> bool:
    return any(argv[i:i + len(fragment)] == fragment for i in range(len(argv)))


def train_argv(run: Any) -> list[str]:
    return executed_output(run, "5")["argv"]


@pytest.mark.timeout(180)
def test_a_prompt_setting_every_old_train_input_still_sets_each_of_them(
        server: ComfyServer, client: ComfyClient) -> None:
    folder = image_folder(server, "old_every_input")
    prompt = workflow(folder, output_name="old_every", dry_run=True)
    prompt["5"]["inputs"].update({name: value for name, (value, _) in EVERY_OLD_INPUT.items()})
    assert set(EVERY_OLD_INPUT) | {"output_name", "dataset", "models"} == set(prompt["5"]["inputs"])
    run = client.run(prompt, timeout=120)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    argv = train_argv(run)
    for name, (_, fragment) in EVERY_OLD_INPUT.items():
        if fragment:
            assert has(argv, fragment), f"{name}: {fragment} not in {argv}"
    assert "--gradient_checkpointing" not in argv and "--max_train_epochs" not in argv
    assert "accelerate.commands.launch" not in " ".join(argv), "launcher python"
    text = executed_output(run, "5")["text"][0]
    assert "  network_dim 8 (you)" in text and "  max_train_steps 7 (you, on the Train node (an older input))" in text
    assert "max_train_epochs" not in text.split("command (")[0], "steps are in effect, not epochs"
    assert "  launcher python (you, on the Train node (an older input))" in text


@pytest.mark.timeout(180)
def test_the_same_values_on_the_options_nodes_give_the_same_command(server: ComfyServer, client: ComfyClient) -> None:
    folder = image_folder(server, "options_nodes")
    flat = workflow(folder, output_name="opts_flat", dry_run=True, fp8="fp8_base + fp8_scaled", blocks_to_swap=4,
                    lr_scheduler="cosine", seed=7, launcher="python", sample_every_n_epochs=2)
    chained = workflow(folder, output_name="opts_flat", dry_run=True)
    del chained["5"]["inputs"]["optimizer_type"]
    chained["6"] = {"class_type": "MusubiOptimizerOptions",
                    "inputs": {"optimizer_type": "AdamW", "lr_scheduler": "cosine"}}
    chained["7"] = {"class_type": "MusubiMemoryOptions",
                    "inputs": {"options": ["6", 0], "fp8": "fp8_base + fp8_scaled", "blocks_to_swap": 4}}
    chained["8"] = {"class_type": "MusubiTimestepOptions", "inputs": {"options": ["7", 0], "seed": 7}}
    chained["9"] = {"class_type": "MusubiSampleOptions", "inputs": {"options": ["8", 0], "sample_every_n_epochs": 2}}
    chained["10"] = {"class_type": "MusubiLaunchOptions", "inputs": {"options": ["9", 0], "launcher": "python"}}
    chained["5"]["inputs"]["options"] = ["10", 0]
    argvs = []
    for prompt in (flat, chained):
        run = client.run(prompt, timeout=120)
        assert run.outcome == "success", run.terminal.data if run.terminal else run.types
        argvs.append([a for a in train_argv(run) if "/runs/" not in a and "prompts-" not in a])
    assert argvs[0] == argvs[1]
    text = executed_output(run, "5")["text"][0]
    assert "  blocks_to_swap 4 (you, on Musubi Memory Options)" in text
    assert "  lr_scheduler cosine (you, on Musubi Optimizer Options)" in text


@pytest.mark.timeout(120)
def test_a_value_set_on_the_train_node_and_an_options_node_is_refused(server: ComfyServer, client: ComfyClient) -> None:
    folder = image_folder(server, "options_twice")
    prompt = workflow(folder, output_name="opts_twice", dry_run=True, blocks_to_swap=4)
    prompt["6"] = {"class_type": "MusubiMemoryOptions", "inputs": {"blocks_to_swap": 8}}
    prompt["5"]["inputs"]["options"] = ["6", 0]
    run = client.run(prompt, timeout=120)
    assert run.outcome == "error"
    message = run.terminal.data["exception_message"]
    assert "blocks_to_swap is set twice: 4 on the Train node" in message and "Musubi Memory Options" in message


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name, value, words", [
    ("blocks_to_swap", -1, "smaller than min"), ("fp8", "fp16", "not in"),
    ("discrete_flow_shift", float("nan"), "not a usable number"), ("optimizer_custom", "os.system", "standard library"),
    ("seed", "7", "is not a whole number"), ("initial_weights", "missing.safetensors", "not in"),
])
def test_a_bad_old_input_is_refused_when_queued(name: str, value: Any, words: str, server: ComfyServer,
                                                client: ComfyClient) -> None:
    folder = image_folder(server, "old_bad_input")
    prompt = workflow(folder, output_name="old_bad", dry_run=True, **{name: value})
    # the cache steps are output nodes too: ComfyUI queues them and reports the Train node's errors
    try:
        node_errors = client.queue_prompt(prompt)["node_errors"]
    except ComfyHTTPError as refused:
        node_errors = refused.node_errors
    errors = node_errors["5"]["errors"]
    assert any(name in e["details"] and words in e["details"] for e in errors), errors
    client.post("/queue", {"clear": True})


@pytest.mark.timeout(180)
def test_an_old_initial_weights_file_is_still_used(server: ComfyServer, client: ComfyClient) -> None:
    lora = server.base_dir / "models" / "loras" / "start_from.safetensors"
    lora.parent.mkdir(parents=True, exist_ok=True)
    lora.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    folder = image_folder(server, "old_initial_weights")
    run = client.run(workflow(folder, output_name="old_weights", dry_run=True,
                              initial_weights="start_from.safetensors"), timeout=120)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    argv = train_argv(run)
    assert argv[argv.index("--network_weights") + 1].endswith("start_from.safetensors")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", sorted(p.stem for p in (OLD_EXAMPLES / "api").glob("*.json")))
def test_every_committed_example_of_version_0_1_0_runs_with_its_values(name: str, server: ComfyServer,
                                                                       client: ComfyClient) -> None:
    prompt = json.loads((OLD_EXAMPLES / "api" / f"{name}.json").read_text(encoding="utf-8"))
    prompt = {k: v for k, v in prompt.items() if v["class_type"].startswith("Musubi")}
    control = bool(prompt["1"]["inputs"].get("control_directory"))
    folder = image_folder(server, f"old_example_{name}", control=control)
    prompt["1"]["inputs"].update(directory=folder, width=64, height=64)
    if control:
        prompt["1"]["inputs"]["control_directory"] = f"{folder}_control"
    arch = next(a for a in cat.ARCHITECTURES.values() if models_node_id(a) == prompt["2"]["class_type"])
    for m in arch.models:
        if prompt["2"]["inputs"].get(m.name, "(none)") != "(none)" and m.kind != "hf_id":
            prompt["2"]["inputs"][m.name] = tiny(m.folder)
    train = dict(prompt["5"]["inputs"])
    for node in ("3", "4", "5"):
        prompt[node]["inputs"]["dry_run"] = True
    prompt["5"]["inputs"]["optimizer_type"] = "AdamW"  # the fake venv has no bitsandbytes for adamw8bit
    run = client.run(prompt, timeout=180)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    argv = train_argv(run)
    assert argv[argv.index("--output_name") + 1] == train["output_name"]
    if "blocks_to_swap" in train:
        assert has(argv, ["--blocks_to_swap", str(train["blocks_to_swap"])])
    if train.get("fp8") == "fp8_base + fp8_scaled":
        assert "--fp8_base" in argv and "--fp8_scaled" in argv
    # the UI workflow's Train widgets, by their names of 0.1.0, are set as the API twin says
    ui = json.loads((OLD_EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    assert [n for n in ui["nodes"] if n["type"] == "MusubiTrainLoRA"][0]["widgets_values"][0] == train["output_name"]


@pytest.mark.timeout(180)
def test_the_dry_run_lists_every_value_with_its_source_and_the_default_sample(
        server: ComfyServer, client: ComfyClient) -> None:
    folder = image_folder(server, "dry_values")
    run = client.run(workflow(folder, "qwen_image", output_name="dry_values", dry_run=True, network_dim=0,
                              selectors={"model_version": "original"}, learning_rate=0.0001), timeout=120)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    text = executed_output(run, "5")["text"][0]
    assert "  network_dim 16 (recommended for Qwen-Image)" in text
    assert "  learning_rate 1e-4 (you)" in text
    assert "  discrete_flow_shift 2.2 (recommended for Qwen-Image)" in text
    assert "  lr_scheduler constant (musubi's default)" in text and "  blocks_to_swap off (musubi's default)" in text
    assert "  optimizer_type AdamW (you, on the Train node (an older input))" in text
    assert "  launcher accelerate (the default)" in text and "  max_train_epochs 2 (you)" in text
    assert "max_train_steps" not in text.split("command (")[0], "epochs are in effect, not steps"
    assert "  sample_every_n_epochs 1 (the Train node's default: every saved epoch)" in text
    # img1's caption, musubi's documented Qwen-Image size and steps, a fixed seed
    assert "sample prompts: the default (the dataset's first caption at 1024x1024, 25 steps" in text
    assert "a photo number 1 --w 1024 --h 1024 --s 25 --d 42" in text
    argv = train_argv(run)
    prompts = Path(argv[argv.index("--sample_prompts") + 1]).read_text(encoding="utf-8")
    assert prompts == "a photo number 1 --w 1024 --h 1024 --s 25 --d 42\n"
    assert has(argv, ["--sample_every_n_epochs", "1"])


@pytest.mark.timeout(180)
def test_the_default_sample_can_be_switched_off_and_says_why_when_it_cannot_be_made(
        server: ComfyServer, client: ComfyClient) -> None:
    folder = image_folder(server, "no_default_sample")
    prompt = workflow(folder, output_name="no_default", dry_run=True)
    prompt["6"] = {"class_type": "MusubiSampleOptions", "inputs": {"default_sample": False}}
    prompt["5"]["inputs"]["options"] = ["6", 0]
    run = client.run(prompt, timeout=120)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    assert "--sample_prompts" not in train_argv(run)
    assert "sample prompts: none given, and the default sample is switched off" in executed_output(run, "5")["text"][0]
    framed = image_folder(server, "no_default_1f", control=True)
    one_frame = workflow(framed, output_name="no_default_1f", dry_run=True,
                         selectors={"task": "i2v-14B", "one_frame": True}, control=f"{framed}_control")
    run = client.run(one_frame, timeout=120)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    assert "--sample_prompts" not in train_argv(run)
    assert "no default sample: a one-frame sample needs" in executed_output(run, "5")["text"][0]

"""The bad-input catalogue: hostile or mistaken values sent to the real node API (``POST /prompt``
of a real ComfyUI 0.3.75), one parametrized case each (ids and channels in
tests/hardening_cases.py). Every case is answered with a clear message BEFORE anything is launched
(the fake musubi records every process it starts: none may appear) and nothing is overwritten
(every file of the ComfyUI folder and the musubi checkout is hashed before and after).

Channel per input (decided by where the fact is known):
- ``http_400``: the value alone is wrong (a widget's range or list, a path that does not exist
  or is outside the folders the pack may write to, an unusable file name): ComfyUI's validation
  or the node's VALIDATE_INPUTS refuses the prompt, nothing runs at all.
- ``execution_error``: the check needs a wired value (the architecture decides which flags exist)
  or the contents of a file (a dataset TOML): the node's pre-flight raises with a hint, before
  any process starts.
- ``launched``: only musubi can tell (a DiT of another model size); its error becomes a clear
  message with a hint.

Valid-but-hostile inputs that must WORK (spaces, non-ASCII, shell metacharacters, a folder named
like a flag) are at the end, as full runs.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any, Callable

import pytest

pytest.register_assert_rewrite("hardening", "hardening_e2e")  # before they are imported below

from comfy_fixtures import tiny  # noqa: E402
from comfy_harness import ComfyHTTPError  # noqa: E402
from executor.musubi import catalogue as cat  # noqa: E402
from hardening_cases import BAD_INPUTS  # noqa: E402
from hardening_e2e import Hard, changed_files, error_text  # noqa: E402

pytestmark = pytest.mark.comfyui
pytest_plugins = ["hardening", "hardening_e2e"]

# Files ComfyUI or the nodes may create while refusing: the content-addressed dataset TOML the
# dataset node writes before a later node refuses, and the server's own log.
ALLOWED_NEW = (re.compile(r"/output/musubi-tuner/datasets/dataset-[0-9a-f]+\.toml$"),)
IGNORED = ("comfyui.log",)


class Ctx:
    """What the cases refer to: a cached dataset, files and folders in awkward places."""

    def __init__(self, hard: Hard) -> None:
        self.hard = hard
        self.base = hard.base
        self.data = "b_data"  # cached once (module fixture): training cases reach pre-flight only
        self.image = self.base / "input" / self.data / "img1.png"
        self.outside = hard.tmp.parent / "outside the roots"
        self.state_file = self.base / "input" / "not_a_state.bin"
        self.tomls = self.base / "input" / "tomls"

    def wf(self, **changes: Any) -> dict[str, Any]:
        """Training straight from the cached dataset (no cache steps)."""
        changes.setdefault("output_name", "b_lora")
        return self.hard.workflow(self.data, cache=False, **changes)

    def chain(self, directory: str | None = None, **dataset: Any) -> dict[str, Any]:
        """The whole chain (caching would launch if the bad value got through)."""
        return self.hard.workflow(directory if directory is not None else self.data, dataset=dataset,
                                  output_name="b_lora")

    def load(self, path: str) -> dict[str, Any]:
        return {"1": {"class_type": "MusubiLoadDatasetConfig", "inputs": {"path": path}},
                "2": self.hard.models_node(),
                "3": {"class_type": "MusubiCacheLatents", "inputs": {"dataset": ["1", 0], "models": ["2", 0]}}}

    def planted_state(self) -> Path:
        """A complete-looking training state in input/, where any client can write through /upload/image."""
        folder = self.base / "input" / "b_planted-000003-state"
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"):
            (folder / name).write_bytes(b"cos\nsystem\n(S'touch /tmp/pwned'\ntR.")
        return folder

    def toml(self, name: str, text: str) -> str:
        self.tomls.mkdir(parents=True, exist_ok=True)
        path = self.tomls / f"{name}.toml"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def dataset_toml(self, name: str, **keys: str) -> str:
        body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
        return self.toml(name, '[general]\nresolution = [64, 64]\ncaption_extension = ".txt"\n\n[[datasets]]\n' + body)

    @property
    def outside_images(self) -> Path:
        return self.outside / "images"

    @property
    def outside_prompts(self) -> Path:
        return self.outside / "prompts.txt"

    @property
    def outside_toml(self) -> Path:
        return self.outside / "dataset.toml"

    def jsonl_listing_outside(self) -> str:
        """A JSONL in input/ whose image_path points outside the read roots."""
        self.tomls.mkdir(parents=True, exist_ok=True)
        path = self.tomls / "outside.jsonl"
        path.write_text(json.dumps({"image_path": str(self.outside_images / "img1.png"), "caption": "x"}) + "\n",
                        encoding="utf-8")
        return str(path)

    def wired_prompt_file(self, value: str) -> dict[str, Any]:
        """sample_prompts_file wired from another node: it skips VALIDATE_INPUTS."""
        prompt = self.train()
        prompt["9"] = {"class_type": "PrimitiveString", "inputs": {"value": value}}
        prompt["5"]["inputs"]["sample_prompts_file"] = ["9", 0]
        return prompt

    def kandinsky(self, **changes: Any) -> dict[str, Any]:
        arch = cat.get_architecture("kandinsky5")
        inputs: dict[str, Any] = {s.name: str(s.default) for s in arch.selectors}
        for m in arch.models:
            inputs[m.name] = m.default if m.kind == "hf_id" else tiny(m.folder)
        inputs.update(changes)
        return {"1": self.hard.dataset_node(self.data), "2": {"class_type": "MusubiModelsKandinsky5", "inputs": inputs},
                "3": {"class_type": "MusubiCacheTextEncoder", "inputs": {"dataset": ["1", 0], "models": ["2", 0]}}}

    def train(self, **changes: Any) -> dict[str, Any]:
        return self.wf(**changes)

    def with_gpus(self, count: int, prompt: dict[str, Any]) -> dict[str, Any]:
        """The fake torch reports ``count`` CUDA devices to the pack's venv probe."""
        self.hard.configure(env={"FAKE_TORCH_CUDA_DEVICES": str(count)})
        return prompt


Case = tuple[Callable[[Ctx], dict[str, Any]], str]  # (prompt builder, what the message must say)
# A path outside the read roots: refused with the settings file and the line that would allow it.
OUTSIDE = r"outside the folders this pack may read from.*__musubi-tuner-nodes.config\.json.*read_roots"

CASES: dict[str, Case] = {
    # --- MusubiDatasetConfig
    "dataset_dir_empty": (lambda c: c.chain(""), r"set the folder"),
    "dataset_dir_dotdot_missing": (lambda c: c.chain("../../../no/such/folder"), OUTSIDE),
    "dataset_dir_outside_read_roots": (lambda c: c.chain(str(c.outside_images)), OUTSIDE),
    "control_dir_outside_read_roots": (lambda c: c.chain(control_directory=str(c.outside_images)), OUTSIDE),
    "dataset_dir_is_file": (lambda c: c.chain(str(c.image)), r"is a file, not a folder"),
    "dataset_dir_nul": (lambda c: c.chain("b_data\x00/etc"), r"NUL"),
    "dataset_dir_10k_chars": (lambda c: c.chain("d" * 10_000), r"10000 characters long"),
    "dataset_dir_dash": (lambda c: c.chain("-rf"), r"folder not found"),
    "cache_dir_absolute_outside": (lambda c: c.chain(cache_directory=str(c.outside)),
                                   r"outside the folders .*output_roots"),
    "cache_dir_dotdot_escape": (lambda c: c.chain(cache_directory="../../../../../../../tmp/x"),
                                r"outside the folders"),
    "cache_dir_into_models": (lambda c: c.chain(cache_directory=str(c.base / "models" / "diffusion_models")),
                              r"outside the folders"),
    "caption_ext_traversal": (lambda c: c.chain(caption_extension="/../../../etc/passwd"),
                              r"caption_extension"),
    "caption_ext_nul": (lambda c: c.chain(caption_extension=".t\x00xt"), r"caption_extension"),
    "target_frames_garbage": (lambda c: c.chain(media="video", target_frames="1, x"),
                              r"target_frames .* is not a list of whole numbers"),
    "width_zero": (lambda c: c.chain(width=0), r"smaller than min"),
    "width_huge": (lambda c: c.chain(width=10**9), r"bigger than max"),
    "batch_size_negative": (lambda c: c.chain(batch_size=-1), r"smaller than min"),
    "num_repeats_not_a_number": (lambda c: c.chain(num_repeats="many"), r"Failed to convert"),
    "media_not_in_list": (lambda c: c.chain(media="../video"), r"not in"),
    "frame_extraction_injection": (lambda c: c.chain(frame_extraction="head; rm -rf /"), r"not in"),
    # --- MusubiLoadDatasetConfig
    "toml_not_a_dataset": (lambda c: c.load(c.toml("pyproject", '[project]\nname = "x"\n[tool.ruff]\nline = 1\n')),
                           r"problem"),
    "toml_path_is_folder": (lambda c: c.load(str(c.base / "input")), r"is a folder, not a file"),
    "toml_path_outside_read_roots": (lambda c: c.load(str(c.outside_toml)), OUTSIDE),
    "toml_lists_folder_outside_read_roots": (lambda c: c.load(c.dataset_toml(
        "outdir", image_directory=str(c.outside_images), cache_directory=str(c.base / "output" / "outdir"))),
        r"datasets\[0\]\.image_directory .*outside the folders this pack may read from"),
    "toml_jsonl_lists_files_outside_read_roots": (lambda c: c.load(c.dataset_toml(
        "outjsonl", image_jsonl_file=c.jsonl_listing_outside(), cache_directory=str(c.base / "output" / "outjsonl"))),
        r"image_jsonl_file lists .*outside the folders this pack may read from"),
    "toml_path_dash": (lambda c: c.load("-h"), r"file not found"),
    "toml_path_nul": (lambda c: c.load("a.toml\x00.png"), r"NUL"),
    "toml_syntax_error": (lambda c: c.load(c.toml("broken", "[general\nresolution = [64, 64]\n")), r"line 1"),
    "toml_image_dir_is_file": (lambda c: c.load(c.dataset_toml("imgfile", image_directory=str(c.image))),
                               r"not a folder|is a file"),
    "toml_cache_outside_roots": (lambda c: c.load(c.dataset_toml(
        "cacheout", image_directory=str(c.base / "input" / c.data), cache_directory=str(c.outside))),
        r"outside the folders"),
    # --- MusubiModels*
    "model_path_traversal": (lambda c: {**c.wf(), "2": c.hard.models_node(dit="../../../../etc/passwd")}, r"not in"),
    "selector_not_in_list": (lambda c: {**c.wf(), "2": c.hard.models_node(task="t2v-999B")}, r"not in"),
    "hf_id_flag_injection": (lambda c: c.kandinsky(text_encoder_qwen="--config_file=/tmp/x"),
                             r"starts with '-'"),
    "hf_id_local_folder_outside_read_roots": (lambda c: c.kandinsky(text_encoder_qwen=str(c.outside)),
                                              r"models\.text_encoder_qwen: .*outside the folders this pack may read "
                                              r"from.*read_roots"),
    # --- MusubiTrainLoRA.output_name
    "name_dotdot": (lambda c: c.train(output_name="../../evil"), r"output_name"),
    "name_separators": (lambda c: c.train(output_name="sub/dir\\name"), r"path separators"),
    "name_con": (lambda c: c.train(output_name="CON"), r"reserved"),
    "name_nul_device": (lambda c: c.train(output_name="nul"), r"reserved"),
    "name_com1": (lambda c: c.train(output_name="COM1"), r"reserved"),
    "name_lpt1_ext": (lambda c: c.train(output_name="lpt1.lora"), r"reserved"),
    "name_trailing_dot": (lambda c: c.train(output_name="my_lora."), r"ends with a dot or space"),
    "name_trailing_space": (lambda c: c.train(output_name="my_lora "), r"ends with a dot or space"),
    "name_dash": (lambda c: c.train(output_name="-rf"), r"starts with '-'"),
    "name_nul_byte": (lambda c: c.train(output_name="my\x00lora"), r"NUL"),
    "name_5000_chars": (lambda c: c.train(output_name="n" * 5000), r"characters long"),
    "name_empty": (lambda c: c.train(output_name=""), r"no output name"),
    # --- MusubiTrainLoRA.extra_args
    "extra_output_dir": (lambda c: c.train(extra_args="--output_dir /tmp/evil"), r"--output_dir is set by the pack"),
    "extra_config_file": (lambda c: c.train(extra_args="--config_file /tmp/evil.toml"),
                          r"--config_file is set by the pack"),
    "extra_python": (lambda c: c.train(extra_args="--python /bin/sh"), r"--python is not a flag"),
    "extra_dataset_config": (lambda c: c.train(extra_args="--dataset_config /tmp/x.toml"),
                             r"--dataset_config is set by the pack"),
    "extra_hf_token": (lambda c: c.train(extra_args="--huggingface_token hf_x"), r"tokens never go on a command line"),
    "extra_unknown_flag": (lambda c: c.train(extra_args="--no_such_flag 1"), r"--no_such_flag is not a flag"),
    "extra_abbreviation": (lambda c: c.train(extra_args="--max_train 5"), r"abbreviations are refused"),
    "extra_short_flag": (lambda c: c.train(extra_args="-o /tmp/x"), r"only full --long flag names"),
    "extra_shell_chain": (lambda c: c.train(extra_args="--max_grad_norm 1; touch /tmp/pwned"),
                          r"needs a number|is not a flag"),
    "extra_nul": (lambda c: c.train(extra_args="--max_grad_norm 1\x00"), r"NUL"),
    "extra_unclosed_quote": (lambda c: c.train(extra_args='--metadata_title "open'), r"close the open quote"),
    # --- MusubiTrainLoRA, other inputs
    "prompt_file_outside_read_roots": (lambda c: c.train(sample_prompts_file=str(c.outside_prompts)), OUTSIDE),
    "prompt_file_dotdot": (lambda c: c.train(sample_prompts_file="../../../../../../../../etc/hostname"), OUTSIDE),
    "prompt_file_wired_outside": (lambda c: c.wired_prompt_file(str(c.outside_prompts)),
                                  r"options\.sample_prompts: .*outside the folders this pack may read from"),
    "resume_is_file": (lambda c: c.train(resume=str(c.state_file)),
                       r"is not a training state or run this pack recorded.*resume list"),
    "resume_dash_missing": (lambda c: c.train(resume="-x"), r"there is no run '-x'"),
    "resume_planted_state": (lambda c: c.train(resume=str(c.planted_state())),
                             r"is not a training state or run this pack recorded.*trust-state"),
    "initial_weights_pickle": (lambda c: c.train(initial_weights="p_lora.pt"), r"not in"),
    "optimizer_custom_stdlib": (lambda c: c.train(optimizer_custom="os.system"), r"standard library"),
    "optimizer_custom_garbage": (lambda c: c.train(optimizer_custom="x; rm -rf /"), r"optimizer_custom"),
    "optimizer_args_unclosed": (lambda c: c.train(optimizer_args='betas="(0.9'), r"optimizer_args"),
    "gpu_ids_injection": (lambda c: c.train(gpu_ids="0; rm -rf /"), r"gpu_ids .* is not a list of GPU numbers"),
    "gpu_ids_not_numbers": (lambda c: c.train(gpu_ids="cuda:0"), r"gpu_ids .* is not a list of GPU numbers"),
    "gpu_ids_beyond_gpu_count": (lambda c: c.with_gpus(2, c.train(gpu_ids="0,3")),
                                 r"names GPU 3, but the musubi venv sees 2 GPU"),
    "learning_rate_nan": (lambda c: c.train(learning_rate=float("nan")), r"learning_rate: nan is not a usable number"),
    "network_alpha_infinite": (lambda c: c.train(network_alpha=float("inf")),
                               r"network_alpha: inf is not a usable number"),
    "discrete_flow_shift_minus_infinity": (lambda c: c.train(discrete_flow_shift=float("-inf")),
                                           r"discrete_flow_shift: -inf is not a usable number"),
    "source_fps_nan": (lambda c: c.chain(source_fps=float("nan")), r"source_fps: nan is not a usable number"),
    "network_dim_negative": (lambda c: c.train(network_dim=-1), r"smaller than min"),
    "learning_rate_too_big": (lambda c: c.train(learning_rate=5.0), r"bigger than max"),
    "seed_negative": (lambda c: c.train(seed=-1), r"smaller than min"),
    "epochs_huge": (lambda c: c.train(max_train_epochs=10**12), r"bigger than max"),
    "blocks_to_swap_over_limit": (lambda c: c.train(blocks_to_swap=100), r"can swap at most"),
    "launcher_not_in_list": (lambda c: c.train(launcher="bash"), r"not in"),
    "initial_weights_traversal": (lambda c: c.train(initial_weights="../../../etc/passwd"), r"not in"),
    "warmup_with_constant": (lambda c: c.train(lr_scheduler="constant", lr_warmup_steps=10),
                             r"constant scheduler takes no warmup"),
    "num_processes_zero": (lambda c: c.train(num_processes=0), r"smaller than min"),
    # --- cache nodes
    "cache_workers_huge": (lambda c: c.chain() | {"3": {"class_type": "MusubiCacheLatents", "inputs": {
        "dataset": ["1", 0], "models": ["2", 0], "num_workers": 10**6}}}, r"bigger than max"),
    "vae_dtype_not_in_list": (lambda c: c.chain() | {"3": {"class_type": "MusubiCacheLatents", "inputs": {
        "dataset": ["1", 0], "models": ["2", 0], "vae_dtype": "float64"}}}, r"not in"),
    # --- only musubi can tell
    "wrong_architecture_model": (lambda c: c.train(), r"does not fit the selected model type"),
}


@pytest.mark.timeout(30)
def test_every_catalogued_bad_input_has_a_case() -> None:
    assert set(CASES) == set(BAD_INPUTS)


@pytest.fixture(scope="module")
def ctx(hard_server: Any, hard_fake: Any, tmp_path_factory: pytest.TempPathFactory) -> Ctx:
    hard = Hard(hard_server, hard_fake, tmp_path_factory.mktemp("bad-inputs"))
    hard.configure()
    c = Ctx(hard)
    hard.image_folder(c.data)
    run = hard.run(hard.workflow(c.data, train=False))
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    c.outside.mkdir(exist_ok=True)
    c.outside_images.mkdir(exist_ok=True)  # the dataset's images and captions, outside the read roots
    for item in (hard.base / "input" / c.data).iterdir():
        if item.is_file():
            (c.outside_images / item.name).write_bytes(item.read_bytes())
    c.outside_prompts.write_text("a server secret --w 64 --h 64\n", encoding="utf-8")
    c.outside_toml.write_text(f'[general]\nresolution = [64, 64]\ncaption_extension = ".txt"\n\n[[datasets]]\n'
                              f'image_directory = {json.dumps(str(hard.base / "input" / c.data))}\n', encoding="utf-8")
    c.state_file.write_bytes(b"not a training state")
    hard.loras_dir.mkdir(parents=True, exist_ok=True)
    (hard.loras_dir / "b_lora.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (hard.loras_dir / "p_lora.pt").write_bytes(b"\x80\x04K\x01.")  # a pickle: never offered
    return c


def refusal_text(error: ComfyHTTPError) -> str:
    """Everything the 400 answer says about the nodes (what the UI shows next to them)."""
    return json.dumps(error.body, ensure_ascii=False)


def refusal_details(error: ComfyHTTPError) -> str:
    """The per-input messages of a 400 answer, as the UI lists them."""
    return " | ".join(f"{e.get('message')}: {e.get('details')}" for node in error.node_errors.values()
                      for e in node.get("errors", []))


@pytest.mark.hardening("bad_input")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_input_is_refused_clearly_before_anything_runs(case: str, ctx: Ctx, hard: Hard, hardening: Any) -> None:
    build, pattern = CASES[case]
    channel = BAD_INPUTS[case][1]
    if channel == "launched":
        hard.configure(env={"FAKE_MUSUBI_SCENARIO": "size_mismatch"})
    prompt = build(ctx)
    before = hard.snapshot()
    runs_before = hard.run_folders()
    if channel == "http_400":
        try:
            queued = hard.client.queue_prompt(prompt)
        except ComfyHTTPError as error:
            assert error.status == 400
            assert error.node_errors, refusal_text(error)
            text = refusal_text(error)
            answer = refusal_details(error)
        else:  # accepted: stop it, so it cannot disturb the next case, then fail
            hard.client.interrupt(queued["prompt_id"])
            hard.left_behind(30)
            pytest.fail(f"the prompt was accepted (HTTP 200): {queued}")
    else:
        run = hard.run(prompt)
        assert run.outcome == "error", run.types[-20:]
        text = error_text(run)
        assert "hint:" in text, text
        answer = text
    assert re.search(pattern, text, re.IGNORECASE | re.DOTALL), f"{pattern!r} not in {text[:3000]}"
    assert len(text) < 20_000, "the answer quotes too much"
    after = hard.snapshot()
    lost = changed_files(before, after)
    lost = [p for p in lost if not p.endswith(IGNORED)]
    hardening.record(channel=channel, files_lost=len(lost), answer=answer[:400])
    assert lost == [], f"changed or removed: {lost}"
    new = [p for p in set(after) - set(before)
           if not p.endswith(IGNORED) and not any(r.search(p.replace("\\", "/")) for r in ALLOWED_NEW)]
    if channel == "launched":
        assert hard.pids(), "musubi was expected to run"
        return
    assert new == [], f"files were created: {new}"
    assert hard.pids() == [], "a musubi process was started"
    assert hard.run_folders() == runs_before, "a run folder was made"


def with_options(node_id: str) -> Callable[[Ctx, str, Any], dict[str, Any]]:
    """A training prompt with one options node (``node_id``) wired into the Train node."""
    def build(c: Ctx, name: str, value: Any) -> dict[str, Any]:
        prompt = c.train()
        prompt["6"] = {"class_type": node_id, "inputs": {name: value}}
        prompt["5"]["inputs"]["options"] = ["6", 0]
        return prompt
    return build


# A prompt that puts a value into any input of the node (the train node, the dataset node of a
# chain, or an options node wired into the train node).
ANY_INPUT: dict[str, Callable[[Ctx, str, Any], dict[str, Any]]] = {
    "MusubiTrainLoRA": lambda c, name, value: c.train(**{name: value}),
    "MusubiDatasetConfig": lambda c, name, value: c.chain(**{name: value}),
    **{node: with_options(node) for node in ("MusubiOptimizerOptions", "MusubiMemoryOptions",
                                            "MusubiTimestepOptions", "MusubiSampleOptions", "MusubiLaunchOptions")},
}


@pytest.mark.timeout(180)
def test_every_float_input_of_every_node_refuses_nan_and_infinity_when_queued(ctx: Ctx, hard: Hard) -> None:
    info = hard.client.object_info()
    floats = sorted((node_id, name) for node_id, node in info.items() if node_id.startswith("Musubi")
                    for group in ("required", "optional") for name, spec in node["input"].get(group, {}).items()
                    if spec[0] == "FLOAT")
    assert floats and {node for node, _ in floats} <= set(ANY_INPUT), f"no prompt builder for {floats}"
    runs_before = hard.run_folders()
    for node_id, name in floats:
        for value in (float("nan"), float("inf"), float("-inf")):
            with pytest.raises(ComfyHTTPError) as refused:
                hard.client.queue_prompt(ANY_INPUT[node_id](ctx, name, value))
            assert refused.value.status == 400, (node_id, name, value)
            assert f"{name}: {value} is not a usable number" in refusal_details(refused.value), (node_id, name)
    assert hard.pids() == [] and hard.run_folders() == runs_before


@pytest.mark.timeout(180)
def test_a_nan_wired_from_another_node_is_refused_before_anything_runs(ctx: Ctx, hard: Hard) -> None:
    """A wired value skips VALIDATE_INPUTS; the node checks it when it runs, before any launch."""
    prompt = ctx.train()
    prompt["9"] = {"class_type": "PrimitiveFloat", "inputs": {"value": float("nan")}}
    prompt["5"]["inputs"]["learning_rate"] = ["9", 0]
    runs_before = hard.run_folders()
    run = hard.run(prompt)
    assert run.outcome == "error", run.types[-20:]
    assert "learning_rate: nan is not a usable number" in error_text(run)
    assert hard.pids() == [] and hard.run_folders() == runs_before


# ---------------------------------------------------------------------------------------- must work

@pytest.mark.hardening("works", "unicode_and_spaces_everywhere")
@pytest.mark.timeout(240)
def test_spaces_and_non_ascii_in_every_path_train_and_deliver(hard: Hard) -> None:
    assert " " in str(hard.base) and not str(hard.base).isascii()
    assert " " in str(hard.fake.venv) and not str(hard.fake.venv).isascii()
    folder = hard.image_folder("写真 フォルダ é", 2)
    run = hard.run(hard.workflow(folder, output_name="unicode_lora"))
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types[-20:]
    assert (hard.loras_dir / "unicode_lora.safetensors").is_file()
    run_dir = Path(run.of_type("executed")[-1].data["output"]["run_dir"][0])
    toml = (run_dir / "dataset.toml").read_text(encoding="utf-8")
    assert "写真 フォルダ é" in toml


@pytest.mark.hardening("works", "shell_metacharacters_inert")
@pytest.mark.timeout(240)
def test_shell_metacharacters_are_plain_text_and_command_txt_quotes_them(hard: Hard, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    nasty = f"a;b|c&d $(touch {canary}) `touch {canary}` 'q' \"dq\" <in >out %PATH% !x! ^"
    folder = hard.image_folder(f"meta {nasty.replace('/', '_')}", 2)
    title = f"title; touch {canary} && echo $(id) | tee >{canary} `reboot` \"x\" 'y' %TEMP% ^&"
    run = hard.run(hard.workflow(folder, output_name="meta_lora", extra_args=f"--metadata_title {shlex.quote(title)}"))
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types[-20:]
    assert not canary.exists(), "a shell ran something"
    run_dir = Path(run.of_type("executed")[-1].data["output"]["run_dir"][0])
    argv = json.loads((run_dir / "plan.json").read_text(encoding="utf-8"))["argv"]
    assert argv[argv.index("--metadata_title") + 1] == title
    text = (run_dir / "command.txt").read_text(encoding="utf-8")
    posix = next(line for line in text.splitlines() if line.startswith("(cd "))
    words = shlex.split(posix[1:-1])  # the subshell's words: cd DIR && NAME=... argv...
    assert words[-len(argv):] == argv, "a POSIX shell would not get the same argv back"
    powershell = next(line for line in text.splitlines() if line.startswith("& "))
    assert "'" + title.replace("'", "''") + "'" in powershell
    cmd = [line for line in text.splitlines() if "--metadata_title" in line and not line.startswith(("(", "&"))]
    assert cmd and all(f"^{ch}" in cmd[0] for ch in "&|>%^\"()"), cmd  # cmd.exe escapes every metacharacter


@pytest.mark.hardening("works", "dash_folder_name")
@pytest.mark.timeout(240)
def test_a_dataset_folder_named_like_a_flag_trains(hard: Hard) -> None:
    folder = hard.image_folder("-weird", 2)
    run = hard.run(hard.workflow(folder, output_name="dash_lora"))
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types[-20:]
    run_dir = Path(run.of_type("executed")[-1].data["output"]["run_dir"][0])
    argv = json.loads((run_dir / "plan.json").read_text(encoding="utf-8"))["argv"]
    assert not any(a.startswith("-") and "weird" in a for a in argv)
    assert (hard.loras_dir / "dash_lora.safetensors").is_file()

"""Pre-flight: every broken setup from the issue's list is caught before launch, each with a
message naming the input and the fix; all problems come at once, quickly. Real temp folders,
real tiny PNGs and captions, a fake musubi checkout in a real venv (tests/fakes.py)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

import media
import modelfile_keys as K
from executor.setup.discovery import MusubiInstall, resolve_install
from executor.setup.settings import Settings
from executor.musubi.dataset import DatasetSpec, GeneralSpec, build_dataset_config, save_dataset_config
from executor.musubi.files import check_output_name
from executor.musubi.preflight import preflight
from executor.setup.probe import ProbeReport
from fakes import fake_musubi  # noqa: F401  (session fixture)
from modelfile_writers import write_safetensors

pytestmark = pytest.mark.timeout(60)


class Setup:
    """One healthy Wan setup in tmp_path; tests break one thing at a time."""

    def __init__(self, tmp: Path, fake) -> None:
        self.tmp = tmp
        self.fake = fake
        self.settings = Settings(venv_path=str(fake.venv), root_path=str(fake.root))
        self.install = resolve_install(self.settings)
        self.images = media.image_folder(tmp / "images")
        self.cache = tmp / "cache"
        self.models = media.wan_models(tmp / "models")
        self.toml = self.write_toml([DatasetSpec(image_directory=str(self.images), cache_directory=str(self.cache))])

    def write_toml(self, datasets, name: str = "dataset.toml", **general) -> str:
        general = {"resolution": [64, 64], "caption_extension": ".txt", "batch_size": 1, **general}
        config = build_dataset_config(datasets, GeneralSpec(**general))
        return str(save_dataset_config(config, self.tmp / name))

    def write_caches(self, suffix: str = "wan", te: bool = True) -> None:
        self.cache.mkdir(exist_ok=True)
        for name in ("img1", "img2", "img3"):
            media.fake_safetensors(self.cache / f"{name}_0064x0064_{suffix}.safetensors")
            if te:
                media.fake_safetensors(self.cache / f"{name}_{suffix}_te.safetensors")

    def check(self, step: str = "cache_latents", arch: str = "wan", **kwargs):
        args = dict(install=self.install, dataset=self.toml, models=self.models,
                    selectors={"task": "t2v-1.3B"} if arch == "wan" else {},
                    output_dir=str(self.tmp / "out"), output_name="my_lora")
        args.update(kwargs)
        return preflight(arch, step, **args)


@pytest.fixture
def setup(tmp_path: Path, fake_musubi) -> Setup:  # noqa: F811
    return Setup(tmp_path, fake_musubi)


def errors(problems):
    return [p for p in problems if p.is_error]


def find(problems, input_name: str, level: str = "error"):
    found = [p for p in problems if p.input == input_name and p.level == level]
    assert found, f"no {level} for {input_name}; got:\n" + "\n".join(map(str, problems))
    assert found[0].fix, found[0]
    return found[0]


# ---------------------------------------------------------------- a healthy setup passes

@pytest.mark.parametrize("step", ["cache_latents", "cache_text_encoder"])
def test_a_healthy_setup_has_no_problems(setup: Setup, step: str) -> None:
    assert setup.check(step) == []


def test_a_healthy_training_setup_after_caching_has_no_problems(setup: Setup) -> None:
    setup.write_caches()
    assert setup.check("train") == []


# ---------------------------------------------------------------- the list, one by one

def test_missing_venv(setup: Setup) -> None:
    settings = replace(setup.settings, venv_path=str(setup.tmp / "no-venv"))
    p = find(preflight("wan", "cache_latents", settings=settings, dataset=setup.toml, models=setup.models),
             "musubi_tuner")
    assert "does not exist" in p.message and "venv_path" in p.fix


def test_missing_script(setup: Setup) -> None:
    root = setup.tmp / "old-checkout"
    (root / "src" / "musubi_tuner").mkdir(parents=True)
    install = MusubiInstall(root=str(root), venv=setup.install.venv, python=setup.install.python,
                            accelerate=None, python_version="3.11.7", chosen_by="test")
    p = find(setup.check(install=install), "musubi_tuner")
    assert "wan_cache_latents.py" in p.message and "git pull" in p.fix


def test_missing_model_file(setup: Setup) -> None:
    models = {**setup.models, "vae": str(setup.tmp / "models" / "nope.safetensors")}
    p = find(setup.check(models=models), "models.vae")
    assert "not found" in p.message and "models/vae" in p.fix


def test_required_model_not_given(setup: Setup) -> None:
    models = {k: v for k, v in setup.models.items() if k != "t5"}
    p = find(setup.check("cache_text_encoder", models=models), "models.t5")
    assert "required" in p.message and "models/text_encoders" in p.fix


def test_directory_instead_of_a_file(setup: Setup) -> None:
    p = find(setup.check(models={**setup.models, "vae": str(setup.tmp / "models")}), "models.vae")
    assert "is a folder" in p.message and "pick the model file" in p.fix


def test_missing_dataset_directory(setup: Setup) -> None:
    toml = setup.write_toml([DatasetSpec(image_directory=str(setup.tmp / "gone"), cache_directory=str(setup.cache))],
                            "missing.toml")
    p = find(setup.check(dataset=toml), "datasets[0].image_directory")
    assert "not found" in p.message and "check the path" in p.fix


def test_dataset_directory_that_is_a_file(setup: Setup) -> None:
    toml = setup.write_toml([DatasetSpec(image_directory=str(setup.images / "img1.png"))], "file.toml")
    p = find(setup.check(dataset=toml), "datasets[0].image_directory")
    assert "is a file" in p.message and "folder" in p.fix


def test_empty_dataset_directory(setup: Setup) -> None:
    (setup.tmp / "empty").mkdir()
    toml = setup.write_toml([DatasetSpec(image_directory=str(setup.tmp / "empty"))], "empty.toml")
    p = find(setup.check(dataset=toml), "datasets[0].image_directory")
    assert "no images" in p.message and "put the training images" in p.fix


def test_images_without_captions_are_counted(setup: Setup) -> None:
    folder = media.image_folder(setup.tmp / "some", ("a", "b", "c"), captions=("a",))
    toml = setup.write_toml([DatasetSpec(image_directory=str(folder))], "some.toml")
    p = find(setup.check(dataset=toml), "datasets[0].image_directory", "warning")
    assert "2 of 3 images have no .txt caption" in p.message and "add a .txt file" in p.fix
    assert not errors(setup.check(dataset=toml))


def test_images_without_any_caption_are_an_error(setup: Setup) -> None:
    folder = media.image_folder(setup.tmp / "none", captions=False)
    toml = setup.write_toml([DatasetSpec(image_directory=str(folder))], "none.toml")
    p = find(setup.check(dataset=toml), "datasets[0].image_directory")
    assert "none of the 3 images" in p.message and "img1.txt" in p.fix


def test_video_dataset_for_an_image_only_architecture(setup: Setup) -> None:
    videos = setup.tmp / "videos"
    videos.mkdir()
    (videos / "clip.mp4").write_bytes(b"\x00" * 32)
    (videos / "clip.txt").write_text("a clip", encoding="utf-8")
    toml = setup.write_toml([DatasetSpec(video_directory=str(videos), target_frames=[1, 25])], "video.toml")
    models = {"vae": setup.models["vae"]}
    p = find(preflight("zimage", "cache_latents", install=setup.install, dataset=toml, models=models), "datasets[0]")
    assert "images" in p.message and "Wan" in p.fix and "image_directory" in p.fix
    # The same dataset is fine for Wan.
    assert not errors(setup.check(dataset=toml))


def test_kontext_without_control_images(setup: Setup) -> None:
    models = {"vae": setup.models["vae"]}
    p = find(preflight("flux_kontext", "cache_latents", install=setup.install, dataset=setup.toml, models=models),
             "datasets[0].control_directory")
    assert "exactly one control image per image" in p.message and "set control_directory" in p.fix


def test_kontext_with_a_missing_control_image(setup: Setup) -> None:
    controls = media.image_folder(setup.tmp / "controls", ("img1", "img2_0"), captions=False)
    toml = setup.write_toml([DatasetSpec(image_directory=str(setup.images), control_directory=str(controls))],
                            "kontext.toml")
    models = {"vae": str(write_safetensors(setup.tmp / "models" / "ae.safetensors", K.bfl_ae(16)))}
    problems = preflight("flux_kontext", "cache_latents", install=setup.install, dataset=toml, models=models)
    p = find(problems, "datasets[0].control_directory")
    assert "1 of 3" in p.message and "img3.png" in p.message and "same base name" in p.fix
    media.write_png(controls / "img3.jpg")
    assert not errors(preflight("flux_kontext", "cache_latents", install=setup.install, dataset=toml, models=models))


def test_training_before_caching(setup: Setup) -> None:
    p = find(setup.check("train"), "datasets[0].cache_directory")
    assert "training before caching" in p.message and "cache latents step" in p.fix


def test_training_with_latents_but_no_text_encoder_cache(setup: Setup) -> None:
    setup.write_caches(te=False)
    p = find(setup.check("train"), "datasets[0].cache_directory")
    assert "text-encoder cache" in p.message and "cache text encoder step" in p.fix


def test_training_with_caches_of_another_architecture(setup: Setup) -> None:
    setup.write_caches(suffix="fk")
    p = find(setup.check("train"), "datasets[0].cache_directory")
    assert "caches for fk" in p.message


def test_unknown_toml_key(setup: Setup) -> None:
    text = Path(setup.toml).read_text(encoding="utf-8").replace("[[datasets]]", "[[datasets]]\nnum_repeat = 2")
    (setup.tmp / "user.toml").write_text(text, encoding="utf-8")
    p = find(setup.check(dataset=str(setup.tmp / "user.toml")), "datasets[0].num_repeat")
    assert "unknown key" in p.message and "num_repeats" in p.fix


def test_wrong_toml_type(setup: Setup) -> None:
    (setup.tmp / "user.toml").write_text(
        f'[general]\nresolution = [64, 64]\ncaption_extension = ".txt"\n[[datasets]]\n'
        f'video_directory = "{setup.tmp.as_posix()}/v"\nsource_fps = 30\n', encoding="utf-8")
    p = find(setup.check(dataset=str(setup.tmp / "user.toml")), "datasets[0].source_fps")
    assert p.fix == "write source_fps = 30.0"


def test_cache_directory_in_general(setup: Setup) -> None:
    text = Path(setup.toml).read_text(encoding="utf-8").replace("[general]", '[general]\ncache_directory = "/c"')
    (setup.tmp / "user.toml").write_text(text, encoding="utf-8")
    p = find(setup.check(dataset=str(setup.tmp / "user.toml")), "general.cache_directory")
    assert "[[datasets]]" in p.fix


def test_two_datasets_sharing_a_cache_directory(setup: Setup) -> None:
    other = media.image_folder(setup.tmp / "more", ("x", "y"))
    config = build_dataset_config([DatasetSpec(image_directory=str(setup.images), cache_directory=str(setup.cache)),
                                   DatasetSpec(image_directory=str(other), cache_directory=str(setup.cache))],
                                  GeneralSpec(resolution=64, caption_extension=".txt"))
    p = find(setup.check(dataset=config), "datasets[1].cache_directory")
    assert "same cache folder" in p.message and "own cache_directory" in p.fix


def test_fp8_scaled_without_fp8_base(setup: Setup) -> None:
    setup.write_caches()
    # Wan's recommended settings turn fp8_base on; the user switched it off.
    p = find(setup.check("train", options={"fp8_base": False, "fp8_scaled": True}), "options.fp8_scaled")
    assert "fp8_scaled requires fp8_base" in p.message and "also set fp8_base" in p.fix


def test_too_many_swapped_blocks(setup: Setup) -> None:
    setup.write_caches()
    p = find(setup.check("train", options={"blocks_to_swap": 35}), "options.blocks_to_swap")
    assert "at most 29" in p.message and "29 or less" in p.fix
    assert not errors(setup.check("train", options={"blocks_to_swap": 20}))


def test_unknown_extra_flag(setup: Setup) -> None:
    p = find(setup.check(extra_args="--vae_tilling"), "extra_args")
    assert "not a flag of wan_cache_latents.py" in p.message and p.fix


def test_extra_flag_the_pack_controls(setup: Setup) -> None:
    p = find(setup.check(extra_args="--dataset_config /other.toml"), "extra_args")
    assert "set by the pack" in p.message and "dataset input" in p.fix


def test_value_starting_with_a_dash(setup: Setup) -> None:
    p = find(setup.check("train", extra_args="--log_prefix -x"), "extra_args")
    assert "starts with '-'" in p.message
    p = find(setup.check("train", output_name="-rf"), "output_name")
    assert "read it as a flag" in p.message
    p = find(setup.check(models={**setup.models, "vae": "--help"}), "models.vae")
    assert "read it as a flag" in p.message and "full path" in p.fix


# ---------------------------------------------------------------- more option rules

def test_resume_folder_missing_or_a_file(setup: Setup) -> None:
    setup.write_caches()
    p = find(setup.check("train", options={"resume": str(setup.tmp / "nope-state")}), "options.resume")
    assert "state folder not found" in p.message and "save_state" in p.fix
    p = find(setup.check("train", options={"resume": setup.models["dit"]}), "options.resume")
    assert "network_weights" in p.fix


def test_persistent_workers_need_workers(setup: Setup) -> None:
    setup.write_caches()
    p = find(setup.check("train", options={"max_data_loader_n_workers": 0}), "options.persistent_data_loader_workers")
    assert "max_data_loader_n_workers to 1" in p.fix


def test_constant_scheduler_with_warmup(setup: Setup) -> None:
    setup.write_caches()
    p = find(setup.check("train", options={"lr_warmup_steps": 100}), "options.lr_warmup_steps")
    assert "constant_with_warmup" in p.fix


def test_ideogram4_weighting_scheme_must_be_none(setup: Setup) -> None:
    setup.write_caches(suffix="i4")
    problems = preflight("ideogram4", "train", install=setup.install, dataset=setup.toml,
                         models={"dit": setup.models["dit"]}, options={"weighting_scheme": "logit_normal"},
                         output_dir=str(setup.tmp / "out"), output_name="x")
    assert 'weighting_scheme to none' in find(problems, "options.weighting_scheme").fix


def test_sampling_needs_vae_and_text_encoder(setup: Setup) -> None:
    setup.write_caches(suffix="i4")
    prompts = setup.tmp / "prompts.txt"
    prompts.write_text("a cat\n", encoding="utf-8")
    problems = preflight("ideogram4", "train", install=setup.install, dataset=setup.toml,
                         models={"dit": setup.models["dit"]}, options={"sample_prompts": str(prompts)},
                         output_dir=str(setup.tmp / "out"), output_name="x")
    assert "remove options.sample_prompts" in find(problems, "models.vae").fix
    assert find(problems, "models.text_encoder")


def test_krea2_turbo_dit_conflicts_with_block_swap(setup: Setup) -> None:
    setup.write_caches(suffix="kr2")
    dit = str(write_safetensors(setup.tmp / "models" / "raw.safetensors", K.krea2_dit()))
    turbo = str(write_safetensors(setup.tmp / "models" / "turbo.safetensors", K.krea2_dit()))
    problems = preflight("krea2", "train", install=setup.install, dataset=setup.toml,
                         models={"dit": dit, "turbo_dit": turbo},
                         options={"blocks_to_swap": 4}, output_dir=str(setup.tmp / "out"), output_name="x")
    assert "unset" in find(problems, "models.turbo_dit").fix


def test_hidream_t2i_with_control_images(setup: Setup) -> None:
    controls = media.image_folder(setup.tmp / "controls", captions=False)
    toml = setup.write_toml([DatasetSpec(image_directory=str(setup.images), cache_directory=str(setup.cache),
                                         control_directory=str(controls))], "h.toml")
    setup.write_caches(suffix="ho1")
    dit = str(write_safetensors(setup.tmp / "models" / "hidream_o1_image_bf16.safetensors", K.hidream_o1()))
    problems = preflight("hidream_o1", "train", install=setup.install, dataset=toml,
                         models={"dit": dit}, selectors={"task": "t2i"},
                         output_dir=str(setup.tmp / "out"), output_name="x")
    assert 'task "i2i"' in find(problems, "selectors.task").fix


def test_unknown_option_and_missing_training_needs(setup: Setup) -> None:
    setup.write_caches()
    problems = setup.check("train", options={"learning_rat": 1e-4, "optimizer_type": None})
    assert "learning_rate" in find(problems, "options.learning_rat").fix
    assert "adamw8bit" in find(problems, "options.optimizer_type").fix


def test_attention_backend_not_installed_in_the_venv(setup: Setup) -> None:
    setup.write_caches()
    report = ProbeReport(python="python", torch_version="2.5.1", optional={"xformers": None, "bitsandbytes": "0.45"})
    p = find(setup.check("train", options={"attention": "xformers"}, probe_report=report), "options.attention")
    assert "xformers is not installed" in p.message and '"sdpa"' in p.fix
    assert not errors(setup.check("train", probe_report=report))
    no_bnb = replace(report, optional={"bitsandbytes": None})
    assert "bitsandbytes" in find(setup.check("train", probe_report=no_bnb), "options.optimizer_type").message


def test_existing_lora_is_not_overwritten_unless_asked(setup: Setup) -> None:
    setup.write_caches()
    out = setup.tmp / "out"
    media.fake_safetensors(out / "my_lora-000002.safetensors")
    p = find(setup.check("train"), "output_name")
    assert "would overwrite" in p.message and "'my_lora-2'" in p.fix
    assert not errors(setup.check("train", overwrite=True))
    assert not errors(setup.check("train", options={"overwrite": True}))


@pytest.mark.parametrize("name", ["a/b", "..", "CON", "nul.txt", "name.", "x" * 200, "", "lora.safetensors",
                                  "a:b", "-x"])
def test_bad_output_names(name: str) -> None:
    problems = check_output_name(name)
    assert problems and all(p.fix for p in problems)


def test_good_output_names() -> None:
    assert check_output_name("my_lora-v2.1") == [] and check_output_name("ünïcode name") == []


def test_output_dir_outside_the_allowed_roots(setup: Setup) -> None:
    setup.write_caches()
    settings = replace(setup.settings, output_roots=(str(setup.tmp / "allowed"),))
    p = find(setup.check("train", settings=settings, output_dir=str(setup.tmp / "elsewhere")), "output_dir")
    assert "output_roots" in p.fix
    assert not errors(setup.check("train", settings=settings, output_dir=str(setup.tmp / "allowed" / "sub")))


def test_relative_dataset_paths_resolve_against_the_musubi_folder(setup: Setup) -> None:
    (setup.tmp / "user.toml").write_text('[general]\nresolution = 64\ncaption_extension = ".txt"\n'
                                         '[[datasets]]\nimage_directory = "images"\n', encoding="utf-8")
    problems = setup.check(dataset=str(setup.tmp / "user.toml"))
    assert "working folder" in find(problems, "datasets[0].image_directory", "warning").message
    assert str(Path(setup.install.root) / "images") in find(problems, "datasets[0].image_directory").message


def test_jsonl_sources_are_read_line_by_line(setup: Setup) -> None:
    jsonl = setup.tmp / "list.jsonl"
    jsonl.write_text('{"image_path": "/a.png", "caption": "a"}\nnot json\n{"caption": "no path"}\n', encoding="utf-8")
    toml = setup.write_toml([DatasetSpec(image_jsonl_file=str(jsonl), cache_directory=str(setup.cache))], "j.toml")
    p = find(setup.check(dataset=toml), "datasets[0].image_jsonl_file")
    assert "2 line(s)" in p.message and "line 2, 3" in p.message and "image_path" in p.fix


# ---------------------------------------------------------------- model files

@pytest.mark.parametrize("name, content, words", [
    ("lfs.safetensors", b"version https://git-lfs.github.com/spec/v1\noid sha256:0\n", "Git LFS pointer"),
    ("empty.safetensors", b"", "empty"),
    ("bad.safetensors", b"\xff" * 64, "not a valid safetensors"),
    ("page.safetensors", b"<!DOCTYPE html><html>", "HTML"),
    ("zeros.pth", b"PK\x03\x04" + b"\x00" * 32, "not a readable PyTorch checkpoint"),
    ("m.gguf", b"GGUF" + b"\x00" * 32, "GGUF"),
])
def test_broken_model_files_are_refused(setup: Setup, name: str, content: bytes, words: str) -> None:
    path = setup.tmp / "models" / name
    path.write_bytes(content)
    p = find(setup.check("train", models=dict(setup.models, dit=str(path))), "models.dit")
    assert words in p.message


def test_a_bad_model_file_is_reported_with_its_input(setup: Setup) -> None:
    bad = setup.tmp / "models" / "broken.safetensors"
    bad.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    p = find(setup.check(models={**setup.models, "vae": str(bad)}), "models.vae")
    assert "Git LFS" in p.message and "download" in p.fix


def test_hugging_face_ids_are_not_paths(setup: Setup) -> None:
    problems = preflight("kandinsky5", "cache_text_encoder", install=setup.install, dataset=setup.toml,
                         models={"text_encoder_qwen": "Qwen/Qwen2.5-VL-7B-Instruct"}, selectors={})
    assert not [p for p in errors(problems) if p.input.startswith("models.")]


# ---------------------------------------------------------------- all at once, quickly

def test_every_problem_is_reported_at_once_and_quickly(setup: Setup) -> None:
    text = Path(setup.toml).read_text(encoding="utf-8").replace("[general]", '[general]\ncache_directory = "/c"')
    (setup.tmp / "user.toml").write_text(text, encoding="utf-8")
    models = {**setup.models, "dit": str(setup.tmp / "models"), "vae": str(setup.tmp / "nope.safetensors")}
    start = time.monotonic()
    problems = setup.check("train", dataset=str(setup.tmp / "user.toml"), models=models,
                           options={"fp8_base": False, "fp8_scaled": True, "blocks_to_swap": 99},
                           extra_args="--nope --output_dir /x", output_name="a/b")
    elapsed = time.monotonic() - start
    names = {p.input for p in errors(problems)}
    assert {"general.cache_directory", "models.dit", "options.fp8_scaled", "options.blocks_to_swap",
            "extra_args", "output_name", "datasets[0].cache_directory"} <= names, names
    assert len([p for p in problems if p.input == "extra_args"]) == 2
    assert all(p.fix for p in problems)
    assert elapsed < 1.0, f"pre-flight took {elapsed:.2f} s"


def test_a_big_dataset_is_still_checked_quickly(setup: Setup) -> None:
    folder = setup.tmp / "big"
    folder.mkdir()
    png = media.png_bytes()
    for i in range(2000):
        (folder / f"i{i:05d}.png").write_bytes(png)
        (folder / f"i{i:05d}.txt").write_text("x", encoding="utf-8")
    controls = setup.tmp / "big_controls"
    controls.mkdir()
    for i in range(2000):
        (controls / f"i{i:05d}_0.png").write_bytes(png)
    toml = setup.write_toml([DatasetSpec(image_directory=str(folder), control_directory=str(controls))], "big.toml")
    vae = str(write_safetensors(setup.tmp / "models" / "ae.safetensors", K.bfl_ae(16)))
    start = time.monotonic()
    problems = preflight("flux_kontext", "cache_latents", install=setup.install, dataset=toml,
                         models={"vae": vae})
    assert not errors(problems), problems
    assert time.monotonic() - start < 1.0
    os.remove(controls / "i00007_0.png")
    problems = preflight("flux_kontext", "cache_latents", install=setup.install, dataset=toml,
                         models={"vae": vae})
    assert "1 of 2000" in find(problems, "datasets[0].control_directory").message


# --- what musubi may read: read_roots ---------------------------------------------------------

def test_without_read_roots_reading_is_not_confined(setup: Setup) -> None:
    setup.write_caches()
    assert not errors(setup.check("train", settings=setup.settings, options={"sample_prompts": "/etc/hostname"}))


def test_every_path_musubi_reads_must_lie_inside_the_read_roots(setup: Setup) -> None:
    setup.write_caches()
    outside = setup.tmp / "elsewhere"
    outside.mkdir()
    (outside / "prompts.txt").write_text("a cat\n", encoding="utf-8")
    weights = media.fake_safetensors(outside / "init.safetensors")
    jsonl = setup.tmp / "items.jsonl"
    jsonl.write_text('{"image_path": "%s", "caption": "x"}\n' % (outside / "a.png"), encoding="utf-8")
    toml = setup.write_toml([DatasetSpec(image_directory=str(setup.images), cache_directory=str(setup.cache)),
                             DatasetSpec(image_jsonl_file=str(jsonl), cache_directory=str(setup.tmp / "cache2"))])
    settings = replace(setup.settings, read_roots=(str(setup.tmp / "models"),), local_config_file=str(
        setup.tmp / "comfy user" / "config.json"))
    problems = setup.check("train", settings=settings, dataset=toml, options={
        "sample_prompts": str(outside / "prompts.txt"), "network_weights": str(weights)})
    labels = {p.input for p in errors(problems) if "outside the folders this pack may read from" in p.message}
    assert labels == {"dataset_config", "datasets[0].image_directory", "datasets[0].cache_directory",
                      "datasets[1].image_jsonl_file", "datasets[1].image_jsonl_file lists",
                      "datasets[1].cache_directory", "options.sample_prompts", "options.network_weights"}, labels
    prompt = find(problems, "options.sample_prompts")
    assert prompt.message.startswith(f"{outside / 'prompts.txt'} is outside")
    assert prompt.fix.endswith(f'create the settings file {setup.tmp / "comfy user" / "config.json"} containing: '
                               f'{{"read_roots": ["{outside}"]}}')
    # the same step with its folders allowed: nothing is refused for reading
    allowed = replace(settings, read_roots=(str(setup.tmp),))
    assert not [p for p in setup.check("train", settings=allowed, dataset=toml, options={
        "sample_prompts": str(outside / "prompts.txt"), "network_weights": str(weights)})
        if "may read from" in p.message]


def test_a_symlink_inside_the_read_roots_to_a_folder_outside_is_outside(setup: Setup) -> None:
    outside = setup.tmp / "elsewhere"
    outside.mkdir()
    (outside / "prompts.txt").write_text("a cat\n", encoding="utf-8")
    inside = setup.tmp / "models" / "link"
    inside.symlink_to(outside, target_is_directory=True)
    settings = replace(setup.settings, read_roots=(str(setup.tmp),))
    limited = replace(settings, read_roots=(str(setup.tmp / "models"),))
    assert "may read from" not in str(setup.check("train", settings=settings,
                                                  options={"sample_prompts": str(inside / "prompts.txt")}))
    find(setup.check("train", settings=limited, options={"sample_prompts": str(inside / "prompts.txt")}),
         "options.sample_prompts")

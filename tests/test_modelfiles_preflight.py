"""Pre-flight and plans use the model identities: a wrong file is refused before launch with
what it is, why it does not fit and what to pick instead; the training settings follow the
file (Wan fp16 weights -> fp16 mixed precision, musubi and accelerate alike). A real temp
folder, the fake musubi venv (tests/fakes.py), model headers written by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelfile_keys as K
from executor.errors import PreflightError
from executor.musubi.dataset import DatasetSpec, GeneralSpec, build_dataset_config, save_dataset_config
from executor.musubi.preflight import effective_options, preflight
from executor.runs.plan import PlanSpec, make_plan
from executor.setup.discovery import resolve_install
from executor.setup.settings import Settings
from fakes import fake_musubi  # noqa: F401  (session fixture)
import media
from modelfile_writers import write_safetensors

pytestmark = pytest.mark.timeout(120)
DIT = "model.diffusion_model."


class Files:
    def __init__(self, tmp: Path, fake) -> None:
        self.tmp = tmp
        self.settings = Settings(venv_path=str(fake.venv), root_path=str(fake.root))
        self.install = resolve_install(self.settings)
        images = media.image_folder(tmp / "images")
        config = build_dataset_config([DatasetSpec(image_directory=str(images), cache_directory=str(tmp / "cache"))],
                                      GeneralSpec(resolution=[64, 64], caption_extension=".txt", batch_size=1))
        self.toml = str(save_dataset_config(config, tmp / "dataset.toml"))
        self.models = {
            "dit": str(write_safetensors(tmp / "models" / "wan2.1_t2v_1.3B_fp16.safetensors",
                                         K.prefixed(K.wan_dit(1536, dtype="F16"), DIT))),
            "vae": str(write_safetensors(tmp / "models" / "wan_2.1_vae.safetensors", K.wan_vae())),
            "t5": str(write_safetensors(tmp / "models" / "models_t5_umt5-xxl-enc-bf16.safetensors", K.umt5_wan())),
        }

    def file(self, name: str, tensors, **kw) -> str:
        return str(write_safetensors(self.tmp / "models" / name, tensors, **kw))

    def check(self, step: str = "cache_latents", arch: str = "wan", models=None, selectors=None, options=None):
        return preflight(arch, step, install=self.install, dataset=self.toml, models=models or self.models,
                         selectors={"task": "t2v-1.3B"} if selectors is None else selectors, options=options,
                         output_dir=str(self.tmp / "out"), output_name="my_lora", check_caches=False)

    def plan(self, step: str = "train", **kw):
        values = dict(architecture="wan", step=step, dataset_config=self.toml, models=self.models,
                      selectors={"task": "t2v-1.3B"}, options={"optimizer_type": "adamw"},
                      output_dir=str(self.tmp / "out"), output_name="my_lora", runs_dir=str(self.tmp / "runs"))
        values.update(kw)
        return make_plan(self.settings, PlanSpec(**values), install=self.install, check_caches=False)


@pytest.fixture
def files(tmp_path: Path, fake_musubi) -> Files:  # noqa: F811
    return Files(tmp_path, fake_musubi)


def errors(problems):
    return [p for p in problems if p.is_error]


def test_the_right_files_pass(files: Files) -> None:
    for step in ("cache_latents", "cache_text_encoder", "train"):
        assert files.check(step, options={"optimizer_type": "adamw"}) == [], step


def test_a_wrong_dit_variant_is_refused_with_its_identity(files: Files) -> None:
    problems = errors(files.check("train", selectors={"task": "t2v-14B"}, options={"optimizer_type": "adamw"}))
    assert [p.input for p in problems] == ["models.dit"]
    assert problems[0].message.startswith("wan2.1_t2v_1.3B_fp16.safetensors is Wan DiT 1.3B, text-to-video (fp16): "
                                          "task t2v-14B needs a 14B model")
    assert problems[0].fix.startswith("set task to t2v-1.3B, or pick wan2.1_t2v_14B_bf16.safetensors")


def test_components_in_the_wrong_slots_are_refused(files: Files) -> None:
    swapped = dict(files.models, dit=files.models["vae"], vae=files.models["t5"], t5=files.models["dit"])
    problems = {p.input: p for p in errors(files.check("train", models=swapped, options={"optimizer_type": "adamw"}))}
    assert "a VAE, not a Wan DiT" in problems["models.dit"].message
    assert "a text encoder, not a Wan 2.1 VAE" in problems["models.vae"].message
    assert "a DiT (diffusion model), not a Wan T5" in problems["models.t5"].message
    assert "It belongs in the Wan DiT input (dit)" in problems["models.t5"].message


def test_a_half_downloaded_vae_is_refused(files: Files) -> None:
    vae = files.file("cut_vae.safetensors", K.wan_vae(), complete=False)
    problems = errors(files.check(models=dict(files.models, vae=vae)))
    assert problems[0].input == "models.vae" and "cut short" in problems[0].message


def test_comfyui_umt5_is_refused_with_the_download(files: Files) -> None:
    t5 = files.file("umt5_xxl_fp16.safetensors", K.t5(256384))
    problems = errors(files.check("cache_text_encoder", models=dict(files.models, t5=t5)))
    assert "transformers key layout" in problems[0].message
    assert "models_t5_umt5-xxl-enc-bf16.pth (Wan-AI/Wan2.1-I2V-14B-720P)" in problems[0].fix


def test_a_name_only_guess_is_a_warning_not_a_refusal(files: Files) -> None:
    dit = files.file("wan2.2_t2v_low_noise_14B_fp16.safetensors", K.wan_dit(5120, dtype="F16"))
    plan = files.plan(models=dict(files.models, dit=dit), selectors={"task": "t2v-14B"})
    assert any("says Wan 2.2" in str(w) for w in plan.warnings)


def test_mixed_precision_follows_fp16_wan_weights(files: Files) -> None:
    plan = files.plan()
    argv = list(plan.command.argv)
    script = next(i for i, a in enumerate(argv) if a.endswith("wan_train_network.py"))
    launch, musubi = argv[:script], argv[script:]
    assert musubi[musubi.index("--mixed_precision") + 1] == "fp16"
    assert launch[launch.index("--mixed_precision") + 1] == "fp16"
    from executor.musubi import catalogue as cat

    opts = effective_options(cat.get_architecture("wan"), "train", {}, {"task": "t2v-1.3B"}, models=files.models)
    assert opts["mixed_precision"] == "fp16"


def test_an_explicit_bf16_with_fp16_weights_is_refused(files: Files) -> None:
    with pytest.raises(PreflightError) as info:
        files.plan(options={"optimizer_type": "adamw", "mixed_precision": "bf16"})
    assert "asserts mixed_precision fp16" in str(info.value)


def test_kandinsky_text_encoders_want_an_id_or_a_folder(files: Files) -> None:
    dit = files.file("kandinsky5pro_t2v_sft_5s.safetensors", K.kandinsky5_dit("pro"))
    vae = files.file("hunyuan_video_vae_bf16.safetensors", K.hv_vae())
    te = files.file("qwen_2.5_vl_7b.safetensors", K.qwen25vl())
    problems = errors(files.check("cache_text_encoder", "kandinsky5", {"dit": dit, "vae": vae, "text_encoder_qwen": te},
                                  {"task": "k5-pro-t2v-5s-sd"}))
    assert [p.input for p in problems] == ["models.text_encoder_qwen"]
    assert "from_pretrained" in problems[0].message


def test_convert_refuses_a_file_that_is_not_a_lora(files: Files) -> None:
    problems = preflight("hv", "convert", install=files.install, models={"lora": files.models["vae"]},
                         output_dir=str(files.tmp / "out"), output_name="conv")
    assert any(p.input == "models.lora" and "not a LoRA" in p.message for p in errors(problems))
    lora = files.file("my_lora.safetensors", K.lora())
    problems = preflight("hv", "convert", install=files.install, models={"lora": lora},
                         output_dir=str(files.tmp / "out"), output_name="conv")
    assert not [p for p in errors(problems) if p.input == "models.lora"]

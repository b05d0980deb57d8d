"""The catalogue against the recorded flag facts of musubi-tuner v0.3.4 (executor/musubi/data/musubi_flags.json):
every argv it can build uses only flags the target script defines, passes every required one,
respects choices, and the training defaults are the ones musubi's docs show."""

from __future__ import annotations


import pytest

from executor.musubi import catalogue as cat
from executor.errors import ConfigError
from catalogue_cases import all_models, every_option, selector_combinations
from executor.musubi.flagfacts import load_flags

FACTS = load_flags()["scripts"]
ARCHS = list(cat.ARCHITECTURES.values())


def assert_parses(script: str, argv: list[str]) -> None:
    """What argparse would do with ``argv``, from the recorded facts, without abbreviations."""
    facts = FACTS[script]
    flags = facts["flags"]
    seen: set[str] = set()
    positionals: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--"):
            assert token in flags, f"{script} has no flag {token} (abbreviations are not allowed)"
            f = flags[token]
            seen.add(token)
            if not f["takes_value"]:
                i += 1
                continue
            values = []
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                values.append(argv[i])
                i += 1
                if f["nargs"] is None:
                    break
            assert values or f["nargs"] in ("*", "?"), f"{script} {token} needs a value"
            if f["nargs"] is None:
                assert len(values) == 1
            if f["choices"]:
                for v in values:
                    assert v in [str(c) for c in f["choices"]], f"{script} {token} {v!r} not in {f['choices']}"
            if f["type"] in ("int", "float"):
                for v in values:
                    {"int": int, "float": float}[f["type"]](v)
        else:
            positionals.append(token)
            i += 1
    required = {name for name, f in flags.items() if f["required"]}
    assert required <= seen, f"{script}: required {sorted(required - seen)} missing"
    needed = [p for p in facts["positionals"] if p["required"]]
    assert len(positionals) == len(needed), f"{script}: positionals {positionals} vs {needed}"


# ---------------------------------------------------------------------------- data file

def test_flag_facts_cover_every_cache_te_train_script_of_v0_3_4() -> None:
    data = load_flags()
    assert data["musubi_tuner"]["version"] == "0.3.4"
    assert data["musubi_tuner"]["commit"].startswith("30c658c")
    assert len(data["scripts"]) >= 41
    assert FACTS["wan_train_network.py"]["flags"]["--task"]["choices"][0] == "t2v-14B"
    assert FACTS["wan_cache_text_encoder_outputs.py"]["flags"]["--t5"]["required"] is True
    assert FACTS["wan_train_network.py"]["flags"]["--sdpa"]["takes_value"] is False


# ---------------------------------------------------------------------------- the table

def test_all_twelve_architectures_are_catalogued() -> None:
    assert set(cat.ARCHITECTURES) == {"hv", "hv15", "wan", "framepack", "flux_kontext", "flux_2",
                                      "qwen_image", "zimage", "kandinsky5", "ideogram4", "krea2",
                                      "hidream_o1"}


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.id)
def test_every_architecture_has_three_scripts_that_exist(arch: cat.Architecture) -> None:
    assert set(cat.STEPS) <= set(arch.scripts)
    for step, script in arch.scripts.items():
        assert script in FACTS, f"{arch.id} {step}: {script} not in the flag facts"


def test_hidream_caches_pixels_not_latents() -> None:
    assert cat.ARCHITECTURES["hidream_o1"].scripts[cat.CACHE_LATENTS] == "hidream_o1_cache_pixel.py"


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.id)
def test_every_declared_option_and_model_flag_exists_in_its_script(arch: cat.Architecture) -> None:
    for step in cat.STEPS:
        flags = FACTS[arch.scripts[step]]["flags"]
        for name in arch.step_options[step]:
            opt = cat.OPTIONS[name]
            wanted = list(cat.ATTENTION_FLAGS.values()) if opt.kind == "attention" else [opt.flag]
            for flag in wanted:
                assert flag in flags, f"{arch.id} {step}: option {name} -> {flag} not in {arch.scripts[step]}"
                if opt.kind == "switch":
                    assert flags[flag]["action"] == "store_true", (arch.id, step, flag)
                elif opt.kind == "values":
                    assert flags[flag]["nargs"] in ("*", "+"), (arch.id, step, flag)
                elif opt.kind == "value":
                    assert flags[flag]["takes_value"] and flags[flag]["nargs"] is None, (arch.id, step, flag)
        for m in arch.models:
            if step in m.steps:
                assert m.flag in flags, f"{arch.id} {step}: model {m.name} -> {m.flag} not in the script"
                assert flags[m.flag]["takes_value"]
        for v in arch.variants:
            assert set(v.when) <= {s.name for s in arch.selectors}


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.id)
def test_model_inputs_name_a_comfyui_folder_and_a_kind(arch: cat.Architecture) -> None:
    for m in arch.models:
        assert m.folder in ("diffusion_models", "vae", "text_encoders", "clip_vision")
        assert m.kind in ("file", "file_or_dir", "hf_id")
        assert m.label and m.tooltip
        assert set(m.required_for) <= set(m.steps)
    assert arch.model("dit").required_for == (cat.TRAIN,)


# ---------------------------------------------------------------------------- argv

@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.id)
@pytest.mark.parametrize("step", cat.STEPS)
def test_argv_for_every_selector_value_parses_with_recommended_options(arch: cat.Architecture, step: str) -> None:
    for selectors in selector_combinations(arch):
        argv = cat.build_args(arch.id, step, dataset_config="/data/dataset.toml", models=all_models(arch),
                              selectors=selectors, output_dir="/out", output_name="lora")
        assert_parses(arch.scripts[step], argv)


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.id)
@pytest.mark.parametrize("step", cat.STEPS)
def test_argv_with_every_option_the_step_takes_parses(arch: cat.Architecture, step: str) -> None:
    for selectors in selector_combinations(arch):
        options = every_option(arch, step, selectors, FACTS)
        argv = cat.build_args(arch.id, step, dataset_config="/data/dataset.toml", models=all_models(arch),
                              selectors=selectors, options=options, output_dir="/out", output_name="lora")
        assert_parses(arch.scripts[step], argv)
        emitted = {a for a in argv if a.startswith("--")}
        for name, value in options.items():
            flag = cat.ATTENTION_FLAGS[value] if name == "attention" else cat.OPTIONS[name].flag
            assert flag in emitted, f"{arch.id} {step}: option {name} was dropped"


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.id)
def test_minimal_models_are_enough(arch: cat.Architecture) -> None:
    """Only the required models: the required flags of every script are still there."""
    for selectors in selector_combinations(arch):
        for step in cat.STEPS:
            models = {m.name: "/m/x.safetensors" for m in arch.required_models(step, selectors)}
            argv = cat.build_args(arch.id, step, dataset_config="/d.toml", models=models,
                                  selectors=selectors, output_dir="/o", output_name="n")
            assert_parses(arch.scripts[step], argv)


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.id)
def test_train_always_gets_the_settings_musubi_needs(arch: cat.Architecture) -> None:
    argv = cat.build_args(arch.id, cat.TRAIN, dataset_config="/d.toml", models={"dit": "/m/dit"},
                          output_dir="/o", output_name="n")
    for flag in ("--dataset_config", "--dit", "--sdpa", "--network_module", "--network_dim", "--network_alpha",
                 "--optimizer_type", "--learning_rate", "--mixed_precision", "--max_train_epochs",
                 "--output_dir", "--output_name", "--seed", "--timestep_sampling"):
        assert flag in argv, f"{arch.id}: {flag} missing"
    assert argv[argv.index("--network_module") + 1] == arch.network_module
    assert argv[argv.index("--timestep_sampling") + 1] in FACTS[arch.scripts[cat.TRAIN]]["flags"]["--timestep_sampling"]["choices"]


def test_no_flag_is_an_abbreviation_of_another() -> None:
    for arch in ARCHS:
        for step in cat.STEPS:
            flags = FACTS[arch.scripts[step]]["flags"]
            argv = cat.build_args(arch.id, step, dataset_config="/d", models=all_models(arch),
                                  output_dir="/o", output_name="n")
            for token in argv:
                if token.startswith("--"):
                    assert token in flags


# Restated from musubi's documented training commands (docs/<arch>.md), independently of the table.
DOCUMENTED = {
    "hv": {"--learning_rate": "0.0002", "--timestep_sampling": "shift", "--discrete_flow_shift": "7.0",
           "--network_dim": "32", "--fp8_base": None},
    "hv15": {"--learning_rate": "0.0001", "--timestep_sampling": "shift", "--discrete_flow_shift": "2.0",
             "--weighting_scheme": "none", "--network_dim": "32"},
    "wan": {"--learning_rate": "0.0002", "--timestep_sampling": "shift", "--discrete_flow_shift": "3.0",
            "--network_dim": "32", "--fp8_base": None},
    "framepack": {"--learning_rate": "0.0002", "--timestep_sampling": "shift", "--discrete_flow_shift": "3.0",
                  "--weighting_scheme": "none", "--network_dim": "32"},
    "flux_kontext": {"--learning_rate": "0.0001", "--timestep_sampling": "flux_shift", "--weighting_scheme": "none",
                     "--network_dim": "32"},
    "flux_2": {"--learning_rate": "0.0001", "--timestep_sampling": "flux2_shift", "--weighting_scheme": "none",
               "--network_dim": "32"},
    "qwen_image": {"--learning_rate": "5e-05", "--timestep_sampling": "shift", "--discrete_flow_shift": "2.2",
                   "--weighting_scheme": "none", "--network_dim": "16"},
    "zimage": {"--learning_rate": "0.0001", "--timestep_sampling": "shift", "--discrete_flow_shift": "2.0",
               "--weighting_scheme": "none", "--network_dim": "32"},
    "kandinsky5": {"--learning_rate": "0.0001", "--timestep_sampling": "shift", "--discrete_flow_shift": "5.0",
                   "--network_dim": "32", "--network_alpha": "32", "--max_train_epochs": "50", "--fp8_base": None,
                   "--max_data_loader_n_workers": "1", "--lr_scheduler": "constant_with_warmup",
                   "--lr_warmup_steps": "100", "--max_grad_norm": "1.0", "--scheduler_scale": "10.0"},
    "ideogram4": {"--timestep_sampling": "ideogram4_shift", "--weighting_scheme": "none"},
    "krea2": {"--learning_rate": "0.0001", "--timestep_sampling": "shift", "--discrete_flow_shift": "2.5",
              "--weighting_scheme": "none", "--network_dim": "32", "--network_alpha": "32"},
    "hidream_o1": {"--learning_rate": "4e-05", "--timestep_sampling": "uniform", "--weighting_scheme": "none",
                   "--noise_scale_start": "8.0", "--noise_scale_end": "8.0", "--noise_clip_std": "0.0",
                   "--network_dim": "32"},
}
COMMON = {"--optimizer_type": "adamw8bit", "--mixed_precision": "bf16", "--seed": "42",
          "--save_every_n_epochs": "1", "--gradient_checkpointing": None}


@pytest.mark.parametrize("arch_id", sorted(DOCUMENTED))
def test_train_defaults_are_the_documented_recommendations(arch_id: str) -> None:
    argv = cat.build_args(arch_id, cat.TRAIN, dataset_config="/d", models={"dit": "/m"}, output_dir="/o",
                          output_name="n")
    expected = {**COMMON, "--max_train_epochs": "16", **DOCUMENTED[arch_id]}
    for flag, value in expected.items():
        assert flag in argv, f"{arch_id}: {flag} missing"
        if value is not None:
            assert argv[argv.index(flag) + 1] == value, f"{arch_id}: {flag}"
    if arch_id not in ("hidream_o1", "ideogram4"):
        assert "--persistent_data_loader_workers" in argv


def test_selector_specific_recommendations() -> None:
    ho1 = cat.ARCHITECTURES["hidream_o1"]
    dev = ho1.recommended_for({"model_type": "dev"})
    assert (dev["noise_scale_start"], dev["noise_scale_end"], dev["noise_clip_std"]) == (7.5, 7.5, 2.5)
    argv = cat.build_args("hidream_o1", cat.TRAIN, dataset_config="/d", models={"dit": "/m"},
                          selectors={"task": "i2i"}, output_dir="/o", output_name="n")
    i = argv.index("--network_args")
    assert argv[i + 1:i + 3] == ["conv_dim=4", "conv_alpha=1"]


def test_kandinsky_optimizer_args_are_separate_tokens() -> None:
    argv = cat.build_args("kandinsky5", cat.TRAIN, dataset_config="/d", models={"dit": "/m"},
                          output_dir="/o", output_name="n")
    i = argv.index("--optimizer_args")
    assert argv[i + 1:i + 3] == ["weight_decay=0.001", "betas=(0.9,0.95)"]
    assert argv[argv.index("--task") + 1] == "k5-pro-t2v-5s-sd"


def test_user_options_override_and_none_unsets_a_recommendation() -> None:
    argv = cat.build_args("wan", cat.TRAIN, dataset_config="/d", models={"dit": "/m"}, output_dir="/o",
                          output_name="n", options={"fp8_base": False, "learning_rate": 1e-3,
                                                    "persistent_data_loader_workers": None,
                                                    "attention": "xformers", "split_attn": True})
    assert "--fp8_base" not in argv and "--persistent_data_loader_workers" not in argv
    assert argv[argv.index("--learning_rate") + 1] == "0.001"
    assert "--xformers" in argv and "--sdpa" not in argv and "--split_attn" in argv


def test_cache_steps_get_the_documented_cache_settings() -> None:
    hv = cat.build_args("hv", cat.CACHE_LATENTS, dataset_config="/d", models={"vae": "/v"})
    assert hv[-3:] == ["--vae_chunk_size", "32", "--vae_tiling"]
    wan = cat.build_args("wan", cat.CACHE_TEXT_ENCODER, dataset_config="/d", models={"t5": "/t5"},
                         options={"batch_size": 1, "skip_existing": True})
    assert wan == ["--dataset_config", "/d", "--t5", "/t5", "--batch_size", "1", "--skip_existing"]


# ---------------------------------------------------------------------------- selectors

def test_selector_choices_agree_with_argparse_choices() -> None:
    for arch in ARCHS:
        for sel in arch.selectors:
            for step, table in sel.emit.items():
                flags = FACTS[arch.scripts[step]]["flags"]
                for value, fragment in table.items():
                    assert value in sel.choices
                    if len(fragment) == 2 and flags[fragment[0]]["choices"]:
                        assert fragment[1] in flags[fragment[0]]["choices"], (arch.id, step, fragment)


def test_selectors_are_consistent_across_steps() -> None:
    """A selector flag one step emits is emitted identically by every step whose script has it."""
    for arch in ARCHS:
        for sel in arch.selectors:
            for value in sel.choices:
                fragments = {step: tuple(sel.emit.get(step, {}).get(value, ())) for step in cat.STEPS}
                for step, fragment in fragments.items():
                    if not fragment:
                        continue
                    for other in cat.STEPS:
                        if fragment[0] in FACTS[arch.scripts[other]]["flags"]:
                            assert fragments[other] == fragment, (arch.id, sel.name, value, step, other)


@pytest.mark.parametrize("arch_id, selectors, expected", [
    ("wan", {"task": "i2v-14B"}, {cat.CACHE_LATENTS: ["--i2v"], cat.TRAIN: ["--task", "i2v-14B"]}),
    ("wan", {"task": "t2v-A14B"}, {cat.CACHE_LATENTS: [], cat.TRAIN: ["--task", "t2v-A14B"]}),
    ("wan", {"task": "i2v-14B", "one_frame": True},
     {cat.CACHE_LATENTS: ["--i2v", "--one_frame"], cat.TRAIN: ["--task", "i2v-14B", "--one_frame"]}),
    ("flux_2", {"model_version": "klein-base-4b"}, {s: ["--model_version", "klein-base-4b"] for s in cat.STEPS}),
    ("qwen_image", {"model_version": "edit-2511"}, {s: ["--model_version", "edit-2511"] for s in cat.STEPS}),
    ("hidream_o1", {"model_type": "dev", "task": "i2i"},
     {cat.CACHE_LATENTS: [], cat.CACHE_TEXT_ENCODER: ["--model_type", "dev"],
      cat.TRAIN: ["--model_type", "dev", "--task", "i2i"]}),
    ("framepack", {"f1": True, "one_frame": True},
     {cat.CACHE_LATENTS: ["--f1", "--one_frame"], cat.CACHE_TEXT_ENCODER: [], cat.TRAIN: ["--f1", "--one_frame"]}),
    ("hv15", {"task": "i2v"}, {cat.CACHE_LATENTS: ["--i2v"], cat.CACHE_TEXT_ENCODER: [], cat.TRAIN: ["--task", "i2v"]}),
    ("kandinsky5", {"task": "k5-pro-i2v-5s-sd"},
     {cat.CACHE_LATENTS: [], cat.CACHE_TEXT_ENCODER: [], cat.TRAIN: ["--task", "k5-pro-i2v-5s-sd"]}),
])
def test_selector_flags_per_step(arch_id: str, selectors: dict, expected: dict) -> None:
    arch = cat.ARCHITECTURES[arch_id]
    values = arch.resolve_selectors(selectors)
    for step, fragment in expected.items():
        got = [t for s in arch.selectors for t in s.emit.get(step, {}).get(values[s.name], ())]
        assert got == fragment, (arch_id, step)


def test_wan_one_frame_and_wan21_i2v_need_clip_at_latent_caching() -> None:
    with pytest.raises(ConfigError, match="--clip"):
        cat.build_args("wan", cat.CACHE_LATENTS, dataset_config="/d", models={"vae": "/v"},
                       selectors={"task": "i2v-14B"})
    with pytest.raises(ConfigError, match="--clip"):
        cat.build_args("wan", cat.CACHE_LATENTS, dataset_config="/d", models={"vae": "/v"},
                       selectors={"one_frame": True})
    argv = cat.build_args("wan", cat.CACHE_LATENTS, dataset_config="/d", models={"vae": "/v"},
                          selectors={"task": "i2v-A14B"})
    assert argv == ["--dataset_config", "/d", "--vae", "/v", "--i2v"]


def test_wan22_dual_dit_training() -> None:
    argv = cat.build_args("wan", cat.TRAIN, dataset_config="/d", models={"dit": "/low", "dit_high_noise": "/high"},
                          selectors={"task": "i2v-A14B"}, options={"timestep_boundary": 900,
                                                                   "offload_inactive_dit": True},
                          output_dir="/o", output_name="n")
    assert argv[argv.index("--dit_high_noise") + 1] == "/high"
    assert argv[argv.index("--timestep_boundary") + 1] == "900"
    assert "--offload_inactive_dit" in argv
    problems = cat.check_options("wan", cat.TRAIN, {"timestep_boundary": 900}, {"task": "t2v-14B"})
    assert problems and "timestep_boundary" in problems[0]


@pytest.mark.parametrize("arch_id, selectors, suffix", [
    ("hv", {}, "hv"), ("hv15", {}, "hv15"), ("wan", {"task": "i2v-A14B"}, "wan"), ("framepack", {}, "fp"),
    ("flux_kontext", {}, "fk"), ("flux_2", {}, "f2d"), ("flux_2", {"model_version": "klein-4b"}, "f2k4b"),
    ("flux_2", {"model_version": "klein-base-4b"}, "f2k4b"), ("flux_2", {"model_version": "klein-9b"}, "f2k9b"),
    ("flux_2", {"model_version": "klein-base-9b"}, "f2k9b"), ("qwen_image", {}, "qi"),
    ("qwen_image", {"model_version": "edit"}, "qie"), ("qwen_image", {"model_version": "edit-2509"}, "qie"),
    ("qwen_image", {"model_version": "edit-2511"}, "qie"), ("qwen_image", {"model_version": "layered"}, "qil"),
    ("zimage", {}, "zi"), ("kandinsky5", {}, "k5"), ("ideogram4", {}, "i4"), ("krea2", {}, "kr2"),
    ("hidream_o1", {"task": "i2i"}, "ho1"),
])
def test_cache_suffixes(arch_id: str, selectors: dict, suffix: str) -> None:
    assert cat.ARCHITECTURES[arch_id].suffix(selectors) == suffix


def test_image_only_architectures_are_flagged() -> None:
    # musubi's VideoDataset accepts only hv, wan, fp, fk (placeholder), k5, hv15.
    image_only = {a.id for a in ARCHS if a.image_only}
    assert image_only == {"flux_kontext", "flux_2", "qwen_image", "zimage", "ideogram4", "krea2", "hidream_o1"}
    fp = cat.ARCHITECTURES["framepack"]
    assert fp.media_for({}) == ("video",) and fp.media_for({"one_frame": True}) == ("image",)
    assert cat.ARCHITECTURES["wan"].media_for({"one_frame": True}) == ("image",)


def test_control_requirements() -> None:
    a = cat.ARCHITECTURES
    assert a["flux_kontext"].control_for() == "exactly_one"
    assert a["qwen_image"].control_for({"model_version": "edit"}) == "required"
    assert a["qwen_image"].control_for({"model_version": "original"}) == "none"
    assert a["hidream_o1"].control_for({"task": "i2i"}) == "required"
    assert a["hidream_o1"].control_for({"task": "t2i"}) == "none"
    assert a["flux_2"].control_for() == "optional"
    assert a["wan"].control_for({"task": "t2v-14B-FC"}) == "required"


@pytest.mark.parametrize("arch_id, selectors, limit", [
    ("wan", {"task": "t2v-14B"}, 39), ("wan", {"task": "t2v-1.3B"}, 29), ("wan", {"task": "i2v-A14B"}, 39),
    ("hv15", {}, 51), ("flux_2", {}, 29), ("flux_2", {"model_version": "klein-base-4b"}, 13),
    ("flux_2", {"model_version": "klein-9b"}, 16), ("qwen_image", {}, 59), ("zimage", {}, 28),
    ("ideogram4", {}, 33), ("krea2", {}, 26), ("kandinsky5", {}, None),
])
def test_block_swap_limits(arch_id: str, selectors: dict, limit) -> None:
    assert cat.ARCHITECTURES[arch_id].max_blocks_to_swap(selectors) == limit


# ---------------------------------------------------------------------------- convert

def test_convert_commands_follow_the_comfyui_table() -> None:
    argv = cat.build_args("hv", cat.CONVERT, models={"lora": "/o/in.safetensors"}, output_dir="/o",
                          output_name="in_comfy")
    assert argv == ["--input", "/o/in.safetensors", "--output", "/o/in_comfy.safetensors", "--target", "other"]
    assert_parses("convert_lora.py", argv)
    for arch_id in ("hv15", "zimage"):
        arch = cat.ARCHITECTURES[arch_id]
        argv = cat.build_args(arch_id, cat.CONVERT, models={"lora": "/o/a.safetensors"}, output_dir="/o",
                              output_name="b.safetensors")
        assert argv == ["/o/a.safetensors", "/o/b.safetensors"]
        assert_parses(arch.scripts[cat.CONVERT], argv)
    kinds = {a.id: a.lora_conversion.kind for a in ARCHS}
    assert kinds == {"hv": "convert_lora", "hv15": "script", "wan": "none", "framepack": "not_supported",
                     "flux_kontext": "none", "flux_2": "none", "qwen_image": "none", "zimage": "script",
                     "kandinsky5": "none", "ideogram4": "none", "krea2": "none", "hidream_o1": "key_rename"}
    for arch in ARCHS:
        if arch.lora_conversion.kind in ("convert_lora", "script"):
            assert arch.scripts[cat.CONVERT] == (arch.lora_conversion.script or "convert_lora.py")
        else:
            assert cat.CONVERT not in arch.scripts
            with pytest.raises(ConfigError):
                cat.build_args(arch.id, cat.CONVERT, models={"lora": "/a"}, output_dir="/o", output_name="b")
    assert cat.ARCHITECTURES["hidream_o1"].lora_conversion.rename == ("lora_unet_model_", "lora_unet_")


# ---------------------------------------------------------------------------- refusals

def test_problems_are_reported_together_with_names() -> None:
    with pytest.raises(ConfigError) as info:
        cat.build_args("wan", cat.TRAIN, models={"dit": "-rf", "nope": "/x"}, options={"vae_tiling": True})
    text = str(info.value)
    for needle in ("dataset_config is required", "no model input nope", "starts with '-'",
                   "does not take option 'vae_tiling'", "output_dir and output_name"):
        assert needle in text
    assert len(info.value.context["problems"]) == 5


@pytest.mark.parametrize("arch_id, step, options, selectors, needle", [
    ("wan", cat.TRAIN, {"fp8_scaled": True, "fp8_base": False}, {}, "fp8_scaled needs fp8_base"),
    ("wan", cat.TRAIN, {"blocks_to_swap": 30}, {"task": "t2v-1.3B"}, "at most 29"),
    ("wan", cat.TRAIN, {"blocks_to_swap": 2, "offload_inactive_dit": True}, {"task": "t2v-A14B"}, "cannot be used"),
    ("krea2", cat.TRAIN, {"fp8_base": True}, {}, "fp8_base needs fp8_scaled"),
    ("ideogram4", cat.TRAIN, {"weighting_scheme": "logit_normal"}, {}, "weighting_scheme none only"),
    ("hidream_o1", cat.CACHE_TEXT_ENCODER, {"fp8_te": True}, {}, "fp8_te needs model dit"),
    ("flux_2", cat.CACHE_TEXT_ENCODER, {"fp8_text_encoder": True}, {"model_version": "dev"}, "does not take"),
    ("flux_kontext", cat.CACHE_TEXT_ENCODER, {"fp8_t5": True}, {}, "does not take"),
    ("qwen_image", cat.TRAIN, {"remove_first_image_from_target": True}, {}, "does not take"),
    ("framepack", cat.CACHE_LATENTS, {"vae_dtype": "float16"}, {}, "does not take"),
    ("wan", cat.TRAIN, {"attention": "sage_attn"}, {}, "attention 'sage_attn'"),
    ("wan", cat.TRAIN, {"optimizer_type": None}, {}, "'optimizer_type' is needed"),
    ("wan", cat.TRAIN, {"max_data_loader_n_workers": 0}, {}, "persistent_data_loader_workers"),
    ("wan", cat.TRAIN, {"no_such_thing": 1}, {}, "unknown option"),
])
def test_check_options_rejects_what_musubi_rejects(arch_id, step, options, selectors, needle) -> None:
    problems = cat.check_options(arch_id, step, options, selectors)
    assert any(needle in p for p in problems), problems


def test_options_for_another_step_are_ignored_not_rejected() -> None:
    """One options dict can serve all three steps."""
    options = {"batch_size": 4, "vae_cache_cpu": True, "fp8_t5": True, "learning_rate": 1e-4}
    for step in cat.STEPS:
        assert cat.check_options("wan", step, options) == []
    argv = cat.build_args("wan", cat.CACHE_TEXT_ENCODER, dataset_config="/d", models={"t5": "/t"}, options=options)
    assert "--learning_rate" not in argv and "--vae_cache_cpu" not in argv and "--fp8_t5" in argv


def test_bad_selector_values_and_unknown_architecture() -> None:
    with pytest.raises(ConfigError, match="t2v-99B"):
        cat.build_args("wan", cat.TRAIN, dataset_config="/d", selectors={"task": "t2v-99B"})
    with pytest.raises(ConfigError, match="no selector"):
        cat.build_args("zimage", cat.TRAIN, dataset_config="/d", selectors={"task": "t2v"})
    with pytest.raises(ConfigError, match="unknown architecture"):
        cat.build_args("sdxl", cat.TRAIN, dataset_config="/d")


def test_kandinsky_text_encoders_default_to_hugging_face_ids() -> None:
    argv = cat.build_args("kandinsky5", cat.CACHE_TEXT_ENCODER, dataset_config="/d")
    assert argv[argv.index("--text_encoder_qwen") + 1] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert argv[argv.index("--text_encoder_clip") + 1] == "openai/clip-vit-large-patch14"

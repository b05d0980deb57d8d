"""User extra arguments: only real flags of the target script (per the committed flag facts),
never one the pack sets itself, no values that would be read as flags, no NUL bytes."""

from __future__ import annotations

import pytest

from executor.errors import PreflightError
from executor.musubi.extra_args import ALWAYS_CONTROLLED, check_extra_args, controlled_flags, parse_extra_args

TRAIN = "wan_train_network.py"


def only_problem(value, script=TRAIN, **kwargs):
    _, problems = check_extra_args(value, script, **kwargs)
    assert len(problems) == 1, [str(p) for p in problems]
    assert problems[0].input == "extra_args" and problems[0].fix
    return problems[0]


def test_real_flags_pass_through_in_order() -> None:
    text = '--max_grad_norm 0.5 --optimizer_args weight_decay=0.01 "betas=(0.9, 0.95)" --min_timestep 0 --seed -1'
    assert parse_extra_args(text, TRAIN) == ["--max_grad_norm", "0.5", "--optimizer_args", "weight_decay=0.01",
                                             "betas=(0.9, 0.95)", "--min_timestep", "0", "--seed", "-1"]


def test_a_list_is_taken_as_is_and_switches_need_no_value() -> None:
    assert parse_extra_args(["--split_attn", "--max_grad_norm=0.5"], TRAIN) == ["--split_attn", "--max_grad_norm=0.5"]


def test_empty_input_is_nothing() -> None:
    assert parse_extra_args("", TRAIN) == [] and parse_extra_args(None, TRAIN) == []


def test_unknown_flag_is_refused_with_a_suggestion() -> None:
    p = only_problem("--max_grad_nrom 1")
    assert "--max_grad_nrom is not a flag of wan_train_network.py" in p.message
    assert "--max_grad_norm" in p.fix


def test_flag_of_another_script_is_unknown_here() -> None:
    # --vae_tiling exists for HunyuanVideo caching, not for Wan caching.
    p = only_problem("--vae_tiling", "wan_cache_latents.py")
    assert "not a flag of wan_cache_latents.py" in p.message


def test_abbreviations_are_refused_with_the_full_names() -> None:
    p = only_problem("--fp8 ")
    assert "--fp8_base" in p.fix and "abbreviations" in p.fix


@pytest.mark.parametrize("flag, fix", [
    ("--dataset_config /x.toml", "dataset input"),
    ("--output_dir /tmp/o", "output folder"),
    ("--output_name x", "output name"),
    ("--network_module networks.lora", "network module"),
    ("--config_file /x.toml", "node inputs"),
    ("--sample_prompts p.txt", "options.sample_prompts"),
    ("--huggingface_token abc", "HF_TOKEN"),
])
def test_flags_the_pack_controls_are_refused(flag: str, fix: str) -> None:
    p = only_problem(flag)
    assert "is set by the pack" in p.message and fix in p.fix


def test_controlled_flags_include_the_catalogues_model_and_selector_flags() -> None:
    flags = controlled_flags()
    assert set(ALWAYS_CONTROLLED) <= set(flags)
    from executor.musubi import catalogue

    for arch in catalogue.ARCHITECTURES.values():
        for model in arch.models:
            assert model.flag in flags


def test_model_flag_is_refused_when_the_catalogue_knows_it() -> None:
    p = only_problem("--dit /x.safetensors", controlled={"--dit": "models.dit"})
    assert p.fix == "use models.dit instead"


def test_a_flag_already_in_the_command_is_refused() -> None:
    p = only_problem("--learning_rate 1e-3", command_flags=["--learning_rate"])
    assert "options.learning_rate" in p.fix


def test_value_starting_with_a_dash_is_refused_where_a_name_is_expected() -> None:
    p = only_problem("--log_prefix=-rf")
    assert "starts with '-'" in p.message and "./-name" in p.fix
    # A negative number for a numeric flag is fine.
    assert parse_extra_args("--seed -5", TRAIN) == ["--seed", "-5"]


def test_value_missing_or_wrong_kind() -> None:
    assert "needs a value" in only_problem("--max_grad_norm").message
    assert "needs a number" in only_problem("--max_grad_norm abc").message
    assert "valid value" in only_problem("--weighting_scheme bad").message
    assert "takes no value" in only_problem("--split_attn=yes").message


def test_nul_bytes_and_unbalanced_quotes_are_refused() -> None:
    assert "NUL" in only_problem("--seed 1\x00").message
    assert "NUL" in only_problem(["--log_prefix", "a\x00b"]).message
    assert "quote" in only_problem('--log_prefix "abc').fix


def test_shell_metacharacters_stay_inert_words() -> None:
    assert parse_extra_args("--log_prefix 'a;b && rm -rf ~ | $(x)'", TRAIN) == [
        "--log_prefix", "a;b && rm -rf ~ | $(x)"]


def test_stray_words_and_short_flags_are_refused() -> None:
    assert "not a flag" in only_problem("hello").message
    assert "full --long" in only_problem("-h").message


def test_every_problem_is_reported_and_parse_raises() -> None:
    _, problems = check_extra_args("--nope 1 --output_dir x --seed", TRAIN)
    assert len(problems) == 3
    with pytest.raises(PreflightError) as info:
        parse_extra_args("--nope 1 --output_dir x", TRAIN)
    assert len(info.value.problems) == 2


def test_unknown_script_cannot_be_checked() -> None:
    assert "no flag facts" in only_problem("--seed 1", "no_such_script.py").message

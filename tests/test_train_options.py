"""The Train node's options outside ComfyUI: merging the options nodes with the inputs older prompts set
on the Train node, repeating ComfyUI's checks for them, the recommended values per architecture and where
each value of a run comes from, and the default sample prompt built from a dataset.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from test_nodes_helpers import pack  # noqa: F401  (a fixture: the pack loaded as ComfyUI loads it)


@pytest.fixture(scope="module")
def more(pack: Any) -> Any:  # noqa: F811
    name = pack.options.__name__.rsplit(".", 2)[0]
    for module in ("recommend", "samples", "trainargs", "host"):
        setattr(pack, module, importlib.import_module(f"{name}.nodes.{module}"))
    # no ComfyUI here: models/loras is empty (this copy of the pack is dropped after the module)
    pack.host.model_files = lambda folder: []
    return pack


def chained(p: Any, **values: Any) -> Any:
    return p.values.TrainingOptions(values, {k: "Musubi Memory Options" for k in values}, ("MusubiMemoryOptions",))


# ---------------------------------------------------------------------------- merging

def test_options_nodes_and_older_train_inputs_merge_and_say_who_set_what(more: Any) -> None:
    flat, origin = more.options.merge({"network_dim": 8, "seed": 7, "blocks_to_swap": 0},
                                      chained(more, fp8="off", blocks_to_swap=4))
    assert flat == {"network_dim": 8, "seed": 7, "fp8": "off", "blocks_to_swap": 4}
    assert origin == {"seed": "the Train node (an older input)", "fp8": "Musubi Memory Options",
                      "blocks_to_swap": "Musubi Memory Options"}


def test_a_value_set_twice_differently_is_refused_the_same_value_is_not(more: Any) -> None:
    with pytest.raises(Exception, match="blocks_to_swap is set twice: 8 on the Train node"):
        more.options.merge({"blocks_to_swap": 8}, chained(more, blocks_to_swap=4))
    flat, _ = more.options.merge({"blocks_to_swap": 4}, chained(more, blocks_to_swap=4))
    assert flat["blocks_to_swap"] == 4
    flat, _ = more.options.merge({"blocks_to_swap": 8}, chained(more, blocks_to_swap=0))
    assert flat["blocks_to_swap"] == 8, "an options node at its default leaves the older input in charge"


def test_two_options_nodes_of_one_kind_cannot_be_chained(more: Any) -> None:
    node = more.options.NODE_CLASS_MAPPINGS["MusubiMemoryOptions"]()
    (first,) = node.collect(blocks_to_swap=4)
    with pytest.raises(Exception, match="two Musubi Memory Options nodes are chained"):
        node.collect(options=first, blocks_to_swap=8)
    (both,) = more.options.NODE_CLASS_MAPPINGS["MusubiTimestepOptions"]().collect(options=first, seed=3)
    assert dict(both.values) == {"blocks_to_swap": 4, "seed": 3}
    assert both.subjects == ("MusubiMemoryOptions", "MusubiTimestepOptions")


@pytest.mark.parametrize("name, value, words", [
    ("blocks_to_swap", -1, "smaller than min of 0"), ("blocks_to_swap", True, "not a whole number"),
    ("learning_rate", float("inf"), None), ("discrete_flow_shift", float("nan"), "not a usable number"),
    ("fp8", "fp16", "not in"), ("gradient_checkpointing", "yes", "not true or false"),
    ("extra_args", 5, "not text"), ("num_processes", 65, "bigger than max of 64"),
])
def test_older_inputs_get_comfyuis_checks_and_finite_numbers(more: Any, name: str, value: Any, words: Any) -> None:
    specs = more.training.legacy_specs()
    found = more.options.check_values(specs, {name: value})
    if name not in specs:  # learning_rate stayed on the Train node: ComfyUI checks it itself
        assert found == []
        return
    assert len(found) == 1 and found[0].startswith(f"{name}: ") and words in found[0], found


def test_every_input_the_train_node_had_in_0_1_0_is_still_taken(more: Any) -> None:
    old = ("network_dim", "network_alpha", "learning_rate", "optimizer_type", "optimizer_custom", "optimizer_args",
           "lr_scheduler", "lr_warmup_steps", "max_train_epochs", "max_train_steps", "save_every_n_epochs", "seed",
           "attention", "mixed_precision", "fp8", "blocks_to_swap", "gradient_checkpointing", "timestep_sampling",
           "discrete_flow_shift", "sample_prompts", "sample_every_n_epochs", "sample_every_n_steps",
           "sample_at_first", "sample_prompts_file", "initial_weights", "resume", "launcher", "num_processes",
           "gpu_ids", "extra_args", "dry_run", "output_name")
    types = more.training.train_inputs()
    taken = set(types["required"]) | set(types["optional"]) | set(types["hidden"])
    assert set(old) <= taken
    assert not set(types["optional"]) & set(types["hidden"])


# ---------------------------------------------------------------------------- recommended values

def test_recommended_values_are_the_architectures_else_musubis_default(more: Any) -> None:
    cat = more.catalogue
    wan = more.recommend.recommended_inputs(cat.get_architecture("wan"))
    assert wan["network_dim"] == {"value": 32, "source": "recommended"}
    assert wan["learning_rate"] == {"value": 2e-4, "source": "recommended"}
    assert wan["fp8"] == {"value": "fp8_base", "source": "recommended"}
    assert wan["lr_scheduler"] == {"value": "constant", "source": "musubi"}
    qwen = more.recommend.recommended_inputs(cat.get_architecture("qwen_image"), {"model_version": "edit"})
    assert qwen["network_dim"]["value"] == 16 and qwen["learning_rate"]["value"] == 5e-5
    assert qwen["fp8"] == {"value": "off", "source": "musubi"}
    k5 = more.recommend.recommended_inputs(cat.get_architecture("kandinsky5"))
    assert k5["max_train_epochs"]["value"] == 50 and k5["lr_warmup_steps"]["value"] == 100


def test_the_route_answers_per_models_node_and_refuses_unknown_ones(more: Any) -> None:
    status, body = more.recommend.recommendation("MusubiModelsWan", {"task": "t2v-1.3B", "one_frame": "false",
                                                                     "dit": "x.safetensors"})
    assert status == 200 and body["display_name"] == "Wan 2.1 / 2.2" and body["values"]["network_dim"]["value"] == 32
    assert more.recommend.recommendation("LoraLoader", {})[0] == 404
    assert more.recommend.recommendation("MusubiModelsWan", {"task": "t9v"})[0] == 400


@pytest.mark.parametrize("value, text", [(2e-4, "2e-4"), (5e-5, "5e-5"), (1.5e-4, "0.00015"), (0.001, "0.001"),
                                         (3.0, "3"), (True, "on"), (None, "off"), (["a=1", "b=2"], "a=1 b=2")])
def test_values_are_written_as_musubis_docs_write_them(more: Any, value: Any, text: str) -> None:
    assert more.recommend.shown(value) == text


def test_the_run_values_name_their_source_and_only_the_length_in_effect(more: Any) -> None:
    arch = more.catalogue.get_architecture("wan")
    lines = more.recommend.run_values(arch, {}, {"network_dim": 32, "learning_rate": 1e-4, "blocks_to_swap": 4,
                                                 "max_train_steps": 100, "max_train_epochs": None},
                                      {"blocks_to_swap": "Musubi Memory Options"})
    assert "  network_dim 32 (recommended for Wan 2.1 / 2.2)" in lines, "equal to the recommendation"
    assert "  learning_rate 1e-4 (you)" in lines
    assert "  blocks_to_swap 4 (you, on Musubi Memory Options)" in lines
    assert "  max_train_steps 100 (you)" in lines and not [line for line in lines if "max_train_epochs" in line]
    assert "  lr_scheduler constant (musubi's default)" in lines and "  seed 42 (recommended for Wan 2.1 / 2.2)" in lines


# ---------------------------------------------------------------------------- the default sample

def dataset(p: Any, folder: Path, *, control: Path | None = None, captions: dict[str, str]) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, caption in captions.items():
        (folder / f"{stem}.png").write_bytes(b"x")
        if caption is not None:
            (folder / f"{stem}.txt").write_text(caption, encoding="utf-8")
    ds = p.dataset_module
    config = ds.build_dataset_config([ds.DatasetSpec(image_directory=str(folder), caption_extension=".txt",
                                                     control_directory=str(control) if control else None)])
    return p.values.MusubiDataset("x.toml", config, p.values.count_items(config))


def models(p: Any, arch_id: str, selectors: dict[str, Any] | None = None, leave_out: tuple[str, ...] = ()) -> Any:
    arch = p.catalogue.get_architecture(arch_id)
    paths = {m.name: f"/m/{m.name}" for m in arch.models if m.name not in leave_out}
    return p.values.MusubiModels(arch_id, paths, dict(selectors or {}))


def test_the_default_sample_is_the_first_caption_at_the_documented_size_and_steps(more: Any, tmp_path: Path) -> None:
    data = dataset(more, tmp_path / "d", captions={"b": "second", "a": "a red -- fox\non  snow", "0": None})
    line, what = more.samples.default_prompt(more.catalogue.get_architecture("wan"), models(more, "wan"), data)
    assert line == "a red - fox on snow --w 832 --h 480 --s 20 --d 42"
    assert what == "the dataset's first caption at 832x480, 20 steps (musubi's docs/wan.md)"


def test_image_to_video_and_edit_models_get_the_first_items_images(more: Any, tmp_path: Path) -> None:
    control = tmp_path / "ctl"
    control.mkdir()
    (control / "a.jpg").write_bytes(b"x")
    data = dataset(more, tmp_path / "d", control=control, captions={"a": "a cat"})
    line, _ = more.samples.default_prompt(more.catalogue.get_architecture("wan"),
                                          models(more, "wan", {"task": "i2v-14B"}), data)
    assert line.endswith(f"--d 42 --i {tmp_path / 'd' / 'a.png'}")
    line, _ = more.samples.default_prompt(more.catalogue.get_architecture("flux_kontext"),
                                          models(more, "flux_kontext"), data)
    assert line == f"a cat --w 1024 --h 1024 --s 25 --d 42 --ci {control / 'a.jpg'}"
    line, _ = more.samples.default_prompt(more.catalogue.get_architecture("flux_2"), models(more, "flux_2"), data)
    assert line.endswith(f"--s 50 --d 42 --ci {control / 'a.jpg'}"), "FLUX.2's references are optional"


@pytest.mark.parametrize("arch_id, selectors, leave_out, words", [
    ("wan", {"one_frame": True, "task": "i2v-14B"}, (), "a one-frame sample needs"),
    ("qwen_image", {"model_version": "layered"}, (), "Qwen-Image-Layered"),
    ("wan", {}, ("t5",), "the Models node has no T5 text encoder"),
])
def test_no_default_sample_says_why(more: Any, tmp_path: Path, arch_id: str, selectors: dict, leave_out: tuple,
                                    words: str) -> None:
    data = dataset(more, tmp_path / "d", captions={"a": "a cat"})
    line, why = more.samples.default_prompt(more.catalogue.get_architecture(arch_id),
                                            models(more, arch_id, selectors, leave_out), data)
    assert line is None and words in why


def test_a_dataset_without_captions_has_no_default_sample(more: Any, tmp_path: Path) -> None:
    data = dataset(more, tmp_path / "d", captions={"a": None, "b": "   "})
    line, why = more.samples.default_prompt(more.catalogue.get_architecture("zimage"), models(more, "zimage"), data)
    assert line is None and "no item of the dataset has a caption" in why


def test_every_architecture_has_documented_sample_settings(more: Any) -> None:
    for arch in more.catalogue.ARCHITECTURES.values():
        spec = arch.sample_for({})
        assert spec is not None and spec.width % 16 == 0 and spec.height % 16 == 0 and spec.source, arch.id

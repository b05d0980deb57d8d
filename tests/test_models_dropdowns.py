"""The models nodes' file dropdowns when a model folder is empty: the frontend shows an empty
combo as "undefined", so a required file input offers one placeholder choice that says which
folder is empty, and validation refuses it (HTTP 400 naming the folder) before anything runs.
A file name ComfyUI does not list is refused the same way; the selectors keep ComfyUI's own
list check.

Unit tests use a stand-in ``folder_paths``; the server tests use the common test server, whose
model folders are empty.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import pytest

from comfy_harness import ComfyClient, ComfyHTTPError

ROOT = Path(__file__).resolve().parent.parent
PACK = "musubi_nodes_dropdown_test"


@pytest.fixture
def listed() -> dict[str, list[str]]:
    """The files the stand-in folder_paths lists, per folder (empty unless a test adds some)."""
    return {}


@pytest.fixture
def models(listed: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fake = types.ModuleType("folder_paths")
    fake.get_filename_list = lambda folder: list(listed.get(folder, []))  # type: ignore[attr-defined]
    fake.get_full_path = lambda folder, name: (  # type: ignore[attr-defined]
        f"/models/{folder}/{name}" if name in listed.get(folder, []) else None)
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    try:
        spec.loader.exec_module(module)
        yield importlib.import_module(f"{PACK}.nodes.models")
    finally:
        for name in [n for n in sys.modules if n == PACK or n.startswith(PACK + ".")]:
            del sys.modules[name]


def wan(models: Any) -> Any:
    return models.NODE_CLASS_MAPPINGS["MusubiModelsWan"]


def test_an_empty_folder_gives_a_placeholder_choice_not_an_empty_list(models: Any) -> None:
    inputs = wan(models).INPUT_TYPES()
    choices, options = inputs["required"]["dit"]
    assert choices == ["(no files in models/diffusion_models)"]
    assert options["default"] == choices[0]
    optional_choices, optional = inputs["optional"]["dit_high_noise"]
    assert optional_choices == ["(none)"] and optional["default"] == "(none)"


def test_listed_files_replace_the_placeholder(models: Any, listed: dict[str, list[str]]) -> None:
    listed["diffusion_models"] = ["a.safetensors", "b.safetensors"]
    choices, options = wan(models).INPUT_TYPES()["required"]["dit"]
    assert choices == ["a.safetensors", "b.safetensors"] and options["default"] == "a.safetensors"


def test_validation_takes_only_the_file_inputs(models: Any) -> None:
    node = wan(models)
    arch = node.arch()
    files = [m.name for m in arch.models if m.kind != "hf_id"]
    spec = inspect.getfullargspec(node.VALIDATE_INPUTS)  # what ComfyUI reads to pick the inputs
    assert spec.args == files and spec.varkw is None
    assert not {s.name for s in arch.selectors} & set(spec.args), "selectors keep ComfyUI's own list check"


def test_the_placeholder_and_unlisted_files_are_refused_with_the_folder(models: Any,
                                                                        listed: dict[str, list[str]]) -> None:
    listed["vae"] = ["wan_2.1_vae.safetensors"]
    validate = wan(models).VALIDATE_INPUTS
    message = validate(dit="(no files in models/diffusion_models)", vae="gone.safetensors", t5="(none)")
    assert "models/diffusion_models folder has no files" in message
    assert "'gone.safetensors' is not in ComfyUI's models/vae folder" in message
    assert "t5" not in message
    listed["diffusion_models"] = ["dit.safetensors"]
    assert validate(dit="dit.safetensors", vae="wan_2.1_vae.safetensors", clip="(none)") is True


# ---------------------------------------------------------------------------- in a real ComfyUI

def cache_prompt(models_inputs: dict[str, Any]) -> dict[str, Any]:
    """Dataset -> Cache Latents (an output node, so ComfyUI validates the chain) <- the Wan models node."""
    dataset = {"media": "image", "directory": "anything", "caption_extension": ".txt", "width": 64, "height": 64,
               "batch_size": 1, "num_repeats": 1, "enable_bucket": False, "bucket_no_upscale": False,
               "target_frames": "1", "frame_extraction": "head", "frame_stride": 1, "frame_sample": 1,
               "max_frames": 129, "source_fps": 0.0}
    return {"1": {"class_type": "MusubiDatasetConfig", "inputs": dataset},
            "2": {"class_type": "MusubiModelsWan", "inputs": models_inputs},
            "3": {"class_type": "MusubiCacheLatents",
                  "inputs": {"dataset": ["1", 0], "models": ["2", 0], "dry_run": True}}}


@pytest.mark.comfyui
@pytest.mark.timeout(120)
def test_the_server_lists_the_placeholder_and_refuses_it_when_queued(comfy_client: ComfyClient) -> None:
    info = comfy_client.object_info("MusubiModelsWan")["MusubiModelsWan"]["input"]
    placeholder = "(no files in models/diffusion_models)"
    assert info["required"]["dit"][0] == [placeholder], "the common test server's model folders are empty"
    inputs = {"task": "t2v-1.3B", "one_frame": False, "dit": placeholder,
              "vae": "(no files in models/vae)", "t5": "(no files in models/text_encoders)"}
    with pytest.raises(ComfyHTTPError) as rejected:
        comfy_client.queue_prompt(cache_prompt(inputs))
    assert rejected.value.status == 400
    errors = rejected.value.node_errors["2"]["errors"]
    assert {e["type"] for e in errors} == {"custom_validation_failed"}
    assert {e["extra_info"]["input_name"] for e in errors} == {"dit", "vae", "t5"}
    assert "models/diffusion_models folder has no files" in errors[0]["details"]


@pytest.mark.comfyui
@pytest.mark.timeout(120)
def test_a_selector_value_outside_its_list_is_still_refused_by_comfyui(comfy_client: ComfyClient) -> None:
    inputs = {"task": "t2v-99B", "one_frame": False, "dit": "x", "vae": "x", "t5": "x"}
    with pytest.raises(ComfyHTTPError) as rejected:
        comfy_client.queue_prompt(cache_prompt(inputs))
    types_by_input = {e["extra_info"]["input_name"]: e["type"] for e in rejected.value.node_errors["2"]["errors"]}
    assert types_by_input["task"] == "value_not_in_list"

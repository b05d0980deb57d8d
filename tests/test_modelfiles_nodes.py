"""The Models nodes and the Setup Check say what each chosen file is: one verdict line per file
from its header; HiDream-O1 checkpoints in models/checkpoints are offered too (only files whose
header is HiDream-O1). A stand-in ``folder_paths`` over real files in a temp folder."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import pytest

import modelfile_keys as K
from modelfile_writers import write_safetensors

ROOT = Path(__file__).resolve().parent.parent
PACK = "musubi_nodes_modelfiles_test"


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def nodes(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fake = types.ModuleType("folder_paths")

    def names(folder: str) -> list[str]:
        where = models_dir / folder
        return sorted(p.name for p in where.iterdir()) if where.is_dir() else []

    fake.get_filename_list = names  # type: ignore[attr-defined]
    fake.get_full_path = lambda folder, name: (  # type: ignore[attr-defined]
        str(models_dir / folder / name) if (models_dir / folder / name).is_file() else None)
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    try:
        spec.loader.exec_module(module)
        yield types.SimpleNamespace(models=importlib.import_module(f"{PACK}.nodes.models"),
                                    check=importlib.import_module(f"{PACK}.nodes.check"))
    finally:
        for name in [n for n in sys.modules if n == PACK or n.startswith(PACK + ".")]:
            del sys.modules[name]


def put(models_dir: Path, folder: str, name: str, tensors: Any) -> None:
    write_safetensors(models_dir / folder / name, tensors)


def test_hidream_checkpoints_are_offered_from_models_checkpoints(nodes: Any, models_dir: Path) -> None:
    put(models_dir, "checkpoints", "hidream_o1_image_bf16.safetensors", K.hidream_o1())
    put(models_dir, "checkpoints", "sdxl_base.safetensors", K.comfy_checkpoint())
    put(models_dir, "diffusion_models", "z_image_bf16.safetensors", K.zimage_dit())
    node = nodes.models.NODE_CLASS_MAPPINGS["MusubiModelsHidreamO1"]
    choices, _ = node.INPUT_TYPES()["required"]["dit"]
    assert choices == ["z_image_bf16.safetensors", "hidream_o1_image_bf16.safetensors"]
    out = node().pick(unique_id=None, model_type="full", task="t2i", dit="hidream_o1_image_bf16.safetensors")
    picked = out["result"][0]
    assert picked.paths["dit"] == str(models_dir / "checkpoints" / "hidream_o1_image_bf16.safetensors")
    assert out["ui"]["text"] == ["dit: OK hidream_o1_image_bf16.safetensors: HiDream-O1-Image checkpoint (bf16)"]
    assert node.VALIDATE_INPUTS(dit="hidream_o1_image_bf16.safetensors") is True


def test_the_models_node_shows_a_verdict_per_file(nodes: Any, models_dir: Path) -> None:
    put(models_dir, "diffusion_models", "wan2.1_t2v_1.3B_fp16.safetensors", K.wan_dit(1536, dtype="F16"))
    put(models_dir, "vae", "wan_2.1_vae.safetensors", K.wan_vae())
    put(models_dir, "text_encoders", "umt5_xxl_fp16.safetensors", K.t5(256384))
    node = nodes.models.NODE_CLASS_MAPPINGS["MusubiModelsWan"]
    out = node().pick(unique_id=None, task="t2v-14B", one_frame=False, dit="wan2.1_t2v_1.3B_fp16.safetensors",
                      vae="wan_2.1_vae.safetensors", t5="umt5_xxl_fp16.safetensors")
    lines = out["ui"]["text"][0].split("\n")
    assert lines[0].startswith("dit: REFUSED wan2.1_t2v_1.3B_fp16.safetensors is Wan DiT 1.3B, text-to-video (fp16): "
                               "task t2v-14B needs a 14B model")
    assert lines[1] == "vae: OK wan_2.1_vae.safetensors: Wan 2.1 VAE or Qwen-Image VAE (bf16)"
    assert lines[2].startswith("t5: REFUSED umt5_xxl_fp16.safetensors is UMT5-XXL") and "models_t5_umt5" in lines[2]
    assert len(lines) == 3
    assert out["result"][0].paths["vae"].endswith("wan_2.1_vae.safetensors")  # the node still passes the choice on


def test_the_setup_check_lists_the_wired_files(nodes: Any, models_dir: Path) -> None:
    put(models_dir, "diffusion_models", "wan2.1_t2v_1.3B_fp16.safetensors", K.wan_dit(1536, dtype="F16"))
    put(models_dir, "vae", "wan_2.1_vae.safetensors", K.wan_vae())
    put(models_dir, "text_encoders", "models_t5_umt5-xxl-enc-bf16.safetensors", K.umt5_wan())
    files = dict(dit="wan2.1_t2v_1.3B_fp16.safetensors", vae="wan_2.1_vae.safetensors",
                 t5="models_t5_umt5-xxl-enc-bf16.safetensors")
    node = nodes.models.NODE_CLASS_MAPPINGS["MusubiModelsWan"]
    picked = node().pick(unique_id=None, task="t2v-1.3B", one_frame=False, **files)["result"][0]
    text, fits = nodes.check.models_text(picked)
    assert fits and text.splitlines() == [
        "model files (Wan 2.1 / 2.2: task=t2v-1.3B, one_frame=False):",
        "  dit: OK wan2.1_t2v_1.3B_fp16.safetensors: Wan DiT 1.3B, text-to-video (fp16)",
        "  vae: OK wan_2.1_vae.safetensors: Wan 2.1 VAE or Qwen-Image VAE (bf16)",
        "  t5: OK models_t5_umt5-xxl-enc-bf16.safetensors: UMT5-XXL text encoder, Wan's original layout (bf16)"]
    picked = node().pick(unique_id=None, task="t2v-14B", one_frame=False, **files)
    text, fits = nodes.check.models_text(picked["result"][0])
    assert not fits and "  dit: REFUSED" in text

"""nodes/guards.py: the checks behind the nodes' VALIDATE_INPUTS (hostile or mistaken text inputs
refused when a prompt is queued). The pack is loaded as ComfyUI loads it, with ComfyUI's folders
replaced by temporary ones; the same cases through a real ComfyUI are in tests/test_bad_inputs_e2e.py.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACK = "musubi_nodes_guards_under_test"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def guards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    try:
        spec.loader.exec_module(module)
        host = importlib.import_module(f"{PACK}.nodes.host")
        for name in ("input", "output"):
            (tmp_path / name).mkdir()
        monkeypatch.setattr(host, "input_directory", lambda: str(tmp_path / "input"))
        monkeypatch.setattr(host, "output_directory", lambda: str(tmp_path / "output"))
        yield importlib.import_module(f"{PACK}.nodes.guards")
    finally:
        for name in [n for n in sys.modules if n == PACK or n.startswith(PACK + ".")]:
            del sys.modules[name]


@pytest.mark.parametrize("name", ["RAdam", "came_pytorch.CAME", "torch.optim.AdamW", "prodigyopt.Prodigy", ""])
def test_optimizer_names_that_are_classes_pass(guards: types.ModuleType, name: str) -> None:
    assert guards.optimizer_problem(name) is None


@pytest.mark.parametrize("name, says", [("os.system", "standard library"), ("subprocess.Popen", "standard library"),
                                        ("builtins.exec", "standard library"), ("x; rm -rf /", "not a class name"),
                                        ("a..b", "not a class name"), ("torch.optim.Adam(lr=1)", "not a class name")])
def test_optimizer_names_that_are_no_class_or_stdlib_are_refused(guards: types.ModuleType, name: str,
                                                                 says: str) -> None:
    assert says in guards.optimizer_problem(name)


@pytest.mark.parametrize("name", ["my_lora", "wan-v2.1_style", "LoRA v1 猫", "my_lora.safetensors"])
def test_usable_lora_names_pass(guards: types.ModuleType, name: str) -> None:
    assert guards.output_name_problem(name) is None


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", "CON", "nul", "COM1", "lpt1.x", "x.", "x ", "-x", "a\x00b",
                                  "n" * 151, "", "CON.safetensors", ".safetensors"])
def test_unusable_lora_names_are_refused(guards: types.ModuleType, name: str) -> None:
    problem = guards.output_name_problem(name)
    assert problem and len(problem) < 2100


@pytest.mark.parametrize("ext", [".txt", ".caption", "_tags.txt", ""])
def test_caption_extensions_pass(guards: types.ModuleType, ext: str) -> None:
    assert guards.caption_extension_problem(ext) is None


@pytest.mark.parametrize("ext", ["/../x", "\\..\\x", ".t\x00t", "..txt", "." + "t" * 70])
def test_caption_extensions_that_leave_the_folder_are_refused(guards: types.ModuleType, ext: str) -> None:
    assert "caption_extension" in guards.caption_extension_problem(ext)


def test_folders_and_files_are_told_apart(guards: types.ModuleType, tmp_path: Path) -> None:
    (tmp_path / "input" / "photos").mkdir()
    (tmp_path / "input" / "a.toml").write_text("", encoding="utf-8")
    assert guards.folder_problem("photos") is None
    assert "is a file, not a folder" in guards.folder_problem("a.toml")
    assert "not found" in guards.folder_problem("../missing")
    assert "NUL" in guards.folder_problem("photos\x00x")
    assert "10000 characters long" in guards.folder_problem("d" * 10_000)
    assert len(guards.folder_problem("d" * 10_000)) < 400
    assert guards.file_problem("a.toml") is None
    assert "is a folder, not a file" in guards.file_problem("photos")


def test_write_folders_must_be_inside_the_roots_symlinks_resolved(guards: types.ModuleType, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    configured = tmp_path / "configured"
    assert guards.writable_folder_problem(str(tmp_path / "output" / "cache"), "cache_directory", ()) is None
    assert guards.writable_folder_problem("cache", "cache_directory", ()) is None  # relative: inside input
    assert guards.writable_folder_problem(str(configured / "x"), "cache_directory", [str(configured)]) is None
    for value in (str(outside), "../../elsewhere", str(tmp_path / "output" / ".." / "elsewhere")):
        assert "outside the folders this pack may write to" in guards.writable_folder_problem(
            value, "cache_directory", ())
    if hasattr(os, "symlink"):
        link = tmp_path / "output" / "innocent"
        link.symlink_to(outside, target_is_directory=True)
        assert "outside" in guards.writable_folder_problem(str(link / "cache"), "cache_directory", ())


def test_messages_name_their_input(guards: types.ModuleType) -> None:
    assert guards.labelled("directory", "folder not found: x") == "directory: folder not found: x"
    assert guards.labelled("cache_directory", "cache_directory x is outside") == "cache_directory x is outside"
    assert guards.labelled("x", None) is None


@pytest.mark.parametrize("value", ["", "  ", "all", "0", "0,1", "0, 1", "3,2,10"])
def test_gpu_ids_that_name_gpus_pass(guards: types.ModuleType, value: str) -> None:
    assert guards.gpu_ids_problem(value) is None


@pytest.mark.parametrize("value, says", [("0; rm -rf /", "not a list of GPU numbers"), ("cuda:0", "not a list"),
                                         ("0,,1", "not a list"), ("-1", "not a list"), ("1.5", "not a list"),
                                         ("ALL", "not a list"), ("0\x001", "not a list"), ("9" * 300, "not a list"),
                                         ("0,1,0", "names a GPU twice")])
def test_gpu_ids_that_are_no_gpu_numbers_are_refused(guards: types.ModuleType, value: str, says: str) -> None:
    assert says in guards.gpu_ids_problem(value)


class _Floats:
    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"rate": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0})},
                "optional": {"shift": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 100.0}),
                             "count": ("INT", {"default": 1, "min": 1, "max": 8})}}


@pytest.mark.parametrize("values, says", [
    ({"rate": float("nan")}, "rate: nan is not a usable number"),
    ({"shift": float("inf")}, "shift: inf is not a usable number"),
    ({"shift": float("-inf")}, "shift: -inf is not a usable number"),
    ({"rate": 5.0}, "rate: Value 5.0 bigger than max of 1.0"),  # ComfyUI's own wording, which it skips here
    ({"rate": -0.5}, "rate: Value -0.5 smaller than min of 0.0"),
    ({"count": 0}, "count: Value 0 smaller than min of 1"),
])
def test_numbers_named_by_validate_inputs_keep_comfyuis_range_check_and_refuse_nan(
        guards: types.ModuleType, values: dict, says: str) -> None:
    problems = guards.number_problems(_Floats, values)
    assert len(problems) == 1 and problems[0].startswith(says), problems


def test_numbers_in_range_and_wired_numbers_pass(guards: types.ModuleType) -> None:
    assert guards.number_problems(_Floats, {"rate": 0.5, "shift": 100.0, "count": 8}) == []
    assert guards.number_problems(_Floats, {"rate": None, "shift": None}) == []  # wired: checked when run

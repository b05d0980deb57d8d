"""What ComfyUI's start pays for this pack: importing the nodes registers every node through
stand-in classes (nodes/registry.py), so it loads only the registry and the routes — not the node
modules, the executor's catalogue, the error tree or the parsers (they load on first use) — and
the stand-ins answer exactly as the real classes do; the registry's table and the small
architecture index the models nodes register from match the modules and the catalogue.

The time itself is checked in a real ComfyUI (tests/test_comfy_install.py); this checks the
cause, without timing, so it cannot flake on a busy machine.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import types
from pathlib import Path
from typing import Iterator

import pytest

from executor.musubi import catalogue

ROOT = Path(__file__).resolve().parent.parent
PACK = "musubi_nodes_import_test"
DEFERRED = ("executor.musubi.catalogue", "executor.errors", "executor.runs.plan", "executor.process.run", "parsers")


def modules_after_importing_the_nodes() -> set[str]:
    """Every module a fresh interpreter holds after importing the pack's nodes the way ComfyUI
    loads a pack (by file location, under a path-derived name: here ``p``)."""
    code = (
        "import importlib, importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(ROOT / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(ROOT)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['p'] = m; spec.loader.exec_module(m)\n"
        "nodes = importlib.import_module('p.nodes')\n"
        "assert len(nodes.NODE_CLASS_MAPPINGS) > 10\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_importing_the_nodes_leaves_the_catalogue_errors_and_parsers_unloaded() -> None:
    loaded = sorted(name[2:] for name in modules_after_importing_the_nodes() if name.startswith("p."))
    early = [name for name in loaded if name.startswith(DEFERRED)]
    assert not early, (f"importing the nodes loaded {early}; import them inside functions (or through "
                       "nodes/deferred.py) so ComfyUI's start does not pay for them")


@pytest.fixture(scope="module")
def pack() -> Iterator[types.SimpleNamespace]:
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    try:
        spec.loader.exec_module(module)
        yield types.SimpleNamespace(nodes=importlib.import_module(f"{PACK}.nodes"),
                                    registry=importlib.import_module(f"{PACK}.nodes.registry"),
                                    models=importlib.import_module(f"{PACK}.nodes.models"),
                                    steps=importlib.import_module(f"{PACK}.nodes.steps"),
                                    catalogue=importlib.import_module(f"{PACK}.executor.musubi.catalogue"))
    finally:
        for name in [n for n in sys.modules if n == PACK or n.startswith(PACK + ".")]:
            del sys.modules[name]


def test_the_models_nodes_index_matches_the_catalogue(pack: types.SimpleNamespace) -> None:
    index = [(a.id, a.display_name, a.media) for a in catalogue.ARCHITECTURES.values()]
    assert list(pack.models.ARCHITECTURES) == index, (
        "nodes/models.py ARCHITECTURES must list every catalogue architecture as (id, display_name, media)")
    assert sorted(cls.ARCH for cls in pack.models.NODE_CLASS_MAPPINGS.values()) == sorted(catalogue.ARCHITECTURES)


def test_the_step_ids_the_nodes_spell_out_are_the_catalogues(pack: types.SimpleNamespace) -> None:
    assert set(pack.steps.STEP_TITLES) == {*catalogue.STEPS, catalogue.CONVERT}
    assert pack.steps.MusubiCacheLatents.STEP == catalogue.CACHE_LATENTS
    assert pack.steps.MusubiCacheTextEncoder.STEP == catalogue.CACHE_TEXT_ENCODER


def test_the_deferred_catalogue_is_the_module(pack: types.SimpleNamespace) -> None:
    assert pack.models.catalogue.get_architecture is pack.catalogue.get_architecture


def test_importing_the_nodes_loads_only_the_registry_and_the_routes() -> None:
    """On the first start after an install Python compiles every module it imports: only these."""
    loaded = sorted(name for name in modules_after_importing_the_nodes() if name == "p" or name.startswith("p."))
    assert loaded == ["p", "p.nodes", "p.nodes.jobroutes", "p.nodes.registry", "p.nodes.routes"], loaded


def test_the_registry_lists_every_node_of_the_modules_with_its_display_name(pack: types.SimpleNamespace) -> None:
    classes, names = {}, {}
    # every module of nodes/ that defines node classes (a new one must be in the registry too)
    modules = sorted(f.stem for f in (ROOT / "nodes").glob("*.py")
                     if "\nNODE_CLASS_MAPPINGS" in f.read_text(encoding="utf-8") and f.stem != "__init__")
    assert {"dataset", "steps", "training", "check", "models", "options", "waitjob"} <= set(modules)
    for module in modules:
        real = importlib.import_module(f"{PACK}.nodes.{module}")
        classes.update({node_id: module for node_id in real.NODE_CLASS_MAPPINGS})
        names.update(real.NODE_DISPLAY_NAME_MAPPINGS)
    registered = pack.registry.all_nodes()
    assert {node_id: module for node_id, (module, _) in registered.items()} == classes
    assert {node_id: name for node_id, (_, name) in registered.items()} == names
    assert pack.nodes.NODE_DISPLAY_NAME_MAPPINGS == names


def test_a_stand_in_answers_as_its_real_class_does(pack: types.SimpleNamespace,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    folder_paths = types.ModuleType("folder_paths")  # INPUT_TYPES lists model files: none here
    folder_paths.get_filename_list = lambda folder: []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "folder_paths", folder_paths)
    stand_in = pack.nodes.NODE_CLASS_MAPPINGS["MusubiTrainLoRA"]
    real = importlib.import_module(f"{PACK}.nodes.training").MusubiTrainLoRA
    assert stand_in.real() is real
    for name in ("RETURN_TYPES", "RETURN_NAMES", "OUTPUT_TOOLTIPS", "FUNCTION", "CATEGORY", "OUTPUT_NODE",
                 "DESCRIPTION"):
        assert getattr(stand_in, name) == getattr(real, name), name
    assert stand_in.INPUT_TYPES().keys() == real.INPUT_TYPES().keys()
    # ComfyUI inspects VALIDATE_INPUTS' parameters: the real classmethod, bound to the real class
    import inspect

    assert inspect.getfullargspec(stand_in.VALIDATE_INPUTS) == inspect.getfullargspec(real.VALIDATE_INPUTS)
    # ... and answers as the real one (the Train node's is built per class, not a classmethod)
    assert stand_in.VALIDATE_INPUTS(output_name="../x") == real.VALIDATE_INPUTS(output_name="../x") != True  # noqa: E712
    assert stand_in.VALIDATE_INPUTS(output_name="fine") is True
    assert not hasattr(stand_in, "INPUT_IS_LIST") and getattr(stand_in, "NOT_IDEMPOTENT", False) is False
    instance = stand_in()
    assert type(instance) is real and callable(getattr(instance, stand_in.FUNCTION))
    # what ComfyUI writes on the class it was given stays there
    stand_in.RELATIVE_PYTHON_MODULE = "custom_nodes.musubi-tuner-nodes"
    assert stand_in.RELATIVE_PYTHON_MODULE == "custom_nodes.musubi-tuner-nodes"
    models = pack.nodes.NODE_CLASS_MAPPINGS["MusubiModelsWan"]
    assert models.ARCH == "wan" and "dit" in models.INPUT_TYPES()["required"]


def test_a_stand_in_imports_its_module_only_when_first_used() -> None:
    code = (
        "import importlib, importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(ROOT / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(ROOT)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['p'] = m; spec.loader.exec_module(m)\n"
        "nodes = importlib.import_module('p.nodes')\n"
        "before = 'p.nodes.dataset' in sys.modules\n"
        "category = nodes.NODE_CLASS_MAPPINGS['MusubiDatasetConfig'].CATEGORY\n"
        "print(before, 'p.nodes.dataset' in sys.modules, 'p.nodes.training' in sys.modules, category)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "False", "Musubi", "Tuner/Dataset"]

"""What ComfyUI's start pays for this pack: importing the nodes registers every node without
building the executor's catalogue or loading the error tree and parsers (they load on first
use), and the small architecture index the models nodes register from matches the catalogue.

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
        yield types.SimpleNamespace(models=importlib.import_module(f"{PACK}.nodes.models"),
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

"""The committed example workflows and locale files are exactly what .ci/generate_examples.py and
.ci/generate_locales.py make from the node definitions the test server reports, every example has
a thumbnail ComfyUI serves to its template browser, and the Japanese file keeps translations by key.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from comfy_harness import COMFYUI_VERSION, PACK_FOLDER_NAME, ComfyClient, ComfyInstall, ComfyServer

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / ".ci"


def load_generator(name: str) -> ModuleType:
    """A .ci script as a module (generate_locales imports generate_examples by name)."""
    if name in sys.modules:
        return sys.modules[name]
    if str(CI) not in sys.path:
        sys.path.insert(0, str(CI))
    spec = importlib.util.spec_from_file_location(name, CI / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def without_core_titles(text: str | None) -> Any:
    """An API-format workflow without the `_meta` titles of ComfyUI's own nodes: the generator
    copies their display names from the server, and those change between ComfyUI versions
    (LoraLoaderModelOnly is "Load LoRA" in 0.33). Any other text is returned as it is."""
    try:
        data = json.loads(text or "")
    except ValueError:
        return text
    if not isinstance(data, dict) or not all(isinstance(n, dict) and "class_type" in n for n in data.values()):
        return data
    for node in data.values():
        if not str(node["class_type"]).startswith("Musubi"):
            node.get("_meta", {}).pop("title", None)
    return data


def stale(files: dict[Path, str], *, pinned: bool = True) -> list[str]:
    """Files whose text differs; against another ComfyUI than the pinned one (`pinned` False),
    core nodes' titles in API workflows are not compared."""
    out = []
    for path, text in files.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text and (pinned or without_core_titles(current) != without_core_titles(text)):
            out.append(str(path.relative_to(ROOT)))
    return out


@pytest.mark.comfyui
@pytest.mark.timeout(120)
def test_example_workflows_are_what_the_generator_makes(comfy_client: ComfyClient, comfy_install: ComfyInstall) -> None:
    generator = load_generator("generate_examples")
    files = generator.generated_files(comfy_client.object_info())
    differing = stale(files, pinned=comfy_install.version == COMFYUI_VERSION)
    assert not differing, (f"{differing} differ from the node definitions; "
                              "regenerate: python3 .ci/generate_examples.py")
    assert not generator.stale_examples(), "files in example_workflows/ that no example makes"


@pytest.mark.comfyui
@pytest.mark.timeout(120)
def test_locales_are_what_the_generator_makes_with_nothing_left_to_translate(comfy_client: ComfyClient) -> None:
    generator = load_generator("generate_locales")
    files, missing = generator.generated_files(comfy_client.object_info())
    assert not stale(files), f"{stale(files)} differ; regenerate: python3 .ci/generate_locales.py"
    assert not missing, f"Japanese missing for {missing}; add it to locales/ja/main.json"


@pytest.mark.comfyui
@pytest.mark.timeout(60)
def test_every_example_has_a_thumbnail_the_template_browser_can_load(comfy_server: ComfyServer,
                                                                     comfy_client: ComfyClient) -> None:
    generator = load_generator("generate_examples")
    listed = comfy_client.get("/workflow_templates")[PACK_FOLDER_NAME]
    assert sorted(listed) == sorted(e.name for e in generator.EXAMPLES)
    for name in listed:
        # the frontend asks for <template>.jpg beside each custom node's template (frontend 1.32.9)
        url = f"{comfy_server.url}/api/workflow_templates/{PACK_FOLDER_NAME}/{name}.jpg"
        with urllib.request.urlopen(url, timeout=10) as response:
            data = response.read()
            assert response.headers["Content-Type"] == "image/jpeg"
        assert data[:3] == b"\xff\xd8\xff", f"{name}.jpg is not a JPEG; redraw: .ci/generate_examples.py --thumbnails"
        assert len(data) < 100_000, f"{name}.jpg is {len(data)} bytes; keep thumbnails small"


# ---------------------------------------------------------------------------- Japanese by key

def en_node(display: str, inputs: list[str], outputs: int = 1) -> dict[str, Any]:
    return {"display_name": display, "description": f"{display} does things",
            "inputs": {n: {"name": n, "tooltip": f"{n} tip"} for n in inputs},
            "outputs": {str(i): {"name": f"out{i}", "tooltip": "tip"} for i in range(outputs)}}


def ja_entry(text: str) -> dict[str, str]:
    return {"name": text, "tooltip": text + "の説明"}


def test_japanese_keeps_translations_by_key_drops_stale_ones_and_lists_the_missing() -> None:
    generator = load_generator("generate_locales")
    en = {"nodeDefs": {"MusubiX": en_node("Musubi X", ["kept", "new"])}}
    current = {"nodeDefs": {
        "MusubiX": {"display_name": "X", "description": "説明", "inputs": {"kept": ja_entry("保持"),
                                                                         "gone": ja_entry("削除")},
                    "outputs": {"0": ja_entry("出力")}},
        "MusubiRemoved": {"display_name": "消えた", "description": "説明", "inputs": {}, "outputs": {}},
    }}
    ja, missing = generator.japanese(en, current)
    assert list(ja["nodeDefs"]) == ["MusubiX"]
    assert ja["nodeDefs"]["MusubiX"]["inputs"] == {"kept": ja_entry("保持")}
    assert ja["nodeDefs"]["MusubiX"]["outputs"] == {"0": ja_entry("出力")}
    assert missing == ["MusubiX.inputs.new"]


def test_a_new_models_node_gets_the_template_translation() -> None:
    generator = load_generator("generate_locales")
    en = {"nodeDefs": {"MusubiModelsNewArch": en_node("Musubi Models (New Arch 3)", ["dit", "vae"])}}
    ja, missing = generator.japanese(en, {"nodeDefs": {}})
    node = ja["nodeDefs"]["MusubiModelsNewArch"]
    assert node["display_name"] == "Musubi モデル (New Arch 3)" and "New Arch 3" in node["description"]
    assert node["inputs"] == {} and set(node["outputs"]) == {"0"}
    assert missing == []


def test_hand_written_frontend_texts_are_kept_and_translated_by_key_path() -> None:
    generator = load_generator("generate_locales")
    committed_en = {"nodeDefs": {"MusubiGone": en_node("Musubi Gone", [])},
                    "musubiTuner": {"jobs": {"stop": "Stop", "state": {"queued": "Queued", "lost": "Lost"}}}}
    en = generator.english({}, committed_en)
    assert en == {"nodeDefs": {}, "musubiTuner": committed_en["musubiTuner"]}
    current = {"nodeDefs": {}, "musubiTuner": {"jobs": {"stop": "停止", "state": {"queued": "待機中", "old": "古い"}}},
               "droppedSection": {"x": "y"}}
    ja, missing = generator.japanese(en, current)
    assert ja == {"nodeDefs": {}, "musubiTuner": {"jobs": {"stop": "停止", "state": {"queued": "待機中"}}}}
    assert missing == ["musubiTuner.jobs.state.lost"]

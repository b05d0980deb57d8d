#!/usr/bin/env python3
"""Regenerate locales/en/main.json from the node definitions and keep locales/ja/main.json in step.

    python3 .ci/generate_locales.py [--url URL] [--check]

English is exactly what ``/object_info`` says for this pack's nodes (display name, description,
every input's name and tooltip, every output's name and tooltip): the frontend prefers the
locale file over the definitions, so a stale entry would hide a fixed tooltip. Japanese is kept
by key (node, input name, output index) from the committed file; entries for nodes, inputs or
outputs that no longer exist are dropped, and missing ones are listed (exit 1) for a translator.
The generated "Musubi Models (<architecture>)" nodes get their Japanese name and description
from one template, so a new architecture needs no translation. Without --url it starts the
pinned test ComfyUI, as .ci/generate_examples.py does. --check writes nothing and exits 1
when a file would change.

Every other top-level section of locales/en/main.json (``musubiTuner``: the texts of the pack's
own frontend, web/*.js) is written by hand and kept as it is; its Japanese is kept by key path
(``musubiTuner.jobs.stop``), stale keys are dropped and missing ones listed as for the nodes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from generate_examples import ROOT, comfyui, render, sync

import comfy_harness  # importable: generate_examples put tests/ on sys.path

LOCALES_DIR = ROOT / "locales"
NODE_PREFIX = "Musubi"
MODELS_PREFIX = "MusubiModels"
MODELS_NAME_EN = ("Musubi Models (", ")")
# The Japanese for a generated models node; {arch} is the architecture's display name.
MODELS_JA = {
    "display_name": "Musubi モデル ({arch})",
    "description": ("musubi-tuner で使う {arch} のモデルを ComfyUI のモデルフォルダから選び、キャッシュと学習で"
                    "揃える必要のあるバリエーション設定を指定します。"),
    "outputs": {"0": {"name": "モデル",
                      "tooltip": "選んだモデルファイルとバリエーション設定。キャッシュと学習のノードにつなぎます。"}},
}


def english(object_info: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """locales/en/main.json's content: the texts of every pack node, inputs in definition order,
    then the hand-written sections of `current` (the committed English file)."""
    nodes = {}
    for node_id in sorted(k for k in object_info if k.startswith(NODE_PREFIX)):
        info = object_info[node_id]
        inputs = {}
        for group in ("required", "optional"):
            for name, spec in info["input"].get(group, {}).items():
                entry = {"name": name}
                if len(spec) > 1 and spec[1].get("tooltip"):
                    entry["tooltip"] = spec[1]["tooltip"]
                inputs[name] = entry
        outputs = {str(i): {"name": name, "tooltip": tooltip}
                   for i, (name, tooltip) in enumerate(zip(info["output_name"], info["output_tooltips"]))}
        nodes[node_id] = {"display_name": info["display_name"], "description": info["description"],
                          "inputs": inputs, "outputs": outputs}
    return {"nodeDefs": nodes, **{key: value for key, value in (current or {}).items() if key != "nodeDefs"}}


def _translated(en: Any, ja: Any, path: str, missing: list[str]) -> Any:
    """The Japanese for a hand-written English section: `ja`'s string for every string of `en`
    (same key path), in `en`'s order; a key without one goes to `missing` and is left out."""
    if isinstance(en, dict):
        out = {}
        for key, value in en.items():
            entry = _translated(value, ja.get(key) if isinstance(ja, dict) else None, f"{path}.{key}", missing)
            if entry is not None:
                out[key] = entry
        return out
    if isinstance(ja, str) and ja.strip():
        return ja
    missing.append(path)
    return None


def _models_template(en_node: dict[str, Any]) -> dict[str, Any]:
    start, end = MODELS_NAME_EN
    arch = en_node["display_name"][len(start):-len(end)]
    return {"display_name": MODELS_JA["display_name"].format(arch=arch),
            "description": MODELS_JA["description"].format(arch=arch), "inputs": {},
            "outputs": MODELS_JA["outputs"]}


def japanese(en: dict[str, Any], current: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The Japanese file for `en`, taking every translation `current` has for the same key;
    returns it and the keys that have no translation (``Node``, ``Node.inputs.x``, ...)."""
    have = current.get("nodeDefs", {})
    nodes: dict[str, Any] = {}
    missing: list[str] = []
    for node_id, en_node in en["nodeDefs"].items():
        old = have.get(node_id) or (_models_template(en_node) if node_id.startswith(MODELS_PREFIX) else {})
        node: dict[str, Any] = {}
        for key in ("display_name", "description"):
            if old.get(key):
                node[key] = old[key]
            else:
                missing.append(f"{node_id}.{key}")
        node["inputs"] = {}
        for name in en_node["inputs"]:
            entry = old.get("inputs", {}).get(name)
            if entry and entry.get("name") and entry.get("tooltip"):
                node["inputs"][name] = entry
            elif not node_id.startswith(MODELS_PREFIX):  # the models nodes keep the English input names
                missing.append(f"{node_id}.inputs.{name}")
        node["outputs"] = {}
        for index in en_node["outputs"]:
            entry = old.get("outputs", {}).get(index)
            if entry and entry.get("name") and entry.get("tooltip"):
                node["outputs"][index] = entry
            else:
                missing.append(f"{node_id}.outputs.{index}")
        nodes[node_id] = node
    out: dict[str, Any] = {"nodeDefs": nodes}
    for section, texts in en.items():
        if section != "nodeDefs":
            out[section] = _translated(texts, current.get(section), section, missing)
    return out, missing


def generated_files(object_info: dict[str, Any]) -> tuple[dict[Path, str], list[str]]:
    """Both locale files (path -> text) and the missing Japanese keys."""
    en_path, ja_path = LOCALES_DIR / "en" / "main.json", LOCALES_DIR / "ja" / "main.json"
    en = english(object_info, _read(en_path))
    ja, missing = japanese(en, _read(ja_path))
    return {en_path: render(en), ja_path: render(ja)}, missing


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 .ci/generate_locales.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running ComfyUI with this pack (default: start the pinned test ComfyUI)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a locale file would change")
    args = parser.parse_args(argv)
    with comfyui(args.url) as url:
        files, missing = generated_files(comfy_harness.ComfyClient(url).object_info())
    changed = sync(files, check=args.check)
    for path in changed:
        print(f"{'differs' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    if not changed:
        print("locales/ is up to date with the node definitions")
    if missing:
        print(f"{len(missing)} Japanese translations missing (add them to locales/ja/main.json by hand, "
              "then rerun to order them):", file=sys.stderr)
        for key in missing:
            print(f"  {key}", file=sys.stderr)
    return 1 if missing or (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())

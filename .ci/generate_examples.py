#!/usr/bin/env python3
"""Regenerate example_workflows/ from the node definitions of a ComfyUI running this pack.

    python3 .ci/generate_examples.py [--url URL] [--check] [--thumbnails]

Writes, for every example below, ``example_workflows/<name>.json`` (the UI workflow ComfyUI's
template browser opens), ``example_workflows/api/<name>.json`` (the same graph in API format,
for scripts) and, with --thumbnails, ``example_workflows/<name>.jpg`` (the picture the template
browser shows: a screenshot of the graph in headless Chromium). Widget order, defaults, output
types and display names come from ``/object_info``, so a changed node only needs a rerun.
Without --url it starts the pinned test ComfyUI (tests/comfy_harness.py) on a scratch folder.
--check writes nothing and exits 1 when a committed file differs. --thumbnails needs Chromium
and websocket-client (the test venv has both). Standard library otherwise.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "example_workflows"
sys.path.insert(0, str(ROOT / "tests"))

import comfy_harness  # noqa: E402  (after the path set-up above)

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# A required file dropdown of an empty model folder offers only this kind of placeholder
# (nodes/models.py): an example must name its model files, never take the server's first file.
PLACEHOLDER_PREFIX = "(no files in "

# Columns of the layout, left to right: dataset and models, the two cache steps, training,
# then the loaders that use the LoRA (with a gap, so the lora_name wire is visible).
COLUMNS = (40, 420, 800, 1180, 1680)
TRAIN_SIZE = (440, 480)  # the Train node with its essentials (web/musubi_train.js keeps it 440 wide)

NOTE = ("Put your images (or videos) and one caption file per item (same name, .txt) into ComfyUI's "
        "input/{folder} folder (or type an absolute path). Pick the model files in the Models node. "
        "Run 'Musubi Setup Check' once to see that musubi-tuner is found. Queue: latents are cached, "
        "then captions, then training runs with live progress; Cancel stops it at once. The LoRA lands in "
        "models/loras/musubi-tuner/ and goes straight into the LoRA loader on the right. "
        "Tip: switch dry_run on in the three step nodes to see the exact commands (and every value training "
        "uses) first. The Train node holds what a first run needs, following the Models node's recommended "
        "values; advanced settings are on the Musubi ... Options nodes (optimizer, memory, timesteps, samples, "
        "launch), wired into its options input.")


@dataclass(frozen=True)
class Example:
    """One dataset -> cache latents -> cache text encoder -> train -> LoRA loader graph.

    ``models``, ``dataset`` and ``train`` are widget values that differ from the node's
    defaults (every model file must be given); ``options`` are options nodes (type, values)
    chained under the Train node into its options input; ``unet`` is the file the loader on the
    right loads the LoRA onto; ``note`` is added to the common instructions.
    """

    name: str
    models_node: str
    models: dict[str, Any]
    dataset: dict[str, Any]
    train: dict[str, Any]
    unet: str
    note: str
    options: tuple[tuple[str, dict[str, Any]], ...] = ()


EXAMPLES = (
    Example(
        name="wan_2.1_2.2_t2v_lora",
        models_node="MusubiModelsWan",
        models={"task": "t2v-14B", "one_frame": False, "dit": "wan2.1_t2v_14B_bf16.safetensors",
                "vae": "wan_2.1_vae.safetensors", "t5": "models_t5_umt5-xxl-enc-bf16.pth", "clip": "(none)",
                "dit_high_noise": "(none)"},
        dataset={"media": "image", "directory": "my_wan_dataset", "width": 960, "height": 544},
        train={"output_name": "my_wan_lora"},
        unet="wan2.1_t2v_14B_bf16.safetensors",
        note="Wan 2.2 T2V A14B: set task to t2v-A14B, dit to the low-noise model and dit_high_noise to the "
             "high-noise model (both are trained at once). Videos: set media to video and target_frames "
             "(e.g. 1, 25, 45)."),
    Example(
        name="qwen_image_lora",
        models_node="MusubiModelsQwenImage",
        models={"model_version": "original", "dit": "qwen_image_bf16.safetensors",
                "vae": "qwen_image_vae.safetensors", "text_encoder": "qwen_2.5_vl_7b.safetensors"},
        dataset={"media": "image", "directory": "my_qwen_dataset", "width": 1024, "height": 1024},
        train={"output_name": "my_qwen_image_lora"},
        unet="qwen_image_bf16.safetensors",
        note="Qwen-Image needs about 42 GB of VRAM without savings; the Musubi Memory Options node under the Train "
             "node uses fp8_base + fp8_scaled and swaps 16 blocks (about 24 GB). Raise blocks_to_swap (up to 59) "
             "for smaller GPUs.",
        options=(("MusubiMemoryOptions", {"fp8": "fp8_base + fp8_scaled", "blocks_to_swap": 16}),)),
    Example(
        name="flux_1_kontext_lora",
        models_node="MusubiModelsFluxKontext",
        models={"dit": "flux1-kontext-dev.safetensors", "vae": "ae.safetensors",
                "text_encoder1": "t5xxl_fp16.safetensors", "text_encoder2": "clip_l.safetensors"},
        dataset={"media": "image", "directory": "my_kontext_dataset",
                 "control_directory": "my_kontext_dataset_control", "width": 1024, "height": 1024},
        train={"output_name": "my_kontext_lora"},
        unet="flux1-kontext-dev.safetensors",
        note="FLUX.1 Kontext learns an edit: every target image in my_kontext_dataset needs exactly one control "
             "(input) image with the same name in my_kontext_dataset_control, and a caption describing the "
             "edit."),
)


# ---------------------------------------------------------------------------------------------
# Graph -> UI workflow + API prompt
# ---------------------------------------------------------------------------------------------

@dataclass
class Node:
    """A node of an example before it becomes JSON; ``wires`` maps an input to (node id, output slot)."""

    id: int
    type: str
    pos: tuple[int, int]
    size: tuple[int, int]
    values: dict[str, Any] = field(default_factory=dict)
    wires: dict[str, tuple[int, int]] = field(default_factory=dict)


def graph(example: Example) -> list[Node]:
    c = COLUMNS
    lora_name = f"musubi-tuner/{example.train['output_name']}.safetensors"
    note = NOTE.format(folder=example.dataset["directory"]) + "\n\n" + example.note
    train_wires = {"dataset": (4, 0), "models": (2, 0)}
    chained, y = [], 60 + TRAIN_SIZE[1] + 40
    for index, (kind, values) in enumerate(example.options):
        wires = {"options": (chained[-1].id, 0)} if chained else {}
        chained.append(Node(9 + index, kind, (c[3], y), (TRAIN_SIZE[0], 60 + 24 * 5), values, wires))
        y += 60 + 24 * 5 + 30
    if chained:
        train_wires["options"] = (chained[-1].id, 0)
    return [
        Node(1, "MusubiDatasetConfig", (c[0], 60), (340, 520), example.dataset),
        Node(2, example.models_node, (c[0], 640), (340, 230), example.models),
        Node(3, "MusubiCacheLatents", (c[1], 60), (340, 260), wires={"dataset": (1, 0), "models": (2, 0)}),
        Node(4, "MusubiCacheTextEncoder", (c[2], 60), (340, 230), wires={"dataset": (3, 0), "models": (2, 0)}),
        Node(5, "MusubiTrainLoRA", (c[3], 60), TRAIN_SIZE, example.train, train_wires),
        Node(6, "UNETLoader", (c[4], 60), (340, 90), {"unet_name": example.unet, "weight_dtype": "default"}),
        Node(7, "LoraLoaderModelOnly", (c[4], 220), (340, 90), {"strength_model": 1.0, "lora_name": lora_name},
             {"model": (6, 0), "lora_name": (5, 0)}),
        Node(8, "Note", (c[1], 420), (720, 220), {"text": note}),
        *chained,
    ]


def _inputs(info: dict[str, Any]) -> list[tuple[str, list[Any], bool]]:
    """(name, spec, optional) of a node's inputs in definition order."""
    return [(name, spec, group == "optional")
            for group in ("required", "optional") for name, spec in info["input"].get(group, {}).items()]


def _is_widget(spec: list[Any]) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def _default(spec: list[Any]) -> Any:
    options = spec[1] if len(spec) > 1 else {}
    if isinstance(spec[0], list):
        return options.get("default", spec[0][0] if spec[0] else None)
    return options.get("default")


def build(example: Example, object_info: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The UI workflow and the API prompt of one example."""
    nodes = graph(example)
    links: list[list[Any]] = []  # [id, from node, from slot, to node, to input name, type]
    for node in nodes:
        for name, (source, slot) in node.wires.items():
            source_type = next(n.type for n in nodes if n.id == source)
            links.append([len(links) + 1, source, slot, node.id, name, object_info[source_type]["output"][slot]])

    ui_nodes: list[dict[str, Any]] = []
    api: dict[str, Any] = {}
    for order, node in enumerate(nodes):
        common = {"id": node.id, "type": node.type, "pos": list(node.pos), "size": list(node.size), "flags": {},
                  "order": order, "mode": 0}
        if node.type == "Note":
            ui_nodes.append({**common, "inputs": [], "outputs": [], "properties": {},
                             "widgets_values": [node.values["text"]], "color": "#432", "bgcolor": "#653"})
            continue
        info = object_info[node.type]
        unknown = set(node.values) | set(node.wires)
        unknown -= {name for name, _, _ in _inputs(info)}
        if unknown:
            raise ValueError(f"{example.name}: {node.type} has no input {', '.join(sorted(unknown))}")
        link_of = {link[4]: link[0] for link in links if link[3] == node.id}
        sockets, widget_sockets, widgets, api_inputs = [], [], [], {}
        for name, spec, optional in _inputs(info):
            if not _is_widget(spec):
                entry = {"name": name, "type": spec[0], "link": link_of.get(name)}
                if optional:
                    entry["shape"] = 7  # the frontend draws optional sockets hollow
                sockets.append(entry)
                continue
            value = node.values.get(name, _default(spec))
            if value is None or (isinstance(value, str) and value.startswith(PLACEHOLDER_PREFIX)):
                raise ValueError(f"{example.name}: give {node.type}.{name} a value (its default depends on the "
                                 "server's model folders)")
            widgets.append(value)
            if not optional or name in node.values:
                api_inputs[name] = value
            if name in link_of:  # a widget wired from another node becomes a socket
                kind = "COMBO" if isinstance(spec[0], list) else spec[0]
                widget_sockets.append({"name": name, "type": kind, "widget": {"name": name},
                                       "link": link_of[name]})
        for name, (source, slot) in node.wires.items():
            api_inputs[name] = [str(source), slot]
        outputs = [{"name": name, "type": kind,
                    "links": [link[0] for link in links if link[1] == node.id and link[2] == slot], "slot_index": slot}
                   for slot, (name, kind) in enumerate(zip(info["output_name"], info["output"]))]
        ui_nodes.append({**common, "inputs": sockets + widget_sockets, "outputs": outputs,
                         "properties": {"Node name for S&R": node.type}, "widgets_values": widgets})
        api[str(node.id)] = {"class_type": node.type, "inputs": api_inputs, "_meta": {"title": info["display_name"]}}

    # a link's target slot is the index into the target's inputs list
    by_id = {n["id"]: n for n in ui_nodes}
    ui_links = [[lid, src, slot, dst, next(i for i, e in enumerate(by_id[dst]["inputs"]) if e["name"] == name), kind]
                for lid, src, slot, dst, name, kind in links]
    ui = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "musubi-tuner-nodes/" + example.name)), "revision": 0,
          "last_node_id": max(n.id for n in nodes), "last_link_id": len(links), "nodes": ui_nodes,
          "links": ui_links, "groups": [], "config": {}, "extra": {"ds": {"scale": 0.75, "offset": [40, 40]}},
          "version": 0.4}
    return ui, api


def render(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def generated_files(object_info: dict[str, Any]) -> dict[Path, str]:
    """Every JSON file this script writes, path -> text (tests compare them with the committed ones)."""
    files = {}
    for example in EXAMPLES:
        ui, api = build(example, object_info)
        files[EXAMPLES_DIR / f"{example.name}.json"] = render(ui)
        files[EXAMPLES_DIR / "api" / f"{example.name}.json"] = render(api)
    return files


def stale_examples() -> list[Path]:
    """Committed examples no entry of EXAMPLES makes (a renamed or removed example)."""
    names = {e.name for e in EXAMPLES}
    return sorted(p for p in [*EXAMPLES_DIR.glob("*.json"), *EXAMPLES_DIR.glob("api/*.json"),
                              *EXAMPLES_DIR.glob("*.jpg")] if p.stem not in names)


def sync(files: dict[Path, str], *, check: bool) -> list[Path]:
    """Write the files whose text differs (or only list them with `check`); returns those paths."""
    changed = []
    for path, text in files.items():
        try:
            current = path.read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != text:
            changed.append(path)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    return changed


# ---------------------------------------------------------------------------------------------
# A ComfyUI to read the node definitions from (and to draw the thumbnails in)
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def comfyui(url: str | None) -> Iterator[str]:
    """`url` as given, or the pinned test ComfyUI with this checkout, started on a scratch folder
    for the duration (its model folders are empty, which the examples do not depend on)."""
    if url:
        yield url.rstrip("/")
        return
    install = comfy_harness.ensure_comfyui()
    with tempfile.TemporaryDirectory(prefix="musubi-examples-") as base, \
            comfy_harness.ComfyServer(install, Path(base)) as server:
        yield server.url


# What the thumbnails hide: everything but the graph (the frontend's focus mode keeps the canvas
# controls and its own exit button; the banner advertises the new node design).
HIDE_CHROME_CSS = (".graph-canvas-panel .p-buttongroup, .comfy-menu-hamburger, .bg-gradient-to-r"
                   " { display: none !important; }")
# The frontend is ready when its app has a graph and the node definitions are registered
# (the same condition as the comfy_page test fixture).
FRONTEND_READY = ("window.app && window.app.vueAppReady && window.app.graph && window.LiteGraph"
                  " && Object.keys(LiteGraph.registered_node_types).length > 0")
# Like the frontend's Fit View, with a thinner margin: the graph is twice as wide as high.
FIT_GRAPH_JS = """(() => {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const node of app.graph._nodes) {
    const [x, y, w, h] = node.getBounding();
    x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + w); y1 = Math.max(y1, y + h);
  }
  const width = app.canvas.canvas.clientWidth, height = app.canvas.canvas.clientHeight;
  const scale = Math.min(0.96 * width / (x1 - x0), 0.96 * height / (y1 - y0));
  app.canvas.ds.scale = scale;
  app.canvas.ds.offset = [width / scale / 2 - (x0 + x1) / 2, height / scale / 2 - (y0 + y1) / 2];
  app.canvas.setDirty(true, true);
})()"""
THUMBNAIL_VIEW = 1600  # square viewport in CSS pixels; the template browser's cards are square
THUMBNAIL_SIZE = 480
THUMBNAIL_QUALITY = 80


def take_thumbnails(url: str, names: list[str]) -> dict[Path, bytes]:
    """A JPEG of each example's graph, fitted into a square, as the template browser shows it."""
    from comfy_browser import Chromium, find_chromium

    executable = find_chromium()
    if executable is None:
        raise SystemExit("--thumbnails needs Chromium (Debian: apt-get install -y chromium)")
    # A first visit opens the template browser over the canvas; this is the setting its close sets.
    comfy_harness.ComfyClient(url).post("/settings/Comfy.TutorialCompleted", True)
    shots = {}
    with Chromium(executable, window_size=(THUMBNAIL_VIEW, THUMBNAIL_VIEW)) as browser:
        page = browser.tab()
        try:
            page.navigate(url)
            page.wait_for(FRONTEND_READY, timeout=60)
            page.evaluate("app.extensionManager.command.execute('Workspace.ToggleFocusMode')")
            # Draw text at any zoom (the fitted graph is below the frontend's low-detail zoom) and
            # no performance counters; set on the canvas only, not as the user's settings.
            page.evaluate("app.canvas.min_font_size_for_lod = 1; app.canvas.show_info = false")
            page.evaluate("(() => { const s = document.createElement('style');"
                          f" s.textContent = {json.dumps(HIDE_CHROME_CSS)}; document.head.append(s); }})()")
            for name in names:
                workflow = (EXAMPLES_DIR / f"{name}.json").read_text(encoding="utf-8")
                page.evaluate(f"app.loadGraphData({workflow}, true, true, {json.dumps(name)})")
                page.evaluate(FIT_GRAPH_JS)
                time.sleep(0.5)  # a few frames: the canvas and the DOM widgets (the note) redraw
                data = page.send("Page.captureScreenshot", format="jpeg", quality=THUMBNAIL_QUALITY,
                                 clip={"x": 0, "y": 0, "width": THUMBNAIL_VIEW, "height": THUMBNAIL_VIEW,
                                       "scale": THUMBNAIL_SIZE / THUMBNAIL_VIEW})["data"]
                shots[EXAMPLES_DIR / f"{name}.jpg"] = base64.b64decode(data)
        finally:
            page.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 .ci/generate_examples.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running ComfyUI with this pack (default: start the pinned test ComfyUI)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a committed file differs")
    parser.add_argument("--thumbnails", action="store_true",
                        help="also redraw example_workflows/<name>.jpg in headless Chromium")
    args = parser.parse_args(argv)
    with comfyui(args.url) as url:
        object_info = comfy_harness.ComfyClient(url).object_info()
        changed = sync(generated_files(object_info), check=args.check)
        if args.thumbnails and not args.check:
            for path, data in take_thumbnails(url, [e.name for e in EXAMPLES]).items():
                path.write_bytes(data)
                print(f"drew {path.relative_to(ROOT)} ({len(data) // 1024} KiB)")
    missing = [EXAMPLES_DIR / f"{e.name}.jpg" for e in EXAMPLES if not (EXAMPLES_DIR / f"{e.name}.jpg").exists()]
    for path in changed:
        print(f"{'differs' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    for path in stale_examples():
        print(f"not made by any example (delete it?): {path.relative_to(ROOT)}", file=sys.stderr)
    for path in missing:
        print(f"no thumbnail: {path.relative_to(ROOT)} (run with --thumbnails)", file=sys.stderr)
    if not changed:
        print("example_workflows/ is up to date with the node definitions")
    return 1 if args.check and (changed or missing) else 0


if __name__ == "__main__":
    sys.exit(main())

"""The pack in a real browser: headless Chromium against the test server's ComfyUI frontend.

What a user sees: every node registered, the node search finds them, an example workflow opens
from the template browser (with its thumbnail), an empty model folder shows its placeholder, and
a run queued with the Run button moves the Train node's progress bar and progress text (against
the fake musubi venv, one second per training step). Screenshots go to test-artifacts/
(gitignored); CI keeps them as artifacts.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import comfy_browser
from comfy_browser import CdpPage, Chromium, center, dismiss_banner
from comfy_fixtures import FRONTEND_READY, fake_musubi_server, pack_node_ids
from comfy_harness import ComfyClient, ComfyServer
from fakes import FakeMusubi, fake_musubi, png_bytes  # noqa: F401  (fake_musubi is a fixture)

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.timeout(180)]

EXAMPLES = Path(__file__).resolve().parent.parent / "example_workflows"
WAN_EXAMPLE = "wan_2.1_2.2_t2v_lora"
TRAIN_NODE = 5  # the Train LoRA node's id in the examples


def open_template(page: CdpPage, name: str, shot: Path | None = None) -> None:
    """Open this pack's example `name` from the template browser, as a user does (the example's
    node types tell when it is on the canvas)."""
    nodes = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))["nodes"]
    comfy_browser.open_template(page, name, [n["type"] for n in nodes], shot=shot)


def repaint(page: CdpPage) -> None:
    page.evaluate("app.graph.setDirtyCanvas(true, true)")
    page.wait_for("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))", timeout=10)


def test_frontend_registers_every_pack_node(comfy_page: CdpPage, comfy_client: ComfyClient,
                                            artifacts_dir: Path) -> None:
    expected = pack_node_ids(comfy_client)
    assert expected, "the pack registered no nodes"
    registered = comfy_page.evaluate(
        f"{json.dumps(expected)}.filter(id => !!LiteGraph.registered_node_types[id])")
    assert registered == expected
    comfy_page.screenshot(artifacts_dir / "frontend.png")


def test_node_search_finds_the_pack_nodes(comfy_page: CdpPage, comfy_client: ComfyClient,
                                          artifacts_dir: Path) -> None:
    expected = pack_node_ids(comfy_client)
    info = comfy_client.object_info()
    # an empty canvas, so the double-click lands on the canvas and opens the node search
    comfy_page.evaluate("app.graph.clear()")
    width, height = comfy_page.browser.window_size
    comfy_page.click(width / 2, height / 2, count=2)
    # the search box's placeholder: "Search Nodes..." in frontend 1.32 (ComfyUI 0.3.75), "Add a node..." in 1.49
    comfy_page.wait_for("document.activeElement && ['Search Nodes...', 'Add a node...']"
                        ".includes(document.activeElement.placeholder)", timeout=10)
    comfy_page.type_text("Musubi")
    found = comfy_page.wait_for(
        "(() => { const o = Array.from(document.querySelectorAll('[role=option]')).map(e => e.innerText);"
        " return o.some(t => t.includes('musubi-tuner-nodes')) && o; })()", timeout=15, value=True)
    comfy_page.screenshot(artifacts_dir / "node-search.png")
    shown = " ".join(found)
    # the search list is scrolled, not truncated: at least the first screenful is ours
    ours = [node_id for node_id in expected if info[node_id]["display_name"] in shown]
    assert len(ours) >= min(5, len(expected)), (ours, found)
    comfy_page.press_key("Escape", "Escape", 27)


def test_pack_nodes_can_be_placed_on_the_canvas(comfy_page: CdpPage, comfy_client: ComfyClient,
                                                artifacts_dir: Path) -> None:
    info = comfy_client.object_info()
    # one node of each category, laid out left to right, as a picture of what the pack offers
    by_category: dict[str, str] = {}
    for node_id in pack_node_ids(comfy_client):
        by_category.setdefault(info[node_id]["category"], node_id)
    chosen = [by_category[c] for c in sorted(by_category)]
    placed = comfy_page.evaluate(
        "(() => { app.graph.clear(); let x = 40; const out = [];"
        f" for (const id of {json.dumps(chosen)}) {{"
        "   const node = LiteGraph.createNode(id); node.pos = [x, 80]; app.graph.add(node);"
        "   x += node.size[0] + 40; out.push(node.type); }"
        " return out; })()")
    assert placed == chosen
    # below the frontend's top bars, zoomed out enough to show the row
    comfy_page.evaluate("app.canvas.ds.scale = 0.7; app.canvas.ds.offset = [40, 170];"
                        " app.graph.setDirtyCanvas(true, true)")
    comfy_page.wait_for("new Promise(r => requestAnimationFrame(() => r(true)))", timeout=10)
    comfy_page.screenshot(artifacts_dir / "pack-nodes.png")


def test_an_example_workflow_opens_from_the_template_browser(comfy_page: CdpPage, artifacts_dir: Path) -> None:
    dismiss_banner(comfy_page)
    comfy_page.evaluate("app.graph.clear()")
    open_template(comfy_page, WAN_EXAMPLE, shot=artifacts_dir / "template-browser.png")
    example = json.loads((EXAMPLES / f"{WAN_EXAMPLE}.json").read_text(encoding="utf-8"))
    train = next(n for n in example["nodes"] if n["type"] == "MusubiTrainLoRA")
    shown = comfy_page.evaluate(
        f"(() => {{ const n = app.graph.getNodeById({train['id']});"
        " return [n.type, n.widgets.find(w => w.name === 'output_name').value,"
        " app.graph.links.size ?? Object.keys(app.graph.links).length]; })()")
    assert shown == ["MusubiTrainLoRA", "my_wan_lora", len(example["links"])]
    comfy_page.evaluate("app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    repaint(comfy_page)
    comfy_page.screenshot(artifacts_dir / "template-loaded.png")


def test_an_empty_model_folder_shows_its_placeholder_not_undefined(comfy_page: CdpPage, artifacts_dir: Path) -> None:
    # the common test server's model folders are empty
    values = comfy_page.evaluate(
        "(() => { app.graph.clear(); const node = LiteGraph.createNode('MusubiModelsWan'); node.pos = [80, 120];"
        " app.graph.add(node); return Object.fromEntries(node.widgets.map(w => [w.name, String(w.value)])); })()")
    assert values["dit"] == "(no files in models/diffusion_models)"
    assert values["vae"] == "(no files in models/vae)" and values["clip"] == "(none)"
    assert "undefined" not in values.values()
    repaint(comfy_page)
    comfy_page.screenshot(artifacts_dir / "empty-model-folders.png")


# ---------------------------------------------------------------------------- a run from the UI

def start_training_server(comfy_servers: Any, fake_musubi: FakeMusubi, name: str,
                          settings: dict[str, Any]) -> ComfyServer:
    """A server whose pack runs the fake musubi venv with ``settings`` (the pack's settings file
    in ComfyUI's user folder; its ``env`` paces the fake), with tiny model files and a four-image
    dataset in input/my_wan_dataset (the Wan example's folder)."""
    server = fake_musubi_server(comfy_servers, fake_musubi, name)
    dataset = server.base_dir / "input" / "my_wan_dataset"
    dataset.mkdir(parents=True, exist_ok=True)
    for i in range(1, 5):
        (dataset / f"img{i}.png").write_bytes(png_bytes(64, 64))
        (dataset / f"img{i}.txt").write_text(f"a photo number {i}", encoding="utf-8")
    settings_file = server.base_dir / "user" / "__musubi-tuner-nodes" / "config.json"
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(json.dumps(settings), encoding="utf-8")
    return server


@contextlib.contextmanager
def frontend(chromium: Chromium, server: ComfyServer) -> Iterator[CdpPage]:
    """A tab with ``server``'s frontend loaded (tutorial dismissed), closed afterwards."""
    server.client().post("/settings/Comfy.TutorialCompleted", True)
    page = chromium.tab()
    try:
        page.navigate(server.url)
        page.wait_for(FRONTEND_READY, timeout=60)
        yield page
    finally:
        page.close()


@pytest.fixture(scope="module")
def run_server(comfy_servers: Any, fake_musubi: FakeMusubi) -> ComfyServer:  # noqa: F811
    """The fake musubi at one second per training step."""
    return start_training_server(comfy_servers, fake_musubi, "browser-run",
                                 {"env": {"FAKE_MUSUBI_STEP_SECONDS": "1"}})


@pytest.fixture
def run_page(chromium: Chromium, run_server: ComfyServer) -> Iterator[CdpPage]:
    with frontend(chromium, run_server) as page:
        yield page


# What a user changes in the Wan example to train on the test server: its folder holds 64 px
# images, the model dropdowns list the tiny files, and the fake venv has no bitsandbytes for
# the recommended adamw8bit (AdamW on a Musubi Optimizer Options node). Three epochs of four
# images: 12 steps.
ADAPT_WAN_EXAMPLE = """(() => {
  const set = (id, name, value) => {
    const widget = app.graph.getNodeById(id).widgets.find(w => w.name === name);
    widget.value = value;
    widget.callback?.(value);
  };
  set(1, 'width', 64); set(1, 'height', 64); set(1, 'enable_bucket', false);
  set(2, 'task', 't2v-1.3B'); set(2, 'dit', 'tiny_diffusion_models.safetensors');
  set(2, 'vae', 'tiny_vae.safetensors'); set(2, 't5', 'tiny_text_encoders.safetensors');
  set(5, 'max_train_epochs', 3); set(5, 'output_name', 'browser_run');
  const optimizer = LiteGraph.createNode('MusubiOptimizerOptions');
  optimizer.pos = [420, 680];
  app.graph.add(optimizer);
  optimizer.widgets.find(w => w.name === 'optimizer_type').value = 'AdamW';
  const train = app.graph.getNodeById(5);
  optimizer.connect(0, train, train.inputs.findIndex(i => i.name === 'options'));
})()"""
# The screenshots' view: the cache steps, the whole Train node (with its progress text at the
# bottom) and the loaders, below the frontend's top bar; no minimap or canvas counters over them.
SHOW_STEPS = f"""(() => {{
  app.extensionManager.setting.set('Comfy.Minimap.Visible', false);
  app.canvas.show_info = false;
  const first = app.graph.getNodeById(3).getBounding(), train = app.graph.getNodeById({TRAIN_NODE}).getBounding();
  const scale = Math.min(0.85, (app.canvas.canvas.clientHeight - 140) / train[3]);
  app.canvas.ds.scale = scale;
  app.canvas.ds.offset = [70 / scale - first[0], 105 / scale - train[1]];
}})()"""
TRAIN_STATE = (f"(() => {{ const n = app.graph.getNodeById({TRAIN_NODE});"
               " const text = n.widgets?.find(w => w.name === '$$node-text-preview');"
               " return {progress: n.progress ?? null, text: text ? String(text.value) : null}; })()")


def train_state(page: CdpPage) -> dict[str, Any]:
    return page.evaluate(TRAIN_STATE)


# The bar's fill and the text's "step n/12" name the same step. The two travel as separate
# websocket messages, so a snapshot may fall between them: the snapshots below wait for one that
# does not; WATCH_BAR_AND_TEXT checks that they never stay apart.
SAME_STEP = ("(() => { const m = /step (\\d+)\\/12/.exec(s.text || '');"
             " return !!m && Math.round(s.progress * 12) === Number(m[1]); })()")
# Every 50 ms while the run goes: the bar's fill and the step the text names, as a user sees them.
WATCH_BAR_AND_TEXT = (f"(() => {{ window.__musubiSeen = []; window.__musubiWatch = setInterval(() => {{"
                      f" const s = {TRAIN_STATE}; const m = /step (\\d+)\\/(\\d+)/.exec(s.text || '');"
                      " if (s.progress !== null && m) window.__musubiSeen.push("
                      "[performance.now(), s.progress, Number(m[1]), Number(m[2]), s.text]); }, 50); })()")


def bar_and_text_disagreements(page: CdpPage, longer_than: float = 0.25) -> list[list[Any]]:
    """Stretches of the run in which the bar showed another step than the text, longer than
    ``longer_than`` seconds. The bar and the text travel as two websocket messages, so a sample
    may fall between the two; a real disagreement lasts until the next update (a step)."""
    seen = page.evaluate("(() => { clearInterval(window.__musubiWatch); return window.__musubiSeen; })()")
    stretches, current = [], []
    for sample in seen:
        at, progress, step, total = sample[:4]
        if round(progress * total) != step:
            current.append(sample)
            continue
        if current and (sample[0] - current[0][0]) / 1000 > longer_than:
            stretches.append(current)
        current = []
    if current and (seen[-1][0] - current[0][0]) / 1000 > longer_than:
        stretches.append(current)
    assert len(seen) > 20, f"the watch saw only {len(seen)} samples"
    return stretches


@pytest.mark.timeout(240)
def test_a_run_queued_with_the_run_button_moves_the_train_nodes_progress(
        run_page: CdpPage, run_server: ComfyServer, artifacts_dir: Path) -> None:
    page = run_page
    dismiss_banner(page)
    open_template(page, WAN_EXAMPLE)
    page.evaluate(ADAPT_WAN_EXAMPLE)
    page.evaluate(SHOW_STEPS)
    repaint(page)
    page.evaluate(WATCH_BAR_AND_TEXT)
    page.click(*center(page, "[data-testid=queue-button]"))

    # mid-run: the bar is part-way and the text names the phase, the step and the loss
    first = page.wait_for(f"(() => {{ const s = {TRAIN_STATE}; return s.progress > 0 && s.progress < 0.5"
                          f" && {SAME_STEP} && s; }})()", timeout=120, value=True)
    page.screenshot(artifacts_dir / "training-early.png")
    assert "epoch" in first["text"] and "avr_loss" in first["text"], first
    later = page.wait_for(f"(() => {{ const s = {TRAIN_STATE}; return s.progress >= 0.5 && s.progress < 1"
                          f" && {SAME_STEP} && s; }})()", timeout=60, value=True)
    page.screenshot(artifacts_dir / "training-progress.png")
    assert later["progress"] > first["progress"]
    # the frontend's own summary beside the Run button names the running node
    assert "Musubi Train LoRA" in page.evaluate("document.body.innerText")

    # the end: the bar is gone, the text says done, the LoRA is where LoraLoader looks
    done = page.wait_for(f"(() => {{ const s = {TRAIN_STATE};"
                         " return s.progress === null && /done/.test(s.text || '') && s; })()", timeout=60, value=True)
    page.screenshot(artifacts_dir / "training-done.png")
    assert "browser_run" in done["text"]
    assert bar_and_text_disagreements(page) == [], "the bar and the text showed different steps"
    lora = run_server.base_dir / "models" / "loras" / "musubi-tuner" / "browser_run.safetensors"
    deadline = time.monotonic() + 10
    while not lora.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lora.is_file(), sorted(p.name for p in lora.parent.glob("*")) if lora.parent.exists() else "no folder"

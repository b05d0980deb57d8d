"""The Train node for people who are not programmers, in a real browser (web/musubi_train.js): a fresh
Wan template shows the essentials with the architecture's real recommended values, they change when
the Models node becomes Qwen-Image (a value the user typed stays), a Train node without a Models node
says "recommended for the architecture", the options nodes show what "(recommended)" means, and a
workflow saved with the Train node of version 0.1.0 opens with its settings on options nodes.
Screenshots go to test-artifacts/ (train-*.png); two are committed in .ci/screenshots/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfy_browser import CdpPage
from comfy_harness import PACK_FOLDER_NAME
from test_comfy_browser import TRAIN_NODE, WAN_EXAMPLE, dismiss_banner, open_template, repaint

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.timeout(180)]

OLD_WORKFLOWS = Path(__file__).resolve().parent / "fixtures" / "workflows_0.1.0"
ESSENTIALS = ["output_name", "max_train_epochs", "network_dim", "network_alpha", "learning_rate",
              "save_every_n_epochs", "sample_prompts", "resume", "dry_run", "run_as"]
WAN, QWEN = "Wan 2.1 / 2.2", "Qwen-Image"
# name -> [value, what the classic canvas draws (the widget's _displayValue)] of a node's widgets
WIDGETS = ("(id => {{ const n = app.graph.getNodeById(id); return n && Object.fromEntries(n.widgets"
           ".filter(w => !w.name.startsWith('$$')).map(w => [w.name, [w.value, String(w._displayValue ?? '')]])); }})({})")
# The Train node at 100 % with the cache step before it, below the frontend's top bars; no minimap
# or canvas counters over them.
SHOW_TRAIN = f"""(() => {{
  app.extensionManager.setting.set('Comfy.Minimap.Visible', false);
  app.canvas.show_info = false;
  const train = app.graph.getNodeById({TRAIN_NODE}).getBounding();
  app.canvas.ds.scale = 1.0;
  app.canvas.ds.offset = [app.canvas.canvas.clientWidth - 80 - train[0] - train[2], 110 - train[1]];
  app.graph.setDirtyCanvas(true, true);
}})()"""
# Replace the Models node by a Qwen-Image one wired to the same inputs, as a user does.
SWITCH_TO_QWEN = """(() => {
  const old = app.graph._nodes.find(n => n.type === 'MusubiModelsWan');
  const node = LiteGraph.createNode('MusubiModelsQwenImage');
  node.pos = [...old.pos];
  app.graph.add(node);
  const targets = (old.outputs[0].links || []).map(id => {
    const link = app.graph.getLink?.(id) ?? app.graph.links.get?.(id) ?? app.graph.links[id];
    return [app.graph.getNodeById(link.target_id), link.target_slot];
  });
  app.graph.remove(old);
  for (const [target, slot] of targets) node.connect(0, target, slot);
  return targets.length;
})()"""


def load_template(page: CdpPage, name: str) -> None:
    """An example from this pack's templates: clicked in the template browser of frontend 1.32 (the
    one CI runs); other frontends get the same file the template browser loads, loaded as it does."""
    if str(page.evaluate("window.__COMFYUI_FRONTEND_VERSION__ ?? ''")).startswith("1.32."):
        open_template(page, name)
        return
    route = f"/workflow_templates/{PACK_FOLDER_NAME}/{name}.json"
    page.evaluate(f"(async () => {{ const r = await api.fetchApi({json.dumps(route)});"
                  f" await app.loadGraphData(await r.json(), true, true, {json.dumps(name)}); }})()"
                  .replace("api.fetchApi", "app.api.fetchApi"))


def widgets(page: CdpPage, node_id: int) -> dict[str, Any]:
    return page.evaluate(WIDGETS.format(node_id))


def wait_widgets(page: CdpPage, node_id: int, condition: str) -> dict[str, Any]:
    """The node's widgets once `condition` (JavaScript over `w`, the widgets as WIDGETS gives
    them) holds."""
    return page.wait_for(f"(() => {{ const w = {WIDGETS.format(node_id)}; return w && ({condition}) && w; }})()",
                         timeout=20, value=True)


def set_by_user(page: CdpPage, node_id: int, name: str, value: Any) -> None:
    page.evaluate(f"(() => {{ const w = app.graph.getNodeById({node_id}).widgets.find(w => w.name === {json.dumps(name)});"
                  f" w.value = {json.dumps(value)}; w.callback?.(w.value); }})()")


def test_a_fresh_wan_template_shows_the_essentials_with_real_recommended_values_then_qwen_images(
        comfy_page: CdpPage, artifacts_dir: Path) -> None:
    page = comfy_page
    dismiss_banner(page)
    page.evaluate("app.graph.clear()")
    load_template(page, WAN_EXAMPLE)
    wan = wait_widgets(page, TRAIN_NODE, "w.network_dim[0] === 32")
    assert list(wan) == ESSENTIALS
    assert wan["network_dim"] == [32, f"32 (recommended for {WAN})"]
    assert wan["learning_rate"] == [0.0002, f"2e-4 (recommended for {WAN})"]
    assert wan["max_train_epochs"] == [16, f"16 (recommended for {WAN})"]
    assert wan["network_alpha"] == [1, f"1 (recommended for {WAN})"]
    assert wan["save_every_n_epochs"] == [1, "1"], "not an input that follows a recommendation"
    placeholder = page.evaluate(f"app.graph.getNodeById({TRAIN_NODE}).widgets.find(w => w.name === 'sample_prompts')"
                                ".inputEl?.placeholder ?? null")
    assert placeholder is None or placeholder.startswith("Empty: one sample from the dataset's first caption")
    page.evaluate(SHOW_TRAIN)
    repaint(page)
    page.screenshot(artifacts_dir / "train-essentials-wan.png")

    set_by_user(page, TRAIN_NODE, "network_alpha", 8)
    assert page.evaluate(SWITCH_TO_QWEN) == 3  # both cache steps and the Train node
    qwen = wait_widgets(page, TRAIN_NODE, "w.network_dim[0] === 16")
    assert qwen["network_dim"] == [16, f"16 (recommended for {QWEN})"]
    assert qwen["learning_rate"] == [0.00005, f"5e-5 (recommended for {QWEN})"]
    assert qwen["max_train_epochs"] == [16, f"16 (recommended for {QWEN})"]
    assert qwen["network_alpha"] == [8, "8.0"], "a value the user set stays (drawn as the frontend draws it)"
    page.evaluate(SHOW_TRAIN)
    repaint(page)
    page.screenshot(artifacts_dir / "train-essentials-qwen.png")

    # saved and opened again, the values still follow: back to a Wan model, they are Wan's again
    saved = page.evaluate("JSON.stringify(app.graph.serialize())")
    page.evaluate(f"app.loadGraphData(JSON.parse({json.dumps(saved)}))")
    wait_widgets(page, TRAIN_NODE, "w.network_dim[0] === 16")
    page.evaluate("""(() => {
      const old = app.graph._nodes.find(n => n.type === 'MusubiModelsQwenImage');
      const node = LiteGraph.createNode('MusubiModelsWan'); node.pos = [...old.pos]; app.graph.add(node);
      const train = app.graph.getNodeById(%d);
      node.connect(0, train, train.inputs.findIndex(i => i.name === 'models'));
    })()""" % TRAIN_NODE)
    again = wait_widgets(page, TRAIN_NODE, "w.network_dim[0] === 32")
    assert again["learning_rate"][0] == 0.0002 and again["network_alpha"] == [8, "8.0"]


def test_without_a_models_node_the_train_node_says_recommended_for_the_architecture(
        comfy_page: CdpPage, artifacts_dir: Path) -> None:
    page = comfy_page
    dismiss_banner(page)
    page.evaluate("(() => { app.graph.clear(); const n = LiteGraph.createNode('MusubiTrainLoRA'); n.pos = [200, 150];"
                  " app.graph.add(n); window.__train = n.id; })()")
    node_id = page.evaluate("window.__train")
    bare = wait_widgets(page, node_id, "w.network_dim[1] !== '0'")
    for name in ("max_train_epochs", "network_dim", "network_alpha", "learning_rate"):
        assert bare[name] == [0, "recommended for the architecture"], name
    assert page.evaluate(f"app.graph.getNodeById({node_id}).size[0]") >= 440
    repaint(page)
    page.screenshot(artifacts_dir / "train-unwired.png")


def test_options_nodes_show_what_recommended_means_and_the_train_node_takes_them(
        comfy_page: CdpPage, artifacts_dir: Path) -> None:
    page = comfy_page
    dismiss_banner(page)
    page.evaluate("app.graph.clear()")
    load_template(page, "qwen_image_lora")
    memory = page.evaluate("app.graph._nodes.find(n => n.type === 'MusubiMemoryOptions').id")
    shown = wait_widgets(page, memory, "w.mixed_precision[1].includes('recommended for')")
    assert shown["mixed_precision"] == ["(recommended)", f"bf16 (recommended for {QWEN})"]
    assert shown["attention"] == ["(recommended)", f"sdpa (recommended for {QWEN})"]
    assert shown["fp8"] == ["fp8_base + fp8_scaled", "fp8_base + fp8_scaled"] and shown["blocks_to_swap"][0] == 16
    prompt = page.evaluate("(async () => (await app.graphToPrompt()).output)()")
    train = prompt[str(TRAIN_NODE)]["inputs"]
    assert train["options"] == [str(memory), 0]
    assert prompt[str(memory)]["inputs"]["blocks_to_swap"] == 16
    page.evaluate("app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    repaint(page)
    page.screenshot(artifacts_dir / "train-options-qwen.png")


@pytest.mark.parametrize("name", sorted(p.stem for p in OLD_WORKFLOWS.glob("*.json")))
def test_a_workflow_saved_with_the_train_node_of_0_1_0_opens_with_every_value_in_place(
        name: str, comfy_page: CdpPage, artifacts_dir: Path) -> None:
    page = comfy_page
    dismiss_banner(page)
    old = json.loads((OLD_WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))
    old_train = next(n for n in old["nodes"] if n["type"] == "MusubiTrainLoRA")
    api = json.loads((OLD_WORKFLOWS / "api" / f"{name}.json").read_text(encoding="utf-8"))
    page.evaluate("app.graph.clear()")
    page.evaluate(f"app.loadGraphData({json.dumps(old)})")
    train = wait_widgets(page, old_train["id"], f"w.output_name && w.output_name[0] === "
                         f"{json.dumps(old_train['widgets_values'][0])} && w.network_dim[0] > 0")
    assert list(train) == ESSENTIALS
    assert train["output_name"][0] == old_train["widgets_values"][0] and train["dry_run"][0] is False
    assert train["run_as"][0] == "wait", "a workflow of 0.1.0 keeps waiting for its training"
    prompt = page.evaluate("(async () => (await app.graphToPrompt()).output)()")
    # every value the API twin of 0.1.0 set on the Train node reaches the prompt, on the Train node
    # or on the options node chained into it
    chained: dict[str, Any] = {}
    link = prompt[str(old_train["id"])]["inputs"].get("options")
    while link:
        chained.update({k: v for k, v in prompt[link[0]]["inputs"].items() if k != "options"})
        link = prompt[link[0]]["inputs"].get("options")
    for key, value in api[str(old_train["id"])]["inputs"].items():
        if not isinstance(value, list):
            assert prompt[str(old_train["id"])]["inputs"].get(key, chained.get(key)) == value, key
    added = [n["class_type"] for n in prompt.values() if n["class_type"].endswith("Options")]
    assert added == (["MusubiMemoryOptions"] if name == "qwen_image_lora" else [])
    if added:
        page.wait_for("document.body.innerText.includes('Musubi Train LoRA updated')", timeout=10)
    page.evaluate("app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    repaint(page)
    page.screenshot(artifacts_dir / f"train-opened-0.1.0-{name}.png")


def test_in_the_nodes_2_0_renderer_the_note_is_in_the_inputs_label(comfy_page: CdpPage, artifacts_dir: Path) -> None:
    """Nodes 2.0 draws its own inputs, not the canvas's _displayValue; it shows the widget's label, so
    there the note goes into the label. 1.32 has it as a beta that, opened from the template browser,
    still draws the canvas over it; it is checked from 1.49 on."""
    page = comfy_page
    if str(page.evaluate("window.__COMFYUI_FRONTEND_VERSION__ ?? ''")).startswith("1.32."):
        pytest.skip("frontend 1.32's Nodes 2.0 is a beta (see the docstring)")
    dismiss_banner(page)
    page.evaluate("app.extensionManager.setting.set('Comfy.VueNodes.Enabled', true)")
    try:
        page.evaluate("app.graph.clear()")
        load_template(page, WAN_EXAMPLE)
        labels = page.wait_for(f"(() => {{ const n = app.graph.getNodeById({TRAIN_NODE});"
                               " const l = Object.fromEntries(n.widgets.map(w => [w.name, w.label ?? w.name]));"
                               " return l.network_dim.includes('recommended') && l; })()", timeout=20, value=True)
        assert labels["network_dim"] == f"network_dim (recommended for {WAN})"
        assert labels["learning_rate"] == f"learning_rate (recommended for {WAN})"
        assert labels["save_every_n_epochs"] == "save_every_n_epochs"
        # the numbers its inputs draw are the recommended ones, and the labels say so
        page.wait_for(f"[...document.querySelectorAll('[data-node-id=\"{TRAIN_NODE}\"] input')]"
                      ".some(i => i.value === '32')", timeout=20)
        page.wait_for(f"document.querySelector('[data-node-id=\"{TRAIN_NODE}\"]').textContent"
                      f".includes('network_dim (recommended for {WAN})')", timeout=20)
        page.evaluate("app.extensionManager.command.execute('Comfy.Canvas.FitView')")
        repaint(page)
        page.screenshot(artifacts_dir / "train-nodes-2.0.png")
    finally:
        page.evaluate("app.extensionManager.setting.set('Comfy.VueNodes.Enabled', false)")

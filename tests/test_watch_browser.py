"""Watching training in a real browser: the Wan example queued with the Run button against the
fake musubi (one second per step, sample images every epoch) shows, on the Train node mid-run,
the progress preview (the loss curve, then the newest sample) and the log tail under the progress
text, given room by web/musubi_tuner.js; screenshots go to test-artifacts/ (watch-*.png).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from comfy_browser import CdpPage, Chromium
from comfy_harness import ComfyServer
from fakes import FakeMusubi
from test_comfy_browser import (TRAIN_NODE, WAN_EXAMPLE, center, dismiss_banner, frontend, open_template, repaint,
                                start_training_server)

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def watch_server(comfy_servers: Any, fake_musubi: FakeMusubi) -> ComfyServer:
    return start_training_server(comfy_servers, fake_musubi, "browser-watch",
                                 {"progress_update_interval": 0.5, "env": {"FAKE_MUSUBI_STEP_SECONDS": "1"}})


@pytest.fixture
def watch_page(chromium: Chromium, watch_server: ComfyServer) -> Iterator[CdpPage]:
    with frontend(chromium, watch_server) as page:
        yield page


# The Wan example on the test server, with two sample prompts (musubi's options: size, steps, seed):
# four images, three epochs (12 steps), samples after every epoch.
ADAPT = """(() => {
  const set = (id, name, value) => {
    const widget = app.graph.getNodeById(id).widgets.find(w => w.name === name);
    widget.value = value;
    widget.callback?.(value);
  };
  set(1, 'width', 64); set(1, 'height', 64); set(1, 'enable_bucket', false);
  set(2, 'task', 't2v-1.3B'); set(2, 'dit', 'tiny_diffusion_models.safetensors');
  set(2, 'vae', 'tiny_vae.safetensors'); set(2, 't5', 'tiny_text_encoders.safetensors');
  set(5, 'max_train_epochs', 3); set(5, 'output_name', 'browser_watch');
  const optimizer = LiteGraph.createNode('MusubiOptimizerOptions');
  optimizer.pos = [420, 680];
  app.graph.add(optimizer);
  optimizer.widgets.find(w => w.name === 'optimizer_type').value = 'AdamW';
  const train = app.graph.getNodeById(5);
  optimizer.connect(0, train, train.inputs.findIndex(i => i.name === 'options'));
  set(5, 'sample_prompts', 'a red cube --w 320 --h 200 --s 20 --d 42\\na blue ball --w 320 --h 200');
  app.extensionManager.setting.set('Comfy.Minimap.Visible', false);
  app.canvas.show_info = false;
})()"""
# The lower part of the Train node at 100 % (its progress text and preview), the node widened so
# the preview is readable; called again before each screenshot, since a preview grows the node.
SHOW_TRAIN = f"""(() => {{
  const n = app.graph.getNodeById({TRAIN_NODE});
  if (n.size[0] < 640) n.setSize([640, n.size[1]]);
  const b = n.getBounding();
  app.canvas.ds.scale = 1.0;
  app.canvas.ds.offset = [80 - b[0], app.canvas.canvas.clientHeight - 30 - (b[1] + b[3])];
  app.graph.setDirtyCanvas(true, true);
}})()"""
# The progress text's box on the page: its visible and its full height.
TEXT_BOX = ("(() => { const spans = [...document.querySelectorAll('span')].filter("
            "s => s.innerText.includes('train LoRA: training'));"
            " const box = spans.length ? spans[spans.length - 1].closest('.overflow-y-auto') : null;"
            " return box ? {client: box.clientHeight, scroll: box.scrollHeight} : {client: 0, scroll: 0}; })()")
STATE = (f"(() => {{ const id = String({TRAIN_NODE}); const n = app.graph.getNodeById({TRAIN_NODE});"
         " const text = n.widgets?.find(w => w.name === '$$node-text-preview');"
         " const previews = (app.nodePreviewImages || {})[id] || [];"
         " return {progress: n.progress ?? null, text: text ? String(text.value) : null,"
         " previews: previews.length, imgs: (n.imgs || []).map(i => [i.naturalWidth, i.naturalHeight])}; })()")


@pytest.mark.timeout(240)
def test_the_train_node_shows_the_curve_or_the_newest_sample_and_the_log_mid_run(
        watch_page: CdpPage, watch_server: ComfyServer, artifacts_dir: Path) -> None:
    page = watch_page
    dismiss_banner(page)
    open_template(page, WAN_EXAMPLE)
    page.evaluate(ADAPT)
    page.evaluate(SHOW_TRAIN)
    repaint(page)
    page.click(*center(page, "[data-testid=queue-button]"))

    # early: a preview (the loss curve, 768x432) and the log's last lines under the progress text
    curve = page.wait_for(f"(() => {{ const s = {STATE}; return s.progress > 0 && s.progress < 0.34"
                          " && s.imgs.some(([w, h]) => w === 768 && h === 432) && s; })()", timeout=120, value=True)
    page.evaluate(SHOW_TRAIN)
    repaint(page)
    page.screenshot(artifacts_dir / "watch-loss-curve.png")
    head, _, tail = curve["text"].partition("\n\n")
    assert "avr_loss" in head and tail.strip(), curve["text"]
    assert len(tail.splitlines()) <= 12
    # web/musubi_tuner.js gives the text room: the log tail is on screen, not scrolled away
    box = page.evaluate(TEXT_BOX)
    assert box["client"] >= 150 and box["client"] >= min(box["scroll"], 200) - 4, box
    assert not [line for line in page.console if "Unknown message type musubi_tuner" in line]

    # after the first epoch's samples: the newest sample (320x200 from the prompt) is the preview
    sample = page.wait_for(f"(() => {{ const s = {STATE}; return s.progress < 1"
                           " && s.imgs.some(([w, h]) => w === 320 && h === 200) && s; })()", timeout=60, value=True)
    page.evaluate(SHOW_TRAIN)
    repaint(page)
    page.screenshot(artifacts_dir / "watch-sample-preview.png")
    assert sample["previews"] >= 1

    # the end: the node's output shows the loss curve and the last samples
    page.wait_for(f"(() => {{ const s = {STATE}; return s.progress === null && /done/.test(s.text || '') && s; }})()",
                  timeout=90, value=True)
    page.evaluate(SHOW_TRAIN)
    repaint(page)
    page.screenshot(artifacts_dir / "watch-done.png")

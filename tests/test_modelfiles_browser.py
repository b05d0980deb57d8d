"""What a user sees in the browser: a Wan Models node with a 1.3B DiT, task t2v-14B and a ComfyUI
umt5_xxl text encoder, wired into the Setup Check and queued with the Run button. The Models node
shows one verdict line per file (given room by web/musubi_tuner.js) and the Setup Check's report
lists the same files. Nothing is trained; the model files are real-shaped headers (sparse).
Screenshot: test-artifacts/model-verdicts.png (committed as .ci/screenshots/model-verdicts.png).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

import modelfile_keys as K
from comfy_browser import CdpPage, Chromium
from comfy_harness import ComfyServer
from fakes import FakeMusubi, fake_musubi  # noqa: F401  (fake_musubi is a fixture)
from modelfile_writers import write_safetensors
from test_comfy_browser import center, dismiss_banner, frontend, repaint, start_training_server

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def verdict_server(comfy_servers: Any, fake_musubi: FakeMusubi) -> ComfyServer:  # noqa: F811
    server = start_training_server(comfy_servers, fake_musubi, "browser-verdicts", {})
    models = server.base_dir / "models"
    write_safetensors(models / "diffusion_models" / "wan2.1_t2v_1.3B_fp16.safetensors",
                      K.prefixed(K.wan_dit(1536, dtype="F16"), "model.diffusion_model."))
    write_safetensors(models / "vae" / "wan_2.1_vae.safetensors", K.wan_vae())
    write_safetensors(models / "text_encoders" / "umt5_xxl_fp16.safetensors", K.t5(256384))
    return server


@pytest.fixture
def verdict_page(chromium: Chromium, verdict_server: ComfyServer) -> Iterator[CdpPage]:
    with frontend(chromium, verdict_server) as page:
        yield page


BUILD = """(() => {
  app.extensionManager.setting.set('Comfy.Minimap.Visible', false);
  app.canvas.show_info = false;
  app.graph.clear();
  const models = LiteGraph.createNode('MusubiModelsWan'); models.pos = [60, 140]; app.graph.add(models);
  const check = LiteGraph.createNode('MusubiSetupCheck'); check.pos = [780, 140]; app.graph.add(check);
  const set = (node, name, value) => {
    const widget = node.widgets.find(w => w.name === name);
    widget.value = value;
    widget.callback?.(value);
  };
  set(models, 'task', 't2v-14B');
  set(models, 'dit', 'wan2.1_t2v_1.3B_fp16.safetensors');
  set(models, 'vae', 'wan_2.1_vae.safetensors');
  set(models, 't5', 'umt5_xxl_fp16.safetensors');
  models.setSize([680, models.size[1]]);
  check.setSize([620, check.size[1]]);
  models.connect(0, check, check.findInputSlot('models'));
  app.canvas.ds.scale = 1.0;
  app.canvas.ds.offset = [0, 0];
  return [models.id, check.id];
})()"""


def text_of(page: CdpPage, node_id: int) -> str:
    return page.evaluate(f"(() => {{ const n = app.graph.getNodeById({node_id});"
                         " const w = n.widgets?.find(w => w.name === '$$node-text-preview');"
                         " return w ? String(w.value) : ''; })()")


def test_the_models_node_and_the_setup_check_show_a_verdict_per_file(
        verdict_page: CdpPage, verdict_server: ComfyServer, artifacts_dir: Path) -> None:
    page = verdict_page
    dismiss_banner(page)
    models_id, check_id = page.evaluate(BUILD)
    repaint(page)
    page.click(*center(page, "[data-testid=queue-button]"))
    page.wait_for(f"(() => {{ const n = app.graph.getNodeById({check_id});"
                  " const w = n.widgets?.find(w => w.name === '$$node-text-preview');"
                  " return w && String(w.value).includes('model files'); })()", timeout=90)
    shown = text_of(page, models_id).splitlines()
    assert shown[0].startswith("dit: REFUSED wan2.1_t2v_1.3B_fp16.safetensors is Wan DiT 1.3B, text-to-video"), shown
    assert shown[1] == "vae: OK wan_2.1_vae.safetensors: Wan 2.1 VAE or Qwen-Image VAE (bf16)", shown
    assert shown[2].startswith("t5: REFUSED umt5_xxl_fp16.safetensors is UMT5-XXL text encoder"), shown
    report = text_of(page, check_id)
    assert "model files (Wan 2.1 / 2.2: task=t2v-14B, one_frame=False):" in report
    assert "  t5: REFUSED umt5_xxl_fp16.safetensors" in report
    # web/musubi_tuner.js gave the verdicts room: the three lines (wrapped) are on screen, not scrolled
    box = page.evaluate("(() => { const spans = [...document.querySelectorAll('span')].filter("
                        "s => s.innerText.startsWith('dit: REFUSED'));"
                        " const b = spans.length ? spans[0].closest('.overflow-y-auto') : null;"
                        " return b ? {client: b.clientHeight, scroll: b.scrollHeight} : null; })()")
    assert box is not None and box["client"] >= min(box["scroll"], 200) - 4, box
    page.evaluate("app.graph.setDirtyCanvas(true, true)")
    repaint(page)
    page.screenshot(artifacts_dir / "model-verdicts.png")

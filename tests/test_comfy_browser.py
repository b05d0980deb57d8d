"""The pack in a real browser: headless Chromium against the test server's ComfyUI frontend.

Screenshots go to test-artifacts/ (gitignored); CI keeps them as artifacts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy_browser import CdpPage
from comfy_fixtures import pack_node_ids
from comfy_harness import ComfyClient

pytestmark = [pytest.mark.comfyui, pytest.mark.browser, pytest.mark.timeout(180)]


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
    comfy_page.wait_for("document.activeElement && document.activeElement.placeholder === 'Search Nodes...'",
                        timeout=10)
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

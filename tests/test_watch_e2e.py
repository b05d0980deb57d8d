"""Watching training in a real ComfyUI 0.3.75 with the fake musubi: preview images on the
websocket while it trains (the loss curve, then each sample as musubi writes it), the
``musubi_tuner.progress`` events in step order with the losses musubi printed, the log tail on
the node, the Train node's loss-curve and samples outputs saved by SaveImage, and the status
route (also after a server restart).
"""

from __future__ import annotations

import io
import json
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest

from comfy_harness import ComfyClient, ComfyHTTPError, ComfyServer, PromptRun
from fakes import FakeMusubi, fake_musubi  # noqa: F401  (fake_musubi is a fixture)
from comfy_fixtures import fake_musubi_server
from test_nodes_e2e import executed_output, image_folder, workflow

Image = pytest.importorskip("PIL.Image", reason="the previews are checked with Pillow (installed by .ci/test)")

pytestmark = pytest.mark.comfyui

EVENT = "musubi_tuner.progress"
FIELDS = {"prompt_id", "node", "run_id", "phase", "step", "total", "epoch", "epochs", "loss", "rate", "eta",
          "latest_sample"}
PROMPTS = "a red cube --w 40 --h 32 --s 20 --d 42\na blue ball --w 40 --h 32"


@pytest.fixture(scope="module")
def server(comfy_servers: Any, fake_musubi: FakeMusubi) -> ComfyServer:  # noqa: F811
    return fake_musubi_server(comfy_servers, fake_musubi, "watch-e2e")


@pytest.fixture
def settings(server: ComfyServer) -> Iterator[Any]:
    path = server.base_dir / "user" / "__musubi-tuner-nodes" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(interval: float = 0.2, **env: str) -> None:
        path.write_text(json.dumps({"progress_update_interval": interval,
                                    "env": {k: str(v) for k, v in env.items()}}), encoding="utf-8")

    write()
    yield write
    path.write_text(json.dumps({}), encoding="utf-8")


def with_outputs(prompt: dict[str, Any], name: str) -> dict[str, Any]:
    prompt["6"] = {"class_type": "SaveImage", "inputs": {"images": ["5", 3], "filename_prefix": f"{name}_curve"}}
    prompt["7"] = {"class_type": "SaveImage", "inputs": {"images": ["5", 4], "filename_prefix": f"{name}_samples"}}
    return prompt


def saved_images(server: ComfyServer, run: PromptRun, node: str) -> list[Any]:
    images = []
    for ref in executed_output(run, node)["images"]:
        path = server.base_dir / "output" / ref["subfolder"] / ref["filename"]
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images


def previews(run: PromptRun) -> list[Any]:
    """The binary preview images the socket carried (decoded), in arrival order."""
    out = []
    for message in run.messages:
        if message.type in ("preview_image", "preview_image_with_metadata") and message.binary:
            with Image.open(io.BytesIO(message.binary)) as image:
                out.append(image.convert("RGB"))
    return out


def events(run: PromptRun) -> list[dict[str, Any]]:
    return [m.data for m in run.of_type(EVENT) if m.data.get("node") == "5"]


def loss_points(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "loss.jsonl").read_text(encoding="utf-8").splitlines()]


def distinct_colours(image: Any) -> int:
    return len(image.getcolors(maxcolors=1 << 20) or [])


@pytest.fixture(scope="module")
def trained(server: ComfyServer, comfy_servers: Any) -> dict[str, Any]:
    """One training with sample prompts, watched over the websocket (used by the tests below)."""
    settings_path = server.base_dir / "user" / "__musubi-tuner-nodes" / "config.json"
    settings_path.parent.mkdir(parents=True, exist_ok=True)
    settings_path.write_text(json.dumps({"progress_update_interval": 0.2, "env": {
        "FAKE_MUSUBI_STEP_SECONDS": "0.4", "FAKE_MUSUBI_SCENARIO": "samples"}}), encoding="utf-8")
    client = server.client()
    folder = image_folder(server, "watch_run", count=3)
    prompt = with_outputs(workflow(folder, output_name="watch_lora", max_train_epochs=3, sample_prompts=PROMPTS,
                                   sample_at_first=True), "watch")
    try:
        run = client.run(prompt, timeout=180)
    finally:
        settings_path.write_text(json.dumps({}), encoding="utf-8")
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    output = executed_output(run, "5")
    return {"run": run, "output": output, "run_dir": Path(output["run_dir"][0]), "client": client}


@pytest.mark.timeout(300)
def test_the_websocket_carries_previews_of_the_curve_and_of_each_new_sample(trained: dict[str, Any]) -> None:
    run: PromptRun = trained["run"]
    images = previews(run)
    assert images, f"no preview image on the websocket; got {sorted(set(run.types))}"
    curves = [i for i in images if i.size == (768, 432)]
    samples = [i for i in images if i.size == (40, 32)]
    assert curves, [i.size for i in images]
    assert samples, "the samples musubi wrote (40x32 from the prompts' --w/--h) were shown"
    assert all(distinct_colours(c) > 50 for c in curves), "a drawn curve, not an empty picture"
    executed_at = next(i for i, m in enumerate(run.messages) if m.type == "executed" and m.data.get("node") == "5")
    first_preview = next(i for i, m in enumerate(run.messages) if m.type.startswith("preview_image"))
    assert first_preview < executed_at, "previews arrive while training, not after"


@pytest.mark.timeout(300)
def test_progress_events_carry_the_documented_fields_and_musubis_losses_in_step_order(
        trained: dict[str, Any]) -> None:
    run: PromptRun = trained["run"]
    sent = events(run)
    assert len(sent) >= 5, [m.type for m in run.messages][:80]
    assert all(set(e) == FIELDS for e in sent), sent[0]
    assert {e["prompt_id"] for e in sent} == {run.prompt_id}
    assert {e["run_id"] for e in sent} == {trained["run_dir"].name}
    points = {p["step"]: p["avr_loss"] for p in loss_points(trained["run_dir"])}
    assert sorted(points) == list(range(1, 10)), points  # 3 images x 3 epochs
    assert [points[s] for s in range(1, 7)] == [1.69, 1.66, 1.66, 1.67, 1.7, 1.75]  # what the fake printed
    with_loss = [e for e in sent if e["loss"] is not None]
    assert len(with_loss) >= 3
    assert [e["step"] for e in with_loss] == sorted(e["step"] for e in with_loss), "step order"
    assert all(e["loss"] == points[e["step"]] for e in with_loss), [(e["step"], e["loss"]) for e in with_loss]
    assert all(e["total"] == 9 for e in with_loss) and {e["epochs"] for e in with_loss} == {3}
    assert any(e["rate"] and e["eta"] is not None for e in sent if e["phase"] == "training")
    assert sent[-1]["phase"] == "done" and sent[-1]["step"] == 9 and sent[-1]["loss"] == points[9]
    named = [e["latest_sample"] for e in sent if e["latest_sample"]]
    assert named and all((trained["run_dir"] / "sample" / n).is_file() for n in named)


@pytest.mark.timeout(300)
def test_the_node_shows_a_log_tail_and_lists_its_files(trained: dict[str, Any]) -> None:
    run: PromptRun = trained["run"]
    texts = run.progress_texts("5")
    running = [t for t in texts if "\n\n" in t]
    assert running, texts[-3:]
    tail = running[-1].split("\n\n", 1)[1].splitlines()
    assert 1 <= len(tail) <= 12
    assert any("musubi_tuner" in line or "epoch" in line for line in tail), tail
    output = trained["output"]
    assert output["lora_files"] == ["musubi-tuner/watch_lora.safetensors", "watch_lora-000001.safetensors",
                                    "watch_lora-000002.safetensors", "watch_lora.safetensors"]
    assert "loss: final" in output["text"][0]
    assert output["images"][0]["filename"] == "loss_curve.png" and output["images"][0]["type"] == "output"
    assert (trained["run_dir"] / "loss_curve.png").is_file()


@pytest.mark.timeout(300)
def test_the_loss_curve_output_is_a_drawn_768x432_image(server: ComfyServer, trained: dict[str, Any]) -> None:
    (curve,) = saved_images(server, trained["run"], "6")
    assert curve.size == (768, 432)
    assert distinct_colours(curve) > 200
    with Image.open(trained["run_dir"] / "loss_curve.png") as written:
        assert written.size == (768, 432)


@pytest.mark.timeout(300)
def test_the_samples_output_is_the_last_round_musubi_wrote(server: ComfyServer, trained: dict[str, Any]) -> None:
    saved = saved_images(server, trained["run"], "7")
    sample_dir = trained["run_dir"] / "sample"
    last_round = sorted(p for p in sample_dir.iterdir() if "_e000003_" in p.name)
    assert len(last_round) == 2 and len(saved) == 2
    rounds = {p.name.split("_")[2] for p in sample_dir.iterdir()}
    assert rounds == {"e000000", "e000001", "e000002", "e000003"}, "sample_at_first and one round per epoch"
    for image, path in zip(saved, last_round):
        with Image.open(path) as written:
            written = written.convert("RGB")
        assert image.size == written.size == (40, 32)
        got, want = image.getpixel((5, 5)), written.getpixel((5, 5))
        assert all(abs(a - b) <= 1 for a, b in zip(got, want)), (got, want)  # float32 -> uint8 rounding


@pytest.mark.timeout(300)
def test_without_samples_the_output_is_one_black_placeholder(server: ComfyServer, settings: Any) -> None:
    settings(FAKE_MUSUBI_STEP_SECONDS="0.01")
    client = server.client()
    folder = image_folder(server, "watch_no_samples", count=2)
    prompt = workflow(folder, output_name="watch_plain")
    prompt["20"] = {"class_type": "MusubiSampleOptions", "inputs": {"default_sample": False}}
    prompt["5"]["inputs"]["options"] = ["20", 0]
    run = client.run(with_outputs(prompt, "plain"), timeout=180)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    (placeholder,) = saved_images(server, run, "7")
    assert placeholder.size == (64, 64) and placeholder.getcolors() == [(64 * 64, (0, 0, 0))]
    (curve,) = saved_images(server, run, "6")
    assert curve.size == (768, 432) and distinct_colours(curve) > 200


@pytest.mark.timeout(300)
def test_the_status_route_returns_the_loss_history(server: ComfyServer, trained: dict[str, Any]) -> None:
    client: ComfyClient = trained["client"]
    run_id = trained["run_dir"].name
    points = loss_points(trained["run_dir"])
    for prefix in ("", "/api"):
        status = client.get(f"{prefix}/musubi-tuner/runs/{run_id}")
        assert status["status"] == "succeeded" and status["run_id"] == run_id and status["kind"] == "train"
        assert status["history"] == points
        assert status["progress"]["step"] == 9 and status["progress"]["loss"] == points[-1]["avr_loss"]
        assert status["result"]["final_loss"] == points[-1]["avr_loss"]
        assert status["result"]["best_loss"] == min(p["avr_loss"] for p in points)
        assert len(status["samples"]) == 8 and status["latest_sample"] in status["samples"]
    later = client.get(f"/musubi-tuner/runs/{run_id}?since=6")
    assert [p["step"] for p in later["history"]] == [7, 8, 9]
    listing = client.get("/musubi-tuner/runs?limit=200")["runs"]
    assert run_id in [r["run_id"] for r in listing] and all("history" not in r for r in listing)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("bad, code", [
    ("..%2F..%2Fuser", 400), ("%2E%2E", 400), (".hidden", 400), ("no-such-run", 404), ("a%00b", 400),
])
def test_the_status_route_refuses_ids_that_are_no_run(client_for: Any, bad: str, code: int) -> None:
    with pytest.raises(ComfyHTTPError) as info:
        client_for.get(f"/musubi-tuner/runs/{bad}")
    assert info.value.status == code, info.value.body


@pytest.fixture
def client_for(server: ComfyServer) -> ComfyClient:
    return server.client()


@pytest.mark.timeout(300)
def test_the_status_route_answers_after_a_server_restart(server: ComfyServer, trained: dict[str, Any]) -> None:
    run_id = trained["run_dir"].name
    server.stop()
    server.start()
    status = server.client().get(f"/api/musubi-tuner/runs/{urllib.parse.quote(run_id)}")
    assert status["status"] == "succeeded" and status["history"] == loss_points(trained["run_dir"])


@pytest.mark.timeout(120)
def test_a_video_sample_is_previewed_by_its_first_frame_with_comfyuis_av(comfy_install: Any, tmp_path: Path) -> None:
    """musubi writes video samples as .mp4; ComfyUI ships av, which decodes the first frame."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    code = (
        "import importlib, importlib.util, json, sys\n"
        "import av, numpy as np\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(root / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(root)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['p'] = m; spec.loader.exec_module(m)\n"
        "watch = importlib.import_module('p.nodes.watch')\n"
        "path = sys.argv[1]\n"
        "with av.open(path, 'w') as c:\n"
        "    s = c.add_stream('mpeg4', rate=8); s.width, s.height, s.pix_fmt = 48, 32, 'yuv420p'\n"
        "    for i in range(4):\n"
        "        frame = np.full((32, 48, 3), (200, 60 + 40 * i, 40), dtype=np.uint8)\n"
        "        for p in s.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')): c.mux(p)\n"
        "    for p in s.encode(): c.mux(p)\n"
        "image = watch.load_image(path)\n"
        "broken = watch._quietly(watch.load_image, sys.argv[2])\n"
        "print(json.dumps([image.size, image.getpixel((10, 10)), broken]))\n"
    )
    video = tmp_path / "lora_e000001_00_20260101120000_000.mp4"
    partial = tmp_path / "partial.mp4"
    partial.write_bytes(b"\x00\x00\x00\x18ftypmp42")  # what a half-written file looks like
    out = subprocess.run([str(comfy_install.python), "-c", code, str(video), str(partial)], capture_output=True,
                         text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    size, pixel, broken = json.loads(out.stdout.strip().splitlines()[-1])
    assert size == [48, 32] and broken is None, out.stdout
    assert all(abs(a - b) < 12 for a, b in zip(pixel, (200, 60, 40))), pixel  # the first frame, not a later one

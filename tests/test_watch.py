"""Watching training, outside ComfyUI: the loss history (loss.jsonl written step by step, read back
after a crash), result.json's loss summary, a run folder's status, the loss-curve drawing
(nodes/lossplot.py, loaded by file; needs Pillow), the live preview's choice between a new sample
and the curve, the log tail and the custom event of the reporter, and the status route's checks.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import time
import types
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest

import media
from executor.setup.settings import Settings
from executor.setup.discovery import resolve_install
from executor.runs.history import (LOSS_FILE, LossRecorder, latest_samples, read_history, run_status, sample_files,
                              summarize, valid_run_id)
from executor.runs.folders import LOCK_NAME, RESULT_FILE
from executor.runs.plan import PlanSpec, make_plan
from executor.runs.locks import RunLock
from executor.runs.execute import execute_plan
from fakes import fake_musubi  # noqa: F401  (session fixture)
from parsers.events import Epoch, LogLine, Progress, TotalSteps

ROOT = Path(__file__).resolve().parent.parent
PACK = "musubi_watch_under_test"
FAKE_LOSSES = [1.69, 1.66, 1.66, 1.67, 1.7, 1.75]  # the fake's first losses (from the capture)


def steps_frame(n: int, total: int = 6, loss: str | None = None, **postfix: str) -> Progress:
    if loss is not None:
        postfix["avr_loss"] = loss
    return Progress(desc="steps", n=n, total=total, postfix=postfix)


# ---------------------------------------------------------------------------- loss history

def test_a_point_per_new_step_with_its_epoch_and_nothing_for_other_bars(tmp_path: Path) -> None:
    path = tmp_path / LOSS_FILE
    clock = iter(range(100, 200)).__next__
    recorder = LossRecorder(str(path), clock=lambda: float(clock()))
    recorder.feed(TotalSteps(6))
    recorder.feed(Epoch(1, 2))
    recorder.feed(steps_frame(0))  # musubi's reset frame after step 1: no loss yet
    recorder.feed(steps_frame(1, loss="1.69"))
    recorder.feed(steps_frame(1, loss="1.69"))  # tqdm prints a frame twice
    recorder.feed(Progress(desc="Loading dit.safetensors", n=3, total=9))
    recorder.feed(steps_frame(2, loss="1.66", lr="0.0002"))
    recorder.feed(Epoch(2, 2))
    recorder.feed(steps_frame(4, loss="nan"))  # step 3 coalesced away; a NaN loss is kept as null
    lines = path.read_text(encoding="utf-8").splitlines()  # written and flushed while still open
    recorder.close()
    points = [json.loads(line) for line in lines]
    assert [(p["step"], p["epoch"], p["avr_loss"]) for p in points] == [(1, 1, 1.69), (2, 1, 1.66), (4, 2, None)]
    assert points[1]["lr"] == 0.0002 and "lr" not in points[0]
    assert all(p["total"] == 6 and p["epochs"] == 2 for p in points)
    assert points[0]["elapsed"] >= 0 and points[0]["time"] > 0
    assert recorder.summary() == {"final_loss": 1.66, "best_loss": 1.66, "best_loss_step": 2, "steps": 4,
                                  "total_steps": 6, "epochs": 2}


def test_a_steps_loss_is_the_one_musubi_shows_after_moving_the_bar(tmp_path: Path) -> None:
    """update(1) prints step n with step n-1's loss, set_postfix then prints n's own loss
    (sampling or saving may come in between); an unchanged loss is final when the bar moves
    on or the run ends."""
    path = tmp_path / LOSS_FILE
    recorder = LossRecorder(str(path))
    recorder.feed(steps_frame(1))  # after musubi's reset: no postfix yet
    recorder.feed(steps_frame(1, loss="1.69"))
    recorder.feed(steps_frame(2, loss="1.69"))  # update(1): the previous loss
    assert [p["step"] for p in recorder.points] == [1] and recorder.pending["step"] == 2
    recorder.feed(steps_frame(2, loss="1.66"))  # set_postfix: final at once
    assert [(p["step"], p["avr_loss"]) for p in recorder.points] == [(1, 1.69), (2, 1.66)]
    recorder.feed(steps_frame(3, loss="1.66"))  # the same value again: not yet known
    recorder.feed(steps_frame(3, loss="1.66"))
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2
    recorder.feed(steps_frame(4, loss="1.66"))  # the bar moved on: step 3 was 1.66
    recorder.feed(steps_frame(4, loss="1.67"))
    recorder.feed(steps_frame(5, loss="1.67"))
    recorder.close()  # the run ended: step 5 keeps what it showed
    assert [(p["step"], p["avr_loss"]) for p in read_history(str(path))] == [
        (1, 1.69), (2, 1.66), (3, 1.66), (4, 1.67), (5, 1.67)]


def test_a_torn_last_line_and_garbage_are_skipped_when_reading(tmp_path: Path) -> None:
    path = tmp_path / LOSS_FILE
    path.write_text('{"step":1,"avr_loss":1.5}\nnot json\n{"step":2,"avr_loss":1.4}\n{"step":3,"avr_l',
                    encoding="utf-8")
    assert [p["step"] for p in read_history(str(path))] == [1, 2]
    assert [p["step"] for p in read_history(str(path), since=1)] == [2]
    assert read_history(str(tmp_path / "missing.jsonl")) == []
    assert summarize([]) == {"final_loss": None, "best_loss": None, "best_loss_step": None, "steps": None,
                             "total_steps": None, "epochs": None}


def test_a_write_error_stops_writing_but_not_recording(tmp_path: Path) -> None:
    recorder = LossRecorder(str(tmp_path / "no-such-folder" / LOSS_FILE))
    recorder.feed(steps_frame(1, loss="1.5"))
    recorder.feed(steps_frame(2, loss="1.4"))
    assert [p["step"] for p in recorder.points] == [1, 2]


def test_the_last_sampling_round_is_picked_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "sample"
    names = ["lora_e000001_00_20260101120000_42_000.png", "lora_e000001_01_20260101120000_42_000.png",
             "lora_000004_00_20260101120100_000.png",
             "lora_e000002_00_20260101120200_42_000.png", "lora_e000002_01_20260101120200_42_000.png",
             "notes.txt"]
    for i, name in enumerate(names):
        path = media.write_png(folder / name) if name.endswith(".png") else folder / name
        path.write_bytes(b"x") if name.endswith(".txt") else None
        os.utime(path, (1000 + i, 1000 + i))
    files = sample_files(str(tmp_path))
    assert [os.path.basename(f) for f in files] == names[:5]
    assert [os.path.basename(f) for f in latest_samples(files)] == names[3:5]
    assert sample_files(str(tmp_path), since=1004.0) == files[3:]  # a second of slack for coarse clocks


# ---------------------------------------------------------------------------- through execute_plan

class Work:
    def __init__(self, tmp: Path, fake: Any) -> None:
        self.tmp = tmp
        self.toml = fake.make_dataset(tmp / "data")
        self.models = {name: str(media.fake_safetensors(tmp / "models" / f"{name}.safetensors"))
                       for name in ("dit", "vae", "t5")}
        self.settings = Settings(venv_path=str(fake.venv), root_path=str(fake.root), env={})
        self.install = resolve_install(self.settings)

    def plan(self, step: str, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
        values = dict(architecture="wan", step=step, dataset_config=str(self.toml), models=self.models,
                      selectors={"task": "t2v-1.3B"}, options={"max_train_epochs": 2, "optimizer_type": "adamw"},
                      output_dir=str(self.tmp / "out"), output_name="my_lora", runs_dir=str(self.tmp / "runs"))
        values.update(kwargs)
        settings = replace(self.settings, env=env or {})
        return make_plan(settings, PlanSpec(**values), install=self.install)


@pytest.fixture
def work(tmp_path: Path, fake_musubi: Any) -> Work:  # noqa: F811
    w = Work(tmp_path, fake_musubi)
    for step in ("cache_latents", "cache_text_encoder"):
        assert execute_plan(w.plan(step)).ok
    return w


@pytest.mark.timeout(120)
def test_training_writes_its_loss_history_and_summary_into_the_run_folder(work: Work) -> None:
    run_dir = work.tmp / "run"
    plan = work.plan("train", env={"FAKE_MUSUBI_SCENARIO": "samples"}, run_dir=str(run_dir), output_dir=str(run_dir))
    live: list[tuple[str, list]] = []

    def watch(event: Any) -> None:
        if getattr(event, "type", None) == "epoch" and event.n == 2:  # mid-run: the folder says so
            live.append((run_status(str(run_dir))["status"], read_history(str(run_dir / LOSS_FILE))))

    assert execute_plan(plan, on_event=watch).ok
    points = read_history(str(run_dir / LOSS_FILE))
    assert [p["step"] for p in points] == sorted({p["step"] for p in points}) and points[-1]["step"] == 6
    by_step = {p["step"]: p["avr_loss"] for p in points}
    assert all(by_step[s] == FAKE_LOSSES[s - 1] for s in by_step)
    # "epoch 2/2" (stdout) and step 3's frame (stderr) race through two pipes
    assert [p["epoch"] for p in points] in ([1, 1, 1, 2, 2, 2], [1, 1, 2, 2, 2, 2])
    assert live and live[0][0] == "running" and 0 < len(live[0][1]) < len(points)
    record = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
    assert record["final_loss"] == 1.75 and record["best_loss"] == 1.66 and record["best_loss_step"] == 2
    assert record["steps"] == record["total_steps"] == 6 and record["epochs"] == 2
    assert record["loss_history"] == LOSS_FILE and record["duration"] > 0
    assert {os.path.basename(f) for f in record["files_produced"]} == {"my_lora.safetensors",
                                                                       "my_lora-000001.safetensors"}
    assert [os.path.basename(f) for f in record["sample_files"]] == [
        os.path.basename(f) for f in sample_files(str(run_dir))] and len(record["sample_files"]) == 2
    status = run_status(str(run_dir))
    assert status["status"] == "succeeded" and status["kind"] == "train" and status["architecture"] == "wan"
    progress = status["progress"]
    assert progress.pop("rate") > 0 and progress.pop("eta") is None  # tests/test_speed.py checks both
    assert progress == {"step": 6, "total": 6, "epoch": 2, "epochs": 2, "loss": 1.75, "best_loss": 1.66,
                        "best_loss_step": 2}
    assert status["history"] == points and status["latest_sample"] == os.path.basename(record["sample_files"][-1])
    assert [p["step"] for p in run_status(str(run_dir), since=4)["history"]] == [s for s in by_step if s > 4]
    assert not (run_dir / LOCK_NAME).exists()


@pytest.mark.timeout(120)
def test_a_killed_training_keeps_the_losses_it_reported(work: Work) -> None:
    plan = work.plan("train", env={"FAKE_MUSUBI_SCENARIO": "sigkill", "FAKE_MUSUBI_STEP_SECONDS": "0.05"})
    result = execute_plan(plan)
    assert not result.ok
    points = read_history(os.path.join(plan.run_dir, LOSS_FILE))
    assert points and points[0]["step"] == 1 and points[0]["avr_loss"] == 1.69
    record = json.loads(Path(plan.run_dir, RESULT_FILE).read_text(encoding="utf-8"))
    assert record["status"] == "failed" and record["final_loss"] == points[-1]["avr_loss"]


def test_a_run_folder_without_result_is_running_while_its_lock_lives(tmp_path: Path) -> None:
    run_dir = tmp_path / "20260101-000000-x"
    run_dir.mkdir()
    (run_dir / "plan.json").write_text(json.dumps({"architecture": "wan", "step": "train"}), encoding="utf-8")
    with RunLock([str(run_dir)], str(run_dir)):
        assert run_status(str(run_dir))["status"] == "running"
    assert run_status(str(run_dir))["status"] == "incomplete"  # ended without writing result.json
    (run_dir / RESULT_FILE).write_text(json.dumps({"status": "cancelled", "step": "train"}), encoding="utf-8")
    status = run_status(str(run_dir), history=False)
    assert status["status"] == "cancelled" and "history" not in status and status["result"]["status"] == "cancelled"


@pytest.mark.parametrize("run_id, ok", [
    ("20260101-120000-my_lora", True), ("20260101-120000_train_my.lora-2", True),
    ("..", False), (".", False), ("../runs", False), ("a/b", False), ("a\\b", False), (".hidden", False),
    ("", False), ("x" * 201, False), ("a..b", False), ("name with space", False), ("a\x00b", False),
])
def test_run_ids_are_plain_folder_names(run_id: str, ok: bool) -> None:
    assert valid_run_id(run_id) is ok


# ---------------------------------------------------------------------------- the drawing

@pytest.fixture(scope="module")
def lossplot() -> Any:
    pytest.importorskip("PIL", reason="the loss curve is drawn with Pillow (installed by .ci/test)")
    spec = importlib.util.spec_from_file_location("lossplot_under_test", ROOT / "nodes" / "lossplot.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def curve_points(steps: int = 40, per_epoch: int = 10) -> list[dict]:
    points = []
    for s in range(1, steps + 1):
        loss = 1.0 / (1 + s * 0.1) + (0.05 if s % 3 == 0 else -0.03)
        points.append({"step": s, "epoch": (s - 1) // per_epoch + 1, "epochs": steps // per_epoch,
                       "avr_loss": round(loss, 4), "total": steps})
    return points


def near(pixel: tuple, colour: tuple, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


def test_the_curve_has_the_asked_size_and_is_not_blank(lossplot: Any) -> None:
    image = lossplot.render(curve_points())
    assert image.size == (768, 432) and image.mode == "RGB"
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 200, "a drawn plot has antialiased lines, text and points"
    small = lossplot.render(curve_points(), 384, 216)
    assert small.size == (384, 216)


def test_a_diverged_run_still_gets_its_curve(lossplot: Any) -> None:
    """Absurd losses (a diverged run) are left out of the plot instead of overflowing its axis:
    the curve comes after the LoRA was delivered and must never fail the node."""
    points = curve_points() + [{"step": 100, "avr_loss": 1e308, "epoch": 9},
                               {"step": 101, "avr_loss": -1e308, "epoch": 9},
                               {"step": 102, "avr_loss": float("nan"), "epoch": 9}]
    image = lossplot.render(points)
    assert image.size == (768, 432)
    assert [step for step, _ in lossplot.losses(points)] == [step for step, _ in lossplot.losses(curve_points())]


def test_epoch_boundaries_are_marked_where_the_epochs_change(lossplot: Any) -> None:
    points = curve_points(40, 10)
    assert [e for _, e in lossplot.epoch_boundaries(points)] == [2, 3, 4]
    assert [x for x, _ in lossplot.epoch_boundaries(points)] == [10.5, 20.5, 30.5]
    image = lossplot.render(points)
    box = lossplot.layout(points)
    rows = range(int(box.top) + 30, int(box.bottom) - 5)
    for x_step, _ in lossplot.epoch_boundaries(points):
        x = round(box.x(x_step))
        marked = sum(near(image.getpixel((x, y)), lossplot.EPOCH) for y in rows)
        assert marked > len(rows) * 0.3, f"no dashed epoch line at x={x}"
    between = round(box.x(15))
    assert sum(near(image.getpixel((between, y)), lossplot.EPOCH) for y in rows) < 3


def test_many_epochs_mark_every_kth_boundary_so_lines_stay_apart(lossplot: Any) -> None:
    points = curve_points(1600, 16)  # 100 epochs
    image = lossplot.render(points)
    box = lossplot.layout(points)
    rows = range(int(box.top) + 30, int(box.bottom) - 5)

    def marked(x_step: float) -> int:
        return sum(near(image.getpixel((round(box.x(x_step)), y)), lossplot.EPOCH) for y in rows)

    assert marked(160.5) > len(rows) * 0.3 and marked(480.5) > len(rows) * 0.3  # epochs 11 and 31
    assert marked(16.5) < 3 and marked(32.5) < 3  # epochs 2 and 3: not drawn


def test_raw_points_and_the_smoothed_line_are_drawn(lossplot: Any) -> None:
    points = curve_points()
    image = lossplot.render(points)
    box = lossplot.layout(points)
    raw = [(round(box.x(p["step"])), round(box.y(p["avr_loss"]))) for p in points]
    assert sum(near(image.getpixel(xy), lossplot.RAW, 60) for xy in raw) > len(raw) * 0.5
    smoothed = lossplot.smooth([p["avr_loss"] for p in points])
    on_line = 0
    for p, value in zip(points, smoothed):
        x, y = round(box.x(p["step"])), round(box.y(value))
        on_line += any(near(image.getpixel((x, y + dy)), lossplot.SMOOTH, 60) for dy in (-1, 0, 1))
    assert on_line > len(points) * 0.6


def test_smoothing_starts_at_the_first_value_and_follows(lossplot: Any) -> None:
    out = lossplot.smooth([2.0, 2.0, 2.0, 1.0], 0.6)
    assert out[:3] == pytest.approx([2.0, 2.0, 2.0]) and 1.0 < out[3] < 2.0
    assert lossplot.nice_ticks(0.0, 1.0, 5) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert lossplot.nice_ticks(1.62, 1.78, 4)[0] >= 1.62


def test_no_points_draws_the_axes_and_the_message(lossplot: Any) -> None:
    empty = lossplot.render([], message="waiting for the first loss value")
    assert empty.size == (768, 432)
    assert len(empty.getcolors(maxcolors=1 << 20)) > 20  # text and frame, not a flat image
    one = lossplot.render([{"step": 1, "avr_loss": 1.69, "epoch": 1, "epochs": 2}], total=6)
    assert one.size == (768, 432)


# ---------------------------------------------------------------------------- in the nodes

@pytest.fixture(scope="module")
def pack() -> Iterator[types.SimpleNamespace]:
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    try:
        spec.loader.exec_module(module)
        names = ("progress", "watch", "routes")
        yield types.SimpleNamespace(**{n: importlib.import_module(f"{PACK}.nodes.{n}") for n in names})
    finally:
        for name in [n for n in sys.modules if n == PACK or n.startswith(PACK + ".")]:
            del sys.modules[name]


class Screen:
    """What a StepReporter sent: texts, events, bar updates with their previews."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.events: list[tuple[str, dict]] = []
        self.bars: list[tuple[int, int, Any]] = []
        self.now = 0.0
        self.interrupt = False

    def reporter(self, pack: Any, **kwargs: Any) -> Any:
        screen = self

        class Bar:
            def update_absolute(self, value: int, total: int, preview: Any = None) -> None:
                screen.bars.append((value, total, preview))

        kwargs.setdefault("step", "train")
        return pack.progress.StepReporter(
            "5", bar_factory=lambda total, node: Bar(), send_text=lambda t, n: self.texts.append(t),
            interrupted=lambda: self.interrupt, send_event=lambda name, data: self.events.append((name, data)),
            prompt_id=lambda: "prompt-1", clock=lambda: self.now, **kwargs)


def test_the_progress_event_carries_the_documented_fields_in_step_order(pack: Any) -> None:
    screen = Screen()
    r = screen.reporter(pack, interval=1.0)
    r.run_dir = "/x/runs/20260101-000000-my_lora"
    r.on_event(TotalSteps(6))
    r.on_event(Epoch(1, 2))
    for n, loss in enumerate(FAKE_LOSSES, start=1):
        screen.now += 0.4
        r.on_event(Progress(desc="steps", n=n, total=6, rate=2.5, remaining=(6 - n) / 2.5,
                            postfix={"avr_loss": str(loss)}))
    r.finish("done")
    events = [data for name, data in screen.events if name == "musubi_tuner.progress"]
    assert len(events) == len(screen.events) and 2 <= len(events) < 9, "rate-limited like the text"
    assert set(events[0]) == {"prompt_id", "node", "run_id", "phase", "step", "total", "epoch", "epochs", "loss",
                              "rate", "eta", "latest_sample"}
    assert all(e["prompt_id"] == "prompt-1" and e["node"] == "5" and e["run_id"] == "20260101-000000-my_lora"
               for e in events)
    stepped = [e for e in events if e["loss"] is not None]
    assert [e["step"] for e in stepped] == sorted(e["step"] for e in stepped)
    assert all(e["loss"] == FAKE_LOSSES[e["step"] - 1] for e in stepped)
    assert events[-1]["phase"] == "done" and events[-1]["step"] == 6 and events[-1]["loss"] == 1.75
    training = next(e for e in events if e["phase"] == "training" and e["step"])
    # one step every 0.4 s by the reporter's clock (the bar says the same here; tests/test_speed.py
    # checks the clock wins where they differ)
    assert training["rate"] == pytest.approx(2.5) and 0 <= training["eta"] <= 6 / 2.5
    assert training["epoch"] == 1 and training["epochs"] == 2 and training["total"] == 6


def test_a_nan_loss_is_sent_as_null(pack: Any) -> None:
    screen = Screen()
    r = screen.reporter(pack, interval=0.0)
    r.on_event(steps_frame(1, loss="nan"))
    assert screen.events[-1][1]["loss"] is None
    json.dumps(screen.events[-1][1], allow_nan=False)


def test_the_text_ends_with_the_last_log_lines_while_running(pack: Any) -> None:
    screen = Screen()
    r = screen.reporter(pack, interval=0.0, title="Wan train LoRA")
    for i in range(30):
        r.on_event(LogLine(text=f"INFO:musubi_tuner.fake:line {i}", stream="stderr"))
    r.on_event(LogLine(text="x" * 500))
    r.on_event(steps_frame(1, loss="1.69"))
    text = screen.texts[-1]
    head, tail = text.split("\n\n", 1)
    assert head.startswith("Wan train LoRA: training") and "avr_loss 1.69" in head
    lines = tail.splitlines()
    assert len(lines) == 12 and lines[0] == "INFO:musubi_tuner.fake:line 19" and lines[-1].endswith("…")
    assert len(lines[-1]) == 160
    r.finish("LoRA: x")
    assert "line 29" not in screen.texts[-1], "the final text is the result, not the log"


class WatchReporter:
    """The reporter side a TrainWatch needs."""

    def __init__(self, points: list[dict] | None = None, total: int | None = 6) -> None:
        self.history = types.SimpleNamespace(points=points if points is not None else [])
        self.total = total
        self.previews: list[Any] = []
        self.refreshed = 0
        self.latest_sample: str | None = None

    def send_preview(self, image: Any) -> bool:
        if not self.total:
            return False
        self.previews.append(image)
        return True

    def refresh(self) -> None:
        self.refreshed += 1


def test_a_new_sample_becomes_the_preview_once_it_is_written(pack: Any, tmp_path: Path) -> None:
    clock = {"now": 0.0, "wall": 10_000.0}
    watch = pack.watch.TrainWatch(str(tmp_path), load=lambda path: ("sample", os.path.basename(path)),
                                  render=lambda points, total: ("curve", len(points)),
                                  clock=lambda: clock["now"], wall=lambda: clock["wall"])
    reporter = WatchReporter()

    def tick(seconds: float) -> None:
        clock["now"] += seconds
        clock["wall"] += seconds
        watch.tick(reporter)

    tick(1.0)
    assert reporter.previews == []  # no loss point, no sample yet
    reporter.history.points.append({"step": 1, "avr_loss": 1.69})
    tick(0.1)
    assert reporter.previews == [("curve", 1)]
    reporter.history.points.append({"step": 2, "avr_loss": 1.66})
    tick(1.0)
    assert len(reporter.previews) == 1, "the curve is redrawn every few seconds, not every frame"
    tick(5.0)
    assert reporter.previews[-1] == ("curve", 2)
    sample = tmp_path / "sample" / "my_lora_e000001_00_20260101120000_000.png"
    media.write_png(sample)
    os.utime(sample, (clock["wall"] + 0.8, clock["wall"] + 0.8))  # written 0.2 s before the next poll
    tick(1.0)
    assert reporter.previews[-1] != ("sample", sample.name), "a file modified just now may still be written"
    tick(1.0)
    assert reporter.previews[-1] == ("sample", sample.name) and reporter.latest_sample == sample.name
    assert reporter.refreshed == 1, "the progress event names the new sample at once"
    reporter.history.points.append({"step": 3, "avr_loss": 1.66})
    tick(6.0)
    assert reporter.previews[-1] == ("sample", sample.name), "a new sample stays a while"
    tick(20.0)
    assert reporter.previews[-1] == ("curve", 3)
    shown = len(reporter.previews)
    tick(1.0)
    assert len(reporter.previews) == shown, "the same sample is not shown again"


def test_an_unreadable_sample_is_retried_then_skipped(pack: Any, tmp_path: Path) -> None:
    calls: list[str] = []

    def broken(path: str) -> Any:
        calls.append(path)
        raise OSError("truncated")

    watch = pack.watch.TrainWatch(str(tmp_path), load=broken, tries=3, settle=0.0, sample_poll=0.0)
    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / "lora_000001_00_20260101120000_000.mp4").write_bytes(b"not a video")
    reporter = WatchReporter()
    for _ in range(6):
        watch.tick(reporter)
    assert len(calls) == 3 and reporter.previews == [] and watch.latest_sample is None


def test_real_sample_files_load_as_rgb_images(pack: Any, tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    png = media.write_png(tmp_path / "a.png", 20, 10)
    image = pack.watch.load_image(str(png))
    assert image.size == (20, 10) and image.mode == "RGB"
    assert pack.watch._quietly(pack.watch.load_image, str(tmp_path / "missing.png")) is None


def test_route_run_folders_stay_inside_the_runs_folder(pack: Any, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (runs / "20260101-000000-a").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (runs / "20260101-000000-link").symlink_to(tmp_path / "secret", target_is_directory=True)
    routes = pack.routes
    assert routes.run_folder(str(runs), "20260101-000000-a") == os.path.realpath(runs / "20260101-000000-a")
    assert routes.run_folder(str(runs), "20260101-000000-link") is None
    assert routes.run_report(str(runs), "../secret")[0] == 400
    assert routes.run_report(str(runs), "20260101-000000-nope")[0] == 404
    status, body = routes.run_report(str(runs), "20260101-000000-a")
    assert status == 200 and body["status"] == "incomplete" and body["history"] == []
    listing = routes.runs_listing(str(runs), 10)
    assert [r["run_id"] for r in listing["runs"]] == ["20260101-000000-a"]
    assert routes.runs_listing(str(tmp_path / "nowhere")) == {"runs": []}
    assert routes.register() is False  # no ComfyUI server in this process


def test_watching_adds_nothing_heavy_to_the_pack_import() -> None:
    import subprocess

    code = (
        "import importlib, importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(ROOT / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(ROOT)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['p'] = m; spec.loader.exec_module(m)\n"
        "importlib.import_module('p.nodes')\n"
        "print(sorted({'PIL', 'numpy', 'torch', 'av', 'aiohttp', 'asyncio', 'p.nodes.watch', 'p.nodes.lossplot',"
        " 'p.executor.runs.history'} & set(sys.modules)))\n"
    )
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
    assert time.monotonic() - started < 60


def test_log_lines_never_hold_back_the_text_of_a_new_step(pack: Any) -> None:
    screen = Screen()
    r = screen.reporter(pack, interval=5.0)
    r.on_event(TotalSteps(12))
    r.on_event(steps_frame(0, total=12))
    screen.now += 5.0
    r.on_event(LogLine(text="INFO:musubi_tuner.fake:a line"))  # uses the text's rate budget
    screen.now += 5.0
    r.on_event(LogLine(text="INFO:musubi_tuner.fake:another"))
    screen.now += 0.1
    r.on_event(steps_frame(1, total=12, loss="1.69"))  # the bar moves: the text goes with it
    assert screen.bars[-1][:2] == (1, 12)
    assert "step 1/12" in screen.texts[-1] and "avr_loss 1.69" in screen.texts[-1]
    sent = len(screen.texts)
    for i in range(20):  # a flood of log lines stays rate-limited
        screen.now += 0.01
        r.on_event(LogLine(text=f"INFO:musubi_tuner.fake:flood {i}"))
    assert len(screen.texts) == sent


class ComfyScreen(Screen):
    """What the browser shows: the bar as newer ComfyUI passes it on (its ProgressBar drops an
    update within 0.1 s of the last one or that moved less than 0.5 %; first, final and preview
    updates always pass, comfy/utils.py) and the last text."""

    def __init__(self, min_interval: float = 0.1, min_percent: float = 0.5) -> None:
        super().__init__()
        self.min_interval, self.min_percent = min_interval, min_percent
        self.shown: tuple[int, int] | None = None
        self._passed_at = -1.0
        self.apart: list[tuple] = []  # bar and text apart while a preview was being encoded

    def reporter(self, pack: Any, **kwargs: Any) -> Any:
        screen = self

        class Bar:
            def update_absolute(self, value: int, total: int, preview: Any = None) -> None:
                screen.bars.append((value, total, preview))
                first, final = screen.shown is None, value >= total
                moved = (value - max(0, screen.shown[0] if screen.shown else 0)) * 100 / total
                if preview is not None or first or final or (
                        screen.now - screen._passed_at >= screen.min_interval and moved >= screen.min_percent):
                    screen.shown, screen._passed_at = (value, total), screen.now
                if preview is not None and not screen.agree():
                    # ComfyUI encodes the image before it sends anything else: this lasts
                    screen.apart.append((screen.shown, screen.texts[-1] if screen.texts else None))

        kwargs.setdefault("step", "train")
        return pack.progress.StepReporter(
            "5", bar_factory=lambda total, node: Bar(), send_text=lambda t, n: self.texts.append(t),
            interrupted=lambda: self.interrupt, send_event=lambda name, data: None, prompt_id=lambda: "p",
            clock=lambda: self.now, bar_throttle=lambda: (self.min_interval, self.min_percent), **kwargs)

    def agree(self) -> bool:
        """The text names the step the bar shows (or there is no bar yet)."""
        import re

        found = re.search(r"step (\d+)/(\d+)", self.texts[-1]) if self.texts else None
        return self.shown is None or (found is not None and (int(found[1]), int(found[2])) == self.shown)


def test_a_preview_never_moves_the_bar_away_from_the_text(pack: Any) -> None:
    """The browser test's sighting: the bar at 1/12 beside the text 'step 0/12'. Step 1 came
    right after step 0 (a loaded machine), inside the rate limit, so neither bar nor text went
    out; then the loss curve's preview moved the bar to 1 and the text followed only after
    ComfyUI had encoded the image. Now a preview leaves the bar where it is, and the bar's next
    move takes the text with it."""
    screen = ComfyScreen(0.0, 0.0)  # ComfyUI 0.3.75: no throttle of its own
    r = screen.reporter(pack, interval=0.5)
    r.on_event(TotalSteps(12))
    r.on_event(steps_frame(0, total=12))
    screen.now += 0.05
    r.on_event(steps_frame(1, total=12, loss="1.69"))
    assert screen.shown == (0, 12) and "step 0/12" in screen.texts[-1]
    screen.now += 0.05
    assert r.send_preview(_image())
    assert screen.bars[-1][2] is not None and screen.shown == (0, 12) and "step 0/12" in screen.texts[-1]
    assert screen.apart == []
    screen.now += 0.5
    r.should_cancel()  # the executor's next poll
    assert screen.shown == (1, 12)
    assert "step 1/12" in screen.texts[-1] and "avr_loss 1.69" in screen.texts[-1]


def _image() -> Any:
    from PIL import Image

    return Image.new("RGB", (8, 8))


@pytest.mark.parametrize("throttle", [(0.0, 0.0), (0.1, 0.5)], ids=["comfyui-0.3.75", "newer-comfyui"])
@pytest.mark.parametrize("seed", range(40))
def test_the_bar_and_the_text_never_disagree_whatever_the_timing(pack: Any, throttle: tuple, seed: int) -> None:
    import random

    rng = random.Random(seed)
    screen = ComfyScreen(*throttle)
    total = rng.choice([12, 60, 400, 3000])
    r = screen.reporter(pack, interval=rng.choice([0.0, 0.1, 0.5, 2.0]))
    r.on_event(TotalSteps(total))
    r.on_event(Epoch(1, 2))
    for n in range(total + 1):
        for _ in range(rng.choice([1, 1, 2])):  # tqdm prints some frames twice
            screen.now += rng.choice([0.0, 0.001, 0.03, 0.2, 1.0])
            r.on_event(steps_frame(n, total=total, loss=f"{rng.random():.3f}"))
            assert screen.agree(), (screen.shown, screen.texts[-1])
        if rng.random() < 0.3:
            screen.now += rng.choice([0.0, 0.05, 0.3])
            r.on_event(LogLine(text=f"INFO:musubi_tuner.fake:line {n}"))
            assert screen.agree(), (screen.shown, screen.texts[-1])
        if rng.random() < 0.1:
            r.send_preview(_image())
            assert screen.agree(), (screen.shown, screen.texts[-1])
        if rng.random() < 0.3:
            screen.now += 0.25
            r.should_cancel()  # the executor's poll while the trainer is quiet
            assert screen.agree(), (screen.shown, screen.texts[-1])
    r.finish("done")
    assert screen.shown == (total, total) and f"step {total}/{total}" in screen.texts[-1]
    assert screen.apart == [], "the bar and the text stood apart while a preview was encoded"

"""Honest speed: rate and ETA from the pack's own step times (executor/runs/speed.py), on the node's
text, in the ``musubi_tuner.progress`` event and in a run's status, checked against the recorded
output of the real musubi-tuner (the captures: its first step claims hundreds of steps per second
because the bar is reset after it, frames are repeated, a step is printed again with its loss).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from executor.runs.history import LOSS_FILE, run_status
from executor.runs.locks import RunLock
from executor.runs.speed import StepRate, rate_of_points
from parsers import OutputParser
from parsers.events import Progress
from test_watch import Screen, pack  # noqa: F401  (pack is a fixture)


def test_no_rate_before_the_second_step_then_steps_over_the_time_between_them() -> None:
    speed = StepRate()
    assert speed.add(1, 10.0) and speed.rate is None and speed.remaining(6) is None
    assert speed.add(2, 12.0)
    assert speed.rate == pytest.approx(0.5) and speed.remaining(6) == pytest.approx(8.0)


def test_repeated_frames_and_steps_at_zero_add_nothing() -> None:
    speed = StepRate()
    assert not speed.add(0, 1.0)
    speed.add(1, 2.0)
    assert not speed.add(1, 5.0)  # the same step again, shown with its loss
    speed.add(2, 4.0)
    assert speed.rate == pytest.approx(0.5)  # from step 1's first sight, not its repeat


def test_going_back_starts_the_window_over() -> None:
    speed = StepRate()
    for step, when in ((1, 0.0), (2, 1.0), (3, 2.0)):
        speed.add(step, when)
    speed.add(1, 100.0)  # a new bar
    assert speed.rate is None
    speed.add(2, 104.0)
    assert speed.rate == pytest.approx(0.25)


def test_the_window_follows_a_change_of_speed_within_its_length() -> None:
    speed = StepRate(window=5)
    when = 0.0
    for step in range(1, 21):
        when += 1.0 if step <= 10 else 4.0
        speed.add(step, when)
    assert speed.rate == pytest.approx(0.25)
    assert speed.remaining(100) == pytest.approx(80 * 4.0)


# ---------------------------------------------------------------------------- the real output

def timed_chunks(path: Path) -> list[tuple[float, str, bytes]]:
    """A .chunks.jsonl capture: (seconds since start, stream, bytes) of each read."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        chunk = json.loads(line)
        if chunk["s"] in ("stdout", "stderr"):
            out.append((chunk["t"], chunk["s"], chunk["d"].encode("utf-8")))
    return out


def replay(pack: Any, chunks: list[tuple[float, str, bytes]]) -> tuple[Any, list[tuple[Progress, str, dict]]]:
    """Feed the reads, at their recorded times, through the parser into a reporter; returns
    it and each steps frame with the text and the event the node sent after it."""
    screen = Screen()
    reporter = screen.reporter(pack, interval=0.0, title="Wan train LoRA")
    reporter.start("launching")
    parser = OutputParser()
    frames = []
    for when, stream, data in chunks:
        screen.now = when
        for event in parser.feed(stream, data):
            reporter.on_event(event)
            if isinstance(event, Progress) and event.desc == "steps":
                frames.append((event, screen.texts[-1], screen.events[-1][1]))
    return reporter, frames


@pytest.mark.parametrize("capture", ["py_sigint_pid", "py_sigterm_pid"])
def test_the_bogus_first_step_is_not_shown_and_the_second_gives_the_real_rate(
        pack: Any, captures_dir: Path, capture: str) -> None:  # noqa: F811
    chunks = timed_chunks(captures_dir / f"{capture}.chunks.jsonl")
    reporter, frames = replay(pack, chunks)
    first, text, event = next(f for f in frames if f[0].n == 1)
    assert first.rate and first.rate > 100, "the capture's first frame claims hundreds of it/s"
    assert "it/s" not in text and "s/it" not in text and "ETA" not in text
    assert event["rate"] is None and event["eta"] is None

    # step 2: one step in the time from step 1's frame to step 2's, all four steps left to come
    t1 = next(when for when, _, data in chunks if b" 1/6 " in data)
    t2 = next(when for when, _, data in chunks if b" 2/6 " in data)
    rate = 1 / (t2 - t1)
    _, text, event = next(f for f in frames if f[0].n == 2)
    assert f"{1 / rate:.2f} s/it" in text and "ETA 00:" in text
    assert event["rate"] == pytest.approx(rate) and event["eta"] == pytest.approx(4 / rate)
    # the frame printed again as the run stops does not change the rate
    assert reporter.speed.rate == pytest.approx(rate)


def test_the_reset_bar_and_repeated_frames_of_a_whole_two_epoch_run(pack: Any, captures_dir: Path) -> None:  # noqa: F811
    """wan_train_python.merged (2 epochs x 3 steps) has no read times; each frame is given one
    second, so a step's repeats (its loss, the final frames) would slow the rate if counted."""
    data = (captures_dir / "wan_train_python.merged").read_bytes()
    screen = Screen()
    reporter = screen.reporter(pack, interval=0.0)
    parser = OutputParser()
    seen: list[int] = []
    first_seen: dict[int, float] = {}
    for event in parser.feed("stdout", data) + parser.finish():
        if isinstance(event, Progress) and event.desc == "steps":
            screen.now += 1.0
            seen.append(int(event.n))
            first_seen.setdefault(int(event.n), screen.now)
        reporter.on_event(event)
        if isinstance(event, Progress) and event.desc == "steps" and event.n == 3:
            at_epoch_end = dict(screen.events[-1][1])
    assert seen[:2] == [0, 0] and len(seen) > len(set(seen)), "the capture resets the bar and repeats frames"
    expected = 5 / (first_seen[6] - first_seen[1])
    assert reporter.speed.rate == pytest.approx(expected)
    # after epoch 1's last step, the ETA covers epoch 2's three steps too
    rate_then = 2 / (first_seen[3] - first_seen[1])
    assert at_epoch_end["epochs"] == 2 and at_epoch_end["eta"] == pytest.approx(3 / rate_then)


# ---------------------------------------------------------------------------- a run's status

def test_a_running_runs_status_has_rate_and_eta_from_its_loss_times(tmp_path: Path) -> None:
    run_dir = tmp_path / "20260101-000000-x"
    run_dir.mkdir()
    points = [{"step": s, "total": 10, "epoch": 1, "epochs": 2, "avr_loss": 1.0, "time": 1000.0 + 3 * s}
              for s in range(1, 5)]
    (run_dir / LOSS_FILE).write_text("".join(json.dumps(p) + "\n" for p in points), encoding="utf-8")
    with RunLock([str(run_dir)], str(run_dir)):
        progress = run_status(str(run_dir))["progress"]
    assert progress["rate"] == pytest.approx(1 / 3) and progress["eta"] == pytest.approx(6 * 3.0)
    ended = run_status(str(run_dir))["progress"]
    assert ended["rate"] == pytest.approx(1 / 3) and ended["eta"] is None  # no longer running: no time left
    assert rate_of_points([{"step": 1, "time": 1.0}, {"step": 2, "time": "?"}]).rate is None

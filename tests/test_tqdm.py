"""parse_frame: tqdm meter text -> Progress (and any text glued to the frame)."""

from __future__ import annotations

import time

import pytest

from parsers.events import Progress
from parsers.tqdm import parse_count, parse_frame, parse_interval

# frame text -> (desc, n, total, rate, unit, elapsed, remaining, postfix, percent)
FRAMES = {
    "with total, s/it, postfix": (
        "train:  25%|██▌       | 3/12 [00:06<00:18,  2.00s/it, avr_loss=0.421]",
        ("train", 3, 12, 0.5, "it", 6.0, 18.0, {"avr_loss": "0.421"}, 25.0)),
    "with total, it/s, no postfix": (
        "Loading dit.safetensors:  50%|█████     | 10/20 [00:01<00:01, 9.50it/s]",
        ("Loading dit.safetensors", 10, 20, 9.5, "it", 1.0, 1.0, {}, 50.0)),
    "first frame, unknowns": (
        "train:   0%|          | 0/12 [00:00<?, ?it/s]",
        ("train", 0, 12, None, "it", 0.0, None, {}, 0.0)),
    "ascii bar": (
        "train:  40%|####      | 4/10 [00:04<00:06,  1.00it/s, avr_loss=1]",
        ("train", 4, 10, 1.0, "it", 4.0, 6.0, {"avr_loss": "1"}, 40.0)),
    "TQDM_NCOLS=0, no bar": (
        "train:  40% 2/5 [00:00<00:00, 97.97it/s, avr_loss=0.113]",
        ("train", 2, 5, 97.97, "it", 0.0, 0.0, {"avr_loss": "0.113"}, 40.0)),
    "no description": (
        " 60%|██████    | 3/5 [00:03<00:02,  1.01it/s]",
        ("", 3, 5, 1.01, "it", 3.0, 2.0, {}, 60.0)),
    "hours in elapsed and remaining": (
        "train:  10%|█         | 100/1000 [1:02:03<9:18:27, 37.23s/it, avr_loss=0.05]",
        ("train", 100, 1000, 1 / 37.23, "it", 3723.0, 33507.0, {"avr_loss": "0.05"}, 10.0)),
    "several postfix keys with spaces": (
        "train:  10%|█         | 1/10 [00:01<00:09, 1.00s/it, Keys Scaled=3, Average key norm=0.52, avr_loss=0.1]",
        ("train", 1, 10, 1.0, "it", 1.0, 9.0,
         {"Keys Scaled": "3", "Average key norm": "0.52", "avr_loss": "0.1"}, 10.0)),
    "scaled counts": (
        "fetch:  50%|█████     | 1.23k/2.46k [00:01<00:01, 2.50kit/s]",
        ("fetch", 1230.0, 2460.0, 2500.0, "it", 1.0, 1.0, {}, 50.0)),
    "bytes with scaled rate": (
        "dl:  20%|██        | 2.00M/10.0M [00:02<00:08, 1.00MB/s]",
        ("dl", 2e6, 1e7, 1e6, "B", 2.0, 8.0, {}, 20.0)),
    "no total, no desc": (
        "3it [00:00,  5.25it/s]",
        ("", 3, None, 5.25, "it", 0.0, None, {}, None)),
    "no total, first frame": (
        "0it [00:00, ?it/s]",
        ("", 0, None, None, "it", 0.0, None, {}, None)),
    "no total, desc and unit": (
        "Loading lora.safetensors: 120key [00:02, 60.00key/s]",
        ("Loading lora.safetensors", 120, None, 60.0, "key", 2.0, None, {}, None)),
    "no total, scaled count, s/it": (
        "enc: 1.50kit [10:00,  2.00s/it]",
        ("enc", 1500.0, None, 0.5, "it", 600.0, None, {}, None)),
    "no total, postfix": (
        "9it [00:09,  1.00s/it, loss=0.2]",
        ("", 9, None, 1.0, "it", 9.0, None, {"loss": "0.2"}, None)),
    "n beyond total": (
        "train: 110%|██████████| 11/10 [00:11<00:00,  1.00s/it]",
        ("train", 11, 10, 1.0, "it", 11.0, 0.0, {}, 110.0)),
}


@pytest.mark.parametrize("text, expected", FRAMES.values(), ids=list(FRAMES))
def test_frame_is_parsed(text: str, expected: tuple):
    progress, rest = parse_frame(text)
    assert progress is not None and rest == ""
    desc, n, total, rate, unit, elapsed, remaining, postfix, percent = expected
    assert (progress.desc, progress.n, progress.total, progress.unit) == (desc, n, total, unit)
    assert (progress.elapsed, progress.remaining, progress.postfix, progress.percent) == (
        elapsed, remaining, postfix, percent)
    assert progress.rate == (pytest.approx(rate) if rate is not None else None)


def test_whole_counts_stay_integers_for_json():
    progress, _ = parse_frame("train:  50%|█████     | 3/6 [00:03<00:03,  1.00s/it]")
    assert isinstance(progress.n, int) and isinstance(progress.total, int)


def test_log_line_glued_after_frame_yields_both():
    progress, rest = parse_frame(
        "train: 100%|██████████| 4/4 [00:08<00:00,  2.00s/it, avr_loss=0.1]"
        "INFO:pkg.trainer:model saved.")
    assert (progress.n, progress.total, progress.postfix) == (4, 4, {"avr_loss": "0.1"})
    assert rest == "INFO:pkg.trainer:model saved."


def test_trailing_padding_after_frame_is_not_a_remainder():
    progress, rest = parse_frame("train:  50%|█████     | 2/4 [00:04<00:04,  2.00s/it, avr_loss=0.3]   ")
    assert progress is not None and rest == ""


def test_traceback_glued_after_padding_is_the_remainder():
    progress, rest = parse_frame(
        "train:  50%|█████     | 2/4 [00:04<00:04,  2.00s/it] Traceback (most recent call last):")
    assert progress.n == 2 and rest == "Traceback (most recent call last):"


def test_text_glued_before_a_frame_without_desc_is_the_remainder():
    progress, rest = parse_frame("Done!2it [00:01,  2.00it/s]")
    assert (progress.n, progress.desc) == (2, "") and rest == "Done!"


@pytest.mark.parametrize("line", [
    "INFO:pkg.config:[Dataset 0]",
    "INFO:pkg.lora:Loading model files: ['/models/a.safetensors']",
    "epoch 3/10",
    "  total optimization steps / steps: 30",
    "INFO:pkg.bucket:bucket: (64, 64, 9), count: 3",
    "INFO:pkg.x:progress 50% 1/2 [not a meter]",
    "Traceback (most recent call last):",
    "ValueError: expected [a, b] got 1/2",
    "",
])
def test_ordinary_lines_are_not_frames(line: str):
    assert parse_frame(line) == (None, line)


@pytest.mark.parametrize("text, seconds", [
    ("00:00", 0.0), ("01:05", 65.0), ("1:00:00", 3600.0), ("12:34:56", 45296.0), ("?", None), ("", None),
])
def test_interval(text: str, seconds):
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text, value", [("7", 7), ("1.5", 1.5), ("1.23k", 1230.0), ("2.5M", 2.5e6), ("3G", 3e9)])
def test_count(text: str, value):
    assert parse_count(text) == pytest.approx(value)


@pytest.mark.parametrize("junk", [
    "1" * 65000 + "/]",
    "1%|" * 30000 + "/]",
    "[00:00, 1" * 7000 + "/]",
    " 1% 1/" * 10000 + "]",
])
def test_long_non_frame_lines_are_rejected_in_linear_time(junk: str):
    # Generous bound: a quadratic regex takes tens of seconds on these.
    start = time.perf_counter()
    assert parse_frame(junk)[0] is None
    assert time.perf_counter() - start < 2.0


def test_progress_is_a_frozen_value():
    progress, _ = parse_frame("3it [00:00,  5.25it/s]")
    assert isinstance(progress, Progress)
    with pytest.raises(AttributeError):
        progress.n = 4  # type: ignore[misc]

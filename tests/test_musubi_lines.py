"""parse_line: one non-frame musubi line -> LogLine + phase events (our own sample lines)."""

from __future__ import annotations

import pytest

from parsers.events import (
    CacheRemoved, Checkpoint, Epoch, ItemsFound, LogLine, ModelSaved, Phase, TotalBatches, TotalSteps,
)
from parsers.musubi import PHASES, parse_line, split_log_prefix

TRAINER = "INFO:musubi_tuner.training.trainer_base:"
CACHER = "INFO:__main__:"


def milestones(text: str) -> list:
    events = parse_line(text)
    assert isinstance(events[0], LogLine)
    return events[1:]


def test_logging_prefix_is_split_into_level_and_logger():
    (line,) = parse_line("WARNING:musubi_tuner.dataset.cache_io:cache is stale", stream="stderr")
    assert (line.level, line.logger, line.stream) == ("WARNING", "musubi_tuner.dataset.cache_io", "stderr")
    assert line.text == "WARNING:musubi_tuner.dataset.cache_io:cache is stale"


def test_plain_print_line_has_no_level():
    (line,) = parse_line("accelerator device: cuda")
    assert (line.level, line.logger, line.stream) == (None, None, "stdout")


def test_trailing_whitespace_is_dropped_from_the_text():
    assert parse_line("hello   ")[0].text == "hello"


@pytest.mark.parametrize("text, prefix", [
    ("ERROR:root:boom", ("ERROR", "root", "boom")),
    ("INFO:__main__:Load dataset config from a.toml", ("INFO", "__main__", "Load dataset config from a.toml")),
    ("CRITICAL:x.y:a: b: c", ("CRITICAL", "x.y", "a: b: c")),
    ("Information: not a log line", (None, None, "Information: not a log line")),
    ("INFO: spaced logger: no", (None, None, "INFO: spaced logger: no")),
])
def test_split_log_prefix(text: str, prefix: tuple):
    assert split_log_prefix(text) == prefix


@pytest.mark.parametrize("text, expected", [
    ("epoch 2/5", [Epoch(2, 5)]),
    ("saving checkpoint: /out/my-lora-000002.safetensors",
     [Phase("saving", "saving checkpoint: /out/my-lora-000002.safetensors"),
      Checkpoint("/out/my-lora-000002.safetensors")]),
    ("saving checkpoint: C:\\Loras\\my lora.safetensors",
     [Phase("saving", "saving checkpoint: C:\\Loras\\my lora.safetensors"),
      Checkpoint("C:\\Loras\\my lora.safetensors")]),
    (TRAINER + "model saved.", [ModelSaved()]),
    ("INFO:musubi_tuner.dataset.datasources:found 12 images", [ItemsFound(12, "images")]),
    ("INFO:musubi_tuner.dataset.datasources:found 0 videos", [ItemsFound(0, "videos")]),
    ("INFO:musubi_tuner.dataset.datasources:loaded 7 images", [ItemsFound(7, "images")]),
    ("INFO:musubi_tuner.dataset.datasources:loaded 2 videos", [ItemsFound(2, "videos")]),
    ("INFO:musubi_tuner.dataset.bucket:total batches: 24", [TotalBatches(24)]),
    ("  total optimization steps / 学習ステップ数: 480", [TotalSteps(480)]),
    (CACHER + "Removed old cache file: /cache/old_0512x0512_wan.safetensors",
     [CacheRemoved("/cache/old_0512x0512_wan.safetensors")]),
])
def test_milestones(text: str, expected: list):
    assert milestones(text) == expected


@pytest.mark.parametrize("message, phase", [
    ("Load dataset config from /data/set.toml", "loading_dataset"),
    ("Loading DiT model from /models/dit.safetensors", "loading_model"),
    ("Loading DiT model from /models/dit.safetensors, device=cuda", "loading_model"),
    ("Loading high noise DiT model from /models/high.safetensors", "loading_model"),
    ("Loading VAE model from /models/vae.safetensors", "loading_model"),
    ("Loading AE model from /models/ae.safetensors", "loading_model"),
    ("Loading Z-Image VAE from /models/zvae.safetensors", "loading_model"),
    ("Loading image encoder from /models/clip.safetensors", "loading_model"),
    ("Loading T5: /models/t5.pth", "loading_model"),
    ("Loading Qwen2.5-VL: /models/qwen.safetensors", "loading_model"),
    ("Loading Qwen3 text encoder from /models/q3.safetensors", "loading_model"),
    ("loading text encoder 1: /models/llm", "loading_model"),
    ("Encoding dataset [0]", "caching"),
    ("Encoding with T5", "caching"),
    ("Encoding with Text Encoder 1", "caching"),
    ("Encoding with Qwen2.5-VL and BYT5", "caching"),
    ("Encoding prompts with Qwen3 text encoder", "caching"),
    ("running training / 学習開始", "training"),
    ("generating sample images at step / サンプル画像生成 ステップ: 100", "sampling"),
    ("saving state at epoch 2", "saving"),
    ("saving state at step 400", "saving"),
    ("saving last state.", "saving"),
])
def test_phase_markers(message: str, phase: str):
    assert phase in PHASES
    events = milestones(TRAINER + message)
    assert events[0] == Phase(phase, message)


@pytest.mark.parametrize("text", [
    "INFO:musubi_tuner.dataset.cache_io:epoch is incremented. current_epoch: 0, epoch: 1",
    "INFO:musubi_tuner.dataset.datasources:found 3 matching control images for arbitrary images",
    "INFO:musubi_tuner.dataset.datasources:glob images in /data/images",
    "removing old checkpoint: /out/my-lora-000001.safetensors",
    "Trying to import sageattention",
    "Failed to import sageattention",
    "  num epochs / epoch数: 2",
    "INFO:musubi_tuner.wan.modules.model:Loaded DiT model from /m/dit.safetensors, info=<All keys matched>",
    "prefix epoch 1/2",
    "model saved. really",
])
def test_lines_without_milestones(text: str):
    assert milestones(text) == []

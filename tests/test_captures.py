"""The parsers on raw output of the real musubi-tuner (tests/fixtures/captures)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from parsers import OutputParser
from parsers.events import Checkpoint, Event, Progress

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# capture -> (failure kind, text its hint must contain)
FAILURES = {
    "cl_missing_required": ("bad_arguments", "--dataset_config"),
    "cl_toml_schema": ("dataset_config", "'resolution' in [general]"),
    "cl_vae_missing": ("missing_file", "/nonexistent/wan_vae.safetensors"),
    "tr_no_cache": ("no_training_items", "caching steps"),
    "tr_no_attn_flag": ("no_attention_backend", "sdpa"),
    "cl_empty_image_dir": ("empty_dataset", "image_directory"),
}
STREAM_OF_SUFFIX = {".stdout": "stdout", ".stderr": "stderr", ".merged": "stdout"}


def read_chunks(path: Path) -> list[tuple[str, bytes]]:
    """A .chunks.jsonl capture as (stream, bytes) reads, without the harness's notes."""
    chunks = []
    for line in path.read_text(encoding="utf-8").splitlines():
        chunk = json.loads(line)
        if chunk["s"] in ("stdout", "stderr"):
            chunks.append((chunk["s"], chunk["d"].encode("utf-8")))
    return chunks


def raw_chunks(path: Path) -> list[tuple[str, bytes]]:
    return [(STREAM_OF_SUFFIX[path.suffix], path.read_bytes())]


def capture_chunks(path: Path) -> list[tuple[str, bytes]]:
    return read_chunks(path) if path.name.endswith(".chunks.jsonl") else raw_chunks(path)


def parse(chunks: list[tuple[str, bytes]]) -> tuple[list[Event], OutputParser]:
    parser = OutputParser()
    events: list[Event] = []
    for stream, data in chunks:
        events += parser.feed(stream, data)
    return events + parser.finish(), parser


def exit_code_of(captures_dir: Path, name: str) -> int:
    return int((captures_dir / f"{name}.rc").read_text().strip())


def capture_files(captures_dir: Path) -> list[Path]:
    files = sorted(p for p in captures_dir.iterdir()
                   if p.name.endswith(".chunks.jsonl") or p.suffix in STREAM_OF_SUFFIX)
    assert files, "no capture files found"
    return files


def rechunk(chunks: list[tuple[str, bytes]], rnd: random.Random, max_size: int) -> list[tuple[str, bytes]]:
    """The same reads in the same order, each cut into random pieces."""
    out = []
    for stream, data in chunks:
        i = 0
        while i < len(data):
            size = rnd.randint(1, max_size)
            out.append((stream, data[i:i + size]))
            i += size
    return out


def test_training_run_ends_at_6_of_6_with_its_last_loss(captures_dir: Path):
    events, parser = parse(raw_chunks(captures_dir / "wan_train_python.merged"))
    steps = [e for e in events if isinstance(e, Progress) and e.desc == "steps"]
    final = steps[-1]
    assert (final.n, final.total, final.postfix["avr_loss"]) == (6, 6, "1.75")
    assert parser.last_progress == final
    assert [(s.n, s.postfix.get("avr_loss")) for s in steps[:3]] == [(0, None), (0, None), (1, "1.69")]
    assert parser.classify(0) is None


def test_training_run_reports_both_checkpoints_and_the_epochs(captures_dir: Path):
    events, _ = parse(raw_chunks(captures_dir / "wan_train_python.merged"))
    assert [e.path for e in events if isinstance(e, Checkpoint)] == [
        "/home/user/musubi-work/out/lora_py/tiny-lora-000001.safetensors",
        "/home/user/musubi-work/out/lora_py/tiny-lora.safetensors",
    ]
    assert [(e.n, e.total) for e in events if e.type == "epoch"] == [(1, 2), (2, 2)]
    assert [e.count for e in events if e.type == "total_steps"] == [6]
    assert any(e.type == "model_saved" for e in events)


def test_log_line_glued_to_the_steps_bar_is_recovered(captures_dir: Path):
    events, _ = parse(raw_chunks(captures_dir / "wan_train_python.merged"))
    texts = [e.text for e in events if e.type == "log"]
    assert "INFO:musubi_tuner.training.trainer_base:network weights will be saved as torch.float32 (default)" in texts
    assert not [t for t in texts if "it/s]" in t or "s/it," in t], "a frame leaked into a log line"


def test_caching_bar_without_total(captures_dir: Path):
    events, parser = parse(raw_chunks(captures_dir / "wan_cache_latents.stderr"))
    bars = [e for e in events if isinstance(e, Progress)]
    assert [b.n for b in bars] == [0, 1, 2, 3, 3] and all(b.total is None for b in bars)
    assert [e.name for e in events if e.type == "phase"] == ["loading_dataset", "loading_model", "caching"]
    assert parser.classify(None) is None


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_failure_capture_is_classified_with_a_useful_hint(captures_dir: Path, name: str):
    kind, fragment = FAILURES[name]
    _, parser = parse(read_chunks(captures_dir / f"{name}.chunks.jsonl"))
    failure = parser.classify(exit_code_of(captures_dir, name))
    assert failure is not None and failure.kind == kind
    assert fragment in failure.hint and failure.message


def test_empty_image_dir_is_a_failure_although_it_exited_0(captures_dir: Path):
    assert exit_code_of(captures_dir, "cl_empty_image_dir") == 0
    _, parser = parse(read_chunks(captures_dir / "cl_empty_image_dir.chunks.jsonl"))
    assert parser.classify(0).kind == "empty_dataset"


@pytest.mark.parametrize("name", ["py_sigint_pid", "py_sigterm_pid"])
def test_killed_runs_parse_without_trouble(captures_dir: Path, name: str):
    events, parser = parse(read_chunks(captures_dir / f"{name}.chunks.jsonl"))
    assert parser.last_progress.desc == "steps" and parser.last_progress.total == 6
    failure = parser.classify(exit_code_of(captures_dir, name))
    # SIGINT leaves a KeyboardInterrupt traceback; SIGTERM leaves nothing to classify.
    assert (failure.kind if failure else None) == ("interrupted" if "sigint" in name else None)


def test_every_capture_gives_identical_events_in_random_chunk_sizes(captures_dir: Path):
    rnd = random.Random(20240601)
    for path in capture_files(captures_dir):
        chunks = capture_chunks(path)
        expected, _ = parse(chunks)
        for max_size in (1, 7, 300, 70000):
            assert parse(rechunk(chunks, rnd, max_size))[0] == expected, (path.name, max_size)


@pytest.mark.timeout(120)
def test_cli_prints_valid_json_for_every_capture(captures_dir: Path):
    files = capture_files(captures_dir)
    result = subprocess.run([sys.executable, "-m", "parsers", *map(str, files)], cwd=PROJECT_ROOT,
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    events = [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]
    by_file: dict[str, list[dict]] = {}
    for event in events:
        if event["type"] == "file":
            current = by_file.setdefault(Path(event["path"]).name, [])
        else:
            current.append(event)
    assert set(by_file) == {p.name for p in files}
    merged = by_file["wan_train_python.merged"]
    final = [e for e in merged if e["type"] == "progress"][-1]
    assert (final["n"], final["total"], final["postfix"]) == (6, 6, {"avr_loss": "1.75"})
    for name, (kind, _) in FAILURES.items():
        for suffix in (".chunks.jsonl", ".stderr"):
            last = by_file[name + suffix][-1]
            assert last["type"] == "failure" and last["kind"] == kind and last["hint"], name + suffix

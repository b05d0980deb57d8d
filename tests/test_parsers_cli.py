"""`python -m parsers FILE...` run as a real child process on files we write."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(60)

LOG = (
    "INFO:musubi_tuner.dataset.datasources:found 2 images\n"
    "\rtrain:   0%|          | 0/2 [00:00<?, ?it/s]"
    "\rtrain:  50%|█████     | 1/2 [00:02<00:02,  2.00s/it, avr_loss=0.9]"
    "\nepoch 1/1\n"
    "\rtrain: 100%|##########| 2/2 [00:04<00:00,  2.00s/it, avr_loss=0.8]"
    "\nsaving checkpoint: /out/mine.safetensors\n"
    "INFO:musubi_tuner.training.trainer_base:model saved.\n"
).encode()


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parsers", *map(str, args)], cwd=PROJECT_ROOT,
                          capture_output=True, timeout=60)


def events_of(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]


def test_raw_log_prints_one_json_event_per_line(tmp_path: Path):
    log = tmp_path / "run.log"
    log.write_bytes(LOG)
    events = events_of(run_cli(log))
    progress = [e for e in events if e["type"] == "progress"]
    assert progress[-1] == {**progress[-1], "desc": "train", "n": 2, "total": 2, "rate": 0.5,
                            "postfix": {"avr_loss": "0.8"}}
    assert {"type": "epoch", "n": 1, "total": 1} in events
    assert {"type": "checkpoint", "path": "/out/mine.safetensors"} in events
    assert {"type": "model_saved"} in events
    assert events[0]["type"] == "log" and events[0]["text"].endswith("found 2 images")
    assert not [e for e in events if e["type"] == "failure"]


def test_every_object_has_a_type_first(tmp_path: Path):
    log = tmp_path / "run.log"
    log.write_bytes(LOG)
    for line in run_cli(log).stdout.decode().splitlines():
        assert line.startswith('{"type": ')


def test_exit_code_from_rc_file_beside_the_capture(tmp_path: Path):
    (tmp_path / "job.stderr").write_bytes(b"Traceback (most recent call last):\n"
                                          b"ValueError: No training items found in the dataset.\n")
    (tmp_path / "job.rc").write_text("1\n")
    failure = events_of(run_cli(tmp_path / "job.stderr"))[-1]
    assert failure["type"] == "failure" and failure["kind"] == "no_training_items"
    assert failure["hint"] and failure["message"].startswith("ValueError: No training items")


def test_exit_code_option_wins_over_rc_file(tmp_path: Path):
    (tmp_path / "job.stderr").write_bytes(b"torch.OutOfMemoryError: CUDA out of memory.\n")
    (tmp_path / "job.rc").write_text("1\n")
    assert events_of(run_cli(tmp_path / "job.stderr", "--exit-code", "0"))[-1]["type"] == "log"
    assert events_of(run_cli(tmp_path / "job.stderr"))[-1]["kind"] == "out_of_memory"


def test_exit_0_with_no_images_is_reported_as_a_failure(tmp_path: Path):
    (tmp_path / "cache.stderr").write_bytes(b"INFO:m.datasources:found 0 images\n\r0it [00:00, ?it/s]\n")
    (tmp_path / "cache.rc").write_text("0\n")
    assert events_of(run_cli(tmp_path / "cache.stderr"))[-1]["kind"] == "empty_dataset"


def test_stream_comes_from_the_suffix_or_the_option(tmp_path: Path):
    (tmp_path / "a.stderr").write_bytes(b"hello\n")
    (tmp_path / "a.txt").write_bytes(b"hello\n")
    assert events_of(run_cli(tmp_path / "a.stderr"))[0]["stream"] == "stderr"
    assert events_of(run_cli(tmp_path / "a.txt"))[0]["stream"] == "stdout"
    assert events_of(run_cli(tmp_path / "a.txt", "--stream", "stderr"))[0]["stream"] == "stderr"


def test_chunks_capture_is_fed_in_order_by_stream(tmp_path: Path):
    capture = tmp_path / "run.chunks.jsonl"
    chunks = [
        {"t": 0.1, "s": "stdout", "d": "\nepoch 1/"},
        {"t": 0.2, "s": "stderr", "d": "\rtrain:  50%|#####     | 1/2 [00:01<00:01,  1.00it/s]"},
        {"t": 0.3, "s": "harness", "d": "sent SIGTERM to pid 1"},
        {"t": 0.4, "s": "stdout", "d": "2\n"},
        {"t": 0.5, "s": "stderr", "d": "\rtrain: 100%|##########| 2/2 [00:02<00:00,  1.00it/s]\n"},
    ]
    capture.write_text("".join(json.dumps(c) + "\n" for c in chunks), encoding="utf-8")
    (tmp_path / "run.rc").write_text("-15")
    events = events_of(run_cli(capture))
    assert [e["type"] for e in events] == ["progress", "log", "epoch", "progress"]
    assert not any("SIGTERM" in json.dumps(e) for e in events)


def test_several_files_are_announced(tmp_path: Path):
    (tmp_path / "one.log").write_bytes(b"epoch 1/2\n")
    (tmp_path / "two.log").write_bytes(b"epoch 2/2\n")
    events = events_of(run_cli(tmp_path / "one.log", tmp_path / "two.log"))
    assert [e["type"] for e in events] == ["file", "log", "epoch", "file", "log", "epoch"]
    assert events[0]["path"].endswith("one.log")


def test_invalid_bytes_and_windows_code_page_do_not_crash(tmp_path: Path):
    log = tmp_path / "cp.log"
    log.write_bytes("Caf\u00e9 \u2013 ok\r\n".encode("cp1252") + b"\xff\xfe\x00 bad\n")
    texts = [e["text"] for e in events_of(run_cli(log))]
    assert texts[0].startswith("Caf\ufffd") and texts[1].endswith("bad")


def test_missing_file_is_an_error_with_a_message(tmp_path: Path):
    result = run_cli(tmp_path / "nope.log")
    assert result.returncode == 1
    assert b"cannot read" in result.stderr and b"nope.log" in result.stderr


def test_bad_chunks_file_is_an_error_with_a_message(tmp_path: Path):
    capture = tmp_path / "x.chunks.jsonl"
    capture.write_text("not json\n")
    result = run_cli(capture)
    assert result.returncode == 1 and b"not a valid capture" in result.stderr


def test_help_mentions_the_options():
    result = run_cli("--help")
    assert result.returncode == 0
    assert b"--exit-code" in result.stdout and b"--stream" in result.stdout

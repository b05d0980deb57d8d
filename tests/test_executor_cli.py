"""``python -m executor run`` from the pack root, as a user or support would run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from procs import wait_all_gone

if TYPE_CHECKING:
    from fakes import FakeMusubi


PROJECT_ROOT = Path(__file__).resolve().parent.parent
POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def cli(*args: str, env: dict[str, str], **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "executor", "run", *args], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def lines(text: bytes) -> list[dict]:
    return [json.loads(line) for line in text.decode("utf-8").splitlines() if line.strip()]


class Training:
    """The fake trainer under the fake ``accelerate launch``, its grandchild ignoring SIGTERM."""

    def __init__(self, fake: FakeMusubi, base: Path, **knobs: str) -> None:
        toml = fake.make_dataset(base / "data")
        dit = fake.make_model(base / "dit.safetensors")
        self.pidfile = base / "pids.txt"
        self.env = fake.env(unbuffered=False, FAKE_MUSUBI_PIDFILE=str(self.pidfile),
                            FAKE_MUSUBI_IGNORE_SIGTERM="1", FAKE_MUSUBI_STEP_SECONDS="0.5", **knobs)
        for script, extra in (("wan_cache_latents", ["--vae", str(dit)]), ("wan_cache_text_encoder_outputs", [])):
            subprocess.run(fake.argv(script, "--dataset_config", str(toml), *extra), env=self.env, check=True,
                           capture_output=True)
        self.pidfile.unlink(missing_ok=True)
        self.argv = fake.argv("wan_train_network", "--dataset_config", str(toml), "--dit", str(dit), "--sdpa",
                              "--max_train_epochs", "20", "--output_dir", str(base / "out"), "--output_name", "x",
                              accelerate=True)

    def pids(self) -> list[int]:
        if not self.pidfile.exists():
            return []
        return [int(line.split()[1]) for line in self.pidfile.read_text().splitlines() if line.strip()]


@POSIX_ONLY
@pytest.mark.timeout(90)
def test_timeout_stops_a_launcher_whose_grandchild_ignores_sigterm(fake_musubi: FakeMusubi, tmp_path: Path) -> None:
    training = Training(fake_musubi, tmp_path, FAKE_MUSUBI_LOAD_SECONDS="1")
    proc = cli("--timeout", "4", "--", *training.argv, env=training.env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 124, err.decode()
    events = lines(out)
    assert events[-1]["type"] == "error" and events[-1]["error"] == "timed-out"
    assert events[-1]["timed_out"] is True
    assert any(e["type"] == "progress" for e in events[:-1])
    assert "time limit" in err.decode()
    pids = training.pids()
    assert len(pids) == 2  # the launcher and the training script
    assert wait_all_gone(pids) == []


@POSIX_ONLY
@pytest.mark.timeout(90)
def test_ctrl_c_stops_the_whole_tree(fake_musubi: FakeMusubi, tmp_path: Path) -> None:
    training = Training(fake_musubi, tmp_path)
    # A new session for the CLI, so the group signal below reaches it the way a
    # terminal's Ctrl-C does (the trainer's tree has its own session).
    # bufsize=0: communicate() below reads the fd directly, so no line may sit in a read-ahead buffer.
    proc = cli("--", *training.argv, env=training.env, start_new_session=True, bufsize=0)
    try:
        seen = []
        for raw in proc.stdout:  # wait for the first training step
            seen.append(json.loads(raw))
            if seen[-1].get("type") == "progress" and seen[-1].get("desc") == "steps":
                break
        tree = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()
    events = lines(out)
    assert events[-1]["type"] == "error" and events[-1]["error"] == "cancelled"
    assert "was cancelled" in err.decode()
    assert wait_all_gone(tree + training.pids()) == []


@pytest.mark.timeout(60)
def test_prints_events_as_json_lines_and_a_final_result(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    code = ("import sys\n"
            "sys.stderr.write('\\rsteps:  50%|█████     | 1/2 [00:01<00:01,  1.00s/it, avr_loss=1.5]\\n')\n"
            "print('epoch 1/2')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = cli("--log", str(log), "--", sys.executable, "-c", code, env=env)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    events = lines(out)
    kinds = [e["type"] for e in events]
    assert "progress" in kinds and "epoch" in kinds
    progress = next(e for e in events if e["type"] == "progress")
    assert (progress["desc"], progress["n"], progress["total"], progress["postfix"]) == \
        ("steps", 1, 2, {"avr_loss": "1.5"})
    assert events[-1]["type"] == "result" and events[-1]["ok"] is True and events[-1]["exit_code"] == 0
    assert b"epoch 1/2" in log.read_bytes()


@pytest.mark.timeout(60)
def test_a_failing_command_exits_non_zero_with_an_error_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = cli("--", sys.executable, "-c", "import sys; print('boom'); sys.exit(5)", env=env)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    error = lines(out)[-1]
    assert error["type"] == "error" and error["error"] == "trainer-failed" and error["exit_code"] == 5
    assert error["tail"] == ["boom"]
    assert "exit code 5" in err.decode()


@pytest.mark.timeout(60)
def test_a_program_that_does_not_exist_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = cli("--", str(tmp_path / "no-such-program"), env=env)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert lines(out)[-1]["error"] == "trainer-not-found"
    assert "no-such-program" in err.decode()

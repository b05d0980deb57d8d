"""``python -m executor jobs list|show|stop|tail`` on a real store, as a separate process with no
ComfyUI: it lists what a manager queued, shows one job, follows its log to the end, and stops a
running job (finishing it itself, since no other manager leads the store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("hardening", "jobs_support")

import hardening  # noqa: E402,F401  (registers the marker before the decorators below)

from jobs_support import Bench

pytest_plugins = ["hardening", "jobs_support"]
pytestmark = pytest.mark.timeout(180)
PROJECT_ROOT = Path(__file__).resolve().parent.parent



def jobs(bench: Bench, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MUSUBI_TUNER", "FAKE_MUSUBI"))}
    return subprocess.run([sys.executable, "-m", "executor", "jobs", "--data-dir", str(bench.data_dir), *args],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=timeout)


def test_list_show_and_tail_follow_a_job_to_its_end(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.2"})
    manager = bench.manager()
    job = manager.submit(bench.plan(name="cli"), kind="train", name="cli run")
    listed = jobs(bench, "list")
    assert listed.returncode == 0 and job.id[:12].encode() in listed.stdout and b"queued" in listed.stdout
    bench.until(manager, job.id, lambda j: j.state == "running")
    follower = subprocess.Popen([sys.executable, "-m", "executor", "jobs", "--data-dir", str(bench.data_dir), "tail",
                                 job.id[:8], "-f", "-n", "0"], cwd=PROJECT_ROOT, stdout=subprocess.PIPE)
    bench.final(manager, job.id)
    out, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0 and b"model saved." in out and b"running training" in out
    shown = json.loads(jobs(bench, "show", job.id).stdout)
    assert shown["state"] == "succeeded" and shown["architecture"] == "wan" and "launch" not in json.dumps(shown)
    as_json = json.loads(jobs(bench, "list", "--json").stdout)
    assert [j["id"] for j in as_json["jobs"]] == [job.id]


@pytest.mark.hardening("jobs", "stop_route")
def test_stop_from_the_command_line_without_comfyui(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.2"})
    manager = bench.manager()
    job = bench.until(manager, manager.submit(bench.plan(name="stopme", epochs=30), kind="train", name="s").id,
                      lambda j: j.state == "running")
    manager.close()  # ComfyUI is gone: nobody but the command line is there
    started = time.monotonic()
    done = jobs(bench, "stop", job.id)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip().endswith("cancelled (stopped by request)")
    assert bench.store.get(job.id).state == "cancelled"
    assert took < 15


def test_bad_ids_are_refused(bench: Bench) -> None:
    for bad in ("../x", "zz", "0" * 40):
        result = jobs(bench, "show", bad)
        assert result.returncode == 2 and result.stderr

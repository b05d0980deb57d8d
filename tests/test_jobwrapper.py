"""The detached job wrapper with real processes: the fake musubi venv's interpreter runs
executor/process/jobwrapper.py, which runs the fake trainer (through the fake ``accelerate
launch`` where it matters). What a background job relies on: the log and exit.json, outliving the
process that started it (killed with SIGKILL, its process group too), a stop that ends the whole
tree (stop.request or SIGTERM; a trainer ignoring SIGTERM is killed after the grace), limits,
leftovers, masking, and recognising the wrapper again by pid + create time + command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

pytest.register_assert_rewrite("hardening", "jobs_support")

from executor.process import detach, winjob  # noqa: E402
from jobs_support import Bench  # noqa: E402
from procs import alive, wait_all_gone  # noqa: E402

pytest_plugins = ["hardening", "jobs_support"]
pytestmark = pytest.mark.timeout(120)
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and sessions")
PROJECT_ROOT = Path(__file__).resolve().parent.parent



def launch(bench: Bench, plan: Any, **kwargs: Any) -> tuple[detach.Handle, subprocess.Popen, Path]:
    run_dir = Path(plan.run_dir)
    run_dir.mkdir(parents=True)
    handle, popen = detach.launch(plan.command, str(run_dir), **kwargs)
    return handle, popen, run_dir


def exit_record(run_dir: Path, popen: subprocess.Popen | None = None, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None:
            popen.poll()
        record = detach.read_exit(str(run_dir))
        if record is not None:
            return record
        time.sleep(0.05)
    raise AssertionError(f"no exit.json in {run_dir}; log: {(run_dir / 'run.log').read_bytes()[-2000:]!r}")


def wait_for(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_detached_run_writes_its_log_and_exit_json(bench: Bench) -> None:
    handle, popen, run_dir = launch(bench, bench.plan())
    assert detach.is_running(handle)
    record = exit_record(run_dir, popen)
    assert popen.wait(10) == 0 and not detach.is_running(handle)
    assert record["exit_code"] == 0 and record["signal"] is None and not record["cancelled"]
    assert record["wrapper_pid"] == handle.pid and record["pid"] != handle.pid
    assert record["ended"] >= record["started"] > 0
    log = (run_dir / "run.log").read_bytes()
    assert b"steps: 100%" in log and b"model saved." in log and b"running training" in log
    assert (Path(bench.tmp / "out" / "lora" / "lora.safetensors")).is_file()


LAUNCHER = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {root!r})
    from executor.process.command import Command
    from executor.process import detach
    cmd = Command(argv=tuple({argv!r}), env={env!r}, cwd={cwd!r})
    handle, popen = detach.launch(cmd, {run_dir!r})
    print(json.dumps(handle.to_dict()), flush=True)
    time.sleep(600)
""")


@POSIX
def test_the_job_outlives_the_process_that_started_it_killed_with_its_group(bench: Bench, tmp_path: Path) -> None:
    """A stand-in for ComfyUI launches the job, then is SIGKILLed together with its whole process
    group (what a terminal's close or a service stop does); the job goes on to its end."""
    bench.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.3"})
    plan = bench.plan(epochs=4)
    run_dir = Path(plan.run_dir)
    run_dir.mkdir(parents=True)
    script = tmp_path / "comfy.py"
    script.write_text(LAUNCHER.format(root=str(PROJECT_ROOT), argv=list(plan.command.argv), env=dict(plan.command.env),
                                      cwd=plan.command.cwd, run_dir=str(run_dir)), encoding="utf-8")
    comfy = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    handle = detach.Handle(**{k: tuple(v) if k == "cmdline" else v for k, v in json.loads(comfy.stdout.readline()).items()})
    wait_for(lambda: b"steps:" in (run_dir / "run.log").read_bytes())
    os.killpg(comfy.pid, signal.SIGKILL)
    comfy.wait(10)
    assert detach.is_running(handle), "the job died with its starter"
    record = exit_record(run_dir)
    assert record["exit_code"] == 0 and not record["cancelled"], record
    assert b"model saved." in (run_dir / "run.log").read_bytes()


@POSIX
def test_a_stop_request_ends_the_whole_tree_within_two_seconds(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_SCENARIO": "workers", "FAKE_MUSUBI_STEP_SECONDS": "0.3",
                         "FAKE_MUSUBI_WORKER_LINGER": "60"})
    handle, popen, run_dir = launch(bench, bench.plan(epochs=20))
    wait_for(lambda: b"steps:" in (run_dir / "run.log").read_bytes() and len(bench.pids()) >= 4)
    tree = bench.pids() + [handle.pid]
    started = time.monotonic()
    detach.request_stop(str(run_dir), handle)
    assert wait_all_gone(tree, 2.0) == [], "the tree outlived the stop by more than 2 s"
    popen.wait(5)
    took = time.monotonic() - started
    record = exit_record(run_dir)
    assert record["cancelled"] and record["exit_code"] is not None and record["exit_code"] != 0, record
    assert (run_dir / "stop.request").exists()
    print(f"stop request -> whole tree gone in {took:.2f} s")


def test_a_stop_file_alone_stops_it_as_on_windows(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.3"})
    handle, popen, run_dir = launch(bench, bench.plan(epochs=20))
    wait_for(lambda: b"steps:" in (run_dir / "run.log").read_bytes())
    detach.request_stop(str(run_dir), None)  # no signal: only the file every OS can make
    assert popen.wait(5) == 0
    assert exit_record(run_dir)["cancelled"]


@POSIX
def test_a_trainer_ignoring_sigterm_is_killed_after_the_grace(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_SCENARIO": "ignore_sigterm", "FAKE_MUSUBI_STEP_SECONDS": "0.3"})
    handle, popen, run_dir = launch(bench, bench.plan(epochs=20, launcher="python"), grace=1.0)
    wait_for(lambda: b"steps:" in (run_dir / "run.log").read_bytes())
    started = time.monotonic()
    os.kill(handle.pid, signal.SIGTERM)
    popen.wait(10)
    took = time.monotonic() - started
    record = exit_record(run_dir)
    assert record["cancelled"] and record["signal"] == signal.SIGKILL, record
    assert 0.9 <= took < 3.0, took


@POSIX
def test_a_trainer_killed_by_a_signal_is_recorded_with_it(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_SCENARIO": "sigkill"})
    handle, popen, run_dir = launch(bench, bench.plan(launcher="python"))
    record = exit_record(run_dir, popen)
    assert record["exit_code"] == -signal.SIGKILL and record["signal"] == signal.SIGKILL
    assert not record["cancelled"]


def test_a_stop_before_the_start_starts_nothing(bench: Bench) -> None:
    plan = bench.plan()
    run_dir = Path(plan.run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / "stop.request").write_text("early\n")
    handle, popen = detach.launch(plan.command, str(run_dir))
    popen.wait(20)
    record = exit_record(run_dir)
    assert record["cancelled"] and record["pid"] is None and record["exit_code"] is None
    assert bench.pids() == []


def test_the_stall_limit_stops_a_silent_trainer(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_SCENARIO": "hang"})
    handle, popen, run_dir = launch(bench, bench.plan(), stall_timeout=2)
    record = exit_record(run_dir, popen, timeout=30)
    assert record["stalled"] and not record["timed_out"] and not record["cancelled"]
    assert record["ended"] - record["started"] < 15


def test_the_time_limit_stops_a_long_run(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.5"})
    handle, popen, run_dir = launch(bench, bench.plan(epochs=50), timeout=3)
    record = exit_record(run_dir, popen, timeout=30)
    assert record["timed_out"] and not record["stalled"]


@POSIX
def test_leftovers_holding_the_pipe_are_stopped_and_reported(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_SCENARIO": "leftover_workers", "FAKE_MUSUBI_WORKER_LINGER": "300"})
    handle, popen, run_dir = launch(bench, bench.plan())
    record = exit_record(run_dir, popen, timeout=40)
    assert record["exit_code"] == 0
    assert any("still running after the command exited" in w for w in record["warnings"]), record
    assert wait_all_gone(bench.pids(("worker",)), 5) == []


def test_secret_values_never_reach_the_log(bench: Bench) -> None:
    secret = "hf_sEcReT_vAlUe_0123456789"
    bench.configure(env={"FAKE_MUSUBI_SCENARIO": "leak_env", "HF_TOKEN": secret})
    handle, popen, run_dir = launch(bench, bench.plan())
    exit_record(run_dir, popen)
    log = (run_dir / "run.log").read_bytes()
    assert secret.encode() not in log and b"***" in log


def test_the_wrapper_is_recognised_only_by_pid_create_time_and_command_line(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.3"})
    handle, popen, run_dir = launch(bench, bench.plan(epochs=20))
    try:
        assert detach.is_running(handle)
        assert not detach.is_running(detach.Handle(handle.pid, handle.create_time + 0.5, handle.cmdline))
        assert not detach.is_running(detach.Handle(handle.pid, handle.create_time + 3.0, handle.cmdline))
        assert not detach.is_running(detach.Handle(handle.pid, handle.create_time, handle.cmdline[:-1]))
        assert detach.find(str(run_dir)) == handle
    finally:
        detach.request_stop(str(run_dir), handle)
        popen.wait(10)
    # now a zombie-free, gone process: the same identity no longer runs
    assert not detach.is_running(handle)
    assert detach.find(str(run_dir)) is None


@POSIX
def test_the_backstop_kills_a_wrapper_and_everything_it_started(bench: Bench) -> None:
    bench.configure(env={"FAKE_MUSUBI_SCENARIO": "workers", "FAKE_MUSUBI_STEP_SECONDS": "0.3",
                         "FAKE_MUSUBI_WORKER_LINGER": "60"})
    handle, popen, run_dir = launch(bench, bench.plan(epochs=20))
    wait_for(lambda: len(bench.pids()) >= 4)
    psutil.Process(handle.pid).suspend()  # a wrapper that cannot act on a stop any more
    killed = detach.kill_tree(handle)
    popen.wait(5)
    assert {pid for pid, _ in killed} >= set(bench.pids()) | {handle.pid}
    assert alive(bench.pids() + [handle.pid]) == []


def test_windows_thread_entry_has_the_documented_size() -> None:
    import ctypes

    assert ctypes.sizeof(winjob.THREADENTRY32) == 28  # dwSize must be exactly this on Windows


def test_the_identity_taken_at_launch_always_names_the_wrapper(tmp_path: Path) -> None:
    """For a moment during exec a new process's command line reads as empty; an identity taken
    then would never match again and the job would look unrecorded for its whole life."""
    from executor.process.command import Command

    command = Command(argv=(sys.executable, "-c", "import time; time.sleep(3)"), env=dict(os.environ),
                      cwd=str(tmp_path))
    launched = []
    for i in range(25):
        run_dir = tmp_path / f"run{i}"
        run_dir.mkdir()
        launched.append(detach.launch(command, str(run_dir)))
    try:
        for handle, popen in launched:
            assert handle.cmdline and detach.is_running(handle), handle
    finally:
        for i, (handle, popen) in enumerate(launched):
            detach.request_stop(str(tmp_path / f"run{i}"), handle)
        for handle, popen in launched:
            popen.wait(20)


def test_on_windows_the_wrapper_breaks_away_from_comfyuis_job_and_stays_inside_when_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows only in effect (cannot run here): the flags given to CreateProcess, and the retry
    without CREATE_BREAKAWAY_FROM_JOB when ComfyUI's job forbids breaking away (access denied)."""
    monkeypatch.setattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200, raising=False)
    monkeypatch.setattr(subprocess, "CREATE_NO_WINDOW", 0x08000000, raising=False)
    calls: list[int] = []

    def popen(argv: list[str], *, creationflags: int, **options: Any) -> str:
        calls.append(creationflags)
        if creationflags & detach.CREATE_BREAKAWAY_FROM_JOB:
            raise PermissionError(5, "Access is denied")
        assert options["stdin"] is subprocess.DEVNULL and options["close_fds"]
        return "started"

    monkeypatch.setattr(subprocess, "Popen", popen)
    options = {"stdin": subprocess.DEVNULL, "close_fds": True}
    assert detach._start_windows(["python", "jobwrapper.py"], options) == "started"
    assert calls == [0x200 | 0x08000000 | 0x01000000, 0x200 | 0x08000000]
    assert not any(flag & 0x8 for flag in calls), "never DETACHED_PROCESS: console grandchildren would pop up"


def test_create_times_a_boot_time_step_apart_are_the_same_start_on_linux() -> None:
    assert detach.same_start(1000.123, 1000.125) and not detach.same_start(1000.1, 1000.2)
    assert detach.same_start(1000.123, 1001.124) == sys.platform.startswith("linux")
    assert not detach.same_start(1000.123, 1001.5) and not detach.same_start(1000.0, 1003.0)
    assert not detach.same_start(1000.0, None)

"""executor.process.run.run with real children: the fake musubi venv and tiny ``-c`` programs.

Every test has a timeout; timing assertions are only generous bounds ("the tree
is gone within 10 s"), so the suite holds on a loaded 2-core machine.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import psutil
import pytest

from procs import wait_all_gone

from executor.process import tree as tree_module
from executor.process.command import Command
from executor.errors import (Cancelled, MissingModule, OutOfMemory, Stalled, TimedOut, TrainerFailed,
                             TrainerNotFound)
from executor.process.run import TAIL_LINE_CHARS, TAIL_LINES, run
from parsers.events import Checkpoint, Epoch, LogLine, ModelSaved, Progress

if TYPE_CHECKING:
    from fakes import FakeMusubi


POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


# -- helpers ---------------------------------------------------------------------

def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    env.update(extra)
    return env


def py(code: str, **env: str) -> Command:
    """``python -c code`` as a Command."""
    return Command(argv=(sys.executable, "-c", textwrap.dedent(code)), env=child_env(**env), cwd=os.getcwd())


def fake_command(fake: FakeMusubi, script: str, *args: str, accelerate: bool = False,
                 scenario: Optional[str] = None, **knobs: str) -> Command:
    return Command(argv=tuple(fake.argv(script, *args, accelerate=accelerate)), env=fake.env(scenario, **knobs),
                   cwd=str(fake.root))


class Workspace:
    """A dataset with caches made, model placeholders and an output folder."""

    def __init__(self, fake: FakeMusubi, base: Path, *, images: int = 3, cached: bool = True) -> None:
        self.fake = fake
        self.toml = fake.make_dataset(base / "data", images=images)
        self.dit = fake.make_model(base / "models" / "dit.safetensors")
        self.vae = fake.make_model(base / "models" / "vae.safetensors")
        self.out = base / "out"
        self.pidfile = base / "pids.txt"
        if cached:
            for script, extra in (("wan_cache_latents", ["--vae", str(self.vae)]),
                                  ("wan_cache_text_encoder_outputs", [])):
                run(fake_command(fake, script, "--dataset_config", str(self.toml), *extra))

    def train(self, *extra: str, accelerate: bool = False, scenario: Optional[str] = None,
              **knobs: str) -> Command:
        knobs.setdefault("FAKE_MUSUBI_PIDFILE", str(self.pidfile))
        return fake_command(self.fake, "wan_train_network", "--dataset_config", str(self.toml), "--dit",
                            str(self.dit), "--sdpa", "--max_train_epochs", "2", "--save_every_n_epochs", "1",
                            "--output_dir", str(self.out), "--output_name", "tiny-lora", *extra,
                            accelerate=accelerate, scenario=scenario, **knobs)

    def pids(self) -> list[int]:
        if not self.pidfile.exists():
            return []
        return [int(line.split()[1]) for line in self.pidfile.read_text().splitlines() if line.strip()]


@pytest.fixture
def workspace(fake_musubi: FakeMusubi, tmp_path: Path) -> Workspace:
    return Workspace(fake_musubi, tmp_path)


class Recorder:
    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)

    def of(self, cls) -> list:
        return [e for e in self.events if isinstance(e, cls)]

    def steps(self) -> list[Progress]:
        return [e for e in self.of(Progress) if e.desc == "steps"]


# -- streaming -------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_a_frame_reaches_on_event_before_the_child_writes_anything_else(tmp_path: Path) -> None:
    go = tmp_path / "go"
    # The child writes one tqdm frame (no newline, no following \r) and then waits
    # until the callback has seen it; only then does it write more.
    command = py(f"""
        import os, sys, time
        sys.stderr.write("\\rsteps:  50%|█████     | 1/2 [00:01<00:01,  1.00s/it, avr_loss=1.5]")
        sys.stderr.flush()
        deadline = time.monotonic() + 30
        while not os.path.exists({str(go)!r}):
            if time.monotonic() > deadline:
                sys.exit(3)
            time.sleep(0.01)
        print("after")
    """)
    seen: list = []

    def on_event(event) -> None:
        seen.append(event)
        if isinstance(event, Progress):
            go.touch()

    result = run(command, on_event=on_event)
    assert result.exit_code == 0
    first = seen[0]
    assert isinstance(first, Progress) and (first.n, first.total) == (1, 2)
    assert first.postfix == {"avr_loss": "1.5"}
    assert isinstance(seen[-1], LogLine) and seen[-1].text == "after"


@pytest.mark.timeout(120)
def test_training_events_from_both_pipes_with_glued_lines(workspace: Workspace) -> None:
    events = Recorder()
    result = run(workspace.train(), on_event=events)
    assert result.ok and result.exit_code == 0
    streams = {e.stream for e in events.of(LogLine)}
    assert streams == {"stdout", "stderr"}
    assert any(e.text == "accelerator device: cpu" and e.stream == "stdout" for e in events.of(LogLine))
    # Both glued log lines (after the 0/N frame and after the final frame) come through.
    texts = [e.text for e in events.of(LogLine)]
    assert any("network weights will be saved as torch.float32" in t for t in texts)
    assert events.of(ModelSaved)
    steps = events.steps()
    # musubi prints the 0/N frame twice; the run loop coalesces frames of one
    # bar that arrive in the same read, so at least the first survives.
    assert steps[0].n == 0 and steps[-1].n == steps[-1].total == 6
    assert [(e.n, e.total) for e in events.of(Epoch)] == [(1, 2), (2, 2)]
    assert [Path(e.path).name for e in events.of(Checkpoint)] == ["tiny-lora-000001.safetensors",
                                                                 "tiny-lora.safetensors"]
    assert result.last_progress is not None and result.last_progress.n == 6
    assert (workspace.out / "tiny-lora.safetensors").is_file()
    assert (workspace.out / "tiny-lora-000001.safetensors").is_file()


@pytest.mark.timeout(60)
def test_output_is_timely_without_pythonunbuffered_in_our_environment(fake_musubi: FakeMusubi,
                                                                     tmp_path: Path) -> None:
    """The pack's command sets PYTHONUNBUFFERED for the child, so stdout lines
    (print) are not held back until exit although our own env lacks it."""
    from executor.process.command import python_command
    from executor.setup.discovery import MusubiInstall
    from executor.setup.settings import load_settings

    assert "PYTHONUNBUFFERED" not in os.environ  # conftest removes it, as on users' machines
    ws = Workspace(fake_musubi, tmp_path)
    install = MusubiInstall(root=str(fake_musubi.root), venv=str(fake_musubi.venv),
                            python=str(fake_musubi.python), accelerate=None,
                            python_version=f"{sys.version_info[0]}.{sys.version_info[1]}", chosen_by="test")
    settings = load_settings(environ={})
    command = python_command(install, "wan_train_network.py",
                             ["--dataset_config", str(ws.toml), "--dit", str(ws.dit), "--sdpa",
                              "--max_train_epochs", "2", "--output_dir", str(ws.out), "--output_name", "x"],
                             settings, extra_env={"FAKE_MUSUBI_STEP_SECONDS": "0.3"})
    order: list[str] = []

    def on_event(event) -> None:
        if isinstance(event, LogLine) and event.text.startswith("running training"):
            order.append("stdout")
        elif isinstance(event, Progress) and event.desc == "steps" and event.n >= 2:
            order.append("step")

    run(command, on_event=on_event)
    assert order and order[0] == "stdout", order


@pytest.mark.timeout(60)
def test_the_tail_is_bounded_in_lines_and_line_length() -> None:
    result = run(py("""
        for i in range(5000):
            print(f"line {i}")
        print("y" * 100000)
        print("last")
    """))
    assert len(result.tail) == TAIL_LINES
    assert result.tail[-1] == "last"
    assert all(len(line) <= TAIL_LINE_CHARS for line in result.tail)


@pytest.mark.timeout(60)
def test_raw_output_of_both_streams_is_teed_to_the_log_in_arrival_order(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "run.log"
    result = run(py("""
        import sys, time
        sys.stdout.write("out1\\n"); sys.stdout.flush(); time.sleep(0.4)
        sys.stderr.buffer.write(b"\\rerr1 \\xff"); sys.stderr.flush(); time.sleep(0.4)
        sys.stdout.write("out2\\n"); sys.stdout.flush()
    """), log_path=str(log))
    assert result.log_path == str(log) and result.warnings == []
    assert log.read_bytes() == b"out1\n\rerr1 \xffout2\n"


@pytest.mark.timeout(60)
def test_a_log_that_cannot_be_written_does_not_stop_the_run() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    result = run(py("print('still running')"), log_path="/dev/full")
    assert result.ok
    assert result.tail == ["still running"]
    assert any("/dev/full" in w and "could not be written" in w for w in result.warnings)


@POSIX_ONLY
@pytest.mark.timeout(60)
def test_pipes_above_fd_setsize_work() -> None:
    """ComfyUI holds many files; select() would fail on descriptors >= 1024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip("the open-files limit is too low")
    base = os.open(os.devnull, os.O_RDONLY)
    held = []
    try:
        while True:
            fd = os.dup(base)
            held.append(fd)
            if fd >= 1100:
                break
        result = run(py("print('high fds')"))
    finally:
        for fd in held + [base]:
            os.close(fd)
    assert result.ok and result.tail == ["high fds"]


# -- stopping --------------------------------------------------------------------

@POSIX_ONLY
@pytest.mark.timeout(90)
def test_cancel_stops_the_whole_tree_including_a_sigterm_ignoring_grandchild(workspace: Workspace) -> None:
    events = Recorder()
    command = workspace.train(accelerate=True, FAKE_MUSUBI_IGNORE_SIGTERM="1", FAKE_MUSUBI_STEP_SECONDS="0.5")
    with pytest.raises(Cancelled) as caught:
        run(command, on_event=events, should_cancel=lambda: bool(events.steps()), grace_period=1.0)
    pids = workspace.pids()
    assert len(pids) == 2  # accelerate's launcher and the training script under it
    assert wait_all_gone(pids) == []
    result = caught.value.result
    assert result.cancelled and not result.ok
    assert "was cancelled" in caught.value.message
    assert any("SIGKILL" in w for w in result.warnings)  # the grandchild ignored SIGTERM


@POSIX_ONLY
@pytest.mark.timeout(60)
def test_timeout_stops_a_silent_hang(workspace: Workspace) -> None:
    with pytest.raises(TimedOut) as caught:
        run(workspace.train(scenario="hang"), timeout=2, grace_period=1.0)
    assert caught.value.result.timed_out
    assert "time limit" in caught.value.message
    assert wait_all_gone(workspace.pids()) == []


@POSIX_ONLY
@pytest.mark.timeout(60)
def test_stall_stops_a_run_that_prints_nothing(workspace: Workspace) -> None:
    with pytest.raises(Stalled) as caught:
        run(workspace.train(FAKE_MUSUBI_LOAD_SECONDS="60"), stall_timeout=2, grace_period=1.0)
    assert caught.value.result.stalled
    assert "no output for 2 s" in caught.value.message
    assert wait_all_gone(workspace.pids()) == []


@pytest.mark.timeout(60)
def test_steady_output_is_not_a_stall() -> None:
    result = run(py("""
        import time
        for i in range(8):
            print(i)
            time.sleep(0.4)
    """), stall_timeout=2.5)
    assert result.ok and result.tail[-1] == "7"


class Interrupted(Exception):
    """Stands in for ComfyUI's InterruptProcessingException."""


@POSIX_ONLY
@pytest.mark.timeout(90)
@pytest.mark.parametrize("where", ["on_event", "should_cancel"])
def test_an_exception_in_a_callback_propagates_after_the_tree_is_stopped(workspace: Workspace,
                                                                         where: str) -> None:
    events = Recorder()

    def on_event(event) -> None:
        events(event)
        if where == "on_event" and events.steps():
            raise Interrupted("interrupted by the user")

    def should_cancel() -> bool:
        if where == "should_cancel" and events.steps():
            raise Interrupted("interrupted by the user")
        return False

    command = workspace.train(accelerate=True, FAKE_MUSUBI_IGNORE_SIGTERM="1", FAKE_MUSUBI_STEP_SECONDS="0.5")
    with pytest.raises(Interrupted):
        run(command, on_event=on_event, should_cancel=should_cancel, grace_period=1.0)
    # The stop happened before the exception reached us: allow only for reaping.
    assert wait_all_gone(workspace.pids(), within=3.0) == []


@POSIX_ONLY
@pytest.mark.timeout(90)
def test_workers_keeping_the_pipes_open_do_not_hang_the_run(workspace: Workspace) -> None:
    started = time.monotonic()
    with pytest.raises(OutOfMemory):
        run(workspace.train(scenario="workers,oom", FAKE_MUSUBI_WORKER_LINGER="120"), grace_period=1.0)
    assert time.monotonic() - started < 40  # the workers alone would hold the pipes for 120 s
    pids = workspace.pids()
    assert len(pids) == 3  # the script and its two workers
    assert wait_all_gone(pids) == []


@POSIX_ONLY
@pytest.mark.timeout(60)
def test_a_leftover_grandchild_after_a_clean_exit_is_stopped_and_reported(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    result = run(py(f"""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pidfile)!r}, "w").write(str(child.pid))
        print("main done")
    """), grace_period=1.0)
    assert result.ok
    assert any("still running after" in w for w in result.warnings)
    assert wait_all_gone([int(pidfile.read_text())]) == []



@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the supervisor finds escaped processes in /proc")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("holds_pipes", [False, True])
def test_a_leftover_in_its_own_session_after_a_clean_exit_is_stopped_and_named(tmp_path: Path,
                                                                                holds_pipes: bool) -> None:
    # torch elastic starts its workers with start_new_session: outside our process group,
    # and once the supervisor exits, re-parented to init where no group walk finds them.
    pidfile = tmp_path / "worker.pid"
    quiet = "" if holds_pipes else ", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL"
    started = time.monotonic()
    result = run(py(f"""
        import subprocess, sys
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                  start_new_session=True{quiet})
        open({str(pidfile)!r}, "w").write(str(worker.pid))
        print("main done")
    """), grace_period=1.0)
    assert result.ok
    worker = int(pidfile.read_text())
    assert wait_all_gone([worker], within=5.0) == []
    assert any(f"{worker} python" in line and "another session" in line for line in result.tail)
    assert time.monotonic() - started < 30


# -- failures ----------------------------------------------------------------------

@POSIX_ONLY
@pytest.mark.timeout(60)
@pytest.mark.parametrize("scenario, signame", [("segfault", "SIGSEGV"), ("sigkill", "SIGKILL")])
def test_a_death_by_signal_is_described_with_the_signal_name(workspace: Workspace, scenario: str,
                                                             signame: str) -> None:
    with pytest.raises(TrainerFailed) as caught:
        run(workspace.train(scenario=scenario))
    error = caught.value
    assert error.exit_code == -getattr(signal, signame)
    assert signame in str(error)
    assert error.message.startswith("Training failed in wan_train_network.py")


@POSIX_ONLY
@pytest.mark.timeout(60)
def test_accelerate_hides_the_real_exit_code_and_we_recover_it(workspace: Workspace) -> None:
    with pytest.raises(TrainerFailed) as caught:
        run(workspace.train(accelerate=True, scenario="sigkill"))
    error = caught.value
    assert error.exit_code == -9 and error.kind == "killed"
    assert "SIGKILL" in str(error)
    assert any("accelerate launch exited with 1" in w for w in error.result.warnings)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("accelerate", [False, True])
def test_cuda_out_of_memory_is_classified(workspace: Workspace, accelerate: bool) -> None:
    with pytest.raises(OutOfMemory) as caught:
        run(workspace.train(accelerate=accelerate, scenario="oom"))
    error = caught.value
    assert error.kind == "out_of_memory"
    assert error.message == "Training failed in wan_train_network.py: CUDA ran out of memory"
    assert error.hint and "blocks_to_swap" in error.hint


@pytest.mark.timeout(60)
def test_a_missing_module_is_classified(workspace: Workspace) -> None:
    with pytest.raises(MissingModule) as caught:
        run(workspace.train(scenario="missing_module"))
    assert caught.value.kind == "missing_module"
    assert "'torchvision'" in caught.value.message


@pytest.mark.timeout(60)
def test_exit_zero_after_found_0_images_is_a_failure(fake_musubi: FakeMusubi, tmp_path: Path) -> None:
    ws = Workspace(fake_musubi, tmp_path, images=0, cached=False)
    command = fake_command(fake_musubi, "wan_cache_latents", "--dataset_config", str(ws.toml), "--vae", str(ws.vae))
    with pytest.raises(TrainerFailed) as caught:
        run(command)
    error = caught.value
    assert error.exit_code == 0 and error.kind == "empty_dataset"
    assert error.message.startswith("Caching latents failed in wan_cache_latents.py")
    result = run(command, check=False)
    assert not result.ok and result.failure_kind == "empty_dataset"


@pytest.mark.timeout(60)
def test_a_non_zero_exit_without_a_known_signature() -> None:
    with pytest.raises(TrainerFailed) as caught:
        run(py("import sys; print('something odd'); sys.exit(3)"))
    error = caught.value
    assert error.exit_code == 3 and error.kind == "exit_code"
    assert "exit code 3" in str(error) and "something odd" in str(error)


@pytest.mark.timeout(30)
def test_a_missing_program_is_a_setup_error_before_anything_runs(tmp_path: Path) -> None:
    missing = tmp_path / "venv" / "bin" / "python"
    with pytest.raises(TrainerNotFound) as caught:
        run(Command(argv=(str(missing), "x.py"), env=child_env(), cwd=str(tmp_path)))
    assert "x.py" in caught.value.message and str(missing) in caught.value.message


# -- hostile output ------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_a_huge_line_without_newline_keeps_memory_bounded(workspace: Workspace) -> None:
    size = 40 * 1024 * 1024
    tracemalloc.start()
    try:
        result = run(workspace.train(scenario="long_line", FAKE_MUSUBI_LONG_LINE_BYTES=str(size)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.ok
    assert peak < size * 3 // 4, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB line"


@pytest.mark.timeout(60)
def test_invalid_utf8_and_cp932_bytes_survive(workspace: Workspace, tmp_path: Path) -> None:
    log = tmp_path / "raw.log"
    result = run(workspace.train(scenario="bad_bytes"), log_path=str(log))
    assert result.ok
    bad = [line for line in result.tail if "bad bytes" in line]
    assert bad and "\ufffd" in bad[0]
    assert b"\xff\xfe\x80" in log.read_bytes()
    assert "学習開始".encode("cp932") in log.read_bytes()


# -- our own death -------------------------------------------------------------------

@POSIX_ONLY
@pytest.mark.timeout(90)
def test_when_the_parent_dies_the_whole_tree_dies(workspace: Workspace, tmp_path: Path) -> None:
    """ComfyUI killed mid-run (SIGKILL: no cleanup code of ours runs)."""
    command = workspace.train(accelerate=True, FAKE_MUSUBI_IGNORE_SIGTERM="1", FAKE_MUSUBI_STEP_SECONDS="0.5")
    ready = tmp_path / "ready"
    parent_code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(PROJECT_ROOT)!r})
        from executor.process.command import Command
        from executor.process.run import run
        from parsers.events import Progress

        def on_event(event):
            if isinstance(event, Progress) and event.desc == "steps":
                open({str(ready)!r}, "w").close()

        command = Command(argv={command.argv!r}, env={dict(command.env)!r}, cwd={command.cwd!r})
        run(command, on_event=on_event, grace_period=1.0)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert parent.poll() is None, "the parent ended before training started"
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.1)
        tree = [p.pid for p in psutil.Process(parent.pid).children(recursive=True)]
        assert len(tree) >= 3  # supervisor, accelerate launcher, training script
        parent.kill()
        parent.wait()
        assert wait_all_gone(tree + workspace.pids(), within=15.0) == []
    finally:
        if parent.poll() is None:
            parent.kill()


# -- Windows structures (checked everywhere) --------------------------------------------

def test_job_object_structures_have_the_windows_x64_sizes() -> None:
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        pytest.skip("sizes are for 64-bit")
    assert ctypes.sizeof(tree_module.JOBOBJECT_BASIC_LIMIT_INFORMATION) == 64
    assert ctypes.sizeof(tree_module.IO_COUNTERS) == 48
    assert ctypes.sizeof(tree_module.JOBOBJECT_EXTENDED_LIMIT_INFORMATION) == 144
    assert ctypes.sizeof(tree_module.JOBOBJECT_BASIC_ACCOUNTING_INFORMATION) == 48
    assert tree_module.JOB_LIMITS & 0x1800 == 0  # no breakaway of any kind

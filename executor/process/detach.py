"""Background jobs at the process level: launching a command detached from us under
``jobwrapper.py``, recognising that wrapper again later (also from another process, after a
ComfyUI restart), asking it to stop, and the backstop kill when it does not.

Detached means nothing of ours can end it: a session of its own (Windows: its own process
group and hidden console, breaking away from ComfyUI's job where allowed), stdin from the null
device, output to a file. A pid alone names nothing (pids are reused): the wrapper is the
process with the pid, the create time (within 0.01 s) and the command line recorded at launch,
and not a zombie. Imports the standard library, psutil and its room.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import psutil

from ..errors import TrainerNotFound
from .tree import IS_WINDOWS

__all__ = ["Handle", "launch", "find", "is_running", "same_process", "identify", "request_stop", "kill_tree", "read_exit", "WRAPPER",
           "EXIT_FILE", "STOP_FILE"]

WRAPPER = str(Path(__file__).resolve().with_name("jobwrapper.py"))
EXIT_FILE = "exit.json"
STOP_FILE = "stop.request"
LOG_FILE = "run.log"
SAME_START = 0.01  # seconds: create times of one process read twice agree far better than this
CREATE_BREAKAWAY_FROM_JOB = 0x01000000
IDENTIFY_WITHIN = 5.0


@dataclass(frozen=True)
class Handle:
    """Who the wrapper is: enough to recognise it after a restart."""

    pid: int
    create_time: float
    cmdline: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "create_time": self.create_time, "cmdline": list(self.cmdline)}


def launch(command: Any, run_dir: str, *, grace: float = 1.0, timeout: Optional[float] = None,
           stall_timeout: Optional[float] = None,
           extra_env: Optional[Mapping[str, str]] = None) -> tuple[Handle, subprocess.Popen]:
    """Start ``command`` (argv, env, cwd) under the wrapper, writing into ``run_dir`` (which
    must exist). Returns the wrapper's identity and its Popen (poll it to reap it while we
    live; after a restart only the Handle is left). Raises ConfigError/TrainerNotFound when it
    cannot start."""
    from .command import helper_python, launchable, script_name

    argv, env, cwd, executable = launchable(command)
    env.update({str(k): str(v) for k, v in (extra_env or {}).items()})
    script = script_name(argv)
    # The wrapper needs nothing but the standard library: the venv's interpreter when the
    # command is a Python one (the same Python the trainer gets), else ours.
    python = helper_python(executable)
    wrapper = [python, "-I", WRAPPER, "--run-dir", str(run_dir), "--grace", f"{grace:g}"]
    if timeout:
        wrapper += ["--timeout", f"{timeout:g}"]
    if stall_timeout:
        wrapper += ["--stall", f"{stall_timeout:g}"]
    wrapper += ["--", *argv]
    with open(os.path.join(run_dir, LOG_FILE), "ab") as log:
        options: dict[str, Any] = dict(stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=cwd, env=env,
                                       close_fds=True)
        try:
            popen = _start_windows(wrapper, options) if IS_WINDOWS else \
                subprocess.Popen(wrapper, start_new_session=True, **options)
        except OSError as exc:
            raise TrainerNotFound(f"Cannot start {script}: {exc}",
                                  hint="Check the musubi-tuner paths in the settings.") from exc
    # Popen returns once exec started, and for a moment during exec the new process's command
    # line reads as empty: an identity taken then would never match again.
    deadline = time.monotonic() + IDENTIFY_WITHIN
    handle = identify(popen.pid)
    while (handle is None or not handle.cmdline) and popen.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
        handle = identify(popen.pid)
    if handle is None or not handle.cmdline:  # it died at once; the record says why (run.log)
        handle = Handle(popen.pid, handle.create_time if handle else 0.0, tuple(wrapper))
    return handle, popen


def _start_windows(argv: list[str], options: dict[str, Any]) -> subprocess.Popen:  # pragma: no cover
    flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW  # type: ignore[attr-defined]
    try:
        # Out of ComfyUI's job (a launcher's KILL_ON_JOB_CLOSE job would end the training with it)...
        return subprocess.Popen(argv, creationflags=flags | CREATE_BREAKAWAY_FROM_JOB, **options)
    except OSError:
        # ...unless that job forbids breaking away (access denied): then inside it.
        return subprocess.Popen(argv, creationflags=flags, **options)


def identify(pid: int) -> Optional[Handle]:
    """The identity of the living process ``pid`` now, or None."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return Handle(pid, proc.create_time(), tuple(proc.cmdline()))
    except (psutil.Error, OSError):
        return None


def find(run_dir: str) -> Optional[Handle]:
    """The living wrapper of ``run_dir``, found by its command line (for a job whose launch
    was not recorded: the launcher died between starting it and writing its pid down)."""
    wanted = os.path.abspath(run_dir)
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if WRAPPER in cmdline and "--run-dir" in cmdline:
            index = cmdline.index("--run-dir") + 1
            if index < len(cmdline) and os.path.abspath(cmdline[index]) == wanted:
                handle = identify(proc.pid)
                if handle is not None and is_running(handle):
                    return handle
    return None


def same_start(a: float, b: Optional[float]) -> bool:
    """Two readings of one process's create time. Linux derives it from the boot time in
    /proc/stat, a whole number of seconds the kernel recomputes from the wall clock at each
    read: a clock adjustment can move it by exactly one second. So whole-second steps (up to
    two) count as the same start; the pid and the command line must match as well."""
    if b is None:
        return False
    diff = abs(a - b)
    if diff <= SAME_START:
        return True
    return sys.platform.startswith("linux") and diff <= 2 + SAME_START and abs(diff - round(diff)) <= SAME_START


def is_running(handle: Handle) -> bool:
    """True while the process ``handle`` names runs: same pid, create time and command line,
    not a zombie. A zombie child of ours (after an exec restart the wrapper is still our
    child, but nothing holds its Popen) is reaped here."""
    try:
        proc = psutil.Process(handle.pid)
        with proc.oneshot():
            if not same_start(proc.create_time(), handle.create_time):
                return False
            if proc.status() == psutil.STATUS_ZOMBIE:
                _reap_if_ours(proc)
                return False
            return tuple(proc.cmdline()) == tuple(handle.cmdline)
    except psutil.AccessDenied:
        return True  # it exists and its create time matched; it is not ours to read
    except (psutil.Error, OSError):
        return False


def same_process(pid: int, create_time: Optional[float]) -> bool:
    """True while ``pid`` is a living (not zombie) process started at ``create_time``."""
    try:
        proc = psutil.Process(pid)
        return same_start(proc.create_time(), create_time) and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, OSError):
        return False


def _reap_if_ours(proc: psutil.Process) -> None:
    if IS_WINDOWS:
        return
    try:
        if proc.ppid() == os.getpid():
            os.waitpid(proc.pid, os.WNOHANG)
    except (psutil.Error, OSError):
        pass


def request_stop(run_dir: str, handle: Optional[Handle]) -> None:
    """Ask the wrapper to stop the tree: ``stop.request`` in the run folder (it looks every
    0.25 s, on every OS) and, on POSIX, SIGTERM to the wrapper itself, only when it is
    still the process we launched."""
    try:
        with open(os.path.join(run_dir, STOP_FILE), "a", encoding="utf-8") as fh:
            fh.write(f"{time.time():.3f} pid {os.getpid()}\n")
    except OSError:
        pass
    if handle is not None and not IS_WINDOWS and is_running(handle):
        try:
            os.kill(handle.pid, signal.SIGTERM)
        except OSError:
            pass


def kill_tree(handle: Handle) -> list[tuple[int, str]]:
    """The backstop, for a wrapper still alive long after a stop request: kill it, every
    descendant and the other members of their process groups. Returns (pid, name) killed."""
    if not is_running(handle):
        return []
    try:
        root = psutil.Process(handle.pid)
        procs = [root] + root.children(recursive=True)
    except (psutil.Error, OSError):
        return []
    groups = set()
    if not IS_WINDOWS:
        for proc in procs:
            try:
                groups.add(os.getpgid(proc.pid))
            except OSError:
                pass
        known = {p.pid for p in procs}
        for proc in psutil.process_iter():
            try:
                if proc.pid not in known and os.getpgid(proc.pid) in groups:
                    procs.append(proc)
            except OSError:
                continue
    killed = []
    for proc in procs:
        try:
            name = proc.name()
            proc.suspend()  # nothing forks behind our back while the rest is killed (NtSuspendProcess on Windows)
            killed.append((proc.pid, name))
        except (psutil.Error, OSError):
            pass
    for proc in reversed(procs):
        try:
            proc.kill()
        except (psutil.Error, OSError):
            pass
    psutil.wait_procs(procs, timeout=3)
    _reap_if_ours(root)
    return killed


def read_exit(run_dir: str) -> Optional[dict[str, Any]]:
    """The wrapper's ``exit.json`` (written atomically, so present means complete), or None."""
    try:
        with open(os.path.join(run_dir, EXIT_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

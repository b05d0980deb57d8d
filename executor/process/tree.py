"""Stopping the whole process tree of one run, and saying what was stopped.

POSIX: the run's process group (one ``killpg``) plus a psutil walk of the
descendants for anything that left the group; SIGTERM, a grace period, SIGKILL.
Windows: a Job Object (``winjob``: ctypes, no pywin32) with kill-on-close, or a psutil
suspend-and-kill fallback. Imports only the standard library, psutil and its room.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

import psutil

from .winjob import (IO_COUNTERS, JOB_LIMITS, JOBOBJECT_BASIC_ACCOUNTING_INFORMATION,  # noqa: F401 (re-exported)
                     JOBOBJECT_BASIC_LIMIT_INFORMATION, JOBOBJECT_EXTENDED_LIMIT_INFORMATION, STOP_EXIT_CODE,
                     JobObject)

__all__ = ["ProcessTree", "Stopped", "JobObject", "describe", "STOP_EXIT_CODE"]

IS_WINDOWS = sys.platform == "win32"

_POLL = 0.05


@dataclass
class Stopped:
    """What one stop did. Each process is ``(pid, label)``; labels are taken
    before the kill, while the command line is still readable."""

    processes: list[tuple[int, str]] = field(default_factory=list)
    forced: list[tuple[int, str]] = field(default_factory=list)
    survivors: list[tuple[int, str]] = field(default_factory=list)
    method: str = ""

    def __bool__(self) -> bool:
        return bool(self.processes)


def describe(stopped: Stopped) -> str:
    """One line: ``stopped 3 processes (1234 python wan_train_network.py, ...); 1 needed SIGKILL``."""
    if not stopped.processes:
        return "no process was left to stop"
    n = len(stopped.processes)
    shown = ", ".join(f"{pid} {label}" for pid, label in stopped.processes[:6])
    more = f", and {n - 6} more" if n > 6 else ""
    text = f"stopped {n} process{'es' if n != 1 else ''} ({shown}{more}) via {stopped.method}"
    if stopped.forced:
        verb = "TerminateProcess" if IS_WINDOWS else "SIGKILL"
        text += f"; {len(stopped.forced)} ignored the polite request and needed {verb}"
    if stopped.survivors:
        text += "; STILL RUNNING: " + ", ".join(f"{pid} {label}" for pid, label in stopped.survivors)
    return text


def _label(proc: psutil.Process) -> str:
    """``python wan_train_network.py`` — the interpreter and the script it runs."""
    try:
        cmdline = proc.cmdline()
        name = proc.name()
    except (psutil.Error, OSError):
        return "?"
    if "-m" in cmdline[1:-1]:  # python -m accelerate.commands.launch ... script.py: the launcher
        return f"{name} -m {cmdline[cmdline.index('-m') + 1]}"
    script = next((os.path.basename(a) for a in cmdline[1:] if a.endswith(".py")), "")
    return f"{name} {script}".strip()


def _living(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, OSError):
        return False


class ProcessTree:
    """The processes started for one run and how to stop them.

    ``popen`` is the process we started (on POSIX: the supervisor, leader of a
    new session whose group id is its pid; ``control_fd`` is our end of its
    control pipe). Our direct child is only ever
    waited for through ``popen`` — if psutil reaped it, Popen would later
    report exit code 0 for a killed run.
    """

    def __init__(self, popen: subprocess.Popen, *, job: Optional["JobObject"] = None,
                 supervised: bool = False, control_fd: Optional[int] = None) -> None:
        self.popen = popen
        self.control_fd = control_fd
        self.pid = popen.pid
        self.pgid = None if IS_WINDOWS else popen.pid  # start_new_session: pgid == pid
        self.job = job
        self.supervised = supervised
        self._known: dict[int, psutil.Process] = {}

    # -- what is alive -------------------------------------------------------

    def members(self) -> list[psutil.Process]:
        """Living processes of the run other than our direct child: its
        descendants, every process still in its process group (orphans that
        were re-parented away), and on Windows every process in the job."""
        found: dict[int, psutil.Process] = {}
        try:
            root = psutil.Process(self.pid)
            for proc in root.children(recursive=True):
                found[proc.pid] = proc
        except (psutil.Error, OSError):
            pass
        if self.pgid is not None:
            for proc in psutil.process_iter():
                if proc.pid in found or proc.pid == self.pid:
                    continue
                try:
                    if os.getpgid(proc.pid) == self.pgid:
                        found[proc.pid] = proc
                except OSError:
                    continue
        if self.job is not None:
            for pid in self.job.pids():
                if pid != self.pid and pid not in found:
                    try:
                        found[pid] = psutil.Process(pid)
                    except (psutil.Error, OSError):
                        pass
        # Keep the first Process object per pid: it carries the create time that
        # psutil checks before signalling, so a reused pid is never hit.
        for pid, proc in found.items():
            self._known.setdefault(pid, proc)
        return [self._known[pid] for pid in found if _living(self._known[pid])]

    def leader_alive(self) -> bool:
        return self.popen.poll() is None

    def alive(self) -> bool:
        """True while our child or any process of its tree still runs."""
        return self.leader_alive() or bool(self.members())

    # -- stopping ------------------------------------------------------------

    def stop(self, grace: float) -> Stopped:
        """Stop every process of the run; returns what was stopped.

        POSIX: SIGTERM to the group (through the supervisor, which forwards it,
        while it lives) and to descendants outside the group; after ``grace``
        seconds SIGKILL to the group and to every process seen. New processes
        spawned during the stop are picked up by re-snapshotting.
        Windows: TerminateJobObject (there is no polite signal for a process
        without a console), or the psutil fallback.
        """
        if IS_WINDOWS:
            return self._stop_windows()
        seen: dict[int, str] = {}
        snapshot = self._snapshot(seen)
        leader = self.leader_alive()
        if not snapshot and not leader:
            return Stopped(method="process group")
        self._term(snapshot, leader)
        survivors = self._wait_gone(time.monotonic() + grace, seen)
        forced: list[tuple[int, str]] = []
        for _ in range(3):  # a process forked during the stop shows up in the next snapshot
            if not survivors:
                break
            forced += [(p.pid, seen.get(p.pid, "?")) for p in survivors if p.pid != self.pid]
            if self.leader_alive():
                forced.append((self.pid, seen.get(self.pid, "?")))
            self._kill(survivors)
            survivors = self._wait_gone(time.monotonic() + 2.0, seen)
        return Stopped(processes=list(seen.items()), forced=_unique(forced),
                       survivors=[(p.pid, seen.get(p.pid, "?")) for p in survivors],
                       method="process group")

    def _snapshot(self, seen: dict[int, str]) -> list[psutil.Process]:
        procs = self.members()
        if self.leader_alive() and self.pid not in seen:
            try:
                seen[self.pid] = _label(psutil.Process(self.pid))
            except (psutil.Error, OSError):
                seen[self.pid] = "?"
        for proc in procs:
            if proc.pid not in seen:
                seen[proc.pid] = _label(proc)
        return procs

    def _term(self, snapshot: list[psutil.Process], leader: bool) -> None:
        if self.supervised and leader:
            # The supervisor forwards SIGTERM to the group exactly once; signalling
            # the group ourselves as well would deliver it twice to each process.
            _signal_pid(self.pid, signal.SIGTERM)
        else:
            _signal_group(self.pgid, signal.SIGTERM)
        for proc in snapshot:
            if _pgid(proc.pid) != self.pgid:  # left the group (setsid), e.g. torchrun workers
                _send(proc, signal.SIGTERM)

    def _kill(self, procs: list[psutil.Process]) -> None:
        _signal_group(self.pgid, signal.SIGKILL)
        if self.leader_alive():
            try:
                self.popen.kill()
            except OSError:
                pass
        for proc in procs:
            if proc.pid != self.pid:
                _send(proc, signal.SIGKILL)

    def _wait_gone(self, deadline: float, seen: dict[int, str]) -> list[psutil.Process]:
        """Wait until nothing of the run lives or ``deadline``; the survivors."""
        while True:
            alive = self._snapshot(seen)
            if self.leader_alive():
                leader = self._known.get(self.pid)
                if leader is None:
                    try:
                        leader = self._known[self.pid] = psutil.Process(self.pid)
                    except (psutil.Error, OSError):
                        leader = None
                if leader is not None:
                    alive.append(leader)
            remaining = deadline - time.monotonic()
            if not alive or remaining <= 0:
                return alive
            if self.leader_alive():
                try:
                    self.popen.wait(timeout=min(_POLL, remaining))
                except subprocess.TimeoutExpired:
                    pass
            else:
                psutil.wait_procs(alive, timeout=min(_POLL, remaining))

    def _stop_windows(self) -> Stopped:
        seen: dict[int, str] = {}
        procs = self._snapshot(seen)
        if not procs and not self.leader_alive():
            return Stopped(method="job object" if self.job else "psutil")
        if self.job is not None:
            try:
                self.job.terminate(STOP_EXIT_CODE)
                survivors = self._wait_gone(time.monotonic() + 5.0, seen)
                return Stopped(processes=list(seen.items()), method="job object",
                               survivors=[(p.pid, seen.get(p.pid, "?")) for p in survivors])
            except OSError:
                pass  # fall through to the psutil walk
        # No job: freeze the tree so nothing can spawn behind our back, re-snapshot
        # until stable (psutil misses children of an already-dead parent), kill.
        targets: dict[int, psutil.Process] = {}
        leader = self._known.get(self.pid) or _process(self.pid)
        if leader is not None and self.leader_alive():
            targets[self.pid] = leader
        for _ in range(5):
            new = [p for p in self._snapshot(seen) if p.pid not in targets]
            if not new:
                break
            for proc in new:
                targets[proc.pid] = proc
                try:
                    proc.suspend()
                except (psutil.Error, OSError):
                    pass
        for proc in targets.values():
            try:
                proc.kill()
            except (psutil.Error, OSError):
                pass
        survivors = self._wait_gone(time.monotonic() + 5.0, seen)
        return Stopped(processes=list(seen.items()), forced=[(pid, seen.get(pid, "?")) for pid in targets],
                       survivors=[(p.pid, seen.get(p.pid, "?")) for p in survivors], method="psutil")

    def close(self) -> None:
        """Release the job handle / the supervisor's control pipe: either way,
        whatever of the tree still runs is then stopped by the OS / supervisor."""
        if self.control_fd is not None:
            os.close(self.control_fd)
            self.control_fd = None
        if self.job is not None:
            self.job.close()
            self.job = None


def _unique(items: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return list(dict.fromkeys(items))


def _process(pid: int) -> Optional[psutil.Process]:
    try:
        return psutil.Process(pid)
    except (psutil.Error, OSError):
        return None


def _pgid(pid: int) -> Optional[int]:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _signal_group(pgid: Optional[int], sig: int) -> None:
    if pgid is None:
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is empty (or only zombies we may not signal)


def _signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _send(proc: psutil.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)  # psutil refuses if the pid was reused meanwhile
    except (psutil.Error, OSError):
        pass

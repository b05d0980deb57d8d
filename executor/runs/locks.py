"""Run locks: a lock file in each folder a run writes to, so two runs never write the same folder.

A lock names its process by pid and start time, so a lock left by a dead process (or one whose pid
was reused) is taken over. Imports only the standard library, psutil and its room.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Any, Optional, Sequence

from ..errors import ConfigError
from .folders import LOCK_NAME

__all__ = ["RunLock", "RunLocked", "read_lock", "lock_is_live", "process_start", "pid_alive", "release_locks"]


class RunLocked(ConfigError):
    """Another run is writing to the same folder."""

    reference = "run-locked"


def process_start(pid: int) -> Optional[float]:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # psutil missing, no such process, access denied
        return None


def pid_alive(pid: int) -> bool:
    try:
        import psutil

        return psutil.pid_exists(pid)
    except ImportError:  # pragma: no cover - psutil is a runtime dependency
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True


class RunLock:
    """A lock file (``.musubi-tuner-nodes.lock``: pid, process start time, host, run
    folder) in each folder a run writes to. A lock whose process is gone (or whose pid was
    reused by another process) is stale and taken over; a live one refuses the new run."""

    def __init__(self, dirs: Sequence[str], run_dir: str, *, token: Optional[str] = None) -> None:
        self.dirs = list(dirs)
        self.run_dir = run_dir
        self.held: list[str] = []
        # A token given (a job taking its locks back after a restart) also claims the lock
        # files that still carry it, whoever they name as holder.
        self.token = token or uuid.uuid4().hex
        self.info = {"pid": os.getpid(), "started": process_start(os.getpid()), "host": socket.gethostname(),
                     "run_dir": run_dir, "token": self.token, "time": time.time()}

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            for folder in self.dirs:
                self.held.append(self._acquire_one(folder))
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        for path in reversed(self.held):
            holder = read_lock(path)
            if holder is not None and holder.get("token") == self.token:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        self.held = []

    def hand_over(self, pid: int, started: Optional[float]) -> None:
        """Name another process as the holder of every lock held (a background job's wrapper):
        each lock then lives as long as that process, whoever started it and whatever becomes
        of us. The token stays; ``release_locks`` with it frees them later, from any process."""
        self.info = dict(self.info, pid=pid, started=started, time=time.time())
        data = json.dumps(self.info).encode("utf-8")
        for path in self.held:
            tmp = f"{path}.{self.token}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except OSError:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def _acquire_one(self, folder: str) -> str:
        path = os.path.join(folder, LOCK_NAME)
        if not os.path.isdir(folder):
            os.makedirs(folder, exist_ok=True)
        data = json.dumps(self.info).encode("utf-8")
        for _ in range(5):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_lock(path)
                if holder is not None and holder.get("token") == self.token:
                    _take_over(path, holder)
                    continue
                if lock_is_live(path, holder):
                    who = f"process {holder.get('pid')} on {holder.get('host')}" if holder else "another run"
                    run = holder.get("run_dir") if holder else None
                    raise RunLocked(
                        f"another run ({who}) is writing to {folder}; this run was refused and touched nothing",
                        hint="wait for it to finish (or cancel it)"
                             + (f"; its log is in {run}" if run else "")
                             + f"; if no run is active, delete {path}")
                _take_over(path, holder)
                continue
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            except BaseException:
                # A lock we could not fill in (disk full) would refuse every run here
                # for its grace time; it was never ours to keep.
                try:
                    os.unlink(path)
                except OSError:
                    pass
                raise
            return path
        raise RunLocked(f"could not lock {folder}: the lock file keeps changing", hint="try again")


def release_locks(paths: Sequence[str], token: str) -> None:
    """Remove the lock files among ``paths`` that still carry ``token`` (see ``hand_over``)."""
    for path in paths:
        holder = read_lock(path)
        if holder is not None and holder.get("token") == token:
            try:
                os.unlink(path)
            except OSError:
                pass


def read_lock(path: str) -> Optional[dict[str, Any]]:
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def lock_is_live(path: str, holder: Optional[dict[str, Any]]) -> bool:
    if holder is None:
        # Unreadable: either being written this instant or garbage. Trust it briefly.
        try:
            return time.time() - os.path.getmtime(path) < 10
        except OSError:
            return False
    if holder.get("host") != socket.gethostname():
        return True  # a folder shared over the network: we cannot see that process
    pid = holder.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return False
    started, now_started = holder.get("started"), process_start(pid)
    if isinstance(started, (int, float)) and now_started is not None and abs(now_started - started) > 1.0:
        return False  # the pid now belongs to another process
    return True


def _take_over(path: str, stale: Optional[dict[str, Any]]) -> None:
    # Rename, then check we moved the stale lock and not one a competitor just created.
    moved = f"{path}.{uuid.uuid4().hex}.stale"
    try:
        os.replace(path, moved)
    except OSError:
        return
    # Also when the stale lock was unreadable: a readable one now means a competitor's.
    if read_lock(moved) != stale:
        try:
            os.link(moved, path)  # put the competitor's lock back (fails if one exists again)
        except OSError:
            pass
    try:
        os.unlink(moved)
    except OSError:
        pass

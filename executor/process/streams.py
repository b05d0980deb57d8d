"""One run's I/O: reader threads doing raw ``os.read`` into a bounded queue and the run.log tee that
survives a full disk; the redaction of secret values (also when split across reads) is ``redact``'s
and re-exported here. Imports only the standard library and its room.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from typing import Any, Optional

from .redact import Redactor, secret_values
from .tree import IS_WINDOWS

__all__ = ["Readers", "Log", "Redactor", "secret_values", "grow_pipe"]


CHUNK = 262144
# Bounded queue: when the caller's thread falls behind, the readers block and
# the child blocks on its pipe instead of our memory growing (at most ~4 MiB here).
QUEUE_CHUNKS = 16
# tqdm writes (and flushes) every frame on its own. Woken for each one, a
# reader costs the child a context switch per frame: a bare drain of a frame
# flood took 2.1x the time of writing to /dev/null. Letting small writes pile
# up in a larger pipe for a millisecond after a read that emptied it brings
# that to ~1.05x and hands the parser fewer, larger chunks; a frame waits at
# most NAP longer (progress latency targets are in tens of ms; benchmarks/).
NAP = 0.001
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031  # Linux fcntl; other systems keep their default pipe size
# POSIX readers wake this often to notice a stop request (Windows pipes cannot
# be polled; there the Job Object kill closes them).
READER_WAKE = 0.25
# -- one run's I/O ---------------------------------------------------------------

def grow_pipe(fd: int) -> None:
    """Best effort: a 1 MiB pipe (Linux) so NAP never blocks a fast writer."""
    if sys.platform.startswith("linux"):
        import fcntl

        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # above /proc/sys/fs/pipe-max-size: keep the default
            pass


class Readers:
    """One daemon thread per pipe doing only ``os.read`` into a bounded queue:
    a chunk, ``b""`` at EOF, or the exception that stopped it. Byte reads,
    because text-mode readline holds each tqdm ``\\r`` frame until the next."""

    def __init__(self, popen: subprocess.Popen) -> None:
        self.queue: "queue.Queue[tuple[str, Any]]" = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.open = {"stdout", "stderr"}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._read, args=(name, pipe), name=f"musubi-{name}", daemon=True)
                         for name, pipe in (("stdout", popen.stdout), ("stderr", popen.stderr))]
        for thread in self._threads:
            thread.start()

    def _read(self, name: str, pipe: Any) -> None:
        try:
            fd = pipe.fileno()
            poller = None
            if not IS_WINDOWS:
                import select

                # poll, not select: ComfyUI may hold more than FD_SETSIZE (1024) files.
                poller = select.poll()
                poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
                grow_pipe(fd)
            while not self._stop.is_set():
                if poller is not None and not poller.poll(READER_WAKE * 1000):
                    continue
                data = os.read(fd, CHUNK)
                if not self._put((name, data)) or not data:
                    return
                if len(data) < CHUNK:
                    time.sleep(NAP)
        except BaseException as exc:  # noqa: BLE001 - carried to the caller's thread
            self._put((name, exc))
        finally:
            # Closed by the thread that reads it, so the fd is never reused under a read.
            try:
                pipe.close()
            except OSError:
                pass

    def _put(self, item: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=READER_WAKE)
                return True
            except queue.Full:
                continue
        return False

    def get(self, timeout: float) -> Optional[tuple[str, Any]]:
        try:
            return self.queue.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2 * READER_WAKE + 0.5)


class Log:
    """Raw bytes of both streams, in arrival order. A failing log (disk full)
    never fails the run: it is closed and the user is told in the warnings."""

    def __init__(self, path: Optional[str], warnings: list[str]) -> None:
        self._file = None
        self._path = path
        self._warnings = warnings
        if path:
            try:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                self._file = open(path, "ab", buffering=0)
            except OSError as exc:
                self._fail(exc)

    def write(self, data: bytes) -> None:
        if self._file is None:
            return
        try:
            view = memoryview(data)
            while view:
                written = self._file.write(view)
                view = view[written or 0:]
                if not written:
                    raise OSError("the log file accepted no data")
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self._warnings.append(f"The log file {self._path} could not be written ({exc}); the run went on "
                              "without it.")
        self.close()

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

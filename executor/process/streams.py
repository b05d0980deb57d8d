"""One run's I/O: reader threads doing raw ``os.read`` into a bounded queue, the run.log tee that
survives a full disk, and the redaction of secret values (also when split across reads).
Imports only the standard library and its room.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Optional, Sequence

from .tree import IS_WINDOWS

if TYPE_CHECKING:
    from ..errors import RunError

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
MIN_SECRET_CHARS = 8
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


def secret_values(env: Any) -> list[str]:
    """Values of the child's secret-looking variables (HF_TOKEN, WANDB_API_KEY, *SECRET*, ...),
    ComfyUI's own included: whatever the trainer prints of them must not reach the log, the
    events or an error message. Short values are left alone (they would blank out ordinary words)."""
    from .command import is_secret_name

    return sorted({str(v) for k, v in dict(env or {}).items()
                   if is_secret_name(str(k)) and len(str(v)) >= MIN_SECRET_CHARS}, key=len, reverse=True)


class Redactor:
    """Replaces secret values with ``***`` in text, events and the raw bytes of each stream.

    The bytes of one stream arrive in chunks, so a chunk's end that could be the start of a
    secret is held back until the next chunk (or the end) decides it."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self.values = list(secrets)
        self._raw = [(s.encode("utf-8", "surrogateescape"), b"***") for s in self.values]
        self._carry: dict[str, bytes] = {}

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, text: str) -> str:
        for secret in self.values:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def feed(self, stream: str, data: bytes) -> bytes:
        if not self._raw:
            return data
        data = self._carry.pop(stream, b"") + data
        for secret, mask in self._raw:
            data = data.replace(secret, mask)
        hold = 0
        for secret, _ in self._raw:
            for size in range(min(len(secret) - 1, len(data)), hold, -1):
                if data.endswith(secret[:size]):
                    hold = size
                    break
        if hold:
            self._carry[stream], data = data[-hold:], data[:-hold]
        return data

    def flush(self) -> bytes:
        rest, self._carry = b"".join(self._carry.values()), {}
        return rest

    def event(self, event: Any) -> Any:
        if not self.values:
            return event
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(event):
            value = getattr(event, f.name)
            if isinstance(value, str) and self.text(value) != value:
                changes[f.name] = self.text(value)
            elif isinstance(value, dict) and any(isinstance(v, str) and self.text(v) != v for v in value.values()):
                changes[f.name] = {k: self.text(v) if isinstance(v, str) else v for k, v in value.items()}
        return dataclasses.replace(event, **changes) if changes else event

    def scrub(self, error: RunError) -> None:
        """The error's message and hint (built from the parser's unredacted lines)."""
        if self.values:
            error.message, error.hint = self.text(error.message), self.text(error.hint)
            error.args = (error.message,)
            if error.result.failure_hint:
                error.result.failure_hint = self.text(error.result.failure_hint)

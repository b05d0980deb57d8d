"""Running the installer's commands (git, venv, pip): full output into the install log,
one short progress line on screen, and a failure explained in words a user can act on.

Standard library only. The child's output is read in binary chunks and split on ``\\r``
and ``\\n`` so git's and pip's progress frames show up as they come.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, TextIO

from ..errors import SetupError

__all__ = ["InstallError", "InstallLog", "Reporter", "Result", "run_logged", "explain"]

TAIL = 200


class InstallError(SetupError):
    """An install step failed; nothing was written to the settings."""

    reference = "install-failed"

    def __init__(self, message: str, *, hint: str = "", log_path: Optional[str] = None,
                 tail: Sequence[str] = ()) -> None:
        super().__init__(message, hint=hint)
        self.log_path = log_path
        self.tail = list(tail)

    def _details(self) -> list[str]:
        out: list[str] = []
        if self.tail:
            out.append(f"[last {len(self.tail)} lines of output]")
            out += [f"  {line}" for line in self.tail]
            out.append("[end of output]")
        return out

    def __str__(self) -> str:
        text = super().__str__()
        return text + (f"\nfull log: {self.log_path}" if self.log_path else "")


class InstallLog:
    """The install log file: every command, its complete output and its exit code."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "a", encoding="utf-8", errors="replace")

    def write(self, text: str) -> None:
        self._file.write(text if text.endswith("\n") else text + "\n")
        self._file.flush()

    def section(self, title: str) -> None:
        self.write(f"\n===== {time.strftime('%H:%M:%S')} {title}")

    def close(self) -> None:
        self._file.close()


class Reporter:
    """Progress for a person: numbered phases, one status line (rewritten in place on a
    terminal, printed at most every few seconds otherwise), warnings and notes."""

    def __init__(self, out: Optional[TextIO] = None, *, interactive: Optional[bool] = None,
                 every: float = 5.0) -> None:
        self.out = out or sys.stdout
        self.interactive = self.out.isatty() if interactive is None else interactive
        self.every = every
        self._shown = ""
        self._last = 0.0
        self._phase_start = time.monotonic()

    def print(self, text: str = "") -> None:
        self._clear()
        encoding = getattr(self.out, "encoding", None) or "utf-8"
        # A Windows console may use a code page without every character of a path.
        self.out.write(text.encode(encoding, "replace").decode(encoding, "replace") + "\n")
        self.out.flush()

    def phase(self, number: int, total: int, title: str) -> None:
        self._phase_start = time.monotonic()
        self.print(f"[{number}/{total}] {title}")

    def status(self, text: str, *, important: bool = False) -> None:
        text = text.strip()
        if not text or text == self._shown:
            return
        now = time.monotonic()
        if self.interactive:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            line = ("    " + text)[:width]
            self.out.write("\r" + line.ljust(len(self._shown) + 4)[:width])
            self.out.flush()
            self._shown = text
        elif important or now - self._last >= self.every:
            self.print("    " + text)
            self._shown = text
            self._last = now

    def done(self, text: str) -> None:
        took = time.monotonic() - self._phase_start
        self.print(f"    {text}" + (f" ({_duration(took)})" if took >= 1 else ""))

    def note(self, text: str) -> None:
        self.print(f"    note: {text}")

    def warn(self, text: str) -> None:
        self.print(f"    warning: {text}")

    def _clear(self) -> None:
        if self.interactive and self._shown:
            self.out.write("\r" + " " * min(len(self._shown) + 4, shutil.get_terminal_size((100, 20)).columns - 1) + "\r")
        self._shown = ""


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s"


@dataclass
class Result:
    argv: list[str]
    returncode: int
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL))
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def text(self) -> str:
        return "\n".join(self.tail)


def run_logged(argv: Sequence[str], *, log: InstallLog, env: Optional[dict[str, str]] = None,
               cwd: Optional[str] = None, on_line: Callable[[str], None] = lambda line: None) -> Result:
    """Run one command to completion. Lines (and ``\\r`` progress frames) go to ``on_line``;
    complete lines go to the log. Raises InstallError when the program cannot start."""
    argv = [str(a) for a in argv]
    log.section("$ " + subprocess.list2cmdline(argv) + (f"   (in {cwd})" if cwd else ""))
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd, bufsize=0)
    except OSError as exc:
        log.write(f"cannot start: {exc}")
        raise InstallError(f"cannot start {argv[0]}: {exc.strerror or exc}", log_path=str(log.path)) from exc
    result = Result(argv=argv, returncode=-1)
    pending = b""
    try:
        assert proc.stdout is not None
        while True:
            chunk = proc.stdout.read(65536)  # unbuffered: one read, whatever has arrived
            if not chunk:
                break
            pending += chunk
            # Frames end in \r (git and pip progress), lines in \n; keep the last piece.
            *pieces, pending = re.split(rb"(\r\n|\n|\r)", pending)
            for text, end in zip(pieces[0::2], pieces[1::2]):
                line = text.decode("utf-8", "replace").rstrip()
                if end != b"\r":
                    log.write(line)
                    result.tail.append(line)
                on_line(line)
        if pending:
            line = pending.decode("utf-8", "replace").rstrip()
            log.write(line)
            result.tail.append(line)
            on_line(line)
        result.returncode = proc.wait()
    except BaseException:
        # Ctrl+C reaches the child too (same console); give it a moment, then make sure.
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.write("interrupted")
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
    result.duration = time.monotonic() - start
    log.write(f"exit code {result.returncode} after {result.duration:.1f} s")
    return result


# --- failures in words ----------------------------------------------------------------------

@dataclass(frozen=True)
class Failure:
    kind: str
    pattern: re.Pattern
    hint: str


def _failure(kind: str, pattern: str, hint: str) -> Failure:
    return Failure(kind, re.compile(pattern, re.IGNORECASE), hint)


# Most specific first: the first pattern found in the output decides.
FAILURES = (
    _failure("disk-full", r"No space left on device|\[Errno 28\]|not enough space on the disk|WinError 112",
             "a disk is full. {space}Free some space (or choose another drive with --dir), then run "
             "the same command again: what is already done is kept"),
    _failure("long-paths", r"Long Path support|path too long|WinError 206",
             "Windows' 260-character path limit was hit. Enable long paths (run in an administrator "
             "PowerShell: New-ItemProperty -Path HKLM:\\SYSTEM\\CurrentControlSet\\Control\\FileSystem "
             "-Name LongPathsEnabled -Value 1 -PropertyType DWORD -Force) or use a shorter --dir such "
             "as C:\\musubi, then run again"),
    _failure("certificate", r"CERTIFICATE_VERIFY_FAILED|SSL certificate problem|certificate verify failed",
             "the connection was refused by a certificate check, usually a company proxy or antivirus "
             "that inspects HTTPS. Ask for its certificate, or set PIP_CERT / git's http.sslCAInfo to it"),
    _failure("network", r"Could not resolve host|Temporary failure in name resolution|getaddrinfo failed|"
                        r"Name or service not known|NewConnectionError|Failed to establish a new connection|"
                        r"Connection refused|Network is unreachable|Connection timed out|Read timed out|"
                        r"ConnectTimeout|ProxyError|Failed to connect to|Could not connect to|"
                        r"unable to access '|No route to host|Connection reset",
             "the network is not reachable from here (the package index or the git server). Check the "
             "internet connection, a proxy (set HTTPS_PROXY) or a firewall, then run the same command "
             "again: what is already done is kept"),
    _failure("in-use", r"WinError 32|being used by another process|Access is denied|WinError 5\b",
             "a file in musubi-tuner's venv is in use. Stop anything running from it (a training, "
             "ComfyUI's Setup Check, a terminal with the venv activated), then run again"),
    _failure("no-build", r"No matching distribution found for (torch|torchvision)\b",
             "the package index has no torch build for this Python and system. Try another build "
             "(--torch), or a Python 3.11/3.12 venv (--python, after deleting the venv folder)"),
    _failure("bad-ref", r"did not match any file\(s\) known to git|unknown revision|"
                        r"Remote branch .* not found|couldn't find remote ref|not a valid object name",
             "that musubi-tuner version (--ref) does not exist in the repository; list the versions "
             "with `git ls-remote --tags <url>`"),
    _failure("permission", r"Permission denied|PermissionError|Operation not permitted",
             "the installer may not write there. Choose a folder you own with --dir"),
    _failure("no-venv", r"ensurepip is not available|No module named ensurepip|No module named venv",
             "this Python cannot make virtual environments (Debian/Ubuntu: sudo apt install "
             "python3.X-venv for its version X); or pick another one with --python"),
)


def explain(output: str, *, places: Sequence[str] = ()) -> Optional[Failure]:
    """The first known failure found in ``output`` with its hint filled in, or None."""
    for failure in FAILURES:
        if failure.pattern.search(output):
            space = _free_space_text(places) if failure.kind == "disk-full" else ""
            return Failure(failure.kind, failure.pattern, failure.hint.format(space=space))
    return None


def _free_space_text(places: Sequence[str]) -> str:
    parts = []
    for place in [*places, tempfile.gettempdir()]:
        free = free_bytes(place)
        if free is not None:
            parts.append(f"{place}: {free / 1e9:.1f} GB free" if free >= 1e9 else f"{place}: {free / 1e6:.0f} MB free")
    return ("Now " + "; ".join(dict.fromkeys(parts)) + ". ") if parts else ""


def free_bytes(place: str) -> Optional[int]:
    """Free space on the drive that holds ``place`` (or its nearest existing parent)."""
    path = Path(os.path.abspath(place))
    while not path.exists() and path.parent != path:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None

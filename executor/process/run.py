"""Runs one command (a musubi-tuner script) and streams its output as events.

Owns the child's lifetime: launch, one reader thread per pipe (raw ``os.read``
into a bounded queue), parsing and callbacks on the CALLER's thread (ComfyUI's
execution thread), the log tee, timeouts, cancel, and stopping the whole tree.
Imports only the standard library, psutil and parsers; never anything of ComfyUI.

Tying the child's life to ours (ComfyUI killed mid-run must not leave a trainer
holding the GPU): on POSIX the command runs under ``supervisor.py``, started with
the venv's own interpreter as leader of a new session, holding the read end of a
pipe whose write end only we hold. Our death by any means (SIGKILL included)
closes it; the supervisor sees EOF (or its re-parenting) and stops the group. We
do not use PR_SET_PDEATHSIG: it fires when the parent *thread* exits, and nodes
may run on short-lived threads; and it would cover only the direct child. On
Windows a Job Object with KILL_ON_JOB_CLOSE does the same job (the kernel closes
our handle when we die); the child starts suspended so nothing escapes the job
before it is assigned.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..errors import (Cancelled, MissingModule, OutOfMemory, ReaderError, RunError, RunResult, Stalled,
                     TimedOut, TrainerError, TrainerFailed, TrainerNotFound, describe_exit_code)
from .command import helper_python, launchable, script_name
from .streams import Log, Readers, Redactor, secret_values
from .tree import IS_WINDOWS, JobObject, ProcessTree, describe

try:
    from ...parsers import OutputParser, real_exit_code
    from ...parsers.events import Event, LogLine, Progress, to_dict
except ImportError:
    from parsers import OutputParser, real_exit_code
    from parsers.events import Event, LogLine, Progress, to_dict

__all__ = ["run", "decide", "cli_run", "SUPERVISOR"]

SUPERVISOR = str(Path(__file__).resolve().with_name("supervisor.py"))

TAIL_LINES = 200
TAIL_LINE_CHARS = 2000
# After the main process exited, how long pipes may stay open (held by
# data-loader workers or other leftovers) before we stop those and give up.
DRAIN_AFTER_EXIT = 1.5
DRAIN_AFTER_STOP = 2.0

EventCallback = Callable[[Event], Any]


# musubi dies on SIGTERM within 0.2-1.5 s (it has no handler); a tree still
# alive after this long is not going to stop by itself and gets SIGKILL.
GRACE_PERIOD = 1.0


def run(command: Any, *, on_event: Optional[EventCallback] = None,
        should_cancel: Optional[Callable[[], bool]] = None, timeout: Optional[float] = None,
        stall_timeout: Optional[float] = None, log_path: Optional[str] = None, poll_interval: float = 0.1,
        grace_period: float = GRACE_PERIOD, check: bool = True) -> RunResult:
    """Run ``command`` (``argv``, ``env``, ``cwd``) to the end and return how it ended.

    Every parsed event goes to ``on_event`` and ``should_cancel()`` is polled
    about every ``poll_interval`` seconds, both on this thread. Cancel, the
    wall-clock ``timeout``, ``stall_timeout`` (no output for that long) and any
    exception raised by a callback stop the whole process tree (SIGTERM,
    ``grace_period`` seconds, SIGKILL); a callback's exception is re-raised after
    that. With ``check=True`` a run that did not succeed raises the matching
    :class:`RunError`; with ``check=False`` the result says what happened.
    """
    started = time.monotonic()
    warnings: list[str] = []
    tree = _launch(command, grace_period, warnings)
    script = script_name(command.argv)
    try:
        session = _Session(tree, script, on_event, log_path, warnings, secrets=secret_values(command.env))
    except BaseException:
        tree.stop(grace_period)
        tree.close()
        raise
    reason: Optional[str] = None
    try:
        reason = session.pump(should_cancel, started, timeout, stall_timeout, poll_interval)
    except BaseException:
        session.finish(grace_period, reason="error", deliver=False)
        raise
    session.finish(grace_period, reason=reason, deliver=True)
    result = RunResult(argv=list(command.argv), exit_code=tree.popen.returncode,
                       duration=time.monotonic() - started, tail=list(session.tail),
                       last_progress=session.last_progress, log_path=log_path, warnings=warnings)
    error = decide(result, session.parser, reason, reader_error=session.reader_error, script=script,
                   timeout=timeout, stall_timeout=stall_timeout)
    if error is not None:
        session.redactor.scrub(error)
    if error is not None and check:
        raise error
    return result


# -- launching -------------------------------------------------------------------

def _launch(command: Any, grace: float, warnings: list[str]) -> ProcessTree:
    argv, env, cwd, executable = launchable(command)
    script = script_name(argv)
    pipes = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                 env=env, cwd=cwd)
    try:
        if IS_WINDOWS:
            return _launch_windows(argv, executable, pipes, warnings, script)
        control_r, control_w = os.pipe()
        # The supervisor uses the venv's interpreter when the command is a Python
        # one (it needs nothing but the standard library), else ours.
        python = helper_python(executable)
        try:
            popen = subprocess.Popen([python, "-I", SUPERVISOR, str(control_r), f"{grace:g}", "--", *argv],
                                     start_new_session=True, pass_fds=(control_r,), **pipes)
        except BaseException:
            os.close(control_w)
            raise
        finally:
            os.close(control_r)
    except OSError as exc:
        raise TrainerNotFound(f"Cannot start {script}: {exc}",
                              hint="Check the musubi-tuner paths in the settings.") from exc
    return ProcessTree(popen, supervised=True, control_fd=control_w)


def _launch_windows(argv: list[str], executable: str, pipes: dict, warnings: list[str],
                    script: str) -> ProcessTree:  # pragma: no cover - Windows only
    import psutil

    flags = (subprocess.CREATE_NO_WINDOW | subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
             | 0x00000004)  # CREATE_SUSPENDED: assign to the job before it can start anything
    # executable= with the full path: with lpApplicationName NULL the module name is limited to MAX_PATH.
    popen = subprocess.Popen(argv, executable=executable, creationflags=flags, **pipes)
    job: Optional[JobObject] = None
    try:
        job = JobObject()
        job.assign(int(popen._handle))  # type: ignore[attr-defined]
    except OSError as exc:
        if job is not None:
            job.close()
            job = None
        warnings.append(f"{script} could not be put in a Windows Job Object ({exc}); if ComfyUI is killed, "
                        "the trainer may keep running, and Cancel stops its processes one by one.")
    try:
        psutil.Process(popen.pid).resume()
    except psutil.Error as exc:
        popen.kill()
        if job is not None:
            job.close()
        raise OSError(f"could not resume the suspended process: {exc}") from exc
    return ProcessTree(popen, job=job)


class _Session:
    """State of one run while it streams; used only by :func:`run`."""

    def __init__(self, tree: ProcessTree, script: str, on_event: Optional[EventCallback],
                 log_path: Optional[str], warnings: list[str], secrets: Sequence[str] = ()) -> None:
        self.redactor = Redactor(secrets)
        self.tree = tree
        self.script = script
        self.on_event = on_event
        self.warnings = warnings
        # Only the newest frame of a bar within one read matters to a progress
        # display; skipping the frames it supersedes is what keeps a tqdm
        # flood from making the parser the bottleneck (benchmarks/).
        self.parser = OutputParser(coalesce_progress=True)
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.last_progress: Optional[Progress] = None
        self.reader_error: Optional[BaseException] = None
        self.stopped = None
        self.exit_time: Optional[float] = None
        self.last_output = time.monotonic()
        self.log = Log(log_path, warnings)
        self.readers = Readers(tree.popen)

    def pump(self, should_cancel: Optional[Callable[[], bool]], started: float, timeout: Optional[float],
             stall_timeout: Optional[float], poll_interval: float) -> Optional[str]:
        """Stream until the run ends by itself (None) or must be stopped
        ("cancelled", "timed_out", "stalled", "reader_error")."""
        deadline = started + timeout if timeout else None
        next_check = time.monotonic()
        while True:
            self.handle(self.readers.get(poll_interval), deliver=True)
            now = time.monotonic()
            if self.reader_error is not None:
                return "reader_error"
            if self.exit_time is None and self.tree.popen.poll() is not None:
                self.exit_time = now
            if self.exit_time is not None:
                # The run is over: only the pipes remain (cancel or limits no longer apply).
                if not self.readers.open:
                    return None
                if now - self.exit_time >= DRAIN_AFTER_EXIT:
                    return None  # leftovers hold the pipes; finish() stops them
                continue
            if now >= next_check:
                next_check = now + poll_interval
                if should_cancel is not None and should_cancel():
                    return "cancelled"
                if deadline is not None and now >= deadline:
                    return "timed_out"
                if stall_timeout and now - self.last_output >= stall_timeout:
                    return "stalled"

    def handle(self, item: Optional[tuple[str, Any]], *, deliver: bool) -> None:
        if item is None:
            return
        stream, data = item
        if isinstance(data, BaseException):
            self.readers.open.discard(stream)
            if self.reader_error is None:
                self.reader_error = data
            return
        if not data:
            self.readers.open.discard(stream)
            return
        self.last_output = time.monotonic()
        self.log.write(self.redactor.feed(stream, data))
        self.deliver(self.parser.feed(stream, data), deliver)

    def deliver(self, events: list[Event], deliver: bool) -> None:
        for event in events:
            event = self.redactor.event(event)
            if isinstance(event, Progress):
                self.last_progress = event
            elif isinstance(event, LogLine):
                self.tail.append(event.text[:TAIL_LINE_CHARS])
            if deliver and self.on_event is not None:
                self.on_event(event)

    def finish(self, grace: float, *, reason: Optional[str], deliver: bool) -> None:
        """Stop whatever still runs, read what is left (bounded), release everything."""
        try:
            if reason is not None or self.tree.alive():
                self.stopped = self.tree.stop(grace)
                if self.stopped and reason is None:
                    self.warnings.append(f"Processes were still running after {self.script} exited; "
                                         f"{describe(self.stopped)}.")
                elif self.stopped:
                    self.warnings.append(f"{reason.replace('_', ' ').capitalize()}: {describe(self.stopped)}.")
            deadline = time.monotonic() + DRAIN_AFTER_STOP
            while self.readers.open and time.monotonic() < deadline and self.reader_error is None:
                self.handle(self.readers.get(min(0.1, max(0.0, deadline - time.monotonic()))), deliver=deliver)
            self.readers.stop()
            while True:  # chunks already queued before the stop
                try:
                    self.handle(self.readers.queue.get_nowait(), deliver=deliver)
                except queue.Empty:
                    break
            self.deliver(self.parser.finish(), deliver)
            try:
                self.tree.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.warnings.append(f"{self.script} did not exit after being stopped.")
        finally:
            self.readers.stop()
            self.log.write(self.redactor.flush())
            self.log.close()
            self.tree.close()


# -- the outcome -------------------------------------------------------------------

def _activity(script: str) -> Optional[str]:
    if "train" in script:
        return "Training"
    if "cache_latents" in script or "cache_pixel" in script:
        return "Caching latents"
    if "cache_text_encoder_outputs" in script:
        return "Caching text encoder outputs"
    if "convert_lora" in script:
        return "Converting the LoRA"
    return None


def _phrase(kind: str, line: str) -> str:
    """A few words for the message line; the hint says what to do."""
    if kind == "out_of_memory":
        return "CUDA ran out of memory" if re.search(r"CUDA|HIP|MPS", line) else "the computer ran out of memory"
    if kind == "missing_module":
        match = re.search(r"No module named '([^']+)'", line)
        return f"Python module '{match[1]}' is missing" if match else "a Python module is missing"
    phrases = {
        "empty_dataset": "the dataset has no images or videos (found 0)",
        "killed": "it was killed without an error message",
        "no_training_items": "no cached training data was found",
        "interrupted": "it was interrupted",
    }
    if kind in phrases:
        return phrases[kind]
    text = line.strip()
    if text:
        return text if len(text) <= 200 else text[:197] + "..."
    return kind.replace("_", " ")


def decide(result: RunResult, parser: OutputParser, reason: Optional[str], *, script: str,
           timeout: Optional[float], stall_timeout: Optional[float],
           reader_error: Optional[BaseException] = None) -> Optional[RunError]:
    """How the run ended, in one place and fixed precedence: reader error,
    cancelled, timed out / stalled, failure signature or non-zero exit, success.
    ``parser`` has seen the whole output (its tail is what failures are matched in).
    Fills the result's outcome fields; returns the error to raise (or None).
    Foreground runs and background jobs (``runs.jobtail``) both end here."""
    activity = _activity(script)

    def message(what: str) -> str:
        return f"{activity} failed in {script}: {what}" if activity else f"{script} failed: {what}"

    where = f"{activity} in {script}" if activity else script
    log_hint = (f"See the last lines of output above; the whole output is in {result.log_path}."
                if result.log_path else "See the last lines of output above.")
    if reader_error is not None:
        result.failure_kind = "reader_error"
        result.failure_hint = "This is a bug in the node pack: please report it with the log."
        return ReaderError(f"Reading the output of {script} failed: {reader_error!r}", result=result,
                           hint=result.failure_hint)
    if reason == "cancelled":
        result.cancelled = True
        return Cancelled(f"{where} was cancelled", result=result)
    if reason == "timed_out":
        result.timed_out = True
        result.failure_hint = ("Raise the time limit (command_timeout in the settings) if the run needs longer, "
                               "or make it shorter (fewer epochs or steps).")
        return TimedOut(f"{where} was stopped: it ran longer than the {timeout:g} s time limit",
                        result=result, hint=result.failure_hint)
    if reason == "stalled":
        result.stalled = True
        result.failure_hint = ("Loading big models or the first step can be silent for minutes on a slow disk or "
                               "CPU: raise the stall timeout in the settings. If it stops at the same point "
                               "every time, the trainer hangs there. " + log_hint)
        return Stalled(f"{where} was stopped: no output for {stall_timeout:g} s", result=result,
                       hint=result.failure_hint)
    code = real_exit_code(result.tail, result.exit_code)
    if code is not None and code != result.exit_code:
        result.warnings.append(f"accelerate launch exited with {result.exit_code}; the script itself exited "
                               f"with {code}.")
        result.exit_code = code
    failure = parser.classify(result.exit_code)
    if failure is not None:
        result.failure_kind, result.failure_hint = failure.kind, failure.hint
        cls = {"out_of_memory": OutOfMemory, "missing_module": MissingModule}.get(failure.kind, TrainerFailed)
        return cls(message(_phrase(failure.kind, failure.message)), result=result, hint=failure.hint,
                   kind=failure.kind)
    if result.exit_code != 0:
        result.failure_kind = "crashed" if (result.exit_code or 0) < 0 else "exit_code"
        result.failure_hint = log_hint
        return TrainerFailed(message(describe_exit_code(result.exit_code)), result=result, hint=log_hint)
    return None


# -- python -m executor run --------------------------------------------------------

def cli_run(args: Any) -> int:
    """``python -m executor run [--timeout S] [--stall-timeout S] [--log FILE] -- ARGV...``.

    Runs ARGV through :func:`run` with an environment that keeps Python children
    unbuffered and UTF-8, prints every event as one JSON line, then a final
    ``result`` (or ``error``) line; the human error goes to stderr. Ctrl-C (SIGINT),
    SIGTERM and SIGHUP stop the whole tree. Exit status: 0 success, 1 failed,
    124 timed out or stalled, 130 cancelled, 2 could not start.
    """
    import json
    import signal

    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("python -m executor run: give the command after --", file=sys.stderr)
        return 2
    env = dict(os.environ)
    added = {"PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8", "PYTHONUTF8": "1"}
    env.update(added)
    command = _cli_command(argv, env, os.getcwd(), added)

    ascii_only = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "") != "utf8"

    def emit(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj, ensure_ascii=ascii_only) + "\n")
        sys.stdout.flush()

    stop_requested: list[int] = []

    def request_stop(signum: int, frame: Any) -> None:
        stop_requested.append(signum)  # a second Ctrl-C must not interrupt the stop itself

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK"):
            sig = getattr(signal, name, None)
            if sig is not None:
                previous[sig] = signal.signal(sig, request_stop)
    try:
        result = run(command, on_event=lambda event: emit(to_dict(event)),
                     should_cancel=lambda: bool(stop_requested), timeout=args.timeout,
                     stall_timeout=getattr(args, "stall_timeout", None), log_path=args.log, check=True)
    except TrainerError as exc:
        emit(_error_dict(exc))
        print(str(exc), file=sys.stderr)
        if isinstance(exc, Cancelled):
            return 130
        if isinstance(exc, (TimedOut, Stalled)):
            return 124
        return 1 if isinstance(exc, RunError) else 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    emit({"type": "result", "ok": True, "exit_code": result.exit_code, "duration": round(result.duration, 3),
          "log": result.log_path, "warnings": result.warnings})
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _cli_command(argv: list[str], env: dict[str, str], cwd: str, added: dict[str, str]) -> Any:
    from .command import Command

    return Command(argv=tuple(argv), env=env, cwd=cwd, added_env=added)


def _error_dict(exc: TrainerError) -> dict:
    data: dict[str, Any] = {"type": "error", "error": exc.reference, "message": exc.message, "hint": exc.hint}
    if isinstance(exc, RunError):
        result = exc.result
        data.update(kind=exc.kind, exit_code=result.exit_code, duration=round(result.duration, 3),
                    cancelled=result.cancelled, timed_out=result.timed_out, stalled=result.stalled,
                    log=result.log_path, warnings=result.warnings, tail=result.tail[-20:])
    return data

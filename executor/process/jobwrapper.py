"""Runs one background job's command detached from ComfyUI and records how it ended.

Started by ``executor.process.detach`` as

    python -I jobwrapper.py --run-dir DIR [--grace G] [--timeout S] [--stall S] -- ARGV...

with the command's environment and folder, in a session of its own (Windows: its own process
group and hidden console, outside ComfyUI's job where allowed), stdin from the null device and
its own stdout/stderr appended to ``DIR/run.log``. It starts ARGV in a process group of its own
(Windows: a Job Object that dies with this wrapper) with both output streams on one pipe, as a
terminal would interleave them, and appends what it reads to ``DIR/run.log`` with secret values
masked (``redact.py``, the foreground tee's masking). It stops the whole tree when
``DIR/stop.request`` appears or on SIGTERM/SIGINT (the trainer's group SIGTERM, GRACE seconds,
SIGKILL, plus descendants that left the group), at the time limit, or after S seconds without
output. At the end it writes ``DIR/exit.json`` atomically::

    {"exit_code", "signal", "cancelled", "timed_out", "stalled", "started", "ended", "pid",
     "wrapper_pid", "warnings"}

It never depends on its starter: ComfyUI may exit, crash or restart meanwhile. Standard library
only; it loads its siblings ``redact.py``, ``winjob.py`` (Windows) and ``supervisor.py`` (POSIX)
by path and nothing else of the pack.
"""

import argparse
import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
IS_WINDOWS = sys.platform == "win32"
LOG_FILE, EXIT_FILE, STOP_FILE = "run.log", "exit.json", "stop.request"
CHECK_EVERY = 0.25
CHUNK = 65536
# After the command exited, how long leftovers (data-loader workers) may hold the pipe before
# they are stopped, and how long the last output may take to arrive after that.
DRAIN_AFTER_EXIT = 1.5
DRAIN_AFTER_STOP = 2.0
CREATE_SUSPENDED = 0x00000004


def sibling(name):
    path = os.path.join(HERE, name + ".py")
    spec = importlib.util.spec_from_file_location("_musubi_nodes_" + name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def parse(argv):
    parser = argparse.ArgumentParser(prog="jobwrapper.py", allow_abbrev=False)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--grace", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=0.0)
    parser.add_argument("--stall", type=float, default=0.0)
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.argv and args.argv[0] == "--":
        args.argv = args.argv[1:]
    if not args.argv:
        parser.error("give the command after --")
    return args


class LogFile:
    """run.log, appended. A log that cannot be written (disk full) is given up, never the run."""

    def __init__(self, path, warnings):
        self.path, self.warnings = path, warnings
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
        except OSError as exc:
            self.fd = None
            self.warnings.append("the log file %s could not be opened (%s)" % (path, exc))

    def write(self, data):
        if self.fd is None or not data:
            return
        try:
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)
                if not written:
                    raise OSError("the log file accepted no data")
                view = view[written:]
        except OSError as exc:
            self.warnings.append("The log file %s could not be written (%s); the run went on without it." %
                                 (self.path, exc))
            self.close()

    def close(self):
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


class Reader(threading.Thread):
    """os.read on the command's pipe into a bounded queue: chunks, then b"" at the end."""

    def __init__(self, pipe):
        super().__init__(name="jobwrapper-reader", daemon=True)
        self.pipe = pipe
        self.queue = queue.Queue(maxsize=64)
        self.open = True

    def run(self):
        fd = self.pipe.fileno()
        try:
            while True:
                data = os.read(fd, CHUNK)
                self.queue.put(data)
                if not data:
                    return
        except OSError:
            self.queue.put(b"")

    def get(self, timeout):
        try:
            data = self.queue.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None
        if not data:
            self.open = False
        return data


class Stop:
    """A stop is asked for by SIGTERM/SIGINT (POSIX) or by the stop.request file (any OS)."""

    def __init__(self, run_dir):
        self.path = os.path.join(run_dir, STOP_FILE)
        self.signalled = []
        if not IS_WINDOWS:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda signum, frame: self.signalled.append(signum))
            # A background job outlives the terminal ComfyUI was started from.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def requested(self):
        return bool(self.signalled) or os.path.exists(self.path)


class PosixTree:
    """The command in a session of its own (its group id is its pid); orphans of its tree are
    re-parented to us (Linux subreaper), so they stay findable and are reaped here."""

    def __init__(self, argv):
        self.sup = sibling("supervisor")
        self.sup._become_subreaper()
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.popen.pid
        self.status = None

    def poll(self):
        """The exit code once the command ended (negative: killed by that signal), else None.
        Every exited child is reaped here (adopted orphans too), never through Popen, which
        would then see no child and report 0."""
        if self.status is None:
            self.status = self.sup._reap(self.pid)
        else:
            self.sup._reap(None)
        if self.status is None:
            return None
        self.popen.returncode = os.waitstatus_to_exitcode(self.status)
        return self.popen.returncode

    def living(self):
        """(pid, name) of every process of the tree still running: the command's group and
        our descendants in other groups (torch elastic workers start their own sessions)."""
        found = {pid: pgid for pid, pgid in self.sup._descendants(os.getpid())}
        if sys.platform.startswith("linux"):
            for name in os.listdir("/proc"):
                if name.isdigit() and int(name) not in found and int(name) != os.getpid():
                    try:
                        with open("/proc/%s/stat" % name, "rb") as f:
                            fields = f.read().rsplit(b")", 1)[1].split()
                    except (OSError, IndexError):
                        continue
                    if fields[0] != b"Z" and int(fields[2]) == self.pid:
                        found[int(name)] = self.pid
        elif not found:
            try:
                os.killpg(self.pid, 0)
                found[self.pid] = self.pid
            except OSError:
                pass
        return [(pid, self.sup._name(pid)) for pid in found]

    def signal_all(self, sig):
        try:
            os.killpg(self.pid, sig)
        except OSError:
            pass
        for pid, pgid in self.sup._descendants(os.getpid()):
            if pgid != self.pid:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass

    def stop(self, grace):
        """TERM, ``grace`` seconds, KILL; what was running when the stop began."""
        before = self.living()
        if not before:
            self.poll()
            return []
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self.poll()
            if not self.living():
                return before
            time.sleep(0.05)
        for _ in range(3):
            self.signal_all(signal.SIGKILL)
            time.sleep(0.05)
            self.poll()
            if not self.living():
                break
        return before


class WindowsTree:  # pragma: no cover - Windows only
    """The command in a Job Object with kill-on-close: when this wrapper dies by any means the
    kernel ends the tree. Started suspended, so nothing escapes before it is in the job."""

    def __init__(self, argv, warnings):
        winjob = sibling("winjob")
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, creationflags=CREATE_SUSPENDED)
        self.pid = self.popen.pid
        self.job = None
        try:
            self.job = winjob.JobObject()
            self.job.assign(int(self.popen._handle))
        except OSError as exc:
            if self.job is not None:
                self.job.close()
                self.job = None
            warnings.append("the command could not be put in a Windows Job Object (%s); a stop ends its "
                            "processes with taskkill" % exc)
        self.stop_code = winjob.STOP_EXIT_CODE
        try:
            winjob.resume_process(self.pid)
        except OSError:
            self.popen.kill()
            raise

    def poll(self):
        return self.popen.poll()

    def living(self):
        if self.job is not None:
            return [(pid, "?") for pid in self.job.pids()]
        return [(self.pid, "?")] if self.popen.poll() is None else []

    def stop(self, grace):
        before = self.living()
        if self.job is not None:
            try:
                self.job.terminate(self.stop_code)
            except OSError:
                pass
        if self.popen.poll() is None:
            subprocess.run(["taskkill", "/PID", str(self.pid), "/T", "/F"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return before


def describe(procs):
    shown = ", ".join("%d %s" % (pid, name) for pid, name in procs[:6])
    return "%d process%s (%s)" % (len(procs), "es" if len(procs) != 1 else "", shown)


def write_exit(run_dir, record):
    path = os.path.join(run_dir, EXIT_FILE)
    tmp = path + ".%d.tmp" % os.getpid()
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv):
    args = parse(argv)
    warnings = []
    record = {"exit_code": None, "signal": None, "cancelled": False, "timed_out": False, "stalled": False,
              "started": time.time(), "ended": None, "pid": None, "wrapper_pid": os.getpid(), "warnings": warnings}
    log = LogFile(os.path.join(args.run_dir, LOG_FILE), warnings)
    redact = sibling("redact")
    redactor = redact.Redactor(redact.secret_values(os.environ))
    stop = Stop(args.run_dir)
    try:
        if stop.requested():
            record["cancelled"] = True
            return finish(args.run_dir, record, log, redactor)
        try:
            tree = WindowsTree(args.argv, warnings) if IS_WINDOWS else PosixTree(args.argv)
        except OSError as exc:
            log.write(("musubi-tuner-nodes: cannot start %s: %s\n" % (args.argv[0], exc)).encode("utf-8", "replace"))
            record["exit_code"] = 127
            return finish(args.run_dir, record, log, redactor)
        record["pid"] = tree.pid
        pump(args, tree, log, redactor, stop, record)
    except BaseException as exc:  # noqa: BLE001 - the record must be written whatever happened
        warnings.append("the job wrapper failed: %r" % (exc,))
    return finish(args.run_dir, record, log, redactor)


def pump(args, tree, log, redactor, stop, record):
    """Copy output to the log until the command ended (or was stopped) and its pipe is closed."""
    reader = Reader(tree.popen.stdout)
    reader.start()
    started = time.monotonic()
    last_output = started
    exit_time = None
    reason = None
    while True:
        data = reader.get(CHECK_EVERY)
        now = time.monotonic()
        if data:
            log.write(redactor.feed("out", data))
            last_output = now
        code = tree.poll()
        if exit_time is None and code is not None:
            exit_time = now
        if exit_time is not None:
            if not reader.open or now - exit_time >= DRAIN_AFTER_EXIT:
                break
            continue
        if reason is None:
            if stop.requested():
                reason = "cancelled"
            elif args.timeout and now - started >= args.timeout:
                reason = "timed_out"
            elif args.stall and now - last_output >= args.stall:
                reason = "stalled"
            if reason is not None:
                record[reason] = True
                tree.stop(args.grace)
    leftovers = tree.stop(args.grace)
    if leftovers and reason is None:
        warnings = record["warnings"]
        warnings.append("Processes were still running after the command exited; stopped %s." % describe(leftovers))
    deadline = time.monotonic() + DRAIN_AFTER_STOP
    while reader.open and time.monotonic() < deadline:
        data = reader.get(min(0.1, max(0.0, deadline - time.monotonic())))
        if data:
            log.write(redactor.feed("out", data))
    code = tree.poll()
    record["exit_code"] = code
    if code is not None and code < 0:
        record["signal"] = -code


def finish(run_dir, record, log, redactor):
    log.write(redactor.flush())
    log.close()
    record["ended"] = time.time()
    try:
        write_exit(run_dir, record)
    except OSError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

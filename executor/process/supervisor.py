"""Keeps a command's process tree from outliving the program that started it (POSIX).

Started by executor.process as ``python -I supervisor.py CONTROL_FD GRACE -- ARGV...``
with the same venv interpreter as the command, as leader of a new session. It runs
ARGV in its own process group, forwards SIGTERM/SIGINT/SIGHUP to that group, and
when the starter dies (EOF on CONTROL_FD, or we were re-parented) it stops the
group: SIGTERM, GRACE seconds, SIGKILL. It exits with the command's own status
(a signal death is re-raised), so callers see what they would without it.
Standard library only; it must not import anything from the pack.
"""

import os
import select
import signal
import subprocess
import sys
import time

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
PR_SET_CHILD_SUBREAPER = 36
CHECK_PARENT_EVERY = 1.0


def main(argv):
    if len(argv) < 5 or argv[3] != "--":
        os.write(2, b"usage: supervisor.py CONTROL_FD GRACE -- ARGV...\n")
        return 2
    control_fd, grace, command = int(argv[1]), float(argv[2]), argv[4:]
    parent = os.getppid()

    # Signals only set flags; the loop below wakes up through the wakeup fd.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    received = []
    for sig in FORWARDED:
        # A Python-level handler also means the command starts with the default
        # disposition (exec resets handlers), even if we inherited "ignore
        # SIGINT" from a shell's `&`.
        signal.signal(sig, lambda signum, frame: received.append(signum))
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    _become_subreaper()

    if not _parent_alive(control_fd, parent):
        return 1
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        os.write(2, f"cannot start {command[0]}: {exc}\n".encode("utf-8", "replace"))
        return 127

    # poll, not select: the control fd keeps its number from the starter, which
    # may be above select's FD_SETSIZE.
    poller = select.poll()
    for fd in (control_fd, wake_r):
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    forwarded = set()
    status = None
    while status is None:
        try:
            ready = [fd for fd, _ in poller.poll(CHECK_PARENT_EVERY * 1000)]
        except InterruptedError:
            ready = []
        if wake_r in ready:
            _drain(wake_r)
        status = _reap(child.pid)
        while received:
            sig = received.pop()
            # Our own killpg delivers the signal back to us; forward each kind once.
            if sig not in forwarded:
                forwarded.add(sig)
                _signal_group(sig)
                _signal_escaped(sig)
        if status is None and not _parent_alive(control_fd, parent, ready):
            _stop_all(child.pid, grace)  # does not return
    _stop_escaped(grace)
    _mirror(status)


def _parent_alive(control_fd, parent, ready=None):
    """False once the starter is gone: its end of the control pipe closed (any
    death, SIGKILL included) or we were re-parented (a fork of it kept the pipe)."""
    if ready is None:
        poller = select.poll()
        poller.register(control_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        ready = [fd for fd, _ in poller.poll(0)]
    if control_fd in ready:
        try:
            if os.read(control_fd, 512) == b"":
                return False
        except OSError:
            return False
    return os.getppid() == parent


def _stop_all(child_pid, grace):
    """The starter died: stop the group (and anything that left it), then die."""
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_IGN)
    _signal_group(signal.SIGTERM)
    _signal_escaped(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _reap(child_pid) is None:
        time.sleep(0.05)
    _signal_escaped(signal.SIGKILL)
    _signal_group(signal.SIGKILL)  # includes us
    os._exit(1)


def _stop_escaped(grace):
    """The command exited. Descendants that left our process group (setsid: torch elastic
    workers start their own sessions) were re-parented to us; once we exit they go to init,
    where the starter's group-based clean-up of leftovers cannot find them, and they would
    keep the GPU. So stop them here (TERM, ``grace``, KILL) and say so on stderr."""
    group = os.getpgrp()
    escaped = [pid for pid, pgid in _descendants(os.getpid()) if pgid != group]
    if not escaped:
        return
    names = ", ".join(f"{pid} {_name(pid)}" for pid in escaped[:6])
    _signal_escaped(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(None)
        if not any(pgid != group for _, pgid in _descendants(os.getpid())):
            break
        time.sleep(0.05)
    _signal_escaped(signal.SIGKILL)
    _reap(None)
    count = f"{len(escaped)} process{'es' if len(escaped) != 1 else ''}"
    os.write(2, f"\nmusubi-tuner-nodes: stopped {count} left running in another session after the "
                f"command exited: {names}\n".encode("utf-8", "replace"))


def _name(pid):
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def _reap(child_pid):
    """Reap every exited child (adopted orphans too); the wait status of
    ``child_pid`` once it exited, else None."""
    status = None
    while True:
        try:
            pid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == child_pid:
            status = st


def _mirror(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file of ours
        except (ImportError, ValueError, OSError):
            pass
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL/SIGSTOP cannot be caught anyway
        signal.set_wakeup_fd(-1)
        os.kill(os.getpid(), sig)
        time.sleep(1)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status))


def _signal_group(sig):
    try:
        os.killpg(0, sig)
    except OSError:
        pass


def _signal_escaped(sig):
    """Signal descendants that left our process group (e.g. torchrun workers
    start their own sessions). Linux only: found by reading /proc."""
    me, group = os.getpid(), os.getpgrp()
    for pid, pgid in _descendants(me):
        if pgid != group:
            try:
                os.kill(pid, sig)
            except OSError:
                pass


def _descendants(root):
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    parent_of, group_of = {}, {}
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == b"Z":
            continue  # a zombie holds nothing and ignores signals; its reaper takes it
        parent_of[int(name)] = int(fields[1])
        group_of[int(name)] = int(fields[2])
    children = {}
    for pid, ppid in parent_of.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append((pid, group_of[pid]))
        todo.extend(children.get(pid, []))
    return found


def _become_subreaper():
    """Linux: orphans of the tree (a data-loader worker whose trainer died)
    are re-parented to us, not to init, so they stay findable and get reaped."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _drain(fd):
    try:
        while os.read(fd, 512):
            pass
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))

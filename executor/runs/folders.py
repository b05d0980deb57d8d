"""Run folders: the names of the files a run leaves behind, where run folders go, and new unique
folder names. Imports only the standard library.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Mapping, Optional

__all__ = ["LOCK_NAME", "RESULT_FILE", "COMMAND_FILE", "LOG_FILE", "PLAN_FILE", "RESUME_FILE", "DATA_DIR_ENV",
           "data_dir", "default_runs_dir", "unique_run_dir"]


LOCK_NAME = ".musubi-tuner-nodes.lock"
RESULT_FILE = "result.json"
COMMAND_FILE = "command.txt"
LOG_FILE = "run.log"
PLAN_FILE = "plan.json"
RESUME_FILE = "resume.json"  # a continuation's link to the run it continues (for people; the pack trusts data_dir)
DATA_DIR_ENV = "MUSUBI_TUNER_NODES_DATA_DIR"


def data_dir(environ: Optional[Mapping[str, str]] = None) -> str:
    """The pack's per-user data folder, outside every folder ComfyUI serves or lets clients
    upload into: ``$MUSUBI_TUNER_NODES_DATA_DIR`` if set, else ``%LOCALAPPDATA%\\musubi-tuner-nodes``,
    ``$XDG_DATA_HOME/musubi-tuner-nodes`` or ``~/.local/share/musubi-tuner-nodes``. It holds
    what the pack must be able to trust (the record of training states, the job store)."""
    env = os.environ if environ is None else environ
    explicit = env.get(DATA_DIR_ENV, "").strip()
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    if os.name == "nt":
        base = env.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    else:
        xdg = env.get("XDG_DATA_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "musubi-tuner-nodes")


def default_runs_dir(environ: Optional[Mapping[str, str]] = None) -> str:
    """Where run folders go when nobody says: ``<data_dir>/runs``. ComfyUI passes its own
    output folder."""
    return os.path.join(data_dir(environ), "runs")


def _run_name(step: str, label: str) -> str:
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "run"
    return f"{stamp}_{step}_{safe[:60]}"


# Run folders are created only when a plan runs, so names handed out by this process are
# remembered: two plans made in the same millisecond still get different folders.
_RESERVED: set[str] = set()
_RESERVED_LOCK = threading.Lock()


def unique_run_dir(runs_dir: str, step: str, label: str) -> str:
    name = _run_name(step, label)
    path = os.path.join(runs_dir, name)
    n = 2
    with _RESERVED_LOCK:
        while os.path.exists(path) or path in _RESERVED:
            path = os.path.join(runs_dir, f"{name}-{n}")
            n += 1
        _RESERVED.add(path)
    return path

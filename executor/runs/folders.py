"""Run folders: the names of the files a run leaves behind, where run folders go, and new unique
folder names. Imports only the standard library.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Mapping, Optional

__all__ = ["LOCK_NAME", "RESULT_FILE", "COMMAND_FILE", "LOG_FILE", "PLAN_FILE", "default_runs_dir",
           "default_data_dir", "unique_run_dir", "ENV_DATA_DIR"]


LOCK_NAME = ".musubi-tuner-nodes.lock"
RESULT_FILE = "result.json"
COMMAND_FILE = "command.txt"
LOG_FILE = "run.log"
PLAN_FILE = "plan.json"
ENV_DATA_DIR = "MUSUBI_TUNER_NODES_DATA_DIR"


def default_runs_dir(environ: Optional[Mapping[str, str]] = None) -> str:
    """Where run folders go when nobody says: the per-user data folder
    (``%LOCALAPPDATA%\\musubi-tuner-nodes\\runs``, ``$XDG_DATA_HOME/musubi-tuner-nodes/runs``,
    else ``~/.local/share/musubi-tuner-nodes/runs``). ComfyUI passes its own output folder."""
    return os.path.join(_user_data_dir(os.environ if environ is None else environ), "runs")


def default_data_dir(environ: Optional[Mapping[str, str]] = None) -> str:
    """The pack's own data (the background job store, jobs.db): ``$MUSUBI_TUNER_NODES_DATA_DIR``
    if set, else the per-user data folder that also holds ``runs``. One per user, not per
    ComfyUI: every ComfyUI of the user shares the GPUs, so they share one job queue."""
    env = os.environ if environ is None else environ
    explicit = env.get(ENV_DATA_DIR, "").strip()
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    return _user_data_dir(env)


def _user_data_dir(env: Mapping[str, str]) -> str:
    if os.name == "nt":
        base = env.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    else:
        xdg = env.get("XDG_DATA_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "musubi-tuner-nodes")


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

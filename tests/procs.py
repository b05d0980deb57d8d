"""Process checks used by the tests that kill trees: which pids still run.

Zombies do not count as running: an orphan's zombie waits for a reaper that
the test machine may not have, but it holds no GPU, memory or pipe.
"""

from __future__ import annotations

import time
from typing import Iterable

import psutil


def alive(pids: Iterable[int]) -> list[int]:
    """The pids that are still running."""
    living = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                living.append(pid)
        except psutil.NoSuchProcess:
            pass
    return living


def wait_all_gone(pids: Iterable[int], within: float = 10.0) -> list[int]:
    """Poll until none of ``pids`` runs or ``within`` seconds pass; the survivors."""
    pids = list(pids)
    deadline = time.monotonic() + within
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(pids)

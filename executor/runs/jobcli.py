"""``python -m executor jobs list|show ID|stop ID|tail ID [-f]``: the background job store from a
terminal, with or without ComfyUI running (the same ``jobs.db``; ``--data-dir`` or
MUSUBI_TUNER_NODES_DATA_DIR picks another). An ID may be shortened to any unique prefix.

``stop`` asks the job to stop and waits until it has ended; when no ComfyUI manages the store
it finishes the job itself (a command-line manager that never starts a queued job).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Optional

from .folders import LOG_FILE, default_data_dir
from .jobstore import Job, JobStore

__all__ = ["cli_jobs"]

STOP_WAIT = 20.0
FOLLOW_EVERY = 0.5


def cli_jobs(args: Any) -> int:
    store = JobStore.in_folder(os.path.abspath(args.data_dir) if args.data_dir else default_data_dir())
    if args.action == "list":
        return _list(store, args.json)
    job = _find(store, args.id)
    if job is None:
        return 2
    if args.action == "show":
        print(json.dumps(_public(job), indent=2, ensure_ascii=False))
        return 0
    if args.action == "stop":
        return _stop(store, job)
    return _tail(store, job, args.follow, args.lines)


def _find(store: JobStore, text: str) -> Optional[Job]:
    text = (text or "").strip().lower()
    if not text or any(c not in "0123456789abcdef" for c in text):
        print(f"not a job id: {text!r} (ids are hexadecimal; see `python -m executor jobs list`)", file=sys.stderr)
        return None
    found = [j for j in store.list() if j.id.startswith(text)]
    if len(found) != 1:
        print(f"{'no job' if not found else f'{len(found)} jobs'} with id {text}*", file=sys.stderr)
        return None
    return found[0]


def _when(value: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value)) if value else "-"


def _list(store: JobStore, as_json: bool) -> int:
    jobs = store.list()
    if as_json:
        print(json.dumps({"jobs": [_public(j) for j in jobs]}, indent=2, ensure_ascii=False))
        return 0
    if not jobs:
        print(f"no jobs in {store.path}")
        return 0
    print(f"{'ID':12} {'STATE':10} {'KIND':6} {'PROGRESS':12} {'GPUS':6} {'QUEUED':19}  NAME")
    for job in jobs:
        p = job.progress or {}
        step = f"{p.get('step')}/{p.get('total')}" if p.get("total") else (p.get("phase") or "")
        gpus = ",".join(map(str, job.gpus)) or "-"
        print(f"{job.id[:12]:12} {job.state:10} {job.kind[:6]:6} {step[:12]:12} {gpus:6} {_when(job.queued_at):19}  "
              f"{job.name}")
    return 0


def _public(job: Job) -> dict[str, Any]:
    """The row without the stored launch details (the command is in the run folder's command.txt)."""
    data = {k: getattr(job, k) for k in ("id", "kind", "name", "state", "reason", "hint", "gpus", "pid",
                                         "queued_at", "started_at", "ended_at", "exit_code", "progress",
                                         "run_dir", "tail", "meta", "delivered")}
    data["architecture"] = (job.plan or {}).get("architecture")
    return data


def _stop(store: JobStore, job: Job) -> int:
    from ..setup.settings import load_settings
    from .jobs import JobManager

    manager = JobManager(store, load_settings, schedule=False)
    job = manager.stop(job.id) or job
    deadline = time.monotonic() + STOP_WAIT
    try:
        while job.active and time.monotonic() < deadline:
            manager.tick()  # finishes the job itself when no ComfyUI leads the store
            time.sleep(FOLLOW_EVERY)
            job = store.get(job.id) or job
    finally:
        manager.close()
    print(f"{job.id}: {job.state}" + (f" ({job.reason})" if job.reason else ""))
    return 0 if job.state in ("cancelled", "succeeded", "failed", "lost") else 1


def _tail(store: JobStore, job: Job, follow: bool, lines: int) -> int:
    path = os.path.join(job.run_dir, LOG_FILE)
    out = sys.stdout.buffer
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        data = b""
    text = data.replace(b"\r\n", b"\n")
    shown = b"\n".join(text.split(b"\n")[-lines - 1:]) if lines > 0 else text
    out.write(shown)
    out.flush()
    offset = len(data)
    while follow:
        current = store.get(job.id)
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except OSError:
            chunk = b""
        if chunk:
            out.write(chunk)
            out.flush()
            offset += len(chunk)
        elif current is None or not current.active:
            break
        time.sleep(FOLLOW_EVERY)
    return 0

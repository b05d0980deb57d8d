"""ComfyUI's side of background jobs: one ``JobManager`` per ComfyUI, hosted on a daemon thread that
pack load starts (the executor is imported on that thread, so importing the pack stays fast). It
reconciles first, then ticks every 0.5 s. Every change goes to every client as the websocket event
``musubi_tuner.job`` (the job JSON of docs/background-training.md; progress at most twice a second
per job), and finished train jobs get their LoRA delivered, converted as the Train node does, also
those that finished while ComfyUI was down. Also the job JSON the routes answer with.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Optional

from . import host

EVENT = "musubi_tuner.job"
TICK = 0.5
PROGRESS_EVERY = 0.5
LOG_TAIL = 12
LOG = logging.getLogger("musubi_tuner_nodes")
PROGRESS_KEYS = ("phase", "step", "total", "epoch", "epochs", "loss", "rate", "eta")


class _Host:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread: Optional[threading.Thread] = None
        self.ready = threading.Event()
        self.reconciled = threading.Event()  # the first tick (reconcile) is over
        self.manager: Any = None
        self.failed: Optional[BaseException] = None
        self.delivering: set[str] = set()
        self.sent: dict[str, float] = {}
        self.node_jobs: dict[str, str] = {}  # Train node id -> its newest background job
        self.commands: OrderedDict[str, str] = OrderedDict()
        self.settings: Any = None
        self.settings_error = ""


_host = _Host()


def start(*, only_with_server: bool = True) -> bool:
    """Start the manager's thread (once). At pack load only when ComfyUI's server runs."""
    import sys

    if only_with_server and getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None) is None:
        return False
    with _host.lock:
        if _host.thread is None:
            _host.thread = threading.Thread(target=_loop, name="musubi-tuner-jobs", daemon=True)
            _host.thread.start()
    return True


def manager(timeout: float = 60.0) -> Any:
    """The running JobManager (starting it if pack load did not), once its first tick is over:
    nobody is ever shown the state a job had before ComfyUI's restart."""
    from .errors import error_type

    start(only_with_server=False)
    if not _host.ready.wait(timeout) or _host.manager is None:
        raise error_type("SetupError")(f"the background job manager could not start: {_host.failed!r}")
    _host.reconciled.wait(timeout)
    return _host.manager


def _settings() -> Any:
    """The current settings; while the settings file is broken, the last good ones (said once)."""
    from .check import settings

    try:
        _host.settings = settings()
    except Exception as exc:  # noqa: BLE001 - a typo in a settings file must not stop the queue
        if str(exc) != _host.settings_error:
            _host.settings_error = str(exc)
            LOG.error("musubi-tuner: background jobs keep the last good settings: %s", exc)
        if _host.settings is None:
            raise
    return _host.settings


def _loop() -> None:
    try:
        from ..executor.runs.folders import default_data_dir
        from ..executor.runs.jobs import JobManager
        from ..executor.runs.jobstore import JobStore

        jobs = JobManager(JobStore.in_folder(default_data_dir()), _settings)
        jobs.listeners.append(_on_change)
        _host.manager = jobs
    except BaseException as exc:  # noqa: BLE001 - reported to whoever asks for the manager
        _host.failed = exc
        LOG.exception("musubi-tuner: the background job manager could not start")
        return
    finally:
        _host.ready.set()
    swept = False
    while True:
        try:
            jobs.tick()
            if jobs.leading and jobs.reconciled and not swept:
                swept = True  # LoRAs of train jobs that finished while ComfyUI was down
                for job in jobs.store.list({"succeeded"}):
                    _queue_delivery(jobs, job)
        except Exception:  # noqa: BLE001 - the loop must outlive any one failure
            LOG.exception("musubi-tuner: background jobs tick failed")
        _host.reconciled.set()
        time.sleep(TICK)


def _on_change(job: Any, events: list[str]) -> None:
    now = time.monotonic()
    if events == ["progress"] and now - _host.sent.get(job.id, 0.0) < PROGRESS_EVERY:
        return
    _host.sent[job.id] = now
    data = job_json(job, _host.manager)
    if "removed" in events:
        data["removed"] = True
    if job.final or "removed" in events:
        _host.sent.pop(job.id, None)
    host.broadcast(EVENT, data)
    _queue_delivery(_host.manager, job)


# -- delivering the LoRA of a finished train job ---------------------------------------------

class _Silent:
    """The reporter a converter run gets when nobody watches: no events, never cancelled."""

    def on_event(self, event: Any) -> None:
        pass

    def should_cancel(self) -> bool:
        return False


def _queue_delivery(jobs: Any, job: Any) -> None:
    if job.kind != "train" or job.state != "succeeded" or job.delivered is not None \
            or not (job.meta or {}).get("delivery") or not jobs.leading:
        return
    with _host.lock:
        if job.id in _host.delivering:
            return
        _host.delivering.add(job.id)
    threading.Thread(target=_deliver, args=(jobs, job), name=f"musubi-deliver-{job.id[:8]}", daemon=True).start()


def _deliver(jobs: Any, job: Any) -> None:
    from . import finish
    from .deferred import catalogue

    wanted = job.meta["delivery"]
    name = wanted["name"]
    trained = os.path.join(job.run_dir, f"{name}.safetensors")
    try:
        if not os.path.isfile(trained):
            raise FileNotFoundError(f"training finished but {trained} is missing")
        arch = catalogue.get_architecture(job.meta["architecture"])
        path, how = finish.deliver(trained, name, arch, job.run_dir, _Silent(), folder=wanted.get("folder"))
        info = {"name": host.lora_name(path) or os.path.basename(path), "path": path, "how": how}
    except Exception as exc:  # noqa: BLE001 - recorded on the job, shown to the user
        info = {"error": f"the LoRA could not be delivered to models/loras: {exc}", "trained": trained}
    finally:
        with _host.lock:
            _host.delivering.discard(job.id)
    jobs.set_delivered(job.id, info)


# -- the job JSON ---------------------------------------------------------------------------

def _iso(value: Optional[float]) -> Optional[str]:
    if not value:
        return None
    return datetime.fromtimestamp(value, tz=timezone.utc).astimezone().isoformat(timespec="seconds")


def _command(run_dir: str) -> Optional[str]:
    """The POSIX command line of the run folder's command.txt (it never changes: cached)."""
    if run_dir in _host.commands:
        return _host.commands[run_dir]
    from ..executor.runs.folders import COMMAND_FILE

    found = None
    try:
        with open(os.path.join(run_dir, COMMAND_FILE), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("# --- POSIX"))
        found = next((line for line in lines[start + 1:] if line.strip()), None)
    except (OSError, StopIteration):
        return None
    _host.commands[run_dir] = found
    while len(_host.commands) > 512:
        _host.commands.popitem(last=False)
    return found


def _latest_sample(run_dir: str) -> Optional[dict[str, str]]:
    from ..executor.runs.history import sample_files
    from .watch import output_refs

    try:
        refs = output_refs(sample_files(run_dir)[-1:], host.output_directory())
    except Exception:  # noqa: BLE001 - outside ComfyUI's output folder, or no folder_paths
        return None
    return refs[0] if refs else None


def _number(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def job_json(job: Any, jobs: Any = None, position: Optional[int] = None) -> dict[str, Any]:
    """One job as the routes and the websocket event show it (docs/background-training.md)."""
    progress = job.progress or {}
    delivered = job.delivered or {}
    if position is None and job.state == "queued" and jobs is not None:
        position = jobs.position(job)
    return {
        "id": job.id, "kind": job.kind, "name": job.name,
        "architecture": (job.meta or {}).get("architecture") or (job.plan or {}).get("architecture"),
        "state": job.state, "reason": job.reason, "hint": job.hint, "gpus": list(job.gpus or []),
        "position": position if job.state == "queued" else None,
        "queued_at": _iso(job.queued_at), "started_at": _iso(job.started_at), "ended_at": _iso(job.ended_at),
        "exit_code": job.exit_code,
        "progress": {k: (progress.get(k) if k == "phase" else _number(progress.get(k))) for k in PROGRESS_KEYS},
        "run_dir": job.run_dir, "run_id": os.path.basename(os.path.normpath(job.run_dir)),
        "command": _command(job.run_dir), "log_tail": list(job.tail or [])[-LOG_TAIL:],
        "latest_sample": _latest_sample(job.run_dir),
        "lora": {"name": delivered["name"], "path": delivered["path"]} if "path" in delivered else None,
        "can_stop": job.state in ("queued", "starting", "running", "stopping"),
        "can_remove": job.state == "queued", "can_continue": False,
        "parent": (job.meta or {}).get("parent"),
    }


def loss_history(job: Any) -> list[dict[str, Any]]:
    from ..executor.runs.history import LOSS_FILE, read_history

    return [{"step": p["step"], "loss": p.get("avr_loss"), "epoch": p.get("epoch")}
            for p in read_history(os.path.join(job.run_dir, LOSS_FILE))]


# -- the Train node's side --------------------------------------------------------------------

def plan_key(plan: Any) -> str:
    """The same training twice gives the same key: the plan without its run folder."""
    import json

    from .fingerprint import digest

    data = json.dumps(plan.to_dict(), sort_keys=True).replace(plan.run_dir, "<run>")
    return digest("train", data)


def node_token(node_id: Any) -> str:
    """Part of the Train node's IS_CHANGED in background mode: stable while the node's job is
    active or succeeded (a re-queue is a cache hit: no second job); new once it failed, was
    cancelled or lost, so queueing again trains again."""
    job_id = _host.node_jobs.get(str(node_id))
    if not job_id or _host.manager is None:
        return ""
    job = _host.manager.get(job_id)
    retry = job is None or job.state in ("failed", "cancelled", "lost")
    return f"{job_id}:{'again' if retry else 'same'}"


def submit_training(plan: Any, arch: Any, name: str, title: str, node_id: Any, notes: list[str]) -> dict[str, Any]:
    """Queue a checked training plan; the Train node's outputs at once: the LoRA name it will
    have, no path yet, the run folder, a placeholder curve, no samples, the job id."""
    from . import delivery, watch
    from .lossplot import render

    folder = host.loras_directory()
    meta = {"architecture": arch.id, "output_name": name, "title": title, "node": str(node_id),
            "prompt_id": host.prompt_id(), "delivery": {"name": name, "folder": folder}}
    job = manager().submit(plan, kind="train", name=name, key=plan_key(plan), meta=meta)
    _host.node_jobs[str(node_id)] = job.id
    expected = host.lora_name(delivery.unique_target(folder, name)) or f"{name}.safetensors"
    text = (f"{title}: queued as background job {job.id}\nrun folder: {job.run_dir}\n"
            f"The LoRA will be delivered as {expected}. Follow it in the Jobs panel, or wire job_id to "
            "Musubi Wait for Job.")
    if job.run_dir != plan.run_dir:
        text += "\n(this training was already queued or running: the same job is returned)"
    text += "".join(f"\nnote: {n}" for n in notes)
    host.send_text(text, node_id)
    curve = watch.to_image_batch([render([], message=f"training in the background: job {job.id[:8]}")])
    ui = {"text": [text], "run_dir": [job.run_dir], "job_id": [job.id]}
    return {"ui": ui, "result": (expected, "", job.run_dir, curve, watch.to_image_batch([]), job.id)}

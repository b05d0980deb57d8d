"""Background jobs: ``JobManager(store, settings)`` queues plans, starts them detached on free GPUs,
follows their logs, stops them, and after any restart finds every job where it really is.

Whoever hosts the manager (ComfyUI's nodes, the ``jobs`` command) calls ``tick()`` about every
0.5 s: it takes the store's manager lease (one active manager per store; the others only watch),
reconciles once (alive wrapper -> re-attached and tailed from its stored offset; gone -> final
from exit.json, else ``lost`` with its log tail), follows running jobs, enforces the stop
backstop, starts queued jobs FIFO on free GPUs, and calls ``listeners(job, events)`` for every
job that changed. A job's state changes are all store transactions that check the state they
expect, so a job never ends twice and never stays active once its processes are gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import threading
import time
from typing import Any, Callable, Optional

from ..errors import TrainerError
from ..process import detach
from .execute import prepare_run, record_run
from .folders import COMMAND_FILE, LOCK_NAME, LOG_FILE, PLAN_FILE
from .jobplan import gpu_request, lock_paths, plan_record, restore_plan
from .jobstore import Job, JobStore, new_job_id
from .jobtail import JobTail
from .locks import RunLock, RunLocked, release_locks
from .plan import Plan

__all__ = ["JobManager", "GRACE", "BACKSTOP"]

LOG = logging.getLogger("musubi_tuner_nodes.jobs")
GRACE = 1.0  # the wrapper's SIGTERM -> SIGKILL grace for the trainer's tree
BACKSTOP = 5.0  # a wrapper still alive this long after a stop request is killed with its tree
LEASE = "manager"
LEASE_CHECK = 5.0
RUNNING = ("starting", "running", "stopping")
FINAL_PHASE = {"succeeded": "done"}

Listener = Callable[[Job, list[str]], None]


def _me() -> dict[str, Any]:
    handle = detach.identify(os.getpid())
    return {"pid": os.getpid(), "create_time": handle.create_time if handle else None,
            "host": socket.gethostname(), "manager": new_job_id()}


def _holder_alive(holder: dict[str, Any]) -> bool:
    """Whether the process holding the lease still runs (a pid alone could be reused)."""
    if holder.get("host") != socket.gethostname():
        return True  # another machine's process: we cannot see it (a shared data folder)
    try:
        return detach.same_process(int(holder["pid"]), float(holder["create_time"]))
    except (KeyError, TypeError, ValueError):
        return False


class JobManager:
    """Background jobs on one store. ``settings`` is a Settings or a function returning the
    current ones (read again at every scheduling, so a changed ``gpus`` applies at once).
    ``schedule=False``: follow and stop jobs but never start one (the command line)."""

    def __init__(self, store: JobStore, settings: Any, *, schedule: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._settings = settings
        self.schedule = schedule
        self.listeners: list[Listener] = []
        self._clock = clock
        self._lock = threading.Lock()
        self._plans: dict[str, Plan] = {}
        self._popens: dict[str, Any] = {}
        self._tails: dict[str, JobTail] = {}
        self._stop_sent: dict[str, float] = {}
        self._seen: dict[str, tuple] = {}
        self._removed: list[Job] = []
        self._said: set[tuple[Any, ...]] = set()
        self._since = clock()
        self._holder = _me()
        self.leading = False
        self.reconciled = False
        self._lease_checked = -LEASE_CHECK

    def settings(self) -> Any:
        return self._settings() if callable(self._settings) else self._settings

    # -- what callers do ------------------------------------------------------------------------

    def submit(self, plan: Plan, *, kind: str, name: str, gpus: Optional[list[int]] = None,
               key: Optional[str] = None, meta: Optional[dict[str, Any]] = None) -> Job:
        """Queue ``plan``; an active job with the same ``key`` is returned instead. The run
        folder and command.txt are made now, so a run that would be refused (a locked folder,
        an existing LoRA) is refused here, with nothing queued."""
        if key is not None:
            for job in self.store.queue_order():
                if job.key == key:
                    return job
        job_id = new_job_id()
        # Like a foreground run's start, minus the launch: the checks under the folder locks,
        # the run folder and its files. The locks are taken again when the job starts (a
        # queued job waits for a folder another run writes to, as it waits for a GPU).
        with contextlib.ExitStack() as stack:
            prepare_run(plan, stack, token=job_id)
        record = dict(plan_record(plan, lock_token=job_id), gpus=list(gpus) if gpus else None)
        job = Job(id=job_id, kind=kind, name=name, key=key, plan=record, run_dir=plan.run_dir,
                  gpus=list(gpus or []), meta=dict(meta or {}), progress={"phase": "queued"})
        with self._lock:  # before the row exists: a tick may start it at once
            self._plans[job_id] = plan
        try:
            stored, inserted = self.store.add(job)
        except BaseException:
            self._forget(job_id)
            _clean_run_dir(plan.run_dir)
            raise
        if not inserted:  # a twin was submitted meanwhile and won
            self._forget(job_id)
            _clean_run_dir(plan.run_dir)
        return stored

    def stop(self, job_id: str) -> Optional[Job]:
        """Stop a job: a queued one ends ``cancelled`` at once; a running one is asked to stop
        (stop.request + SIGTERM to its wrapper) and becomes ``stopping``; tick() finishes it."""
        job = self.store.get(job_id)
        if job is None or job.final:
            return job
        if job.state == "queued":
            ended = self.store.update(job_id, {"queued"}, state="cancelled", ended_at=self._clock(),
                                      reason="stopped before it started", progress={"phase": "cancelled"})
            if ended is not None:
                self._release(ended)
                self._record_unstarted(ended, "cancelled")
                return ended
            job = self.store.get(job_id) or job
        if job.state in RUNNING:
            detach.request_stop(job.run_dir, _handle(job))
            with self._lock:
                self._stop_sent[job_id] = time.monotonic()
            return self.store.update(job_id, {"starting", "running"}, state="stopping") or self.store.get(job_id)
        return job

    def remove(self, job_id: str) -> bool:
        """Remove a queued job (its run folder goes too, if it holds only what submit wrote)."""
        job = self.store.get(job_id)
        if job is None or not self.store.delete(job_id, {"queued"}):
            return False
        self._release(job)
        self._forget(job_id)
        _clean_run_dir(job.run_dir)
        with self._lock:
            self._removed.append(job)
        return True

    def get(self, job_id: str) -> Optional[Job]:
        return self.store.get(job_id)

    def close(self) -> None:
        """Give up the lead (another manager may take over at once); jobs keep running."""
        if self.leading and self.store.exists():
            self.store.drop_lease(LEASE, self._holder)
        self.leading = False
        with self._lock:
            self._tails.clear()
            self._popens.clear()

    def list(self, limit: Optional[int] = None) -> list[Job]:
        return self.store.list(limit=limit)

    def set_delivered(self, job_id: str, delivered: dict[str, Any]) -> Optional[Job]:
        """Record where a finished job's result went (the nodes deliver LoRAs)."""
        return self.store.update(job_id, {"succeeded"}, delivered=delivered)

    def position(self, job: Job) -> Optional[int]:
        """1 for the next queued job to start, 2 after it...; None unless queued."""
        if job.state != "queued":
            return None
        queued = [j.id for j in self.store.queue_order() if j.state == "queued"]
        return queued.index(job.id) + 1 if job.id in queued else None

    # -- the loop -------------------------------------------------------------------------------

    def tick(self) -> None:
        """Reconcile (once), follow, stop, schedule, tell listeners. Never raises for one job."""
        if self._lead():
            if not self.reconciled:
                self.reconcile()
            for job in self.store.queue_order():
                if job.state in RUNNING:
                    self._guard(self._follow, job)
            if self.schedule:
                self._guard(self._schedule, None)
        self._emit()

    def reconcile(self) -> dict[str, int]:
        """Find every active job where it really is; counts of what was found."""
        counts = {"reattached": 0, "finished": 0, "requeued": 0}
        started = time.monotonic()
        for job in self.store.queue_order():
            if job.state not in RUNNING:
                continue
            self._guard(self._follow, job)
            now = self.store.get(job.id)
            if now is None or now.final:
                counts["finished"] += 1
            elif now.state == "queued":
                counts["requeued"] += 1
            else:
                counts["reattached"] += 1
        self.reconciled = True
        if any(counts.values()):
            LOG.info("musubi-tuner jobs: %d re-attached, %d ended while away, %d queued again (%.0f ms)",
                     counts["reattached"], counts["finished"], counts["requeued"],
                     (time.monotonic() - started) * 1000)
        return counts

    def _lead(self) -> bool:
        now = time.monotonic()
        if now - self._lease_checked >= (LEASE_CHECK if self.leading else 2.0) or not self.store.exists():
            if not self.store.exists():
                return False
            self._lease_checked = now
            was = self.leading
            self.leading = self.store.take_lease(LEASE, self._holder, _holder_alive)
            if self.leading and not was:
                self.reconciled = False
        return self.leading

    def _guard(self, action: Callable[[Any], Any], job: Optional[Job]) -> None:
        try:
            action(job)
        except Exception as exc:  # noqa: BLE001 - one broken job must not stop the others
            # Told once per job and problem, not at every tick.
            said = (action.__name__, job.id if job else None, str(exc))
            if said not in self._said:
                self._said.add(said)
                LOG.exception("musubi-tuner jobs: %s failed for %s", action.__name__, job.id if job else "the queue")

    # -- following one job ----------------------------------------------------------------------

    def _plan(self, job: Job) -> Plan:
        with self._lock:
            plan = self._plans.get(job.id)
        return plan if plan is not None else restore_plan(job.plan, self.settings())

    def _follow(self, job: Job) -> None:
        popen = self._popens.get(job.id)
        if popen is not None:
            popen.poll()  # reap our own child once it exited
        handle = _handle(job)
        if handle is None:
            self._unrecorded(job)
            return
        tail = self._tails.get(job.id)
        if tail is None:
            tail = self._tails[job.id] = JobTail(self._plan(job), offset=job.log_offset)
        if detach.is_running(handle):
            if job.state == "starting":
                job = self.store.update(job.id, {"starting"}, state="running") or job
            if tail.read() or tail.progress != job.progress:
                self.store.update(job.id, RUNNING, progress=dict(tail.progress), tail=tail.tail,
                                  log_offset=tail.offset)
            if job.state == "stopping":
                self._backstop(job, handle)
            return
        self._finish(job, tail)

    def _unrecorded(self, job: Job) -> None:
        """Active without a recorded wrapper: the launcher died mid-launch."""
        found = detach.find(job.run_dir)
        if found is not None:
            self.store.update(job.id, RUNNING, pid=found.pid, create_time=found.create_time,
                              cmdline=list(found.cmdline))
        elif detach.read_exit(job.run_dir) is None and not os.path.exists(os.path.join(job.run_dir, LOG_FILE)):
            self.store.update(job.id, {"starting"}, state="queued", started_at=None, gpus=_requested(job))
        else:
            self._finish(job, JobTail(self._plan(job), offset=job.log_offset))

    def _backstop(self, job: Job, handle: detach.Handle) -> None:
        with self._lock:
            sent = self._stop_sent.setdefault(job.id, time.monotonic())
        if time.monotonic() - sent >= BACKSTOP:
            killed = detach.kill_tree(handle)
            LOG.warning("musubi-tuner jobs: %s did not stop within %.0f s; killed %s", job.id, BACKSTOP, killed)

    def _finish(self, job: Job, tail: JobTail) -> None:
        verdict = tail.judge(detach.read_exit(job.run_dir), job.started_at)
        state, reason = verdict.state, verdict.reason
        if job.state == "stopping" and state == "lost":
            state, reason = "cancelled", (f"stopped by request; its processes did not end within {BACKSTOP:.0f} s "
                                          "and were killed")
        progress = dict(tail.progress, phase=FINAL_PHASE.get(state, state), rate=None, eta=None)
        done = self.store.update(job.id, RUNNING, state=state, reason=reason, hint=verdict.hint,
                                 exit_code=verdict.exit_code, ended_at=verdict.ended or self._clock(),
                                 progress=progress, tail=tail.tail, log_offset=tail.offset)
        if done is not None:
            self._release(done)
            self._forget(job.id)

    # -- starting jobs ---------------------------------------------------------------------------

    def _schedule(self, _: Any = None) -> None:
        from ..setup.gpus import schedulable_gpus

        gpus = schedulable_gpus(self.settings())
        jobs = self.store.queue_order()
        busy = {g for j in jobs if j.state in RUNNING for g in j.gpus}
        if not gpus:  # no GPU: one job at a time
            waiting = [j for j in jobs if j.state == "queued"]
            if waiting and not any(j.state in RUNNING for j in jobs):
                self._start(waiting[0], [])
            return
        claimed: set[int] = set()
        for job in jobs:
            if job.state != "queued":
                continue
            requested = _requested(job)
            pinned, count = (requested, len(requested)) if requested else gpu_request(job.plan["launch"]["argv"])
            wanted = pinned if pinned else None
            missing = [g for g in (pinned or []) if g not in gpus]
            if missing or count > len(gpus):
                self._refuse(job, missing, count, gpus)
                continue
            if wanted is not None:
                if set(wanted) & (busy | claimed):
                    claimed |= set(wanted)  # later jobs may not jump ahead on these GPUs
                    continue
            else:
                free = [g for g in gpus if g not in busy and g not in claimed]
                if len(free) < count:
                    return  # strictly first come, first served for jobs that take any GPU
                wanted = free[:count]
            if self._start(job, wanted):
                busy |= set(wanted)

    def _refuse(self, job: Job, missing: list[int], count: int, gpus: list[int]) -> None:
        what = (f"GPU {', '.join(map(str, missing))} is not available to background jobs" if missing
                else f"it needs {count} GPUs, background jobs have {len(gpus)}")
        ended = self.store.update(job.id, {"queued"}, state="failed", ended_at=self._clock(),
                                  reason=f"This job can never start: {what} (usable: {', '.join(map(str, gpus))}).",
                                  hint="Change gpu_ids / num_processes, or the settings keys gpus and reserved_gpus.",
                                  progress={"phase": "failed"})
        if ended is not None:
            self._release(ended)
            self._record_unstarted(ended, "failed")

    def _start(self, job: Job, gpus: list[int]) -> bool:
        claimed = self.store.update(job.id, {"queued"}, state="starting", gpus=gpus, started_at=self._clock(),
                                    progress={"phase": "starting"})
        if claimed is None:
            return False
        plan = self._plan(job)
        extra = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))} if gpus else {}
        lock = RunLock(list(plan.lock_dirs) + [plan.run_dir], plan.run_dir, token=job.plan.get("lock_token"))
        try:
            lock.acquire()
        except RunLocked as exc:  # another run writes there: wait for it, as for a GPU
            self.store.update(job.id, {"starting"}, state="queued", started_at=None, gpus=_requested(job),
                              progress={"phase": "queued", "waiting": exc.message})
            return False
        try:
            handle, popen = detach.launch(plan.command, plan.run_dir, grace=GRACE, timeout=plan.timeout,
                                          stall_timeout=plan.stall_timeout, extra_env=extra)
        except (TrainerError, OSError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            hint = getattr(exc, "hint", "") or "Check the musubi-tuner paths in the settings."
            failed = self.store.update(job.id, {"starting", "stopping"}, state="failed", reason=message, hint=hint,
                                       ended_at=self._clock(), progress={"phase": "failed"})
            if failed is not None:
                self._release(failed)
                self._record_unstarted(failed, "error", exc)
            self._forget(job.id)
            return False
        lock.hand_over(handle.pid, handle.create_time)
        identity = dict(pid=handle.pid, create_time=handle.create_time, cmdline=list(handle.cmdline))
        if self.store.update(job.id, {"starting"}, state="running", **identity) is None:
            # stopped while it launched: the wrapper saw stop.request before starting anything
            self.store.update(job.id, {"stopping"}, **identity)
        self._popens[job.id] = popen
        self._tails[job.id] = JobTail(plan)
        return True

    # -- bookkeeping ------------------------------------------------------------------------------

    def _release(self, job: Job) -> None:
        token = (job.plan or {}).get("lock_token")
        if token:
            release_locks(lock_paths(job.plan), token)

    def _record_unstarted(self, job: Job, status: str, error: Optional[BaseException] = None) -> None:
        """result.json for a job that never ran (cancelled or refused while queued)."""
        now = self._clock()
        try:
            record_run(self._plan(job), None, error, job.queued_at or now, now, None, status=status)
        except (OSError, KeyError):
            pass

    def _forget(self, job_id: str) -> None:
        with self._lock:
            for table in (self._plans, self._popens, self._tails, self._stop_sent):
                table.pop(job_id, None)

    def _emit(self) -> None:
        """Call the listeners for every job whose row changed since the last tick."""
        if not self.listeners:
            return
        started = self._clock()
        changed = self.store.changed_since(self._since) if self.store.exists() else []
        self._since = started - 1.0  # rows written during this read are seen next time
        with self._lock:
            removed, self._removed = self._removed, []
        for job in changed:
            shape = (job.state, _frozen(job.progress), tuple(job.tail), _frozen(job.delivered), tuple(job.gpus))
            before = self._seen.get(job.id)
            if before == shape:
                continue
            self._seen[job.id] = shape
            events = ["new"] if before is None else [name for name, a, b in zip(
                ("state", "progress", "progress", "delivered", "gpus"), before, shape) if a != b]
            self._call(job, sorted(set(events)))
        for job in removed:
            self._seen.pop(job.id, None)
            self._call(job, ["removed"])

    def _call(self, job: Job, events: list[str]) -> None:
        for listener in list(self.listeners):
            try:
                listener(job, events)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the queue
                LOG.exception("musubi-tuner jobs: a listener failed")


def _requested(job: Job) -> list[int]:
    """The GPUs the submitter named for the job ([] = any, as its accelerate options say)."""
    return list((job.plan or {}).get("gpus") or [])


def _handle(job: Job) -> Optional[detach.Handle]:
    if job.pid is None or job.create_time is None or not job.cmdline:
        return None
    return detach.Handle(int(job.pid), float(job.create_time), tuple(job.cmdline))


def _frozen(value: Any) -> Any:
    import json

    return json.dumps(value, sort_keys=True)


def _clean_run_dir(run_dir: str) -> None:
    """Remove a run folder that holds only what ``prepare_run`` wrote (never anything else)."""
    ours = {COMMAND_FILE, PLAN_FILE, LOCK_NAME, "dataset.toml", "dataset.json"}
    try:
        names = set(os.listdir(run_dir))
    except OSError:
        return
    if names <= ours:
        shutil.rmtree(run_dir, ignore_errors=True)

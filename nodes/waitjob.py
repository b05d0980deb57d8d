"""MusubiWaitForJob: blocks until a background job ends, showing the same progress as the Train node
(its run.log read through the same parsers into the node's bar, text and preview), and outputs what
the Train node outputs, so an API workflow can chain on a background training. ComfyUI's Cancel
stops the waiting, never the job (stop a job from the Jobs panel or its route).
"""

from __future__ import annotations

import os
import time
from typing import Any

from . import host
from .errors import error_type, user_error
from .progress import StepReporter
from .training import MusubiTrainLoRA

POLL = 0.25
READ_LIMIT = 4 << 20


class _LogFollower:
    """The job's run.log from the start, by byte offset, through the parsers (as a run's reader)."""

    def __init__(self, run_dir: str) -> None:
        from ..parsers import OutputParser

        self.path = os.path.join(run_dir, "run.log")
        self.parser = OutputParser(coalesce_progress=True)
        self.offset = 0

    def read(self) -> list[Any]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(READ_LIMIT)
        except OSError:
            return []
        self.offset += len(data)
        return self.parser.feed("output", data) if data else []


class MusubiWaitForJob:
    DESCRIPTION = ("Waits until a background job ends (Musubi Train LoRA with run_as background, or any job of the "
                   "Jobs panel), with the same live progress as Train LoRA, and outputs what Train LoRA outputs: "
                   "the delivered LoRA's name and path, the run folder, the loss curve and the last samples. "
                   "Cancel stops the waiting; the job goes on.")
    CATEGORY = "Musubi Tuner/Training"
    FUNCTION = "wait"
    OUTPUT_NODE = True
    RETURN_TYPES = MusubiTrainLoRA.RETURN_TYPES
    RETURN_NAMES = MusubiTrainLoRA.RETURN_NAMES
    OUTPUT_TOOLTIPS = MusubiTrainLoRA.OUTPUT_TOOLTIPS[:5] + ("The job's id, passed on.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"job_id": ("STRING", {
            "default": "", "tooltip": "The job to wait for: wire Musubi Train LoRA's job_id output (run_as "
                                      "background), or paste an id from the Jobs panel."})},
                "hidden": {"unique_id": "UNIQUE_ID"}}

    def wait(self, job_id: str, unique_id: Any = None) -> dict[str, Any]:
        from ..executor.runs.jobstore import valid_job_id
        from . import finish, jobs, watch
        from .check import settings as load_settings

        job_id = (job_id or "").strip().lower()
        if not valid_job_id(job_id):
            raise user_error(f"{job_id!r} is not a job id",
                             "wire Musubi Train LoRA's job_id output (run_as background) or paste an id from the "
                             "Jobs panel (32 hexadecimal characters)")
        manager = jobs.manager()
        job = manager.get(job_id)
        if job is None:
            raise user_error(f"there is no job {job_id}", "it may have been removed; see the Jobs panel")
        title = f"{(job.meta or {}).get('title') or job.name} (job {job_id[:8]})"
        step = "train" if job.kind == "train" else job.kind
        reporter = StepReporter(unique_id, step=step, interval=load_settings().progress_update_interval, title=title)
        reporter.run_dir = job.run_dir
        if job.kind == "train":
            reporter.watch = watch.TrainWatch(job.run_dir)
        reporter.start(f"waiting for background job {job_id}\nrun folder: {job.run_dir}")
        follow = _LogFollower(job.run_dir)
        while True:
            for event in follow.read():
                reporter.on_event(event)  # ComfyUI's Cancel raises here (the bar's hook): the job goes on
            if reporter.should_cancel():
                host.raise_interrupt()
            job = manager.get(job_id)
            if job is None:
                raise user_error(f"job {job_id} was removed while this node waited for it")
            if job.final and not (job.state == "succeeded" and job.kind == "train" and job.delivered is None):
                break
            time.sleep(POLL)
        while True:
            events = follow.read()
            if not events:
                break
            for event in events:
                reporter.on_event(event)
        for event in follow.parser.finish():
            reporter.on_event(event)
        reporter.watch = None
        return self._outcome(job, title, reporter, finish)

    @staticmethod
    def _outcome(job: Any, title: str, reporter: StepReporter, finish: Any) -> dict[str, Any]:
        if job.state == "succeeded":
            delivered = job.delivered or {}
            if job.kind == "train" and "path" in delivered:
                argv = list((job.plan or {}).get("argv") or [])
                return finish.outputs(title, job.run_dir, argv, delivered["path"], delivered.get("how", ""),
                                      reporter, job_id=job.id)
            if job.kind == "train":
                message = (f"{delivered.get('error') or 'the LoRA was not delivered'}\n"
                           f"The trained LoRA is in the run folder: {delivered.get('trained') or job.run_dir}")
                reporter.fail(message)
                raise error_type("DeliveryFailed")(f"{title}: {message}")
            reporter.finish(f"done\nrun folder: {job.run_dir}")
            from . import watch

            return {"ui": {"text": [f"{title}: done"], "run_dir": [job.run_dir], "job_id": [job.id]},
                    "result": ("", "", job.run_dir, watch.to_image_batch([]), watch.to_image_batch([]), job.id)}
        message = f"{job.state}: {job.reason or 'no reason was recorded'}"
        if job.hint:
            message += f"\nhint: {job.hint}"
        tail = [line for line in job.tail or [] if line.strip()][-10:]
        if tail:
            message += "\n\n[last lines of output]\n" + "\n".join(tail)
        message += f"\nrun folder: {job.run_dir}"
        reporter.fail(message)
        kind = {"failed": "TrainerFailed", "cancelled": "JobCancelled", "lost": "JobLost"}.get(job.state, "JobFailed")
        raise error_type(kind)(f"{title}: {message}")


NODE_CLASS_MAPPINGS = {"MusubiWaitForJob": MusubiWaitForJob}
NODE_DISPLAY_NAME_MAPPINGS = {"MusubiWaitForJob": "Musubi Wait for Job"}

"""Background jobs in a real ComfyUI 0.3.75 that a test may stop (SIGTERM or SIGKILL, its whole
process group) and start again on the same base folder and the same job store, as a user's
restart does. The fake musubi's paths and knobs go into the pack's settings file in ComfyUI's
user folder; every process the fake starts is recorded (FAKE_MUSUBI_PIDFILE), every script start
with its CUDA_VISIBLE_DEVICES (FAKE_MUSUBI_ENVFILE), and the job wrappers are found by their
command line, so a test can prove nothing was left behind.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import psutil

from comfy_fixtures import put_tiny_models, tiny
from comfy_harness import ComfyClient, ComfyInstall, ComfyServer
from fakes import FakeMusubi, png_bytes
from procs import alive, wait_all_gone

JOB_EVENT = "musubi_tuner.job"
WRAPPER = "jobwrapper.py"


class JobsComfy:
    """A ComfyUI whose pack runs the fake musubi, restartable on the same folders."""

    def __init__(self, install: ComfyInstall, fake: FakeMusubi, base: Path, tmp: Path) -> None:
        self.install, self.fake, self.base, self.tmp = install, fake, base, tmp
        self.data_dir = tmp / "jobs data"
        self.pidfile, self.envfile = tmp / "pids.txt", tmp / "env.jsonl"
        self.server: Optional[ComfyServer] = None
        self.settings: dict[str, Any] = {}

    # -- the server -------------------------------------------------------------------------

    def start(self) -> float:
        """Start ComfyUI; the seconds until it answered."""
        self.server = ComfyServer(self.install, self.base, env={"MUSUBI_TUNER_NODES_DATA_DIR": str(self.data_dir)})
        self.server.start()
        put_tiny_models(self.server)
        return self.server.startup_seconds or 0.0

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop ComfyUI's whole process group with ``sig`` (SIGKILL: nothing of ours runs)."""
        assert self.server is not None and self.server.process is not None
        if sig == signal.SIGTERM:
            self.server.stop()
        else:
            os.killpg(self.server.process.pid, sig)
            self.server.process.wait(20)
        self.server = None

    def client(self) -> ComfyClient:
        assert self.server is not None
        return self.server.client()

    def configure(self, *, env: Optional[dict[str, str]] = None, **settings: Any) -> None:
        data = {"musubi_tuner": {"venv_path": str(self.fake.venv), "root_path": str(self.fake.root)}, **settings,
                "env": {"FAKE_MUSUBI_PIDFILE": str(self.pidfile), "FAKE_MUSUBI_ENVFILE": str(self.envfile),
                        **(env or {})}}
        path = self.base / "user" / "__musubi-tuner-nodes" / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data), encoding="utf-8")

    # -- workflows ----------------------------------------------------------------------------

    def image_folder(self, name: str, count: int = 3) -> str:
        folder = self.base / "input" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, count + 1):
            (folder / f"img{i}.png").write_bytes(png_bytes(64, 64))
            (folder / f"img{i}.txt").write_text(f"a photo number {i}", encoding="utf-8")
        return name

    @staticmethod
    def workflow(folder: str, *, cache: bool = True, trains: tuple[str, ...] = ("bg",), **train: Any) -> dict:
        """dataset (1) -> models (2) [-> cache latents (3) -> cache text encoder (4)] -> one Train
        node per name in ``trains`` (ids 5, 6, ...), run_as background unless told otherwise."""
        prompt: dict[str, Any] = {
            "1": {"class_type": "MusubiDatasetConfig", "inputs": {
                "media": "image", "directory": folder, "caption_extension": ".txt", "width": 64, "height": 64,
                "batch_size": 1, "num_repeats": 1, "enable_bucket": False, "bucket_no_upscale": False,
                "target_frames": "1", "frame_extraction": "head", "frame_stride": 1, "frame_sample": 1,
                "max_frames": 129, "source_fps": 0.0}},
            "2": {"class_type": "MusubiModelsWan", "inputs": {
                "task": "t2v-1.3B", "one_frame": False, "dit": tiny("diffusion_models"), "vae": tiny("vae"),
                "t5": tiny("text_encoders"), "clip": tiny("clip_vision"), "dit_high_noise": "(none)"}},
        }
        source = ["1", 0]
        if cache:
            prompt["3"] = {"class_type": "MusubiCacheLatents", "inputs": {"dataset": ["1", 0], "models": ["2", 0]}}
            prompt["4"] = {"class_type": "MusubiCacheTextEncoder", "inputs": {"dataset": ["3", 0], "models": ["2", 0]}}
            source = ["4", 0]
        for i, name in enumerate(trains):
            inputs = {"dataset": source, "models": ["2", 0], "output_name": name, "max_train_epochs": 2,
                      "optimizer_type": "AdamW", "run_as": "background"}
            inputs.update(train)
            prompt[str(5 + i)] = {"class_type": "MusubiTrainLoRA", "inputs": inputs}
        return prompt

    def cache(self, folder: str) -> None:
        run = self.client().run(self.workflow(folder, trains=()), timeout=120)
        assert run.outcome == "success", run.terminal.data if run.terminal else run.types

    def queue(self, folder: str, names: tuple[str, ...] = ("bg",), **train: Any) -> list[str]:
        """Queue background training (caches made before); the job ids, in node order."""
        run = self.client().run(self.workflow(folder, cache=False, trains=names, **train), timeout=60)
        assert run.outcome == "success", run.terminal.data if run.terminal else run.types
        outputs = {m.data["node"]: m.data["output"] for m in run.of_type("executed")}
        return [outputs[str(5 + i)]["job_id"][0] for i in range(len(names))]

    # -- jobs ---------------------------------------------------------------------------------

    def job(self, job_id: str) -> dict[str, Any]:
        return self.client().get(f"/api/musubi-tuner/jobs/{job_id}")

    def until(self, job_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 90) -> dict[str, Any]:
        started = time.monotonic()
        deadline = started + timeout
        seen: list[str] = []  # what each look found, for the message when it fails
        while True:
            job = self.job(job_id)
            if done(job):
                return job
            look = f"{job['state']} {job['progress']['step']}"
            if not seen or not seen[-1].endswith(look):
                seen.append(f"{time.monotonic() - started:.1f}s {look}")
            delivering = job["state"] == "succeeded" and job["kind"] == "train" and job["lora"] is None
            assert job["state"] not in ("succeeded", "failed", "cancelled", "lost") or delivering, \
                f"job {job_id} ended ({job['state']}: {job['reason']}) before it got there: {seen}"
            assert time.monotonic() < deadline, f"job {job_id} stuck: {seen} {job['log_tail']}"
            time.sleep(0.2)

    @property
    def loras(self) -> Path:
        return self.base / "models" / "loras" / "musubi-tuner"

    # -- processes ----------------------------------------------------------------------------

    def pids(self, roles: tuple[str, ...] = ("launcher", "script", "worker")) -> list[int]:
        """Living processes the fake started (caching runs included, long gone)."""
        if not self.pidfile.exists():
            return []
        return alive(int(pid) for role, pid in (line.split() for line in self.pidfile.read_text().splitlines() if line)
                     if role in roles)

    def wrappers(self) -> list[int]:
        """Living job wrappers whose run folder is under this ComfyUI's base folder."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if any(a.endswith(WRAPPER) for a in cmdline) and any(str(self.base) in a for a in cmdline):
                found.append(proc.pid)
        return alive(found)

    def env_records(self) -> list[dict[str, Any]]:
        """What each training script started with (caching scripts left out)."""
        if not self.envfile.exists():
            return []
        records = [json.loads(line) for line in self.envfile.read_text().splitlines() if line.strip()]
        return [r for r in records if "train" in r["script"]]


def job_steps(messages: list[Any], job_id: str) -> list[int]:
    """The steps ``musubi_tuner.job`` events reported for ``job_id``, in order."""
    return [m.data["progress"]["step"] for m in messages
            if m.type == JOB_EVENT and m.data.get("id") == job_id and m.data["progress"]["step"] is not None]


def running_comfy(comfy_install: ComfyInstall, fake_musubi: FakeMusubi, tmp_path: Path,
                  hardening: Any) -> Iterator[JobsComfy]:
    """A started JobsComfy for one test; afterwards no process and no active job may be left
    (recorded for the jobs fault table)."""
    from executor.runs.jobstore import JobStore

    comfy = JobsComfy(comfy_install, fake_musubi, tmp_path / "Comfy UI", tmp_path)
    comfy.configure()
    comfy.start()
    try:
        yield comfy
    finally:
        if comfy.server is not None:
            comfy.stop()
        left = wait_all_gone(comfy.pids() + comfy.wrappers(), 10)
        stuck = [f"{j.name} {j.state}" for j in JobStore.in_folder(str(comfy.data_dir)).list() if j.active]
        hardening.record(processes_left=len(left), jobs_stuck=len(stuck))
        for pid in left:
            psutil.Process(pid).kill()
        assert left == [] and stuck == [], f"left behind: processes {left}, active jobs {stuck}"

"""Shared set-up of the background job tests at executor level (a pytest plugin: load it with
``pytest_plugins = ["hardening", "jobs_support"]``): a cached dataset, model files and settings for
the fake musubi venv (tests/fakes.py), a job store in a scratch data folder, plans for training
into a folder per job, and helpers that tick a manager until a job gets somewhere. The ``bench``
fixture fails a test that leaves a process or an active job behind, and records both counts for
the jobs fault table (tests/hardening_cases.py JOBS, .ci/jobs_table.py).

Every process the fake starts is written to ``pids.txt`` (FAKE_MUSUBI_PIDFILE) and every script
start with its CUDA_VISIBLE_DEVICES to ``env.jsonl`` (FAKE_MUSUBI_ENVFILE), so a test can tell
what ran where and that nothing was left behind.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest

import media
from executor.runs.execute import execute_plan
from executor.runs.jobs import JobManager
from executor.runs.jobstore import Job, JobStore
from executor.runs.plan import PlanSpec, make_plan
from executor.setup.discovery import resolve_install
from executor.setup.settings import Settings
from fakes import FakeMusubi
from procs import alive, wait_all_gone


class Bench:
    """One fake musubi install, its caches and a job store, for one test."""

    def __init__(self, tmp: Path, fake: FakeMusubi, **env: str) -> None:
        self.tmp = tmp
        self.fake = fake
        self.pidfile = tmp / "pids.txt"
        self.envfile = tmp / "env.jsonl"
        self.toml = fake.make_dataset(tmp / "data")
        self.models = {name: str(media.fake_safetensors(tmp / "models" / f"{name}.safetensors"))
                       for name in ("dit", "vae", "t5")}
        self.settings = Settings(venv_path=str(fake.venv), root_path=str(fake.root),
                                 env={"FAKE_MUSUBI_PIDFILE": str(self.pidfile),
                                      "FAKE_MUSUBI_ENVFILE": str(self.envfile), **env})
        self.install = resolve_install(self.settings)
        self.data_dir = tmp / "jobs data"
        self.store = JobStore.in_folder(str(self.data_dir))
        self.managers: list[JobManager] = []
        for step in ("cache_latents", "cache_text_encoder"):
            assert execute_plan(self.plan(step, output_dir=None, output_name=None)).ok
        for record in (self.pidfile, self.envfile):  # from here on: only what the jobs start
            record.unlink(missing_ok=True)

    def configure(self, **changes: Any) -> None:
        """Change the settings (``env`` entries are added to the fake's knobs)."""
        env = dict(self.settings.env)
        env.update(changes.pop("env", {}))
        self.settings = replace(self.settings, env=env, **changes)

    def plan(self, step: str = "train", *, name: str = "lora", epochs: int = 2,
             accelerate: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        values: dict[str, Any] = dict(
            architecture="wan", step=step, dataset_config=str(self.toml), models=self.models,
            selectors={"task": "t2v-1.3B"}, options={"max_train_epochs": epochs, "optimizer_type": "adamw"},
            output_dir=str(self.tmp / "out" / name), output_name=name, runs_dir=str(self.tmp / "runs"),
            accelerate=accelerate or {})
        values.update(kwargs)
        return make_plan(self.settings, PlanSpec(**values), install=self.install, use_probe=False)

    def manager(self, **kwargs: Any) -> JobManager:
        manager = JobManager(self.store, lambda: self.settings, **kwargs)
        self.managers.append(manager)
        return manager

    def close(self) -> None:
        for manager in self.managers:
            manager.close()

    # -- waiting ----------------------------------------------------------------------------

    def until(self, manager: JobManager | None, job_id: str, done: Callable[[Job], bool],
              timeout: float = 60.0) -> Job:
        """Tick ``manager`` (None: only read the store) until ``done(job)``; the job."""
        started = time.monotonic()
        deadline = started + timeout
        seen: list[str] = []  # what each look found, for the message when it fails
        while True:
            if manager is not None:
                manager.tick()
            job = self.store.get(job_id)
            assert job is not None, f"job {job_id} vanished"
            if done(job):
                return job
            seen.append(f"{time.monotonic() - started:.1f}s {job.state} {job.progress.get('step')}")
            assert not job.final, f"job {job_id} ended ({job.state}: {job.reason}) before it got there: {seen}"
            assert time.monotonic() < deadline, f"job {job_id} stuck: {job.state} {job.progress} {job.tail[-5:]}"
            time.sleep(0.1)

    def final(self, manager: JobManager | None, job_id: str, timeout: float = 60.0) -> Job:
        return self.until(manager, job_id, lambda j: j.final, timeout)

    # -- what the fake recorded ---------------------------------------------------------------

    def pids(self, roles: Iterable[str] = ("launcher", "script", "worker")) -> list[int]:
        if not self.pidfile.exists():
            return []
        return [int(pid) for role, pid in (line.split() for line in self.pidfile.read_text().splitlines() if line)
                if role in roles]

    def living(self) -> list[int]:
        return alive(self.pids())

    def env_records(self) -> list[dict[str, Any]]:
        if not self.envfile.exists():
            return []
        return [json.loads(line) for line in self.envfile.read_text().splitlines() if line.strip()]


@pytest.fixture
def bench(fake_musubi: FakeMusubi, tmp_path: Path, hardening: Any) -> Iterator[Bench]:
    bench = Bench(tmp_path, fake_musubi)
    yield bench
    bench.close()
    left = wait_all_gone(bench.pids(), 10)
    stuck = [f"{j.name} {j.state} {j.progress}" for j in bench.store.list() if j.active]
    hardening.record(processes_left=len(left), jobs_stuck=len(stuck))
    assert left == [] and stuck == [], f"left behind: processes {left}, active jobs {stuck}"

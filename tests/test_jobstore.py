"""The job store: one SQLite file, transitions that check the state they expect, dedupe by key,
the manager lease, and several real processes writing at once (no lost update, no double move).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("hardening", "jobs_support")

import hardening  # noqa: E402,F401  (registers the marker before the decorators below)

from executor.runs.jobstore import ACTIVE, FINAL, STATES, Job, JobStore, new_job_id, valid_job_id

pytest_plugins = ["hardening"]
pytestmark = pytest.mark.timeout(120)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def job(**values: object) -> Job:
    base = dict(id=new_job_id(), kind="train", name="x", plan={"run_dir": "/r"}, run_dir="/r")
    base.update(values)
    return Job(**base)  # type: ignore[arg-type]


def test_reading_a_store_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    store = JobStore.in_folder(str(tmp_path / "data"))
    assert store.list() == [] and store.get(new_job_id()) is None and store.queue_order() == []
    assert not (tmp_path / "data").exists()


def test_a_job_round_trips_with_its_json_fields(tmp_path: Path) -> None:
    store = JobStore.in_folder(str(tmp_path / "data"))
    added, inserted = store.add(job(gpus=[1], meta={"architecture": "wan", "ü": "ユ"}, tail=["a"],
                                    progress={"step": 3}))
    assert inserted and added.queued_at > 0
    got = store.get(added.id)
    assert got == added and got.meta["ü"] == "ユ" and got.state == "queued" and got.delivered is None
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_a_change_happens_only_from_an_expected_state(tmp_path: Path) -> None:
    store = JobStore.in_folder(str(tmp_path))
    j, _ = store.add(job())
    assert store.update(j.id, {"running"}, state="succeeded") is None  # it is queued
    assert store.get(j.id).state == "queued"
    started = store.update(j.id, {"queued"}, state="starting", pid=12, gpus=[0])
    assert started.state == "starting" and started.pid == 12 and started.gpus == [0]
    assert store.update(j.id, {"queued"}, state="starting") is None  # a second claim fails
    with pytest.raises(ValueError):
        store.update(j.id, {"starting"}, state="nonsense")
    with pytest.raises(ValueError):
        store.update(j.id, {"starting"}, colour="blue")
    assert store.update(new_job_id(), {"queued"}, state="failed") is None


def test_an_active_job_with_the_same_key_is_returned_instead_of_a_second(tmp_path: Path) -> None:
    store = JobStore.in_folder(str(tmp_path))
    first, inserted = store.add(job(key="k"))
    twin, again = store.add(job(key="k"))
    assert inserted and not again and twin.id == first.id
    store.update(first.id, {"queued"}, state="cancelled")
    third, inserted = store.add(job(key="k"))
    assert inserted and third.id != first.id


def test_lists_are_newest_first_and_the_queue_oldest_first(tmp_path: Path) -> None:
    clock = iter(range(100, 200)).__next__
    store = JobStore(str(tmp_path / "jobs.db"), clock=lambda: float(clock()))
    ids = [store.add(job(name=str(i)))[0].id for i in range(3)]
    store.update(ids[1], {"queued"}, state="failed")
    assert [j.id for j in store.list()] == ids[::-1]
    assert [j.id for j in store.queue_order()] == [ids[0], ids[2]]
    assert [j.id for j in store.list({"failed"})] == [ids[1]]
    assert store.delete(ids[0]) and not store.delete(ids[1])  # only queued jobs are removed
    assert [j.id for j in store.changed_since(0)][-1] == ids[1]


def test_states_and_ids() -> None:
    assert set(STATES) == ACTIVE | FINAL and not ACTIVE & FINAL
    assert valid_job_id(new_job_id())
    for bad in ("", "../etc", new_job_id().upper(), new_job_id()[:31], new_job_id() + "0", None, 5):
        assert not valid_job_id(bad)


def test_the_lease_goes_to_one_holder_until_it_is_gone(tmp_path: Path) -> None:
    store = JobStore.in_folder(str(tmp_path))
    store.add(job())
    a, b = {"pid": 1, "m": "a"}, {"pid": 2, "m": "b"}
    living = {"a"}
    alive = lambda holder: holder["m"] in living  # noqa: E731
    assert store.take_lease("manager", a, alive)
    assert not store.take_lease("manager", b, alive)
    assert store.take_lease("manager", a, alive)  # ours: refreshed
    living.clear()
    assert store.take_lease("manager", b, alive) and store.lease_holder("manager") == b
    store.drop_lease("manager", b)
    assert store.lease_holder("manager") is None


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from executor.runs.jobstore import JobStore
    store = JobStore({path!r})
    won = 0
    for job in store.queue_order():
        if store.update(job.id, {{"queued"}}, state="starting", pid={n}) is not None:
            won += 1
    for i in range(10):
        for job in store.list({{"starting"}}):
            store.update(job.id, {{"starting"}}, progress={{"writer": {n}, "i": i}})
    print(won)
""")


@pytest.mark.hardening("jobs", "store_race")
def test_processes_racing_for_the_same_jobs_never_move_one_twice(tmp_path: Path, hardening: Any) -> None:
    store = JobStore.in_folder(str(tmp_path))
    ids = [store.add(job(name=str(i)))[0].id for i in range(40)]
    procs = []
    for n in range(4):
        script = tmp_path / f"w{n}.py"
        script.write_text(WRITER.format(root=str(PROJECT_ROOT), path=store.path, n=n), encoding="utf-8")
        procs.append(subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}))
    outputs = [p.communicate(timeout=100) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    won = [int(out) for out, _ in outputs]
    hardening.record(processes_left=len([p for p in procs if p.poll() is None]))
    assert sum(won) == len(ids), won  # every job claimed exactly once
    jobs = [store.get(i) for i in ids]
    assert all(j.state == "starting" for j in jobs)
    assert all(json.dumps(j.progress).startswith('{"writer"') or j.progress == {} for j in jobs)

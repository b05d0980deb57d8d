"""The background job store: one SQLite file (``<data dir>/jobs.db``, WAL), one row per job.

A job moves queued -> starting -> running -> stopping -> succeeded | failed | cancelled | lost
(any active state may also end directly). Every change is one short ``BEGIN IMMEDIATE``
transaction that first checks the state it expects, so two writers (ComfyUI's manager, the
``jobs`` command line, a second ComfyUI of the same user) can never both move one job, and a
write that finds the database locked is retried. JSON columns hold the plan, GPUs, progress,
the log tail and the caller's ``meta``. Nothing here starts a process. Standard library only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterable, Optional

__all__ = ["Job", "JobStore", "STATES", "ACTIVE", "FINAL", "new_job_id", "valid_job_id", "DB_FILE"]

DB_FILE = "jobs.db"
STATES = ("queued", "starting", "running", "stopping", "succeeded", "failed", "cancelled", "lost")
ACTIVE = frozenset(STATES[:4])
FINAL = frozenset(STATES[4:])
SCHEMA_VERSION = 1
RETRY_FOR = 15.0  # seconds a write keeps retrying "database is locked"
_JSON = ("plan", "gpus", "cmdline", "tail", "progress", "meta", "delivered")
_DURABLE = {"state", "pid", "create_time", "cmdline", "delivered", "gpus"}  # what a restart must find

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    key TEXT,
    plan TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    state TEXT NOT NULL,
    gpus TEXT NOT NULL DEFAULT '[]',
    pid INTEGER,
    create_time REAL,
    cmdline TEXT,
    queued_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    exit_code INTEGER,
    reason TEXT,
    hint TEXT,
    tail TEXT NOT NULL DEFAULT '[]',
    progress TEXT NOT NULL DEFAULT '{}',
    log_offset INTEGER NOT NULL DEFAULT 0,
    meta TEXT NOT NULL DEFAULT '{}',
    delivered TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_key ON jobs (key);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    heartbeat REAL NOT NULL
);
"""


def new_job_id() -> str:
    return uuid.uuid4().hex


def valid_job_id(text: Any) -> bool:
    """32 lowercase hex characters (a uuid4 hex): nothing else ever names a job."""
    return isinstance(text, str) and len(text) == 32 and all(c in "0123456789abcdef" for c in text)


@dataclass
class Job:
    """One row. Times are epoch seconds; ``progress`` holds phase, step, total, epoch, epochs,
    loss, rate, eta; ``meta`` belongs to the caller (architecture, output name, delivery...)."""

    id: str
    kind: str
    name: str
    plan: dict[str, Any]
    run_dir: str
    state: str = "queued"
    key: Optional[str] = None
    gpus: list[int] = field(default_factory=list)
    pid: Optional[int] = None
    create_time: Optional[float] = None
    cmdline: Optional[list[str]] = None
    queued_at: float = 0.0
    started_at: Optional[float] = None
    ended_at: Optional[float] = None
    exit_code: Optional[int] = None
    reason: Optional[str] = None
    hint: Optional[str] = None
    tail: list[str] = field(default_factory=list)
    progress: dict[str, Any] = field(default_factory=dict)
    log_offset: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    delivered: Optional[dict[str, Any]] = None
    updated_at: float = 0.0

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def final(self) -> bool:
        return self.state in FINAL


_COLUMNS = [f.name for f in fields(Job)]


def _row_to_job(row: sqlite3.Row) -> Job:
    values = {name: row[name] for name in _COLUMNS}
    for name in _JSON:
        text = values[name]
        values[name] = json.loads(text) if text is not None else None
    values["gpus"] = values["gpus"] or []
    values["tail"] = values["tail"] or []
    values["progress"] = values["progress"] or {}
    values["meta"] = values["meta"] or {}
    return Job(**values)


def _encode(name: str, value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if name in _JSON and value is not None else value


class JobStore:
    """The store at ``path``. Reads of a store that does not exist yet return nothing and
    create nothing; the first write creates it (and its folder)."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = os.path.abspath(path)
        self._clock = clock
        self._ready = False
        self._init_lock = threading.Lock()

    @classmethod
    def in_folder(cls, folder: str) -> "JobStore":
        return cls(os.path.join(folder, DB_FILE))

    def exists(self) -> bool:
        return os.path.exists(self.path)

    # -- connections ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # A connection per call: threads (the manager's, aiohttp's pool) never share one, and
        # opening a SQLite file costs well under a millisecond.
        conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn

    def _ensure(self) -> None:
        if self._ready:
            return
        with self._init_lock:
            if self._ready:
                return
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            conn = self._connect()
            try:
                # Every first use in every process comes here: each statement may meet another
                # process's write and is retried like any write.
                if _retry(lambda: conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    _retry(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
                if _retry(lambda: conn.execute("PRAGMA user_version").fetchone()[0]) != SCHEMA_VERSION:
                    _retry(lambda: conn.executescript(_SCHEMA))
                    _retry(lambda: conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}"))
            finally:
                conn.close()
            self._ready = True

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        if not self._ready and not self.exists():
            return []
        self._ensure()
        conn = self._connect()
        try:
            return _retry(lambda: conn.execute(sql, tuple(args)).fetchall())
        finally:
            conn.close()

    def _write(self, work: Callable[[sqlite3.Connection], Any], *, durable: bool = True) -> Any:
        """``work(conn)`` inside BEGIN IMMEDIATE ... COMMIT, retried while the file is locked.

        ``durable``: the commit reaches the disk before we go on (a state change). Progress is
        written without that wait (WAL with synchronous=NORMAL: safe against a crash of any
        process, only the last progress may be lost to a power cut, and the next durable
        commit carries it too): a fsync per progress update costs seconds on a busy disk."""
        self._ensure()
        conn = self._connect()
        if not durable:
            conn.execute("PRAGMA synchronous=NORMAL")
        try:
            def once() -> Any:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return result
            return _retry(once)
        finally:
            conn.close()

    # -- jobs -------------------------------------------------------------------------------

    def add(self, job: Job, *, dedupe: bool = True) -> tuple[Job, bool]:
        """Insert ``job`` (queued). With ``dedupe`` and a ``key``, an active job with the same
        key is returned instead (one transaction: two submits cannot both insert). Returns
        (the job, inserted?)."""
        now = self._clock()
        job.queued_at = job.queued_at or now
        job.updated_at = now

        def work(conn: sqlite3.Connection) -> tuple[Job, bool]:
            if dedupe and job.key is not None:
                marks = ",".join("?" * len(ACTIVE))
                row = conn.execute(f"SELECT * FROM jobs WHERE key = ? AND state IN ({marks}) "
                                   "ORDER BY queued_at LIMIT 1", (job.key, *sorted(ACTIVE))).fetchone()
                if row is not None:
                    return _row_to_job(row), False
            names = ",".join(_COLUMNS)
            conn.execute(f"INSERT INTO jobs ({names}) VALUES ({','.join('?' * len(_COLUMNS))})",
                         [_encode(n, getattr(job, n)) for n in _COLUMNS])
            return job, True

        return self._write(work)

    def get(self, job_id: str) -> Optional[Job]:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _row_to_job(rows[0]) if rows else None

    def list(self, states: Optional[Iterable[str]] = None, *, limit: Optional[int] = None) -> list[Job]:
        """Newest first."""
        sql, args = "SELECT * FROM jobs", []
        if states is not None:
            chosen = sorted(set(states))
            sql += f" WHERE state IN ({','.join('?' * len(chosen))})"
            args += chosen
        sql += " ORDER BY queued_at DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return [_row_to_job(r) for r in self._read(sql, args)]

    def changed_since(self, since: float) -> list[Job]:
        """Jobs whose row changed at or after ``since`` (epoch seconds), oldest change first."""
        rows = self._read("SELECT * FROM jobs WHERE updated_at >= ? ORDER BY updated_at", (since,))
        return [_row_to_job(r) for r in rows]

    def queue_order(self) -> list[Job]:
        """Active jobs, first queued first (the FIFO the scheduler walks)."""
        marks = ",".join("?" * len(ACTIVE))
        rows = self._read(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY queued_at, rowid",
                          sorted(ACTIVE))
        return [_row_to_job(r) for r in rows]

    def update(self, job_id: str, expect: Iterable[str], **changes: Any) -> Optional[Job]:
        """Apply ``changes`` if the job is in one of the ``expect`` states, in one transaction;
        the updated job, or None when it was not (moved on, or gone)."""
        unknown = set(changes) - set(_COLUMNS)
        if unknown or "id" in changes:
            raise ValueError(f"not job columns: {sorted(unknown | {'id'} & set(changes))}")
        if "state" in changes and changes["state"] not in STATES:
            raise ValueError(f"unknown state {changes['state']!r}")
        expected = sorted(set(expect))
        changes["updated_at"] = self._clock()

        def work(conn: sqlite3.Connection) -> Optional[Job]:
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["state"] not in expected:
                return None
            assignments = ", ".join(f"{name} = ?" for name in changes)
            conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?",
                         [_encode(n, v) for n, v in changes.items()] + [job_id])
            return _row_to_job(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

        return self._write(work, durable=bool(set(changes) & _DURABLE))

    def delete(self, job_id: str, expect: Iterable[str] = ("queued",)) -> bool:
        expected = sorted(set(expect))

        def work(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(f"DELETE FROM jobs WHERE id = ? AND state IN ({','.join('?' * len(expected))})",
                                  (job_id, *expected))
            return cursor.rowcount == 1

        return self._write(work)

    # -- the manager lease --------------------------------------------------------------------

    def take_lease(self, name: str, holder: dict[str, Any], holder_alive: Callable[[dict[str, Any]], bool]) -> bool:
        """Hold lease ``name`` (one active job manager per store) if it is free, ours, or its
        holder is gone (``holder_alive`` says); refreshes our heartbeat. True when we hold it."""
        mine = json.dumps(holder, sort_keys=True)

        def work(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT holder FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row["holder"] != mine:
                try:
                    current = json.loads(row["holder"])
                except ValueError:
                    current = None
                if isinstance(current, dict) and holder_alive(current):
                    return False
            conn.execute("INSERT OR REPLACE INTO leases (name, holder, heartbeat) VALUES (?, ?, ?)",
                         (name, mine, self._clock()))
            return True

        return self._write(work, durable=False)

    def lease_holder(self, name: str) -> Optional[dict[str, Any]]:
        rows = self._read("SELECT holder FROM leases WHERE name = ?", (name,))
        try:
            return json.loads(rows[0]["holder"]) if rows else None
        except ValueError:
            return None

    def drop_lease(self, name: str, holder: dict[str, Any]) -> None:
        mine = json.dumps(holder, sort_keys=True)
        self._write(lambda conn: conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, mine)))


def _retry(action: Callable[[], Any]) -> Any:
    """Run ``action``; while SQLite says the database is locked or busy, try again (with a
    growing pause) for up to RETRY_FOR seconds."""
    deadline = time.monotonic() + RETRY_FOR
    pause = 0.01
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.25)

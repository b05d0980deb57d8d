"""The record of training states the pack itself saw musubi write, so ``--resume`` (which makes
accelerate unpickle files) only ever loads those: ``<data dir>/states.db`` (SQLite, standard library).

The data folder is the pack's per-user folder (``folders.default_data_dir``), outside ComfyUI's input,
output and user folders, so no ComfyUI route can write it; the state folders themselves usually sit
in ComfyUI's output folder, which clients can upload into, hence the per-file SHA-256 checked
again when a state is used. Two tables:

    runs    one row per training run folder: its id, the spec it was planned from (to continue it
            without anything a client could have edited), what musubi reported (total steps,
            epochs, steps per epoch), and for a continuation its parent and offsets
    states  one row per complete state folder: path, run, kind (epoch/step/final/outside),
            position (epoch, step of the whole plan) and {file: {sha256, size}}

Writers are short transactions (``BEGIN IMMEDIATE``, 30 s busy timeout): a ComfyUI, the command
line and a background job may record at the same time.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from typing import Any, Iterator, Optional

from .folders import default_data_dir

__all__ = ["REGISTRY_FILE", "Registry", "path_key", "registry_path"]

REGISTRY_FILE = "states.db"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS runs (run_dir TEXT PRIMARY KEY, run_id TEXT NOT NULL, created REAL NOT NULL,"
    " data TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS runs_id ON runs (run_id)",
    "CREATE TABLE IF NOT EXISTS states (path TEXT PRIMARY KEY, run_dir TEXT, kind TEXT NOT NULL, number INTEGER,"
    " epoch INTEGER, step INTEGER, files TEXT NOT NULL, size INTEGER NOT NULL, recorded REAL NOT NULL,"
    " origin TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS states_run ON states (run_dir)",
)


def registry_path(environ: Any = None) -> str:
    return os.path.join(default_data_dir(environ), REGISTRY_FILE)


def path_key(path: str) -> str:
    """How a folder is named in the registry: absolute, links resolved, case-folded on Windows."""
    return os.path.normcase(os.path.realpath(os.path.abspath(os.path.expanduser(path))))


class Registry:
    """The state record at ``path`` (default ``<data dir>/states.db``). Every call opens its own
    connection, so one Registry may be used from several threads."""

    def __init__(self, path: Optional[str] = None) -> None:
        self.path = path or registry_path()

    @contextlib.contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        target = self.path
        if not write and not os.path.exists(target):
            target = ":memory:"  # nothing recorded yet: reading creates no file
        elif write and not os.path.isdir(os.path.dirname(target)):
            os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        conn = sqlite3.connect(target, timeout=30, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            if write:
                conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            yield conn
            if write:
                conn.execute("COMMIT")
        except BaseException:
            if write and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    # ------------------------------------------------------------------ runs

    def add_run(self, run_dir: str, data: dict[str, Any]) -> None:
        key = path_key(run_dir)
        row = dict(data, run_dir=key, run_id=os.path.basename(key))
        with self._db(write=True) as db:
            db.execute("INSERT OR REPLACE INTO runs (run_dir, run_id, created, data) VALUES (?, ?, ?, ?)",
                       (key, row["run_id"], time.time(), json.dumps(row)))

    def update_run(self, run_dir: str, **changes: Any) -> Optional[dict[str, Any]]:
        """Merge ``changes`` into the run's data (``facts`` is merged key by key)."""
        key = path_key(run_dir)
        with self._db(write=True) as db:
            found = db.execute("SELECT data FROM runs WHERE run_dir = ?", (key,)).fetchone()
            if found is None:
                return None
            data = json.loads(found["data"])
            for name, value in changes.items():
                if name == "facts" and isinstance(value, dict):
                    data["facts"] = {**(data.get("facts") or {}), **value}
                else:
                    data[name] = value
            db.execute("UPDATE runs SET data = ? WHERE run_dir = ?", (json.dumps(data), key))
        return data

    def run(self, run_dir: str) -> Optional[dict[str, Any]]:
        with self._db() as db:
            found = db.execute("SELECT data FROM runs WHERE run_dir = ?", (path_key(run_dir),)).fetchone()
        return json.loads(found["data"]) if found else None

    def runs(self) -> list[dict[str, Any]]:
        """Every recorded run, newest first."""
        with self._db() as db:
            rows = db.execute("SELECT data FROM runs ORDER BY created DESC").fetchall()
        return [json.loads(r["data"]) for r in rows]

    def runs_named(self, run_id: str) -> list[dict[str, Any]]:
        with self._db() as db:
            rows = db.execute("SELECT data FROM runs WHERE run_id = ? ORDER BY created DESC", (run_id,)).fetchall()
        return [json.loads(r["data"]) for r in rows]

    # ------------------------------------------------------------------ states

    def add_state(self, path: str, *, run_dir: Optional[str], kind: str, number: Optional[int],
                  epoch: Optional[int], step: Optional[int], files: dict[str, dict[str, Any]],
                  origin: str = "run") -> dict[str, Any]:
        key = path_key(path)
        row = {"path": key, "run_dir": path_key(run_dir) if run_dir else None, "kind": kind, "number": number,
               "epoch": epoch, "step": step, "files": files,
               "size": sum(int(f.get("size") or 0) for f in files.values()), "recorded": time.time(),
               "origin": origin}
        with self._db(write=True) as db:
            db.execute("INSERT OR REPLACE INTO states (path, run_dir, kind, number, epoch, step, files, size, recorded,"
                       " origin) VALUES (:path, :run_dir, :kind, :number, :epoch, :step, :files, :size, :recorded,"
                       " :origin)", dict(row, files=json.dumps(files)))
        return row

    def state(self, path: str) -> Optional[dict[str, Any]]:
        with self._db() as db:
            found = db.execute("SELECT * FROM states WHERE path = ?", (path_key(path),)).fetchone()
        return _state_row(found) if found else None

    def states(self, run_dir: Optional[str] = None) -> list[dict[str, Any]]:
        """A run's states (all states when ``run_dir`` is None; outside states have none)."""
        with self._db() as db:
            if run_dir is None:
                rows = db.execute("SELECT * FROM states ORDER BY recorded").fetchall()
            else:
                rows = db.execute("SELECT * FROM states WHERE run_dir = ? ORDER BY recorded",
                                  (path_key(run_dir),)).fetchall()
        return [_state_row(r) for r in rows]

    def forget_state(self, path: str) -> None:
        with self._db(write=True) as db:
            db.execute("DELETE FROM states WHERE path = ?", (path_key(path),))

    def move_state(self, old: str, new: str, **changes: Any) -> None:
        """A state folder was renamed (a continuation's files take the run's numbering)."""
        with self._db(write=True) as db:
            found = db.execute("SELECT * FROM states WHERE path = ?", (path_key(old),)).fetchone()
            if found is None:
                return
            row = dict(_state_row(found), **changes, path=path_key(new))
            db.execute("DELETE FROM states WHERE path = ?", (path_key(old),))
            db.execute("INSERT OR REPLACE INTO states (path, run_dir, kind, number, epoch, step, files, size, recorded,"
                       " origin) VALUES (:path, :run_dir, :kind, :number, :epoch, :step, :files, :size, :recorded,"
                       " :origin)", dict(row, files=json.dumps(row["files"])))


def _state_row(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["files"] = json.loads(data["files"])
    return data

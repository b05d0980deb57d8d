"""What IS_CHANGED hashes: the real inputs behind a node (folder contents, file stats), plus, for
step nodes, whether the files they wrote last time still exist (``OutputRecords``): ComfyUI passes
IS_CHANGED only the constant inputs, so a step node cannot see its dataset there. Stdlib only.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any, Iterable, Optional


def digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:32]


def file_state(path: str) -> tuple:
    """(size, mtime_ns) of a file, or a marker when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return ("missing",)
    return (st.st_size, st.st_mtime_ns)


def folder_state(path: Optional[str], *, recursive: bool = False) -> tuple:
    """Names, sizes and mtimes of the files in a folder (sorted); a missing folder is a value
    too, so creating it later changes the fingerprint."""
    if not path:
        return ()
    if not os.path.isdir(path):
        return ("missing", path)
    entries: list[tuple] = []
    if recursive:
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in files:
                full = os.path.join(root, name)
                entries.append((os.path.relpath(full, path),) + file_state(full))
    else:
        try:
            with os.scandir(path) as it:
                for entry in it:
                    if entry.is_file():
                        st = entry.stat()
                        entries.append((entry.name, st.st_size, st.st_mtime_ns))
        except OSError as exc:
            return ("unreadable", path, str(exc))
    entries.sort()
    return (path, tuple(entries))


class OutputRecords:
    """Files each step node wrote on its last successful run, keyed by (node class, node id).

    ``token`` is what IS_CHANGED returns: stable while the recorded files exist; when one
    disappeared the record's generation goes up once, so the node re-runs, and after that
    run the same (new) token is returned again, so the next queue is a cache hit.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], dict[str, Any]] = {}

    def token(self, kind: str, node_id: Optional[str], inputs_digest: str) -> str:
        key = (kind, str(node_id))
        with self._lock:
            record = self._records.get(key)
            if record is None:
                return f"{inputs_digest}:0"
            if not record["stale"] and not all(os.path.exists(p) for p in record["files"]):
                record["generation"] += 1
                record["stale"] = True
            return f"{inputs_digest}:{record['generation']}"

    def record(self, kind: str, node_id: Optional[str], files: Iterable[str]) -> None:
        key = (kind, str(node_id))
        files = [os.path.abspath(f) for f in files]
        with self._lock:
            record = self._records.setdefault(key, {"generation": 0, "stale": False, "files": []})
            record["files"] = files
            record["stale"] = False


OUTPUTS = OutputRecords()

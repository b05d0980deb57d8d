"""Training state folders as musubi writes them: their names, when one is complete, the SHA-256 of
each file, a verified private copy for ``--resume``, and removing old ones. Standard library only.

musubi (``utils/train_utils.py``) names them ``<name>-000002-state`` (epoch), ``<name>-step00000100-state``
(step) and ``<name>-state`` (end of training); accelerate's ``save_state`` writes ``model.safetensors``,
``optimizer.bin``, ``scheduler.bin`` (+ ``scaler.pt`` with fp16) and, last, ``random_states_0.pkl``:
a folder without that file is a save that was cut short.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from dataclasses import dataclass
from typing import Optional

__all__ = ["MARKER", "StateFolder", "parse_state_name", "state_folders", "is_complete", "hash_files",
           "StateChanged", "stage_copy", "remove_state", "same_path", "EPOCH", "STEP", "FINAL"]

MARKER = "random_states_0.pkl"
EPOCH, STEP, FINAL = "epoch", "step", "final"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StateFolder:
    """One state folder of a run: ``kind`` is epoch, step or final; ``number`` the epoch or
    step in musubi's (run-local) numbering, None for the final state."""

    path: str
    kind: str
    number: Optional[int]

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def parse_state_name(folder_name: str, output_name: str) -> Optional[tuple[str, Optional[int]]]:
    """``(kind, number)`` when ``folder_name`` is a state folder of ``output_name``, else None."""
    stem = re.escape(output_name)
    for pattern, kind in ((rf"^{stem}-(\d{{6}})-state$", EPOCH), (rf"^{stem}-step(\d{{8}})-state$", STEP)):
        m = re.match(pattern, folder_name)
        if m:
            return kind, int(m[1])
    if folder_name == f"{output_name}-state":
        return FINAL, None
    return None


def state_folders(output_dir: str, output_name: str) -> list[StateFolder]:
    """The state folders of ``output_name`` in ``output_dir`` (complete or not), by name."""
    try:
        names = sorted(os.listdir(output_dir))
    except OSError:
        return []
    found = []
    for name in names:
        parsed = parse_state_name(name, output_name)
        path = os.path.join(output_dir, name)
        if parsed is not None and os.path.isdir(path) and not os.path.islink(path):
            found.append(StateFolder(path, parsed[0], parsed[1]))
    return found


def is_complete(folder: str) -> bool:
    """musubi's save finished: the last file accelerate writes is there (a regular file)."""
    try:
        return stat.S_ISREG(os.lstat(os.path.join(folder, MARKER)).st_mode)
    except OSError:
        return False


def _regular_files(folder: str) -> list[str]:
    out = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.is_file(follow_symlinks=False):
                out.append(entry.name)
    return sorted(out)


def _open_no_follow(path: str) -> int:
    return os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))


def hash_files(folder: str) -> dict[str, dict[str, object]]:
    """``{file name: {"sha256", "size"}}`` for every regular file directly in ``folder``
    (symbolic links and sub-folders are not part of a state musubi writes)."""
    out: dict[str, dict[str, object]] = {}
    for name in _regular_files(folder):
        digest = hashlib.sha256()
        size = 0
        fd = _open_no_follow(os.path.join(folder, name))
        with os.fdopen(fd, "rb") as fh:
            while True:
                block = fh.read(_CHUNK)
                if not block:
                    break
                digest.update(block)
                size += len(block)
        out[name] = {"sha256": digest.hexdigest(), "size": size}
    return out


class StateChanged(Exception):
    """A recorded state's files are not what was recorded: ``problems`` says which."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def stage_copy(source: str, target: str, recorded: dict[str, dict[str, object]]) -> int:
    """Copy exactly the recorded files of ``source`` into the new folder ``target``, hashing
    the bytes as they are copied, and check them against ``recorded``. What musubi then loads
    is this copy, which no client of ComfyUI can reach, so nothing can change between the
    check and the load. Raises StateChanged (and removes ``target``); returns the bytes copied."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.mkdir(target, 0o700)
    problems: list[str] = []
    total = 0
    try:
        for name, facts in sorted(recorded.items()):
            digest = hashlib.sha256()
            try:
                fd = _open_no_follow(os.path.join(source, name))
            except OSError as exc:
                problems.append(f"{name} is missing or unreadable ({exc.strerror or exc})")
                continue
            with os.fdopen(fd, "rb") as src, open(os.path.join(target, name), "xb") as dst:
                if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                    problems.append(f"{name} is not a regular file")
                    continue
                while True:
                    block = src.read(_CHUNK)
                    if not block:
                        break
                    digest.update(block)
                    dst.write(block)
                    total += len(block)
            if digest.hexdigest() != facts.get("sha256"):
                problems.append(f"{name} changed since musubi wrote it (SHA-256 differs)")
        if problems:
            raise StateChanged(problems)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return total


def remove_state(path: str) -> bool:
    """Delete a state folder (never following a link out of it); True when it is gone."""
    if os.path.islink(path):
        return False
    shutil.rmtree(path, ignore_errors=True)
    return not os.path.exists(path)


def same_path(a: str, b: str) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))

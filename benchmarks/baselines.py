"""The seed design, reimplemented as the benchmarks' baselines.

``communicate_run``: ``Popen`` + ``communicate()`` + a line regex over the
whole output once the child has exited (the seed). ``readline_run``: a text-mode
(universal newlines) ``readline()`` loop over merged stdout+stderr, the usual
"streaming" fix. ``terminate_only``: the seed's cancel, ``Popen.terminate()``
on the process it started. Standard library only; nothing from the pack.
"""

from __future__ import annotations

import re
import subprocess
import time
from typing import Callable, Mapping, Optional, Sequence

# The seed's progress regex: `n/total [inside]`, postfix included in `inside`.
SEED_PROGRESS = re.compile(r"(?P<n>\d+)/(?P<total>\d+) \[(?P<inside>[^\]]*)\]")

OnMatch = Callable[["re.Match[str]"], None]


def communicate_run(argv: Sequence[str], env: Mapping[str, str], cwd: str,
                    on_match: Optional[OnMatch] = None) -> tuple[int, int]:
    """Run to exit, then scan every line; returns (exit code, frames matched).

    Text mode, as the seed had it: communicate() decodes the whole output and
    translates ``\\r`` to ``\\n``, then ``splitlines()`` and the regex per line.
    """
    proc = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, encoding="utf-8", errors="replace")
    out, err = proc.communicate()
    matched = 0
    for text in (out, err):
        for line in text.splitlines():
            match = SEED_PROGRESS.search(line)
            if match is not None:
                matched += 1
                if on_match is not None:
                    on_match(match)
    return proc.returncode, matched


def readline_run(argv: Sequence[str], env: Mapping[str, str], cwd: str,
                 on_match: Optional[OnMatch] = None) -> tuple[int, int]:
    """Stream merged output with text-mode ``readline``; returns (exit code, frames matched).

    Universal newlines end a line at ``\\r``, but tqdm writes ``\\r`` *before*
    each frame, so a frame's line only ends when the next frame starts.
    """
    proc = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, encoding="utf-8", errors="replace")
    matched = 0
    assert proc.stdout is not None
    with proc.stdout:
        for line in proc.stdout:
            match = SEED_PROGRESS.search(line)
            if match is not None:
                matched += 1
                if on_match is not None:
                    on_match(match)
    return proc.wait(), matched


def start_quiet(argv: Sequence[str], env: Mapping[str, str], cwd: str) -> subprocess.Popen:
    """Start a child with its output discarded (cancel baseline; /dev/null reference)."""
    return subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def devnull_run(argv: Sequence[str], env: Mapping[str, str], cwd: str) -> tuple[int, float]:
    """The child writing straight to /dev/null: (exit code, wall seconds)."""
    start = time.perf_counter()
    code = start_quiet(argv, env, cwd).wait()
    return code, time.perf_counter() - start


def terminate_only(proc: subprocess.Popen) -> None:
    """The seed's cancel: SIGTERM to the process we started, nothing else."""
    proc.terminate()

"""``python -m parsers FILE...``: print the events in a saved musubi-tuner log.

Reads each file as raw bytes (or a ``.chunks.jsonl`` capture, chunk by chunk)
and prints one JSON object per event per line, then a ``failure`` object when
a known failure signature matched. The only module of the package that does I/O.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator, Optional, TextIO

from . import OutputParser
from .events import Event, to_dict

READ_SIZE = 64 * 1024
CHUNKS_SUFFIX = ".chunks.jsonl"
STREAMS = ("stdout", "stderr")


def _capture_name(path: Path) -> Path:
    """``x/run.chunks.jsonl`` / ``x/run.stderr`` -> ``x/run`` (where ``run.rc`` would be)."""
    if path.name.endswith(CHUNKS_SUFFIX):
        return path.with_name(path.name[: -len(CHUNKS_SUFFIX)])
    return path.with_suffix("")


def _saved_exit_code(path: Path) -> Optional[int]:
    name = _capture_name(path)
    rc_file = name.with_name(name.name + ".rc")
    try:
        return int(rc_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _default_stream(path: Path) -> str:
    return path.suffix.lstrip(".") if path.suffix.lstrip(".") in STREAMS else "stdout"


def _chunks(path: Path, stream: Optional[str]) -> Iterator[tuple[str, bytes]]:
    """(stream, bytes) in the order they were read from the child."""
    if path.name.endswith(CHUNKS_SUFFIX):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                chunk = json.loads(line)
                if chunk.get("s") in STREAMS:  # skip the capturing program's own notes
                    yield chunk["s"], chunk["d"].encode("utf-8")
        return
    name = stream or _default_stream(path)
    with path.open("rb") as raw:
        while True:
            data = raw.read(READ_SIZE)
            if not data:
                return
            yield name, data


def _write(out: TextIO, event: Event) -> None:
    out.write(json.dumps(to_dict(event), ensure_ascii=False) + "\n")


def parse_file(path: Path, out: TextIO, *, stream: Optional[str] = None, exit_code: Optional[int] = None) -> None:
    """Print the events of one saved log to ``out``."""
    parser = OutputParser()
    for name, data in _chunks(path, stream):
        for event in parser.feed(name, data):
            _write(out, event)
    for event in parser.finish():
        _write(out, event)
    failure = parser.classify(exit_code if exit_code is not None else _saved_exit_code(path))
    if failure is not None:
        _write(out, failure)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m parsers",
        description="Print the events in saved musubi-tuner output, one JSON object per line.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE",
                        help="raw output (bytes) or a NAME.chunks.jsonl capture")
    parser.add_argument("--stream", choices=STREAMS,
                        help="stream name for raw files (default: from a .stdout/.stderr suffix, else stdout)")
    parser.add_argument("--exit-code", type=int, metavar="N",
                        help="the run's exit code (default: NAME.rc beside the file, if present)")
    args = parser.parse_args(argv)

    out = sys.stdout
    if hasattr(out, "reconfigure"):
        out.reconfigure(encoding="utf-8", errors="replace")  # Japanese text, even on a cp1252 pipe
    status = 0
    for path in args.files:
        if len(args.files) > 1:
            out.write(json.dumps({"type": "file", "path": str(path)}, ensure_ascii=False) + "\n")
        try:
            parse_file(path, out, stream=args.stream, exit_code=args.exit_code)
        except OSError as exc:
            print(f"python -m parsers: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
            status = 1
        except (ValueError, KeyError) as exc:  # a .chunks.jsonl line that is not a capture chunk
            print(f"python -m parsers: {path} is not a valid capture: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `python -m parsers log | head`
        sys.stderr.close()
        sys.exit(0)

"""Pure parsers for musubi-tuner's console output: bytes in, events out.

``OutputParser`` combines the pieces: ``stream.LineSplitter`` (bytes ->
segments), ``tqdm.parse_frame`` (frames -> Progress), ``musubi.parse_line``
(lines -> LogLine + phase events) and ``failures.classify``. Nothing here
does I/O, starts threads or imports outside the standard library.
"""

from __future__ import annotations

from collections import deque
from typing import Optional

from .events import Event, Failure, Progress, to_dict
from .failures import classify, empty_dataset_failure, real_exit_code
from .musubi import parse_line
from .stream import LineSplitter, Segment
from .tqdm import parse_frame

__all__ = [
    "OutputParser", "LineSplitter", "parse_frame", "parse_line", "classify", "real_exit_code", "to_dict",
    "Event",
]

# Lines kept for classify(): a traceback plus what led to it.
TAIL_LINES = 200
# Longest tail line kept: failure signatures sit at a line's start, and 200
# full-length (64 KiB) lines would hold ~13 MB for nothing.
TAIL_LINE_CHARS = 4000


class OutputParser:
    """Turns the raw output of one child process into events.

    Feed each pipe's chunks as they are read; every call returns the events
    they completed, in order. A tqdm frame is reported as soon as its chunk
    arrives, not when the next frame ends it (tqdm writes ``\\r`` *before* a
    frame). ``coalesce_progress=True`` reports only the last frame of each
    run of frames within one chunk, for callers that only show the latest.
    """

    def __init__(self, *, coalesce_progress: bool = False, tail_lines: int = TAIL_LINES) -> None:
        self._splitters: dict[str, LineSplitter] = {}
        # Per stream: the pending frame text already reported early.
        self._reported: dict[str, str] = {}
        self._coalesce = coalesce_progress
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._item_lines: deque[str] = deque(maxlen=tail_lines)
        self.last_progress: Optional[Progress] = None

    @property
    def tail(self) -> list[str]:
        """The last non-frame lines seen (all streams, in arrival order)."""
        return list(self._tail)

    def feed(self, stream: str, data: bytes) -> list[Event]:
        """Events completed by ``data`` read from ``stream`` ("stdout"/"stderr")."""
        splitter = self._splitters.get(stream)
        if splitter is None:
            splitter = self._splitters[stream] = LineSplitter(coalesce=self._coalesce)
        events = self._segments(stream, splitter.feed(data))
        pending = splitter.pending
        reported = self._reported.get(stream)
        # (Padding or a glued line may still extend a frame reported before.)
        if pending and (reported is None or not pending.startswith(reported)):
            progress, rest = parse_frame(pending)
            # Only a complete frame with nothing glued on is reported early; a
            # log line still arriving waits for its line end.
            if progress is not None and not rest:
                self._reported[stream] = pending
                self._progress(events, progress)
        return _superseded_frames_dropped(events) if self._coalesce else events

    def finish(self) -> list[Event]:
        """Events for text still pending at end of output (all streams)."""
        events: list[Event] = []
        for stream, splitter in self._splitters.items():
            events.extend(self._segments(stream, splitter.flush()))
        return events

    def classify(self, exit_code: Optional[int]) -> Optional[Failure]:
        """The known failure behind the output seen so far (see ``failures.classify``)."""
        failure = classify(self._tail, exit_code)
        if failure is not None and failure.kind != "empty_dataset":
            return failure
        # Judge emptiness on every `found N images` line, some of which may
        # have scrolled out of the tail.
        return empty_dataset_failure(self._item_lines)

    def _segments(self, stream: str, segments: list[Segment]) -> list[Event]:
        events: list[Event] = []
        last = len(segments) - 1
        for index, segment in enumerate(segments):
            text = segment.text
            reported = self._reported.pop(stream, None)
            if reported is not None and text.startswith(reported):
                # The frame went out early; keep what was glued on, without
                # tqdm's padding (parse_frame strips the same way).
                text = text[len(reported):].lstrip()
                if not text:
                    continue
            if (self._coalesce and index < last and segment.end == "\r"
                    and segments[index + 1].end == "\r" and text.rstrip().endswith("]")):
                continue  # a frame superseded by the next one in this chunk
            progress, rest = parse_frame(text)
            if progress is not None:
                self._progress(events, progress)
            for line in rest.split("\n") if rest else ():
                self._line(events, stream, line)
        return events

    def _progress(self, events: list[Event], progress: Progress) -> None:
        self.last_progress = progress
        events.append(progress)

    def _line(self, events: list[Event], stream: str, text: str) -> None:
        if not text.strip():
            return
        line_events = parse_line(text, stream)
        self._tail.append(line_events[0].text[:TAIL_LINE_CHARS])  # type: ignore[union-attr]
        if any(event.type == "items_found" for event in line_events):
            self._item_lines.append(line_events[0].text)  # type: ignore[union-attr]
        events.extend(line_events)


def _superseded_frames_dropped(events: list[Event]) -> list[Event]:
    """Events without a Progress that the very next event replaces (same bar)."""
    return [event for event, after in zip(events, events[1:] + [None])
            if not (isinstance(event, Progress) and isinstance(after, Progress) and after.desc == event.desc)]

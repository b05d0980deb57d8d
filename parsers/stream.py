"""Bytes from one pipe -> text segments, one per tqdm frame or log line.

Owns incremental decoding, line splitting and ANSI stripping; it knows
nothing about musubi or tqdm formats. Pure: standard library only, no I/O.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["Segment", "LineSplitter", "MAX_SEGMENT", "strip_ansi"]

# A line longer than this is emitted in pieces, so a child printing megabytes
# without a newline cannot make us hold it all in memory.
MAX_SEGMENT = 64 * 1024

# CSI (`\x1b[...X`, e.g. tqdm's cursor-up `\x1b[A` for nested bars), OSC
# (`\x1b]...BEL` or `...ESC\`) and two-byte escapes such as `\x1b7`.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_LINE_END = re.compile(r"(\r\n|\r|\n)")


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences."""
    return _ANSI.sub("", text) if "\x1b" in text else text


@dataclass(frozen=True)
class Segment:
    """A piece of output and what ended it.

    ``end`` is ``"\\r"`` for a carriage return (a tqdm frame), ``"\\n"`` for a
    line end (``\\r\\n`` counts as one), or ``""`` when the text was cut at
    :data:`MAX_SEGMENT` or emitted by :meth:`LineSplitter.flush`.
    """

    text: str
    end: str


class LineSplitter:
    """Turns the byte chunks of one stream into :class:`Segment` values.

    UTF-8 is decoded incrementally (a character split between two reads comes
    out whole; invalid bytes become U+FFFD), segments end at ``\\r``, ``\\n``
    or ``\\r\\n``, ANSI escapes are removed and blank segments are dropped.
    """

    def __init__(self, max_segment: int = MAX_SEGMENT, *, coalesce: bool = False) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max_segment = max_segment
        self._coalesce = coalesce
        self._pending = ""
        # A `\r` that ended the last chunk: we only know whether it starts a
        # `\r\n` pair once the next chunk arrives.
        self._held_cr = False

    @property
    def pending(self) -> str:
        """Text received but not yet ended by a line end (ANSI removed).

        tqdm writes ``\\r`` *before* each frame, so the newest frame is always
        pending until the next one arrives; callers that must not lag one
        frame behind look here.
        """
        return strip_ansi(self._pending)

    def feed(self, data: bytes) -> list[Segment]:
        """Segments completed by ``data``."""
        return self._split(self._decoder.decode(data, final=False))

    def flush(self) -> list[Segment]:
        """Segments left at end of stream (the pending text, ``end=""``)."""
        segments = self._split(self._decoder.decode(b"", final=True))
        if self._held_cr:
            self._held_cr = False
            self._emit(segments, self._pending, "\r")
        elif self._pending:
            self._emit(segments, self._pending, "")
        self._pending = ""
        return segments

    def _split(self, text: str) -> list[Segment]:
        segments: list[Segment] = []
        if not text:
            return segments
        if self._held_cr:
            self._held_cr = False
            end = "\r"
            if text[0] == "\n":
                text, end = text[1:], "\n"
            self._emit(segments, self._pending, end)
            self._pending = ""
        hold = text.endswith("\r")
        if hold:
            text = text[:-1]
        if self._coalesce and text.count("\r") > 2:
            text = _overwritten_frames_dropped(text)
        parts = _LINE_END.split(text)
        # parts alternates text, separator, text, ...; the last text is unended.
        pending = self._pending
        for i in range(0, len(parts) - 1, 2):
            self._emit(segments, pending + parts[i], "\r" if parts[i + 1] == "\r" else "\n")
            pending = ""
        tail = pending + parts[-1]
        while len(tail) > self._max_segment:
            self._emit(segments, tail[: self._max_segment], "")
            tail = tail[self._max_segment:]
        self._pending = tail
        self._held_cr = hold
        return segments

    def _emit(self, segments: list[Segment], text: str, end: str) -> None:
        if "\x1b" in text:
            text = _ANSI.sub("", text)
        while len(text) > self._max_segment:
            segments.append(Segment(text[: self._max_segment], ""))
            text = text[self._max_segment:]
        if text and not text.isspace():
            segments.append(Segment(text, end))


def _overwritten_frames_dropped(text: str) -> str:
    """``text`` without the ``\r`` pieces a later ``\r`` on the same line overwrote.

    Within each line of the chunk, keeps what precedes the first ``\r``, the
    last complete piece and what follows it: a terminal would show the same.
    A frame flood is then split and parsed once per chunk, not once per frame.
    """
    lines = text.split("\n")
    for index, line in enumerate(lines):
        # A `\r` right before `\n` is part of the line end, not a frame start.
        body, crlf = (line[:-1], "\r") if index < len(lines) - 1 and line.endswith("\r") else (line, "")
        first = body.find("\r")
        last = body.rfind("\r")
        if first == -1 or first == last:
            continue
        before_last = body.rfind("\r", 0, last)
        if before_last > first:
            lines[index] = body[:first + 1] + body[before_last + 1:] + crlf
    return "\n".join(lines)

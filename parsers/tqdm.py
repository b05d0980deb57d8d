"""One tqdm frame (the text between two ``\\r``) -> a Progress event.

Follows tqdm's ``format_meter`` layouts (tqdm/std.py): with a total
``{desc}: {pct:3.0f}%|{bar}| {n}/{total} [{elapsed}<{remaining}, {rate}{postfix}]``
(``TQDM_NCOLS=0`` drops the bar), without one ``{desc}: {n}{unit} [{elapsed}, {rate}{postfix}]``.
Pure: standard library only, no I/O.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Optional

from .events import Progress

__all__ = ["parse_frame", "parse_count", "parse_interval"]

# format_sizeof() prefixes for unit_scale=True counts and rates (`1.23k`).
_SCALE = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21, "Y": 1e24}
# Units whose first letter looks like a scale prefix but is not one.
_PLAIN_UNITS = {"it", "key", "B", "b", "byte", "bytes", "file", "files", "frame", "frames",
                "img", "image", "images", "step", "steps", "token", "tokens", "batch", "batches"}

_NUMBER = r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?[kMGTPEZY]?"
_TIME = r"(?:\d+d\s*)?\d+:\d\d(?::\d\d)?"
# `[elapsed<remaining, rate, k=v, ...]`; the rate is `?it/s`, `12.3it/s`, ` 1.29s/it`, `1.23kit/s`.
_BRACKET = (
    r"\[(?P<elapsed>" + _TIME + r")(?:<(?P<remaining>" + _TIME + r"|\?))?,\s*"
    r"(?P<rate>(?:\?|" + _NUMBER + r")\S*?/\S*?)(?P<postfix>(?:,[^\]]*)?)\]"
)
# The frame core, without the description: searching for `desc: ` inside the
# pattern would make a long non-frame line cost quadratic time. For the same
# reason every repeat that can start at many positions is bounded.
_WITH_TOTAL = re.compile(
    r"(?<![\d.])(?P<pct>\d{1,3})%(?:\|[^|\]]{0,500}\||\s)\s*"
    r"(?P<n>" + _NUMBER + r")/(?P<total>" + _NUMBER + r"|\?)\s*" + _BRACKET
)
_WITHOUT_TOTAL = re.compile(
    r"(?<![\w.])(?P<n>\d+(?:\.\d+)?)(?P<unit>[^\s\d.\[\]][^\s\[\]]{0,30})\s" + _BRACKET
)
_RATE = re.compile(r"(?P<num>\?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?P<left>\S*?)/(?P<right>\S+)")
_INTERVAL = re.compile(r"(?:(?P<d>\d+)d\s*)?(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d\d)")


def parse_frame(text: str) -> tuple[Optional[Progress], str]:
    """The Progress in ``text`` and whatever else was glued to the frame.

    A log line written right after a never-closed bar lands on the same line
    (``...avr_loss=0.1]INFO:musubi_tuner...:model saved.``); text before the
    frame without a ``desc: `` separator is kept as well. Both are returned
    (joined by a newline) as the remainder. Returns ``(None, text)`` for a line
    that is not a frame.
    """
    if "]" not in text or "/" not in text:  # fast path for ordinary log lines
        return None, text
    match = _WITH_TOTAL.search(text) or _WITHOUT_TOTAL.search(text)
    if match is None:
        return None, text
    before = text[: match.start()].rstrip()
    desc = ""
    if before.endswith(":"):  # tqdm writes `{desc}: ` right before the meter
        desc, before = before[:-1].strip(), ""
    progress = _progress(match, desc)
    if progress is None:
        return None, text
    after = text[match.end():].strip()
    return progress, "\n".join(part for part in (before.strip(), after) if part)


def _progress(match: re.Match[str], desc: str) -> Optional[Progress]:
    groups = match.groupdict()
    rate, unit = _parse_rate(groups["rate"])
    if unit is None:
        return None
    n_text = groups["n"]
    unit_text = groups.get("unit")
    if unit_text is not None:  # no-total frame: `{n}{unit}`, n may carry a scale prefix
        if unit_text != unit and unit_text[1:] == unit and unit_text[0] in _SCALE:
            n_text += unit_text[0]
        elif unit_text != unit:
            unit, scale = _split_prefix(unit_text)
            if scale != 1.0:
                n_text += unit_text[0]
    total_text = groups.get("total")
    pct = groups.get("pct")
    return Progress(
        desc=desc,
        n=parse_count(n_text),
        total=None if total_text in (None, "?") else parse_count(total_text),
        rate=rate,
        unit=unit,
        elapsed=parse_interval(groups["elapsed"]),
        remaining=parse_interval(groups.get("remaining") or "?"),
        postfix=_parse_postfix(groups["postfix"]),
        percent=float(pct) if pct is not None else None,
    )


def parse_count(text: str) -> float:
    """``"12"`` -> 12, ``"1.23k"`` -> 1230.0, ``"2.5M"`` -> 2500000.0.

    Whole numbers without a prefix stay ``int`` so JSON shows ``6``, not ``6.0``.
    """
    scale = _SCALE.get(text[-1], 0.0) if text else 0.0
    if scale:
        return float(text[:-1]) * scale
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


@lru_cache(maxsize=1024)  # the same few values repeat frame after frame
def parse_interval(text: str) -> Optional[float]:
    """``[H:]MM:SS`` (tqdm ``format_interval``) -> seconds; ``?`` -> None."""
    match = _INTERVAL.fullmatch(text.strip())
    if match is None:
        return None
    d, h, m, s = match.group("d", "h", "m", "s")
    return float(((int(d or 0) * 24 + int(h or 0)) * 60 + int(m)) * 60 + int(s))


@lru_cache(maxsize=1024)
def _parse_rate(text: str) -> tuple[Optional[float], Optional[str]]:
    """``12.3it/s`` -> (12.3, "it"); `` 2.00s/it`` -> (0.5, "it"); ``?it/s`` -> (None, "it").

    The unit is None when ``text`` is not a rate at all.
    """
    match = _RATE.fullmatch(text.strip())
    if match is None:
        return None, None
    num, left, right = match.group("num", "left", "right")
    if right == "s":  # items per second: `{n}{prefix}{unit}/s`
        unit, scale = _split_prefix(left)
        return (None if num == "?" else float(num) * scale), unit
    if left in ("s", "") or (left[:-1] in _SCALE and left.endswith("s")):  # seconds per item
        scale = _SCALE[left[:-1]] if len(left) > 1 else 1.0
        seconds = None if num == "?" else float(num) * scale
        return (1.0 / seconds if seconds else None), right
    return None, None


def _split_prefix(unit: str) -> tuple[str, float]:
    if len(unit) > 1 and unit not in _PLAIN_UNITS and unit[0] in _SCALE:
        return unit[1:], _SCALE[unit[0]]
    return unit, 1.0


def _parse_postfix(text: str) -> dict[str, str]:
    """``, avr_loss=1.75, Keys Scaled=0`` -> ``{"avr_loss": "1.75", "Keys Scaled": "0"}``.

    A piece without ``=`` belongs to the previous value (a value with a comma
    in it); ``set_postfix_str`` text with no ``=`` at all is kept under ``""``.
    """
    postfix: dict[str, str] = {}
    key = None
    for piece in text.split(","):
        name, sep, value = piece.partition("=")
        if sep and name.strip():
            key = name.strip()
            postfix[key] = value.strip()
        elif piece.strip():
            if key is None:
                key = ""
                postfix[key] = piece.strip()
            else:
                postfix[key] += "," + piece
    return postfix

"""Training speed from the pack's own step timestamps: the rate over a short moving window of the
last steps, and the time left for every step still to come (all epochs: the steps bar's total is
the whole run's).

musubi's own rate cannot be used. Its steps bar is reset after the first step, so the first
frame divides one step by a few milliseconds (``1/6 [00:00<00:00, 978.61it/s]``), and tqdm's
average smooths over everything since. Here a step counts when it is first seen (a frame
repeated for the step's loss, or printed twice at the end, adds nothing); the first step only
starts the clock, so there is a rate from the second step on. A counter that goes back (a new
bar) starts the window over. Standard library only.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Iterable, Optional

__all__ = ["WINDOW", "StepRate", "rate_of_points"]

WINDOW = 10  # step times kept: the rate follows a change in speed within about ten steps


class StepRate:
    """Steps per second over the last ``window`` step times (at least two steps seen)."""

    def __init__(self, window: int = WINDOW) -> None:
        self._times: deque[tuple[int, float]] = deque(maxlen=max(2, window))

    def add(self, step: Any, when: float) -> bool:
        """Note that ``step`` was reached at ``when`` (seconds on any clock); True when it
        was a new step. Steps at or before 0 only end the window, as does going back."""
        try:
            step = int(step)
        except (TypeError, ValueError):
            return False
        last = self._times[-1][0] if self._times else None
        if last is not None and step < last:
            self._times.clear()  # a new bar: its first step starts the clock again
            last = None
        if step <= 0 or (last is not None and step == last):
            return False
        self._times.append((step, float(when)))
        return True

    @property
    def step(self) -> Optional[int]:
        return self._times[-1][0] if self._times else None

    @property
    def rate(self) -> Optional[float]:
        """Steps per second, or None before the second step (or when no time passed)."""
        if len(self._times) < 2:
            return None
        (first, start), (last, end) = self._times[0], self._times[-1]
        if end <= start:
            return None
        rate = (last - first) / (end - start)
        return rate if math.isfinite(rate) and rate > 0 else None

    def remaining(self, total: Any) -> Optional[float]:
        """Seconds until step ``total`` at the current rate, from the last step's time."""
        rate, step = self.rate, self.step
        try:
            total = int(total)
        except (TypeError, ValueError):
            return None
        if rate is None or step is None or total <= 0:
            return None
        return max(0, total - step) / rate


def rate_of_points(points: Iterable[dict[str, Any]], window: int = WINDOW) -> StepRate:
    """A StepRate fed with loss points (``step`` and ``time``, as loss.jsonl records them)."""
    speed = StepRate(window)
    for point in points:
        when = point.get("time")
        if isinstance(when, (int, float)) and not isinstance(when, bool):
            speed.add(point.get("step"), when)
    return speed

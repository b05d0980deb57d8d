"""The loss curve as a picture: step on x, avr_loss on y, the raw points, a smoothed line over
them, epoch boundaries marked, labels readable at node-preview size. Pillow only, imported inside
the functions (the pack's import stays light); no ComfyUI import, so tests load this file directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

WIDTH, HEIGHT = 768, 432
SCALE = 2  # drawn at twice the size and scaled down: smooth lines without an antialiasing library
MAX_DRAWN = 2000  # points drawn at most (about 3 per pixel column at 768 wide)

BACKGROUND = (32, 32, 32)
PANEL = (22, 22, 22)
GRID = (58, 58, 58)
TEXT = (214, 214, 214)
MUTED = (150, 150, 150)
RAW = (96, 160, 255)
RESUMED = (230, 90, 200)
SMOOTH = (255, 170, 60)
EPOCH = (110, 210, 110)


@dataclass(frozen=True)
class Layout:
    """Where the data goes in the final image (pixels): the plot rectangle and the ranges."""

    left: float
    top: float
    right: float
    bottom: float
    x_min: float
    x_max: float
    y_min: float
    y_max: float

    def x(self, step: float) -> float:
        span = self.x_max - self.x_min or 1.0
        return self.left + (step - self.x_min) / span * (self.right - self.left)

    def y(self, loss: float) -> float:
        span = self.y_max - self.y_min or 1.0
        return self.bottom - (loss - self.y_min) / span * (self.bottom - self.top)


# A diverged run can report absurd losses; beyond this the axis span itself overflows to inf.
DRAWABLE_LOSS = 1e150


def losses(points: Sequence[dict[str, Any]]) -> list[tuple[int, float]]:
    """(step, avr_loss) of the points that have a drawable loss (finite, |loss| <= 1e150),
    in step order."""
    out = []
    for p in points:
        step, loss = p.get("step"), p.get("avr_loss")
        if isinstance(step, int) and isinstance(loss, (int, float)) and abs(loss) <= DRAWABLE_LOSS:
            out.append((step, float(loss)))
    return sorted(out)


def smooth(values: Sequence[float], weight: Optional[float] = None) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing (the first values are not
    pulled towards 0). The weight grows with the number of points: 0.6 for a short run,
    up to 0.98 for thousands of steps."""
    if weight is None:
        n = len(values)
        weight = 0.6 if n < 50 else min(0.98, 1.0 - 20.0 / n)
    out, last, debias = [], 0.0, 1.0
    for v in values:
        last = last * weight + (1 - weight) * v
        debias *= weight
        out.append(last / (1 - debias) if debias < 1 else v)
    return out


def epoch_boundaries(points: Sequence[dict[str, Any]]) -> list[tuple[float, int]]:
    """(x position in steps, the epoch that starts there): halfway between the last point of
    one epoch and the first point of the next."""
    marks = []
    previous: Optional[dict[str, Any]] = None
    for p in sorted((p for p in points if isinstance(p.get("step"), int)), key=lambda p: p["step"]):
        if previous is not None and isinstance(p.get("epoch"), int) and isinstance(previous.get("epoch"), int) \
                and p["epoch"] > previous["epoch"]:
            marks.append(((previous["step"] + p["step"]) / 2.0, p["epoch"]))
        previous = p
    return marks


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2, 5 x 10^k apart) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def layout(points: Sequence[dict[str, Any]], width: int = WIDTH, height: int = HEIGHT,
           total: Optional[int] = None) -> Layout:
    data = losses(points)
    unit = min(width / WIDTH, height / HEIGHT)
    text, small = _font_sizes(width, height)
    # margins hold the labels: tick values (small) and the axis names (text)
    left, right = max(78 * unit, 3.4 * small + text + 14), width - 22 * unit
    top, bottom = max(44 * unit, text + 22), height - max(52 * unit, small + text + 22)
    if data:
        last = float(max(data[-1][0], total or 0, 2))
        x_pad = (last - 1.0) * 0.02  # the first and last points are not cut by the frame
        x_min, x_max = 1.0 - x_pad, last + x_pad
        ys = [v for _, v in data]
        lo, hi = min(ys), max(ys)
        pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 0.05)
        y_min, y_max = lo - pad, hi + pad
    else:
        x_min, x_max, y_min, y_max = 1.0, float(max(total or 0, 2)), 0.0, 1.0
    return Layout(left, top, right, bottom, x_min, x_max, y_min, y_max)


def _font_sizes(width: int, height: int) -> tuple[int, int]:
    unit = min(width / WIDTH, height / HEIGHT)
    return max(10, round(15 * unit)), max(9, round(13 * unit))


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 (FreeType): a scalable font
    except (TypeError, OSError, AttributeError, ImportError):
        pass
    for name in ("DejaVuSans.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def _dashed_vline(draw: Any, x: float, top: float, bottom: float, fill: tuple, width: int, dash: float) -> None:
    y = top
    while y < bottom:
        draw.line([(x, y), (x, min(y + dash, bottom))], fill=fill, width=width)
        y += dash * 2


def render(points: Sequence[dict[str, Any]], width: int = WIDTH, height: int = HEIGHT, *,
           title: Optional[str] = None, total: Optional[int] = None, message: str = "",
           resumed: Sequence[int] = ()) -> Any:
    """The loss curve as an RGB ``PIL.Image`` of ``width`` x ``height``.

    ``points`` are loss-history points (``step``, ``avr_loss``, ``epoch``); ``total`` widens
    the x axis to the planned steps while training runs; ``message`` is shown when there is
    no point yet; ``resumed`` are the steps where a stopped run was continued (marked).
    """
    from PIL import Image, ImageDraw

    s = SCALE
    box = layout(points, width, height, total)
    img = Image.new("RGB", (width * s, height * s), BACKGROUND)
    draw = ImageDraw.Draw(img)
    unit = min(width / WIDTH, height / HEIGHT)
    text_px, small_px = _font_sizes(width, height)
    font, small = _font(text_px * s), _font(small_px * s)
    X = lambda v: box.x(v) * s  # noqa: E731
    Y = lambda v: box.y(v) * s  # noqa: E731
    draw.rectangle([box.left * s, box.top * s, box.right * s, box.bottom * s], fill=PANEL)

    for tick in nice_ticks(box.y_min, box.y_max, 5):
        y = Y(tick)
        draw.line([(box.left * s, y), (box.right * s, y)], fill=GRID, width=s)
        draw.text((box.left * s - 8 * s, y), _fmt(tick), fill=MUTED, font=small, anchor="rm")
    for tick in nice_ticks(box.x_min, box.x_max, 6):
        if tick < box.x_min or tick != int(tick):
            continue
        x = X(tick)
        draw.line([(x, box.bottom * s), (x, box.bottom * s + 5 * s)], fill=MUTED, width=s)
        draw.text((x, box.bottom * s + 8 * s), _fmt(tick), fill=MUTED, font=small, anchor="ma")
    draw.text(((box.left + box.right) / 2 * s, height * s - 6 * s), "step", fill=TEXT, font=font, anchor="md")
    label = Image.new("RGB", (int(font.getlength("avr_loss")) + 8 * s, font.size + 8 * s), BACKGROUND)
    ImageDraw.Draw(label).text((4 * s, 4 * s), "avr_loss", fill=TEXT, font=font)
    label = label.rotate(90, expand=True)
    img.paste(label, (int(4 * s * unit), int((box.top + box.bottom) / 2 * s - label.height / 2)))

    data = losses(points)
    marks = epoch_boundaries(points)
    # Every boundary up to 12 epochs; beyond that every k-th, so lines and labels stay apart.
    every = 1 if len(marks) <= 12 else math.ceil(len(marks) / 10)
    for x_step, epoch in marks:
        if (epoch - 1) % every:
            continue
        x = X(x_step)
        _dashed_vline(draw, x, box.top * s, box.bottom * s, EPOCH, max(2, round(2 * unit)) * s, 6 * s)
        draw.text((x + 4 * s, box.top * s + 4 * s), f"epoch {epoch}", fill=EPOCH, font=small, anchor="la")

    for step in resumed:
        if box.x_min <= step <= box.x_max:
            x = X(step + 0.5)  # between the last step before the stop and the first one after
            draw.line([(x, box.top * s), (x, box.bottom * s)], fill=RESUMED, width=max(2, round(2 * unit)) * s)
            draw.text((x - 4 * s, box.bottom * s - 4 * s), f"resumed @ {step}", fill=RESUMED, font=small, anchor="rd")

    if data:
        radius = (2.5 if len(data) < 400 else 1.2) * unit * s
        # A long run has more points than pixels: draw every k-th (the curve is smoothed over all)
        stride = max(1, len(data) // MAX_DRAWN)
        for step, loss in data[::stride]:
            x, y = X(step), Y(loss)
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=RAW)
        line = [(X(step), Y(v)) for (step, _), v in zip(data, smooth([v for _, v in data]))]
        line = line[::stride] + ([line[-1]] if (len(line) - 1) % stride else [])
        if len(line) > 1:
            draw.line(line, fill=SMOOTH, width=max(2, round(3 * unit)) * s, joint="curve")
    else:
        draw.text(((box.left + box.right) / 2 * s, (box.top + box.bottom) / 2 * s),
                  message or "no loss value yet", fill=MUTED, font=font, anchor="mm")

    head = title if title is not None else _title(points, total)
    draw.text((box.left * s, 12 * s), head, fill=TEXT, font=font, anchor="la")
    if data:
        key_x = box.right * s
        draw.text((key_x, 14 * s), "smoothed", fill=SMOOTH, font=small, anchor="ra")
        key_x -= small.getlength("smoothed") + 14 * s
        draw.text((key_x, 14 * s), "raw", fill=RAW, font=small, anchor="ra")
    return img.resize((width, height), Image.LANCZOS)


def _title(points: Sequence[dict[str, Any]], total: Optional[int]) -> str:
    data = losses(points)
    if not data:
        return "avr_loss"
    last = max((p for p in points if isinstance(p.get("step"), int)), key=lambda p: p["step"])
    parts = [f"step {last['step']}" + (f"/{total or last.get('total')}" if (total or last.get("total")) else "")]
    if last.get("epoch") and last.get("epochs"):
        parts.append(f"epoch {last['epoch']}/{last['epochs']}")
    best = min(data, key=lambda d: d[1])
    parts.append(f"loss {data[-1][1]:.4g}")
    parts.append(f"best {best[1]:.4g} @ {best[0]}")
    return "   ".join(parts)

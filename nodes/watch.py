"""Watching training from its node: the newest sample image (or, between samples, the loss curve)
as the progress bar's preview while musubi runs, and the Train node's IMAGE outputs afterwards (the
loss curve, the last round of samples). No ComfyUI import; Pillow, numpy, torch and av (all shipped
with ComfyUI) are imported inside the functions that need them.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Optional, Sequence

from ..executor.runs.history import LOSS_FILE, latest_samples, read_history, sample_files

CURVE_FILE = "loss_curve.png"
VIDEO_EXTENSIONS = (".mp4", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")
LOG = logging.getLogger("musubi_tuner_nodes")


class TrainWatch:
    """Called (``tick``) from the reporter's callbacks on the execution thread.

    Every ``sample_poll`` seconds it lists ``<output_dir>/sample``; a new file that has not
    changed for ``settle`` seconds (musubi writes it in place) becomes the preview at once and
    stays for ``sample_hold`` seconds. Otherwise the loss curve is the preview, redrawn at
    most every ``curve_every`` seconds and only when new points came. A file that cannot be
    read (a video without a decodable frame) is tried ``tries`` times, then skipped.
    """

    def __init__(self, output_dir: str, *, sample_poll: float = 1.0, curve_every: float = 5.0,
                 sample_hold: float = 20.0, settle: float = 0.5, tries: int = 10,
                 load: Optional[Callable[[str], Any]] = None,
                 render: Optional[Callable[[Sequence[dict], Optional[int]], Any]] = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.output_dir = output_dir
        self.sample_poll, self.curve_every, self.sample_hold = sample_poll, curve_every, sample_hold
        self.settle, self.tries = settle, tries
        self._load = load or load_image
        self._render = render or render_curve
        self._clock, self._wall = clock, wall
        self.latest_sample: Optional[str] = None  # file name of the newest sample shown
        self.samples_shown = 0
        self.curves_shown = 0
        self._failures: dict[str, int] = {}
        self._last_poll: Optional[float] = None
        self._last_curve: Optional[float] = None
        self._curve_points = 0
        self._sample_at: Optional[float] = None

    def tick(self, reporter: Any) -> None:
        now = self._clock()
        if self._last_poll is None or now - self._last_poll >= self.sample_poll:
            self._last_poll = now
            if self._show_new_sample(reporter, now):
                return
        if self._sample_at is not None and now - self._sample_at < self.sample_hold:
            return
        history = getattr(reporter, "history", None)
        points = history.points if history is not None else []
        if not points or len(points) == self._curve_points:
            return
        if self._last_curve is not None and now - self._last_curve < self.curve_every:
            return
        image = _quietly(self._render, points, reporter.total)
        self._last_curve = now  # also after a failed drawing: do not retry at every frame
        if image is not None and reporter.send_preview(image):
            self._curve_points = len(points)
            self.curves_shown += 1

    def _show_new_sample(self, reporter: Any, now: float) -> bool:
        files = sample_files(self.output_dir)
        if not files:
            return False
        path = files[-1]
        name = os.path.basename(path)
        if name == self.latest_sample or self._failures.get(name, 0) >= self.tries:
            return False
        try:
            if self._wall() - os.path.getmtime(path) < self.settle:
                return False  # still being written
        except OSError:
            return False
        image = _quietly(self._load, path)
        if image is None:
            self._failures[name] = self._failures.get(name, 0) + 1
            return False
        self.latest_sample = reporter.latest_sample = name
        shown = reporter.send_preview(image)
        if shown:
            self._sample_at = now
            self.samples_shown += 1
        reporter.refresh()  # the event names the new sample
        return shown


def _quietly(function: Callable[..., Any], *args: Any) -> Any:
    """A preview is a nicety: a file or drawing that fails never stops the training."""
    try:
        return function(*args)
    except Exception as exc:  # noqa: BLE001 - Pillow/av raise many types for a bad or partial file
        LOG.debug("musubi-tuner preview skipped: %s", exc)
        return None


def render_curve(points: Sequence[dict], total: Optional[int] = None) -> Any:
    from .lossplot import render

    return render(points, total=total, message="waiting for the first loss value")


def load_image(path: str) -> Any:
    """An RGB PIL image of a sample: the picture, or the first frame of a video (via av,
    which ComfyUI ships); None when it cannot be decoded."""
    if path.lower().endswith(VIDEO_EXTENSIONS):
        return first_video_frame(path)
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.convert("RGB")


def first_video_frame(path: str) -> Any:
    try:
        import av
    except ImportError:
        return None
    with av.open(path) as container:
        for frame in container.decode(video=0):
            return frame.to_image().convert("RGB")
    return None


# --- the Train node's outputs ---------------------------------------------------------------------

def to_image_batch(images: Sequence[Any]) -> Any:
    """ComfyUI's IMAGE: a float tensor [B, H, W, 3] in 0..1. Images of other sizes are
    resized to the first one's (a batch has one size); none gives one 64x64 black image."""
    import numpy as np
    import torch

    if not images:
        return torch.zeros((1, 64, 64, 3), dtype=torch.float32)
    size = images[0].size
    arrays = []
    for image in images:
        image = image.convert("RGB")
        if image.size != size:
            from PIL import Image

            image = image.resize(size, Image.LANCZOS)
        arrays.append(np.asarray(image, dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(arrays))


def final_curve(run_dir: str, message: str = "no loss value was reported") -> tuple[Any, Optional[str]]:
    """The finished run's loss curve (from its loss.jsonl), saved as loss_curve.png in the run
    folder; returns (PIL image, saved path or None)."""
    from .lossplot import render

    points = read_history(os.path.join(run_dir, LOSS_FILE))
    image = render(points, message=message)
    path: Optional[str] = os.path.join(run_dir, CURVE_FILE)
    try:
        image.save(path)
    except OSError:
        path = None
    return image, path


def final_samples(output_dir: str) -> tuple[list[Any], list[str]]:
    """The images of the last sampling round (first frames for videos) and their paths."""
    images, paths = [], []
    for path in latest_samples(sample_files(output_dir)):
        image = _quietly(load_image, path)
        if image is not None:
            images.append(image)
            paths.append(path)
    return images, paths


def output_refs(paths: Sequence[str], output_root: str) -> list[dict[str, str]]:
    """``{"filename", "subfolder", "type": "output"}`` for the files under ComfyUI's output
    folder that browsers can show (the frontend draws a node's ``ui.images``)."""
    refs = []
    root = os.path.realpath(output_root)
    for path in paths:
        if not path.lower().endswith(IMAGE_EXTENSIONS):
            continue
        folder = os.path.realpath(os.path.dirname(path))
        if folder != root and not folder.startswith(root + os.sep):
            continue
        sub = os.path.relpath(folder, root)
        refs.append({"filename": os.path.basename(path), "subfolder": "" if sub == "." else sub.replace(os.sep, "/"),
                     "type": "output"})
    return refs

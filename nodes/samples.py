"""The default sample prompt, for an empty prompt box: the dataset's first caption with the size and
steps musubi's docs use for the architecture (the catalogue's ``sample``), a fixed seed so the samples
of every epoch compare, the first item as start image (``--i``) for image-to-video models and its
control image (``--ci``) where the model takes one. When no default can be built it says why.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .deferred import catalogue
from .values import MusubiDataset, MusubiModels

if TYPE_CHECKING:
    from ..executor.musubi.catalogue import Architecture

SEED = 42
MAX_CAPTION = 1000  # characters of the caption kept for the prompt


@dataclass(frozen=True)
class FirstItem:
    caption: str
    media: Optional[str]  # the image (or video) file
    control: Optional[str]  # its control image, if the dataset has control images


def _caption_text(text: str) -> str:
    """One prompt line: musubi reads `` --x`` as an option, so a caption's dashes are kept apart."""
    line = " ".join(text.split())
    while " --" in line:
        line = line.replace(" --", " -")
    return line[:MAX_CAPTION].strip()


def _control_for(control_dir: Optional[str], media: str) -> Optional[str]:
    if not control_dir:
        return None
    from ..executor.musubi.dataset import IMAGE_EXTENSIONS

    stem = os.path.splitext(os.path.basename(media))[0]
    for ext in IMAGE_EXTENSIONS:
        path = os.path.join(control_dir, stem + ext)
        if os.path.isfile(path):
            return path
    return None


def first_item(dataset: MusubiDataset) -> Optional[FirstItem]:
    """The first item with a caption, in file-name order, of the first dataset that has one."""
    from ..executor.musubi.dataset import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    for index, ds in enumerate(dataset.config.datasets):
        if ds.directory:
            extensions = VIDEO_EXTENSIONS if ds.kind == "video" else IMAGE_EXTENSIONS
            caption_ext = dataset.config.caption_extension(index) or ".txt"
            try:
                names = sorted(os.listdir(ds.directory))
            except OSError:
                continue
            for name in names:
                stem, ext = os.path.splitext(name)
                if ext not in extensions:
                    continue
                try:
                    with open(os.path.join(ds.directory, stem + caption_ext), encoding="utf-8",
                              errors="replace") as fh:
                        caption = _caption_text(fh.read(MAX_CAPTION * 4))
                except OSError:
                    continue
                if caption:
                    media = os.path.join(ds.directory, name)
                    return FirstItem(caption, media, _control_for(ds.control_directory, media))
        elif ds.jsonl_file:
            item = _first_jsonl(ds.jsonl_file)
            if item is not None:
                return item
    return None


def _first_jsonl(path: str) -> Optional[FirstItem]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and isinstance(entry.get("caption"), str):
                    caption = _caption_text(entry["caption"])
                    media = entry.get("image_path") or entry.get("video_path")
                    control = entry.get("control_path")
                    if caption:
                        return FirstItem(caption, media if isinstance(media, str) else None,
                                         control if isinstance(control, str) else None)
    except OSError:
        return None
    return None


def missing_sampling_models(arch: Architecture, models: MusubiModels) -> list[str]:
    """The models a sample needs (VAE, text encoders, ...) that the Models node leaves out."""
    values = arch.resolve_selectors(models.selectors)
    return [m.label or m.name for m in arch.models
            if m.sampling and catalogue.TRAIN in m.steps and m.name not in models.paths
            and any(m.required(step, values) for step in m.required_for)]


def default_prompt(arch: Architecture, models: MusubiModels, dataset: MusubiDataset) -> tuple[Optional[str], str]:
    """(the default sample prompt line, or None; what it is made of, or why there is none)."""
    spec = arch.sample_for(models.selectors)
    if spec is None:
        return None, f"no default sample for {arch.display_name}: musubi's docs give no sample settings"
    if spec.unsupported:
        return None, f"no default sample: {spec.unsupported}; write the prompt yourself"
    missing = missing_sampling_models(arch, models)
    if missing:
        return None, f"no default sample: the Models node has no {', '.join(missing)}"
    item = first_item(dataset)
    if item is None:
        return None, "no default sample: no item of the dataset has a caption"
    parts = [item.caption, f"--w {spec.width}", f"--h {spec.height}"]
    if spec.frames:
        parts.append(f"--f {spec.frames}")
    if spec.steps:
        parts.append(f"--s {spec.steps}")
    parts.append(f"--d {SEED}")
    if spec.start_image:
        if not item.media or "video" in dataset.media:
            return None, "no default sample: an image-to-video sample needs a start image (--i path)"
        parts.append(f"--i {item.media}")
    control = arch.control_for(models.selectors)
    if control in ("required", "exactly_one") or (control == "optional" and spec.references and item.control):
        if not item.control:
            return None, "no default sample: it needs the first item's control image, which was not found"
        parts.append(f"--ci {item.control}")
    steps = f"{spec.steps} steps" if spec.steps else "musubi's default steps"
    return " ".join(parts), (f"the dataset's first caption at {spec.width}x{spec.height}, {steps} "
                             f"(musubi's docs/{spec.source})")

"""The values that travel on this pack's wires: MUSUBI_DATASET, MUSUBI_MODELS and
MUSUBI_TRAINING_OPTIONS.

Plain frozen dataclasses (ComfyUI only stores and passes them); ``__str__`` is what
ComfyUI shows for them in an error's "current inputs". No ComfyUI imports.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    from ..executor.musubi.dataset import DatasetConfig

DATASET_TYPE = "MUSUBI_DATASET"
MODELS_TYPE = "MUSUBI_MODELS"
OPTIONS_TYPE = "MUSUBI_TRAINING_OPTIONS"


@dataclass(frozen=True)
class DatasetItems:
    """What one ``[[datasets]]`` table will give musubi."""

    kind: str  # image | video
    source: str
    items: int  # images with a caption file, or videos (JSONL: lines)
    batch_size: int
    cache_directory: str

    @property
    def batches(self) -> int:
        return math.ceil(self.items / max(1, self.batch_size)) if self.items else 0


@dataclass(frozen=True)
class MusubiDataset:
    """A dataset config on disk plus what it contains.

    ``toml_path`` is the file the scripts get as ``--dataset_config``; ``config`` its parsed
    form; ``parts`` one entry per ``[[datasets]]`` table.
    """

    toml_path: str
    config: DatasetConfig = field(repr=False, compare=False)
    parts: tuple[DatasetItems, ...] = ()
    fingerprint: str = ""
    # steps upstream that only did a dry run (their outputs will not exist yet)
    pending: tuple[str, ...] = ()

    @property
    def items(self) -> int:
        return sum(p.items for p in self.parts)

    @property
    def expected_batches(self) -> int:
        """Batches musubi's caching bar is expected to count (bucketing may add a few)."""
        return sum(p.batches for p in self.parts)

    @property
    def media(self) -> set[str]:
        return {p.kind for p in self.parts}

    @property
    def cache_directories(self) -> list[str]:
        return [p.cache_directory for p in self.parts]

    @property
    def has_control(self) -> bool:
        return any(ds.control_directory for ds in self.config.datasets)

    def summary(self) -> str:
        lines = [f"dataset config: {self.toml_path}"]
        for i, p in enumerate(self.parts):
            lines.append(f"  [{i}] {p.items} {p.kind}{'s' if p.items != 1 else ''} from {p.source} "
                         f"(batch size {p.batch_size}) -> cache {p.cache_directory}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"MusubiDataset({self.toml_path}, {self.items} items)"


@dataclass(frozen=True)
class MusubiModels:
    """The model files and variant choices for one architecture.

    ``paths`` maps the catalogue's ModelInput names to full paths (or Hugging Face ids);
    unset optional models are absent. ``selectors`` holds every selector's value.
    """

    arch: str
    paths: Mapping[str, str]
    selectors: Mapping[str, Any]
    names: Mapping[str, str] = field(default_factory=dict)  # as picked in the dropdown

    def __str__(self) -> str:
        picked = ", ".join(f"{k}={v}" for k, v in self.names.items())
        sel = ", ".join(f"{k}={v}" for k, v in self.selectors.items())
        return f"MusubiModels({self.arch}: {picked}{'; ' + sel if sel else ''})"


@dataclass(frozen=True)
class TrainingOptions:
    """The Train node's advanced inputs, set on a chain of Musubi ... Options nodes.

    ``values`` maps a Train input name (``optimizer_type``, ``blocks_to_swap``, ...) to the
    value its options node got; ``origin`` maps it to that node's title; ``subjects`` lists the
    chained nodes' subjects in order (each may appear once).
    """

    values: Mapping[str, Any] = field(default_factory=dict)
    origin: Mapping[str, str] = field(default_factory=dict)
    subjects: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "TrainingOptions(" + ", ".join(f"{k}={v!r}" for k, v in sorted(self.values.items())) + ")"


def count_items(config: DatasetConfig) -> tuple[DatasetItems, ...]:
    """Per-table item counts, counted the way musubi globs (non-recursive; images without a
    caption file are skipped by musubi, so they are not counted)."""
    out = []
    for i, ds in enumerate(config.datasets):
        kind = ds.kind or "image"
        batch = int(config.value(i, "batch_size", 1) or 1)
        cache = config.cache_directory(i) or ""
        caption = config.caption_extension(i)
        if ds.directory:
            n = _count_folder(ds.directory, kind, caption)
        elif ds.jsonl_file:
            n = _count_jsonl(ds.jsonl_file)
        else:
            n = 0
        out.append(DatasetItems(kind, ds.source or "", n, batch, cache))
    return tuple(out)


def _count_folder(folder: str, kind: str, caption: Optional[str]) -> int:
    from ..executor.musubi.dataset import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    present = set(names)
    n = 0
    for name in names:
        stem, ext = os.path.splitext(name)
        if kind == "video":
            n += ext in VIDEO_EXTENSIONS
        elif ext in IMAGE_EXTENSIONS and (caption is None or stem + caption in present):
            n += 1
    return n


def _count_jsonl(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return 0

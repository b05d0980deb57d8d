"""Dataset nodes: build a musubi dataset TOML from widgets (written under
``<output>/musubi-tuner/datasets/``, named by its content), or load an existing one. Both output a
MUSUBI_DATASET; IS_CHANGED hashes the media folders, so a changed dataset re-runs the chain.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from typing import TYPE_CHECKING

from . import host
from .errors import user_error
from .fingerprint import digest, file_state, folder_state
from .values import DATASET_TYPE, MusubiDataset, count_items

if TYPE_CHECKING:
    from ..executor.musubi.dataset import DatasetConfig

# executor.musubi.dataset (and tomllib) load on first use, not when ComfyUI imports the pack.
FRAME_EXTRACTIONS = ("head", "chunk", "slide", "uniform", "full")

CATEGORY = "Musubi Tuner/Dataset"


def _output_roots() -> tuple[str, ...]:
    """output_roots from the server's settings files (a broken file: none, so only ComfyUI's)."""
    from ..executor.errors import TrainerError
    from .check import settings

    try:
        return tuple(settings().output_roots)
    except TrainerError:
        return ()


def _parse_frames(text: str) -> list[int]:
    try:
        frames = [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise user_error(f"target_frames {text!r} is not a list of whole numbers",
                         "write frame counts separated by commas, e.g. 1, 25, 45") from None
    if not frames or any(n < 1 for n in frames):
        raise user_error(f"target_frames {text!r} needs at least one positive frame count",
                         "write e.g. 1, 25, 45 (musubi rounds each to 4*N+1)")
    return frames


def _default_cache_directory(source: str) -> str:
    """``<output>/musubi-tuner/cache/<folder name>-<hash>``: keeps the user's media folder
    free of cache files and gives every source folder its own cache folder (musubi
    refuses two datasets sharing one)."""
    name = os.path.basename(os.path.normpath(source)) or "dataset"
    return os.path.join(host.output_directory(), host.PACK_FOLDER, "cache",
                        f"{name}-{digest(os.path.normcase(source))[:8]}")


def _problems_error(config: DatasetConfig, what: str) -> Exception:
    lines = "\n".join(f"  - {p}" for p in config.errors)
    return user_error(f"{what} has {len(config.errors)} problem(s); nothing was run:\n{lines}",
                      "change the inputs named above")


def make_dataset(config: DatasetConfig, toml_path: str) -> MusubiDataset:
    parts = count_items(config)
    try:
        text = open(toml_path, "rb").read()
    except OSError:
        text = b""
    sources = tuple(folder_state(ds.directory) for ds in config.datasets if ds.directory)
    return MusubiDataset(toml_path=toml_path, config=config, parts=parts,
                         fingerprint=digest(text, sources))


def _empty_problems(dataset: MusubiDataset) -> list[str]:
    out = []
    for i, p in enumerate(dataset.parts):
        folder = dataset.config.datasets[i].directory if i < len(dataset.config.datasets) else None
        if folder and os.path.isfile(folder):
            out.append(f"datasets[{i}]: {folder} is a file, not a folder")
        elif p.items == 0:
            out.append(f"datasets[{i}]: no {p.kind}s found in {p.source}"
                       + (" with a caption file" if p.kind == "image" else ""))
    return out


DATASET_OUTPUT_TOOLTIP = ("The dataset config (TOML file, parsed settings and item counts); wire it to the "
                          "cache and training nodes.")


class MusubiDatasetConfig:
    DESCRIPTION = ("Builds a musubi-tuner dataset config (TOML) from a folder of images or videos with "
                   "caption files. Chain several of these through 'previous' to train on more than one folder.")
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = (DATASET_TYPE,)
    RETURN_NAMES = ("dataset",)
    OUTPUT_TOOLTIPS = (DATASET_OUTPUT_TOOLTIP,)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "media": (["image", "video"], {
                    "default": "image",
                    "tooltip": "What the folder holds: still images, or video clips (video works only for "
                               "HunyuanVideo, HunyuanVideo 1.5, Wan, FramePack and Kandinsky 5)."}),
                "directory": ("STRING", {
                    "default": "",
                    "tooltip": "Folder with the images or videos and a caption file next to each "
                               "(same name, caption extension). A relative path is taken inside ComfyUI's "
                               "input folder. Images without a caption file are skipped by musubi. Outside "
                               "ComfyUI's input, output and models folders it needs a read_roots entry in the "
                               "pack's settings."}),
                "caption_extension": ("STRING", {
                    "default": ".txt", "tooltip": "Extension of the caption files, with the dot."}),
                "width": ("INT", {"default": 1024, "min": 64, "max": 8192, "step": 16,
                                  "tooltip": "Training resolution width in pixels (buckets are built around "
                                             "width x height)."}),
                "height": ("INT", {"default": 1024, "min": 64, "max": 8192, "step": 16,
                                   "tooltip": "Training resolution height in pixels."}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 256,
                                       "tooltip": "Items per training batch for this folder."}),
                "num_repeats": ("INT", {"default": 1, "min": 1, "max": 10000,
                                        "tooltip": "How many times each item is seen per epoch (weights this "
                                                   "folder against the others)."}),
                "enable_bucket": ("BOOLEAN", {"default": True,
                                              "tooltip": "Group items of similar aspect ratio into buckets instead "
                                                         "of cropping everything to width x height."}),
                "bucket_no_upscale": ("BOOLEAN", {"default": False,
                                                  "tooltip": "With buckets: never upscale an item smaller than the "
                                                             "resolution."}),
                "target_frames": ("STRING", {"default": "1, 25, 45",
                                             "tooltip": "Video only: clip lengths in frames, comma separated "
                                                        "(musubi rounds each to 4*N+1)."}),
                "frame_extraction": (list(FRAME_EXTRACTIONS), {
                    "default": "head",
                    "tooltip": "Video only: how clips are cut: head (start), chunk, slide, uniform, or full "
                               "(whole video, FramePack)."}),
                "frame_stride": ("INT", {"default": 1, "min": 1, "max": 1000,
                                         "tooltip": "Video only: frames between clip starts for 'slide'."}),
                "frame_sample": ("INT", {"default": 1, "min": 1, "max": 1000,
                                         "tooltip": "Video only: number of clips for 'uniform'."}),
                "max_frames": ("INT", {"default": 129, "min": 1, "max": 100000,
                                       "tooltip": "Video only: longest clip for 'full'."}),
                "source_fps": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1000.0, "step": 0.001,
                                         "tooltip": "Video only: the clips' real frame rate; musubi resamples to "
                                                    "the model's rate. 0 = use every frame as it is."}),
            },
            "optional": {
                "control_directory": ("STRING", {
                    "default": "",
                    "tooltip": "Folder with control images (same base names), for edit/control training "
                               "(FLUX.1 Kontext, Qwen-Image-Edit, Wan one-frame, ...). Empty = none. Like "
                               "directory, it must lie in ComfyUI's folders or a read_roots folder."}),
                "cache_directory": ("STRING", {
                    "default": "",
                    "tooltip": "Where latent and text-encoder caches go. Empty = a folder of its own under "
                               "ComfyUI's output/musubi-tuner/cache."}),
                "previous": (DATASET_TYPE, {
                    "tooltip": "Another dataset to train on together with this folder (chain dataset nodes)."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, directory: Optional[str] = None, control_directory: Optional[str] = None,
                        cache_directory: Optional[str] = None, caption_extension: Optional[str] = None,
                        source_fps: Optional[float] = None) -> Any:
        # Only these text inputs are named, so ComfyUI still checks every other widget itself.
        from . import guards

        problems: list[Optional[str]] = []
        if directory is not None:
            problems.append(guards.labelled("directory", guards.folder_problem(directory, readable=True)
                                            if directory.strip() else "set the folder with your images or videos"))
        if control_directory and control_directory.strip():
            problems.append(guards.labelled("control_directory", guards.folder_problem(
                control_directory, "control folder", readable=True)))
        if cache_directory and cache_directory.strip():
            problems.append(guards.writable_folder_problem(cache_directory, "cache_directory", _output_roots()))
        if caption_extension is not None:
            problems.append(guards.caption_extension_problem(caption_extension))
        problems += guards.number_problems(cls, {"source_fps": source_fps})
        found = [p for p in problems if p]
        return True if not found else "; ".join(found)

    @classmethod
    def IS_CHANGED(cls, **inputs: Any) -> str:
        folders = [inputs.get("directory"), inputs.get("control_directory")]
        states = [folder_state(host.resolve_user_path(f)) if f and f.strip() else () for f in folders]
        values = {k: v for k, v in inputs.items() if k != "previous"}
        return digest(sorted(values.items()), states)

    def build(self, media: str, directory: str, caption_extension: str, width: int, height: int,
              batch_size: int, num_repeats: int, enable_bucket: bool, bucket_no_upscale: bool,
              target_frames: str, frame_extraction: str, frame_stride: int, frame_sample: int,
              max_frames: int, source_fps: float, control_directory: str = "", cache_directory: str = "",
              previous: Optional[MusubiDataset] = None) -> tuple[MusubiDataset]:
        from ..executor.musubi.dataset import DatasetSpec, GeneralSpec, build_dataset_config, render_toml, write_atomic

        from . import guards

        source = host.resolve_user_path(directory)
        # wired values skipped VALIDATE_INPUTS
        bad = guards.finite_problem("source_fps", source_fps) or guards.read_roots_problem(
            [("directory", source)] + ([("control_directory", host.resolve_user_path(control_directory))]
                                       if control_directory.strip() else []))
        if bad:
            raise user_error(bad, "change the input named above; nothing was run")
        spec: dict[str, Any] = {
            "cache_directory": (host.resolve_user_path(cache_directory) if cache_directory.strip()
                                else _default_cache_directory(source)),
            "caption_extension": caption_extension.strip() or None,
            "resolution": [int(width), int(height)],
            "batch_size": int(batch_size),
            "num_repeats": int(num_repeats),
            "enable_bucket": bool(enable_bucket),
            "bucket_no_upscale": bool(bucket_no_upscale),
        }
        if control_directory.strip():
            spec["control_directory"] = host.resolve_user_path(control_directory)
        if media == "video":
            spec.update(video_directory=source, target_frames=_parse_frames(target_frames),
                        frame_extraction=frame_extraction, frame_stride=int(frame_stride),
                        frame_sample=int(frame_sample), max_frames=int(max_frames))
            if source_fps > 0:
                spec["source_fps"] = float(source_fps)
        else:
            spec["image_directory"] = source
        datasets = list(previous.config.datasets) if previous is not None else []
        datasets.append(DatasetSpec(**spec))
        config = build_dataset_config(datasets, previous.config.general if previous else GeneralSpec(),
                                      base_dir=host.input_directory())
        if not config.ok:
            raise _problems_error(config, "the dataset")
        text = render_toml(config)
        path = os.path.join(host.datasets_directory(), f"dataset-{digest(text)[:16]}.toml")
        write_atomic(path, text, overwrite="ours")
        config.path = path
        dataset = make_dataset(config, path)
        empty = _empty_problems(dataset)
        if empty:
            raise user_error("the dataset has nothing to train on:\n" + "\n".join(f"  - {e}" for e in empty),
                             "put images (or videos) with a caption file of the same name into the folder")
        return (dataset,)


class MusubiLoadDatasetConfig:
    DESCRIPTION = ("Loads an existing musubi-tuner dataset config (.toml or .json) and checks it the way "
                   "musubi will, reporting every problem at once.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (DATASET_TYPE,)
    RETURN_NAMES = ("dataset",)
    OUTPUT_TOOLTIPS = (DATASET_OUTPUT_TOOLTIP,)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "path": ("STRING", {
                "default": "",
                "tooltip": "Path of the dataset config file (.toml or .json). A relative path is taken inside "
                           "ComfyUI's input folder. Paths inside the file should be absolute. The file and "
                           "the folders it names must lie in ComfyUI's input, output or models folders or a "
                           "read_roots folder of the pack's settings."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, path: Optional[str] = None) -> Any:
        if path is not None:
            if not path.strip():
                return "set the path of a dataset config (.toml)"
            from . import guards

            return guards.labelled("path", guards.file_problem(path, readable=True)) or True
        return True

    @classmethod
    def IS_CHANGED(cls, path: str = "", **_: Any) -> str:
        if not path or not path.strip():
            return ""
        from ..executor.musubi.dataset import load_dataset_config

        full = host.resolve_user_path(path)
        config = load_dataset_config(full)
        sources = [folder_state(ds.directory) for ds in config.datasets if ds.directory]
        sources += [folder_state(ds.control_directory) for ds in config.datasets if ds.control_directory]
        sources += [file_state(ds.jsonl_file) for ds in config.datasets if ds.jsonl_file]
        try:
            content = open(full, "rb").read()
        except OSError:
            content = b""
        return digest(full, content, sources)

    def load(self, path: str) -> tuple[MusubiDataset]:
        from ..executor.musubi.dataset import load_dataset_config
        from ..executor.musubi.reads import dataset_reads
        from . import guards

        full = host.resolve_user_path(path)
        outside = guards.read_roots_problem([("path", full)])  # a wired path skipped VALIDATE_INPUTS
        if outside:
            raise user_error(outside, "change the path; nothing was run")
        config = load_dataset_config(full)
        # the folders and files the config names, before anything counts or lists them
        outside = guards.read_roots_problem(dataset_reads(config))
        if outside:
            raise user_error(f"{os.path.basename(full)}: {outside}", "change the paths in the config; nothing was run")
        if not config.ok:
            raise _problems_error(config, os.path.basename(full))
        dataset = make_dataset(config, full)
        empty = _empty_problems(dataset)
        if empty:
            raise user_error("the dataset has nothing to train on:\n" + "\n".join(f"  - {e}" for e in empty),
                             "check the folders in the config and that every image has a caption file")
        return (dataset,)


NODE_CLASS_MAPPINGS = {
    "MusubiDatasetConfig": MusubiDatasetConfig,
    "MusubiLoadDatasetConfig": MusubiLoadDatasetConfig,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MusubiDatasetConfig": "Musubi Dataset Config",
    "MusubiLoadDatasetConfig": "Musubi Load Dataset Config",
}

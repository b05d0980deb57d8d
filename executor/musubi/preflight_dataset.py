"""Pre-flight of the dataset: every [[datasets]] entry's media, captions, JSONL files, control
images and cache folders, checked with directory listings only (no image is opened).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Optional

from .dataset import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, DatasetConfig, DatasetSpec
from .files import inside_roots, listdir, resolve

if TYPE_CHECKING:  # the checks' shared state; a type only
    from .preflight import _Context

__all__ = ["check_datasets"]


def _source_label(ds: DatasetSpec) -> str:
    for key in ("image_directory", "image_jsonl_file", "video_directory", "video_jsonl_file"):
        if getattr(ds, key) is not None:
            return key
    return "source"


def check_datasets(ctx: _Context, config: DatasetConfig, suffix: Optional[str]) -> None:
    from . import catalogue as cat

    arch, step = ctx.arch, ctx.step
    media_kinds = arch.media_for(ctx.selectors)
    control = arch.control_for(ctx.selectors)
    video_archs = [a.display_name for a in cat.ARCHITECTURES.values() if "video" in a.media]
    for i, ds in enumerate(config.datasets):
        prefix = f"datasets[{i}]"
        if ds.kind is None or ds.source is None:
            continue  # reported by the loader
        if ds.kind == "video" and "video" not in media_kinds:
            if "video" in arch.media:
                fix = "use image_directory with still images in this mode, or change the selectors"
            else:
                fix = ("use image_directory with still images, or an architecture that takes video: "
                       + ", ".join(video_archs))
            ctx.error(prefix, f"a video dataset, but {arch.display_name} trains on images here "
                      f"(musubi: Unsupported architecture: {suffix or arch.cache_suffix})", fix)
            continue
        if ds.kind == "image" and "image" not in media_kinds:
            ctx.error(prefix, f"an image dataset, but {arch.display_name} trains on video clips in this mode",
                      "use video_directory, or select the one-frame mode")
            continue
        source_key = _source_label(ds)
        source = resolve(ds.source, ctx.cwd)
        media: list[str] = []
        if ds.directory is not None:
            media = _check_media_folder(ctx, config, i, source, source_key, need_media=step != cat.TRAIN)
        else:
            _check_jsonl(ctx, prefix, source_key, source, ds.kind, control)
        if ds.control_directory is not None or control in ("required", "exactly_one"):
            _check_controls(ctx, ds, prefix, media, control, suffix)
        cache = config.cache_directory(i)
        if cache is not None:
            cache_path = resolve(cache, ctx.cwd)
            if os.path.isfile(cache_path):
                ctx.error(f"{prefix}.cache_directory", f"{cache_path} is a file, not a folder",
                          "point cache_directory at a folder (it is created if missing)")
            elif step == cat.TRAIN and suffix and ctx.check_caches:
                _check_caches(ctx, prefix, cache_path, suffix, ds.kind)
            elif step != cat.TRAIN and ctx.roots and not inside_roots(cache_path, ctx.roots):
                # Caching writes there, and deletes the cache files the dataset no longer makes.
                where = "" if ds.cache_directory is not None else \
                    " (no cache_directory: musubi writes the caches into the media folder)"
                ctx.error(f"{prefix}.cache_directory", f"{cache_path}{where} is outside the folders this pack "
                          f"may write to ({', '.join(ctx.roots)})", "set cache_directory to a folder inside one of "
                          "them, or add the folder to output_roots in the settings file on the server")


def _check_media_folder(ctx: _Context, config: DatasetConfig, i: int, folder: str, key: str,
                        need_media: bool) -> list[str]:
    """Counts media and captions; returns the media files musubi will use."""
    ds = config.datasets[i]
    name = f"datasets[{i}].{key}"
    if not os.path.exists(folder):
        if need_media:
            ctx.error(name, f"folder not found: {folder}", "check the path (absolute paths are safest)")
        return []
    if not os.path.isdir(folder):
        ctx.error(name, f"{folder} is a file, not a folder", f"set {key} to the folder holding the media")
        return []
    names = listdir(folder) or []
    exts = IMAGE_EXTENSIONS if ds.kind == "image" else VIDEO_EXTENSIONS
    media = sorted(n for n in names if os.path.splitext(n)[1] in exts)
    # Videos may also be folders of frames only through JSONL, so only files count here.
    caption_ext = config.caption_extension(i)
    if not media:
        if need_media:
            kinds = " ".join(sorted({e.lower() for e in exts}))
            ctx.error(name, f"no {'images' if ds.kind == 'image' else 'videos'} in {folder} "
                      "(musubi would report 'found 0' and cache nothing)",
                      f"put the training {'images' if ds.kind == 'image' else 'videos'} ({kinds}) in that folder")
        return []
    if not isinstance(caption_ext, str) or not caption_ext:
        return media
    # musubi matches captions by splitext(caption name), i.e. "a.txt" -> "a".
    caption_bases = {os.path.splitext(n)[0] for n in names if n.endswith(caption_ext)}
    with_caption = [m for m in media if os.path.splitext(m)[0] in caption_bases]
    missing = len(media) - len(with_caption)
    kind_word = "image" if ds.kind == "image" else "video"
    if ds.kind == "image":
        if not with_caption:
            if need_media:
                ctx.error(name, f"none of the {len(media)} images in {folder} has a {caption_ext} caption file "
                          "(musubi skips images without one, so nothing would be trained)",
                          f"add a caption file beside each image: {os.path.splitext(media[0])[0]}{caption_ext}")
        elif missing and need_media:
            examples = ", ".join(m for m in media if os.path.splitext(m)[0] not in caption_bases)[:200]
            ctx.warn(name, f"{missing} of {len(media)} images have no {caption_ext} caption and will be "
                     f"skipped silently by musubi ({examples})",
                     f"add a {caption_ext} file beside each, or remove those images")
    elif missing and need_media:
        # Video captions are read unconditionally: a missing one stops caching.
        ctx.error(name, f"{missing} of {len(media)} videos have no {caption_ext} caption file "
                  "(musubi stops with FileNotFoundError)", f"add a {caption_ext} file beside each {kind_word}")
    return with_caption if ds.kind == "image" else media


def _check_jsonl(ctx: _Context, prefix: str, key: str, path: str, kind: str, control: str) -> list[str]:
    name = f"{prefix}.{key}"
    if not os.path.exists(path):
        ctx.error(name, f"file not found: {path}", "check the path of the JSONL file")
        return []
    if os.path.isdir(path):
        ctx.error(name, f"{path} is a folder, not a JSONL file",
                  f"use {'image' if kind == 'image' else 'video'}_directory for a folder")
        return []
    media_key = "image_path" if kind == "image" else "video_path"
    items: list[str] = []
    bad: list[int] = []
    try:
        with open(path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    item = json.loads(raw)
                except ValueError:
                    bad.append(n)
                    continue
                if not isinstance(item, dict) or media_key not in item or "caption" not in item:
                    bad.append(n)
                    continue
                items.append(str(item[media_key]))
    except OSError as exc:
        ctx.error(name, f"cannot read {path}: {exc.strerror or exc}", "check the file's permissions")
        return []
    if bad:
        ctx.error(name, f"{len(bad)} line(s) of {path} are not JSON objects with {media_key!r} and "
                  f"'caption' (line {', '.join(map(str, bad[:5]))})",
                  f'write one object per line: {{"{media_key}": "/abs/path", "caption": "..."}}')
    elif not items:
        ctx.error(name, f"{path} lists no items", f"add one JSON object per line with {media_key} and caption")
    return items


def _control_map(image_bases: list[str], control_names: list[str]) -> dict[str, list[str]]:
    """musubi's rule: a control matches an image when its file name starts with the image's
    base name followed by '.' or '_'; longer image names pick first; a control is used once."""
    index: dict[str, list[str]] = {}
    for c in control_names:
        for k, ch in enumerate(c):
            if ch in "._":
                index.setdefault(c[:k], []).append(c)
    used: set[str] = set()
    out: dict[str, list[str]] = {}
    for base in sorted(image_bases, key=len, reverse=True):
        found = [c for c in index.get(base, []) if c not in used]
        used.update(found)
        out[base] = found
    return out


def _check_controls(ctx: _Context, ds: DatasetSpec, prefix: str, media: list[str], control: str,
                    suffix: Optional[str]) -> None:
    name = f"{prefix}.control_directory"
    who = ctx.arch.display_name
    if ds.control_directory is None:
        if ds.directory is not None:
            need = "exactly one control image per image" if control == "exactly_one" else "control images"
            ctx.error(name, f"{who} needs {need}, but no control_directory is set",
                      "set control_directory to a folder with one control image per training image, "
                      "named like the image (img1.png -> img1.png or img1_0.png)")
        return
    if control == "none":
        ctx.warn(name, f"{who} does not use control images; control_directory is ignored",
                 "remove control_directory")
    folder = resolve(ds.control_directory, ctx.cwd)
    if not os.path.isdir(folder):
        ctx.error(name, f"control folder not found: {folder}" if not os.path.exists(folder)
                  else f"{folder} is a file, not a folder", "point control_directory at the control images' folder")
        return
    if not media:
        return
    names = listdir(folder) or []
    if ds.kind == "video":
        stems = {os.path.splitext(n)[0] for n in names if os.path.splitext(n)[1] in VIDEO_EXTENSIONS
                 or os.path.isdir(os.path.join(folder, n))}
        missing = [m for m in media if m not in names and os.path.splitext(m)[0] not in stems]
    else:
        controls = [n for n in names if os.path.splitext(n)[1] in IMAGE_EXTENSIONS]
        per_image = 1
        if suffix in ("wan", "fp") and ds.fp_1f_clean_indices:
            per_image = len(ds.fp_1f_clean_indices)
        matched = _control_map([os.path.splitext(m)[0] for m in media], controls)
        missing = [m for m in media if len(matched[os.path.splitext(m)[0]]) < per_image]
    if missing:
        ctx.error(name, f"{len(missing)} of {len(media)} training items have no matching control in {folder} "
                  f"(e.g. {missing[0]}; musubi: Could not find matching control images)",
                  "add a control file with the same base name (img1.png -> img1.png, img1_0.png, ...)")


def _check_caches(ctx: _Context, prefix: str, folder: str, suffix: str, kind: str) -> None:
    name = f"{prefix}.cache_directory"
    names = listdir(folder)
    fix = "run the cache latents step and then the cache text encoder step for this dataset first"
    if names is None:
        ctx.error(name, f"training before caching: the cache folder {folder} does not exist", fix)
        return
    latent_end, te_end = f"_{suffix}.safetensors", f"_{suffix}_te.safetensors"
    latents = [n for n in names if n.endswith(latent_end)]
    te = {n for n in names if n.endswith(te_end)}
    if not latents:
        others = sorted({n.rsplit("_", 1)[-1][: -len(".safetensors")] for n in names
                         if n.endswith(".safetensors") and not n.endswith("_te.safetensors")})
        extra = f" (it has caches for {', '.join(others)}: another architecture or model version)" if others else ""
        ctx.error(name, f"training before caching: no latent cache files *{latent_end} in {folder}{extra}", fix)
        return
    drop = 3 if kind == "video" else 2
    keys = ["_".join(n[: -len(".safetensors")].split("_")[:-drop]) for n in latents]
    paired = sum(1 for k in set(keys) if f"{k}{te_end}" in te)
    if not te:
        ctx.error(name, f"no text-encoder cache files *{te_end} in {folder} ({len(latents)} latent caches found)",
                  "run the cache text encoder step for this dataset")
    elif paired < len(set(keys)):
        ctx.warn(name, f"{len(set(keys)) - paired} of {len(set(keys))} cached items have no text-encoder cache "
                 "and will be skipped", "run the cache text encoder step again")

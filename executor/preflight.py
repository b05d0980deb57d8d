"""Pre-flight: every problem with a planned musubi step found at once, before anything runs.

Cheap checks only (stat, directory listings, 32-byte header sniffs, the cached venv probe):
no model is loaded, no musubi code runs, so a broken setup is rejected in well under a
second instead of after minutes of model loading. Each Problem names the input and the
fix. Imports only the standard library and sibling modules.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from .dataset import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, DatasetConfig, DatasetSpec, load_dataset_config
from .errors import SetupError
from .extra_args import check_extra_args
from .problems import ERROR, WARNING, Problem

__all__ = ["preflight", "effective_options", "check_output_name", "existing_outputs", "sniff_model_file",
           "MODEL_EXTENSIONS"]

# What musubi's loaders open: safetensors (most DiTs must be), torch pickles/zips.
MODEL_EXTENSIONS = (".safetensors", ".sft", ".pt", ".pth", ".bin", ".ckpt")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                     *(f"lpt{i}" for i in range(1, 10))}
_BAD_NAME_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')

# Pack-level options: consumed by plans, never passed to musubi.
PACK_OPTIONS = ("overwrite",)


def _steps():
    from . import catalogue

    return catalogue


# ---------------------------------------------------------------- small helpers

def _resolve(path: str, cwd: Optional[str]) -> str:
    path = os.path.expanduser(path)
    if os.path.isabs(path) or not cwd:
        return path
    return os.path.join(cwd, path)


def _is_set(value: Any) -> bool:
    return value is not None and value is not False and value != ""


def effective_options(arch: Any, step: str, options: Optional[Mapping[str, Any]],
                      selectors: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The options a step really gets, as ``build_args`` merges them: for training the
    recommended settings, for caching the cache defaults, overridden by the user's
    (None/False/"" unsets)."""
    cat = _steps()
    out: dict[str, Any] = {}
    try:
        if step == cat.TRAIN:
            out.update(arch.recommended_for(selectors))
        else:
            out.update(arch.cache_recommended.get(step, {}))
    except SetupError:
        pass  # bad selectors are reported on their own
    out.update(options or {})
    return {k: v for k, v in out.items() if _is_set(v)}


def sniff_model_file(path: str) -> Optional[str]:
    """None when ``path`` looks like a model file of its extension, else why not.
    Reads at most 32 bytes."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(32)
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if size == 0:
        return "the file is empty (an interrupted download?)"
    if head.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the model (the download fetched only the pointer)"
    if head.lstrip().lower().startswith((b"<!doctype", b"<html")):
        return "it is an HTML page (a failed download), not a model"
    ext = os.path.splitext(path)[1].lower()
    if ext in (".safetensors", ".sft"):
        if len(head) < 9:
            return "too short to be a safetensors file"
        (header_len,) = struct.unpack("<Q", head[:8])
        if header_len < 2 or header_len > 100 * 1024 * 1024 or 8 + header_len > size or head[8:9] != b"{":
            return "not a valid safetensors file (bad header; truncated or renamed?)"
    elif ext == ".gguf" or head.startswith(b"GGUF"):
        return "it is a GGUF file; musubi-tuner reads only .safetensors / PyTorch checkpoints"
    elif ext in (".pt", ".pth", ".bin", ".ckpt"):
        if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
            return "not a PyTorch checkpoint (neither a zip nor a pickle)"
    return None


def check_output_name(name: Any, input_name: str = "output_name") -> list[Problem]:
    """A LoRA name becomes a file name on every OS, and a command-line value."""
    fix = "use letters, digits, '-' and '_' only, e.g. my_lora"
    if not isinstance(name, str) or not name.strip():
        return [Problem(input_name, "no output name", "give the LoRA a name, e.g. my_lora")]
    out: list[Problem] = []
    if "\x00" in name:
        return [Problem(input_name, "contains a NUL character", fix)]
    if name.startswith("-"):
        out.append(Problem(input_name, f"{name!r} starts with '-', so musubi would read it as a flag", fix))
    if _BAD_NAME_CHARS.search(name) or name in (".", ".."):
        out.append(Problem(input_name, f"{name!r} contains path separators or characters Windows forbids "
                           "in file names", fix))
    if name.endswith((".", " ")):
        out.append(Problem(input_name, f"{name!r} ends with a dot or space, which Windows strips", fix))
    if name.split(".")[0].strip().lower() in _WINDOWS_RESERVED:
        out.append(Problem(input_name, f"{name!r} is a reserved device name on Windows", fix))
    if len(name) > 150:
        out.append(Problem(input_name, f"the name is {len(name)} characters long", "use at most 150 characters"))
    if name.lower().endswith(".safetensors"):
        out.append(Problem(input_name, "musubi adds .safetensors itself",
                           f"write {name[:-len('.safetensors')]!r}"))
    return out


def existing_outputs(output_dir: str, output_name: str) -> list[str]:
    """LoRA files (final and per-epoch/step) a training run named ``output_name`` would write over."""
    try:
        names = os.listdir(output_dir)
    except OSError:
        return []
    pattern = re.compile(re.escape(output_name) + r"(-\d{6}|-step\d{8})?\.safetensors$")
    return sorted(os.path.join(output_dir, n) for n in names if pattern.match(n))


def _free_name(output_dir: str, output_name: str) -> str:
    base = re.sub(r"-\d+$", "", output_name)
    for n in range(2, 1000):
        candidate = f"{base}-{n}"
        if not existing_outputs(output_dir, candidate):
            return candidate
    return f"{base}-new"


# ---------------------------------------------------------------- the checks

@dataclass
class _Context:
    arch: Any
    step: str
    cwd: Optional[str]
    problems: list[Problem]
    selectors: dict[str, Any]
    check_caches: bool = True
    roots: tuple[str, ...] = ()  # settings.output_roots: where steps may write (empty: anywhere)

    def error(self, input_name: str, message: str, fix: str) -> None:
        self.problems.append(Problem(input_name, message, fix, ERROR))

    def warn(self, input_name: str, message: str, fix: str) -> None:
        self.problems.append(Problem(input_name, message, fix, WARNING))


def preflight(arch: Any, step: str, *, settings: Any = None, install: Any = None,
              dataset: Union[DatasetConfig, str, os.PathLike, None] = None,
              models: Optional[Mapping[str, str]] = None, selectors: Optional[Mapping[str, Any]] = None,
              options: Optional[Mapping[str, Any]] = None,
              extra_args: Union[str, Sequence[str], None] = None,
              output_dir: Optional[str] = None, output_name: Optional[str] = None,
              overwrite: bool = False, probe_report: Any = None,
              command_flags: Iterable[str] = (), flag_facts: Optional[Mapping[str, Any]] = None,
              check_caches: bool = True) -> list[Problem]:
    """Check one planned step and return every problem (errors and warnings) at once.

    ``arch``: an ``Architecture`` or its id. ``install``: a ``MusubiInstall``; when None and
    ``settings`` is given it is resolved here (a missing venv becomes a problem). Relative
    paths are checked the way musubi opens them: against its working folder (the checkout).
    ``probe_report``: a cached ``probe.ProbeReport`` for the attention / bitsandbytes checks
    (skipped when None). ``command_flags``: flags the pack's own command has (extra
    arguments may not repeat them). ``options`` may hold ``overwrite`` (a pack option).
    ``check_caches=False`` skips only the "training before caching" check (a dry run of a
    chain whose cache steps have not run yet).
    """
    cat = _steps()
    problems: list[Problem] = []
    if isinstance(arch, str):
        try:
            arch = cat.get_architecture(arch)
        except SetupError as exc:
            return [Problem("architecture", exc.message, exc.hint or "pick a listed architecture")]
    if install is None and settings is not None:
        install = _check_install(settings, problems)
    ctx = _Context(arch, step, install.root if install is not None else None, problems, {},
                   check_caches=check_caches, roots=tuple(getattr(settings, "output_roots", ()) or ()))

    script = arch.scripts.get(step)
    if script is None:
        ctx.error("step", f"{arch.display_name} has no {step} step", f"use one of: {', '.join(arch.scripts)}")
        return problems
    if install is not None:
        path = os.path.join(install.package_dir, *script.split("/"))
        if not os.path.isfile(path):
            ctx.error("musubi_tuner", f"the checkout {install.root} has no {script} ({path} is missing)",
                      "update the checkout to musubi-tuner v0.3.4 or later (git pull), "
                      "or point root_path at the right checkout")

    user_options = dict(options or {})
    overwrite = bool(overwrite) or bool(user_options.pop("overwrite", False))
    resolved = _check_selectors(ctx, selectors)
    if resolved is not None:
        ctx.selectors = resolved
    suffix = arch.suffix(resolved) if resolved is not None else None
    opts = effective_options(arch, step, user_options, resolved)
    models = {k: v for k, v in (models or {}).items() if v}
    if step == cat.CONVERT:
        _check_convert(ctx, models)
    else:
        _check_models(ctx, models, opts)
        if resolved is not None:
            _check_option_rules(ctx, user_options, opts, models)

    config: Optional[DatasetConfig] = None
    if step != cat.CONVERT:
        if dataset is None:
            ctx.error("dataset_config", "no dataset config",
                      "give the dataset TOML (or build one with the dataset node)")
        else:
            config = dataset if isinstance(dataset, DatasetConfig) else load_dataset_config(dataset)
            problems.extend(config.problems)
            if resolved is not None:
                _check_datasets(ctx, config, suffix)

    if step in (cat.TRAIN, cat.CONVERT):
        _check_output(ctx, settings, output_dir, output_name, overwrite or _is_set(opts.get("resume")))
    if step == cat.TRAIN:
        _check_train_options(ctx, opts, suffix, config)
    if probe_report is not None:
        _check_probe(ctx, probe_report, opts)

    if extra_args:
        _, extra_problems = check_extra_args(extra_args, script, command_flags=command_flags, facts=flag_facts)
        problems.extend(extra_problems)
    return _dedupe(problems)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _check_install(settings: Any, problems: list[Problem]) -> Any:
    from .config import resolve_install

    try:
        return resolve_install(settings)
    except SetupError as exc:
        problems.append(Problem("musubi_tuner", exc.message, exc.hint or "set musubi_tuner.venv_path / root_path"))
        return None


def _check_selectors(ctx: _Context, selectors: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    try:
        return ctx.arch.resolve_selectors(selectors)
    except SetupError as exc:
        ctx.error("selectors", exc.message, exc.hint or "pick a listed value")
        return None


def _check_models(ctx: _Context, models: Mapping[str, str], opts: Mapping[str, Any]) -> None:
    arch, step = ctx.arch, ctx.step
    known = {m.name: m for m in arch.models}
    for name in models:
        if name not in known:
            ctx.error(f"models.{name}", f"{arch.display_name} has no model input {name!r}",
                      f"use one of: {', '.join(known) or 'none'}")
    # Sampling during training needs the VAE and text encoders the train script loads for it.
    sampling = step == _steps().TRAIN and _is_set(opts.get("sample_prompts"))
    for m in arch.models:
        value = models.get(m.name)
        label = m.label or m.name
        if not value:
            if m.default:
                continue  # a Hugging Face id musubi fetches itself
            if m.required(step, ctx.selectors):
                ctx.error(f"models.{m.name}", f"{label} is required for {step.replace('_', ' ')}",
                          f"pick the {label} file (ComfyUI folder models/{m.folder})")
            elif sampling and m.sampling and step in m.steps and m.folder in ("vae", "text_encoders"):
                ctx.error(f"models.{m.name}", f"sample prompts are set, and sampling needs the {label}",
                          f"pick the {label} (models/{m.folder}), or remove options.sample_prompts")
            continue
        if step not in m.steps:
            continue  # one models dict serves all steps
        _check_model_value(ctx, f"models.{m.name}", label, value, m.kind, m.folder)


def _check_convert(ctx: _Context, models: Mapping[str, str]) -> None:
    conversion = getattr(ctx.arch, "lora_conversion", None)
    kind = getattr(conversion, "kind", "")
    if kind in ("none", "not_supported", "key_rename"):
        why = {"none": "its LoRAs load in ComfyUI as they are",
               "not_supported": "ComfyUI has no loader for this model",
               "key_rename": "the pack renames the keys itself, no musubi script is needed"}[kind]
        ctx.error("step", f"{ctx.arch.display_name} has no LoRA conversion step: {why}", "skip the convert step")
        return
    value = models.get("lora")
    if not value:
        ctx.error("models.lora", "no LoRA to convert", "give the trained LoRA file (.safetensors)")
        return
    _check_model_value(ctx, "models.lora", "LoRA", value, "file", "loras")


def _check_model_value(ctx: _Context, input_name: str, label: str, value: Any, kind: str, folder: str) -> None:
    if not isinstance(value, str):
        ctx.error(input_name, f"expected a path, got {value!r}", f"pick the {label} file")
        return
    if "\x00" in value:
        ctx.error(input_name, "the path contains a NUL character", "pick the file again")
        return
    if value.startswith("-"):
        ctx.error(input_name, f"{value!r} starts with '-', so musubi would read it as a flag",
                  "use the full path of the file")
        return
    path = _resolve(value, ctx.cwd)
    if kind == "hf_id" and not os.path.exists(path) and re.match(r"^[\w.-]+/[\w.-]+$", value) \
            and not value.lower().endswith(MODEL_EXTENSIONS):
        return  # a Hugging Face id: fetched (or read from the HF cache) by musubi itself
    if not os.path.isabs(os.path.expanduser(value)):
        ctx.warn(input_name, f"relative path {value!r} is opened from musubi's working folder {ctx.cwd}",
                 "use an absolute path")
    if not os.path.exists(path):
        ctx.error(input_name, f"{label} not found: {path}",
                  f"check the path, or pick the file from ComfyUI's models/{folder} folder")
        return
    if os.path.isdir(path):
        if kind == "file":
            ctx.error(input_name, f"{path} is a folder; {label} must be a single file",
                      f"pick the model file inside it ({', '.join(MODEL_EXTENSIONS[:2])})")
        return
    ext = os.path.splitext(path)[1].lower()
    if ext not in MODEL_EXTENSIONS and ext != ".gguf":
        ctx.warn(input_name, f"{os.path.basename(path)} has an unusual extension for a model",
                 f"musubi expects {', '.join(MODEL_EXTENSIONS)}")
    why = sniff_model_file(path)
    if why:
        ctx.error(input_name, f"{path}: {why}", "download the model again (a .safetensors file)")


def _source_label(ds: DatasetSpec) -> str:
    for key in ("image_directory", "image_jsonl_file", "video_directory", "video_jsonl_file"):
        if getattr(ds, key) is not None:
            return key
    return "source"


def _listdir(path: str) -> Optional[list[str]]:
    try:
        with os.scandir(path) as it:
            # musubi globs with '*', which skips dot-files.
            return [e.name for e in it if not e.name.startswith(".")]
    except OSError:
        return None


def _check_datasets(ctx: _Context, config: DatasetConfig, suffix: Optional[str]) -> None:
    cat = _steps()
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
        source = _resolve(ds.source, ctx.cwd)
        media: list[str] = []
        if ds.directory is not None:
            media = _check_media_folder(ctx, config, i, source, source_key, need_media=step != cat.TRAIN)
        else:
            _check_jsonl(ctx, prefix, source_key, source, ds.kind, control)
        if ds.control_directory is not None or control in ("required", "exactly_one"):
            _check_controls(ctx, ds, prefix, media, control, suffix)
        cache = config.cache_directory(i)
        if cache is not None:
            cache_path = _resolve(cache, ctx.cwd)
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


def inside_roots(path: str, roots: Iterable[str]) -> bool:
    """``path`` is one of ``roots`` or inside one (symlinks resolved, case as the OS compares)."""
    real = os.path.normcase(os.path.realpath(path))
    for root in roots:
        base = os.path.normcase(os.path.realpath(root))
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return True
    return False


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
    names = _listdir(folder) or []
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
    folder = _resolve(ds.control_directory, ctx.cwd)
    if not os.path.isdir(folder):
        ctx.error(name, f"control folder not found: {folder}" if not os.path.exists(folder)
                  else f"{folder} is a file, not a folder", "point control_directory at the control images' folder")
        return
    if not media:
        return
    names = _listdir(folder) or []
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
    names = _listdir(folder)
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


def _check_output(ctx: _Context, settings: Any, output_dir: Optional[str], output_name: Optional[str],
                  allowed_to_replace: bool) -> None:
    ctx.problems.extend(check_output_name(output_name))
    if not output_dir:
        ctx.error("output_dir", "no output folder", "choose where the LoRA is saved")
        return
    if not isinstance(output_dir, str) or "\x00" in output_dir:
        ctx.error("output_dir", "not a usable path", "choose the output folder again")
        return
    if output_dir.startswith("-"):
        ctx.error("output_dir", f"{output_dir!r} starts with '-', so musubi would read it as a flag",
                  "use an absolute path")
        return
    folder = os.path.abspath(_resolve(output_dir, ctx.cwd))
    if os.path.isfile(folder):
        ctx.error("output_dir", f"{folder} is a file, not a folder", "choose a folder")
        return
    roots = tuple(getattr(settings, "output_roots", ()) or ())
    if roots:
        real = os.path.normcase(os.path.realpath(folder))
        inside = [r for r in roots if real == os.path.normcase(os.path.realpath(r))
                  or real.startswith(os.path.normcase(os.path.realpath(r)).rstrip(os.sep) + os.sep)]
        if not inside:
            ctx.error("output_dir", f"{folder} is outside the allowed output folders ({', '.join(roots)})",
                      "choose a folder inside one of them, or add it to output_roots in the settings file")
    if isinstance(output_name, str) and not check_output_name(output_name) and not allowed_to_replace:
        found = existing_outputs(folder, output_name)
        if found:
            ctx.error("output_name", f"{len(found)} LoRA file(s) named {output_name} already exist in {folder} "
                      f"({os.path.basename(found[0])}); training would overwrite them",
                      f"use a new output_name such as {_free_name(folder, output_name)!r}, or set overwrite "
                      "(or resume) explicitly")


def _label(key: str) -> str:
    return f"model {key[6:]}" if key.startswith("model:") else key


def _check_option_rules(ctx: _Context, user: Mapping[str, Any], opts: Mapping[str, Any],
                        models: Mapping[str, str]) -> None:
    """The catalogue's option rules (musubi's, kept as data): unknown options, options this
    architecture has no use for, allowed values, requires and conflicts."""
    import difflib

    cat = _steps()
    arch, step, values = ctx.arch, ctx.step, ctx.selectors
    accepted = arch.options_for(step, values)
    anywhere = frozenset().union(*(arch.options_for(s, values) for s in arch.step_options))
    for name, value in user.items():
        if not _is_set(value):
            continue
        if name not in cat.OPTIONS:
            close = difflib.get_close_matches(name, list(cat.OPTIONS), n=1)
            ctx.error(f"options.{name}", "unknown option",
                      f"did you mean {close[0]}?" if close else "remove it (or pass a musubi flag in extra_args)")
        elif name not in anywhere:
            ctx.error(f"options.{name}", f"{arch.display_name} does not use {name}", f"remove {name}")
    for name, allowed in arch.allowed_values.items():
        if name in accepted and name in opts and opts[name] not in allowed:
            ctx.error(f"options.{name}", f"{arch.display_name} supports {name} "
                      f"{' or '.join(map(str, allowed))} only, not {opts[name]!r}",
                      f"set {name} to {' or '.join(map(str, allowed))}")

    def present(key: str) -> bool:
        return key[6:] in models if key.startswith("model:") else key in opts

    def where(key: str) -> str:
        return f"models.{key[6:]}" if key.startswith("model:") else f"options.{key}"

    for option, needed in tuple(arch.requires) + (("fp8_scaled", "fp8_base"),):
        if (option.startswith("model:") or option in accepted) and present(option) and not present(needed):
            if (option, needed) == ("fp8_scaled", "fp8_base"):
                message = "fp8_scaled needs fp8_base (musubi: fp8_scaled requires fp8_base)"
            else:
                message = f"{_label(option)} needs {_label(needed)} for {arch.display_name}"
            fix = (f"pick the {needed[6:]} model" if needed.startswith("model:") else f"also set {needed}")
            ctx.error(where(option), message, f"{fix}, or unset {_label(option)}")
    for a, b in arch.conflicts:
        if present(a) and present(b) and (a in accepted or b in accepted):
            ctx.error(where(a), f"{_label(a)} cannot be used together with {_label(b)} in {arch.display_name}",
                      f"unset {_label(a)} or {_label(b)}")
    if step == cat.TRAIN:
        attention = opts.get("attention")
        flags = getattr(cat, "ATTENTION_FLAGS", {})
        if attention is not None and attention not in flags:
            ctx.error("options.attention", f"attention {attention!r} is not a musubi backend",
                      f"use one of: {', '.join(flags)}")
        for name in getattr(cat, "_TRAIN_NEEDS", ()):
            if name not in opts:
                hint = ' e.g. "adamw8bit" (musubi\'s default is an empty name, which crashes)' \
                    if name == "optimizer_type" else ""
                ctx.error(f"options.{name}", f"{name} is needed for training", f"set options.{name}{hint}")


def _check_train_options(ctx: _Context, opts: Mapping[str, Any], suffix: Optional[str],
                         config: Optional[DatasetConfig]) -> None:
    """Runtime rules of musubi's trainers that the catalogue does not hold as data."""
    arch = ctx.arch
    who = arch.display_name
    swap = opts.get("blocks_to_swap")
    if swap is not None:
        limit = arch.max_blocks_to_swap(ctx.selectors)
        if not isinstance(swap, int) or isinstance(swap, bool) or swap < 0:
            ctx.error("options.blocks_to_swap", f"expected a whole number, got {swap!r}", "set 0 to disable")
        elif limit is not None and swap > limit:
            ctx.error("options.blocks_to_swap", f"{who} can swap at most {limit} blocks, {swap} requested "
                      f"(musubi: Cannot swap more than {limit} blocks)", f"set blocks_to_swap to {limit} or less")
    if _is_set(opts.get("block_swap_h2d_only")) and not _is_set(opts.get("gradient_checkpointing")):
        ctx.error("options.block_swap_h2d_only", "block_swap_h2d_only needs gradient_checkpointing",
                  "also set gradient_checkpointing")
    if _is_set(opts.get("persistent_data_loader_workers")) and opts.get("max_data_loader_n_workers") in (0, "0"):
        ctx.error("options.persistent_data_loader_workers", "persistent workers need at least one data loader "
                  "worker (max_data_loader_n_workers is 0)",
                  "unset persistent_data_loader_workers, or set max_data_loader_n_workers to 1 or more")
    warmup = opts.get("lr_warmup_steps")
    if str(opts.get("lr_scheduler", "constant")) == "constant" and warmup not in (None, 0, "0", 0.0, "0%"):
        ctx.error("options.lr_warmup_steps", "the constant scheduler takes no warmup steps "
                  "(musubi: does not require num_warmup_steps)",
                  'use lr_scheduler = "constant_with_warmup", or set lr_warmup_steps to 0')
    if opts.get("log_with") in ("tensorboard", "all") and not _is_set(opts.get("logging_dir")):
        ctx.error("options.logging_dir", f"log_with {opts.get('log_with')} needs a logging folder",
                  "set logging_dir")
    attention = opts.get("attention")
    if attention == "sage_attn":
        ctx.error("options.attention", "SageAttention cannot be used for training (musubi refuses it)",
                  'use "sdpa" or "xformers"')
    for key, want_dir in (("resume", True), ("network_weights", False), ("sample_prompts", False)):
        value = opts.get(key)
        if not _is_set(value):
            continue
        if not isinstance(value, str) or value.startswith("-") or "\x00" in value:
            ctx.error(f"options.{key}", f"{value!r} is not a usable path", "give the full path")
            continue
        path = _resolve(value, ctx.cwd)
        if not os.path.exists(path):
            what = "state folder" if want_dir else "file"
            ctx.error(f"options.{key}", f"{what} not found: {path}",
                      "give a *-state folder written by save_state" if want_dir else "check the path")
        elif want_dir and not os.path.isdir(path):
            ctx.error(f"options.{key}", f"{path} is a file; resume needs the state folder (...-state)",
                      "give the folder written by save_state; to continue from a LoRA file use network_weights")
        elif not want_dir and os.path.isdir(path):
            ctx.error(f"options.{key}", f"{path} is a folder, not a file", "pick the file")
    # HiDream-O1: the task must match the data, and two features need batches of one.
    if suffix == "ho1" and config is not None and config.datasets:
        task = ctx.selectors.get("task")
        has_control = any(ds.control_directory is not None for ds in config.datasets)
        if task == "t2i" and has_control:
            ctx.error("selectors.task", "the dataset has control images, which task t2i does not use "
                      "(musubi refuses the mismatch)", 'use task "i2i", or remove control_directory')
        if task == "i2i" or (attention == "flash_attn" and _is_set(swap) and swap):
            for i in range(len(config.datasets)):
                if config.value(i, "batch_size", 1) != 1:
                    ctx.error(f"datasets[{i}].batch_size", "HiDream-O1 i2i (and flash attention with block "
                              "swap) trains with batch size 1 only", "set batch_size = 1")


def _check_probe(ctx: _Context, report: Any, opts: Mapping[str, Any]) -> None:
    try:
        from .probe import OPTIONAL_MODULES, attention_available
    except ImportError:  # pragma: no cover - probe is part of the pack
        return
    if getattr(report, "torch_version", None) is None:
        ctx.warn("musubi_tuner", "the venv probe could not import torch, so the attention backend was not checked",
                 "run `python -m executor check` to see what the venv is missing")
        return
    attention = opts.get("attention")
    if isinstance(attention, str) and attention:
        try:
            ok = attention_available(report, attention)
        except ValueError:
            ok = True  # an unknown name is the catalogue's to report
        if not ok:
            module = {"flash_attn": "flash_attn", "flash3": "flash_attn_interface", "xformers": "xformers",
                      "sage_attn": "sageattention"}.get(attention, attention)
            how = OPTIONAL_MODULES.get(module, ("", "", "install it"))[2]
            ctx.error("options.attention", f"attention {attention!r} is selected but {module} is not installed in "
                      "the musubi venv (musubi would fail at the first training step)",
                      f'use "sdpa", or {how.format(python="python", torch=report.torch_version)}')
    optimizer = str(opts.get("optimizer_type", "")).lower()
    if "8bit" in optimizer and report.optional.get("bitsandbytes") is None:
        ctx.error("options.optimizer_type", f"{opts.get('optimizer_type')} needs bitsandbytes, which is not "
                  "installed in the musubi venv", 'install bitsandbytes in that venv, or use optimizer_type "AdamW"')

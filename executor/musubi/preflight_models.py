"""Pre-flight of the model files: each chosen file is identified from its header (modelfiles/)
and checked against what musubi's loader for that input accepts, so a wrong file is refused
before launch with what it is, why it does not fit and what to pick instead. Also the training
settings that follow the files (Wan's mixed precision for fp16/bf16 weights, ...). Reads
headers only; results are cached per (path, size, mtime).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping, Optional

from .files import resolve
from .modelfiles.expectations import expectation
from .modelfiles.fit import ERROR, check_model, explain, file_recommendations, verdict
from .modelfiles.identify import identify

if TYPE_CHECKING:  # the checks' shared state; a type only
    from .preflight import _Context

__all__ = ["check_model_file", "file_options", "model_verdicts"]

# The inputs whose files decide training settings (see modelfiles.variants.recommendations).
_DECIDING = ("dit",)


def check_model_file(ctx: _Context, input_name: str, model: str, path: str, opts: Mapping[str, Any]) -> None:
    """Add the problems of ``path`` as ``model`` (a catalogue model input, or ``lora`` for the
    convert step) of ``ctx.arch`` to ``ctx``."""
    if model == "lora":
        _check_lora(ctx, input_name, path)
        return
    exp = expectation(ctx.arch.id, model)
    if exp is None:
        if os.path.isfile(path):
            # Kandinsky 5's text encoders are loaded with from_pretrained: an id or a folder.
            ctx.error(input_name, f"{os.path.basename(path)} is a single file; this input is loaded with "
                                  "from_pretrained, which needs a Hugging Face id or a model folder",
                      "give the Hugging Face id (the default) or the downloaded model folder")
        return
    if os.path.isdir(path) and not exp.folder:
        return  # the folder rule is the caller's (a clearer message than the identity's)
    ident = identify(path)
    for finding in check_model(ident, ctx.arch.id, model, selectors=ctx.selectors, options=opts, step=ctx.step):
        add = ctx.error if finding.level == ERROR else ctx.warn
        add(input_name, explain(ident, finding), finding.fix)


def _check_lora(ctx: _Context, input_name: str, path: str) -> None:
    if not os.path.isfile(path):
        return
    ident = identify(path)
    if ident.broken:
        ctx.error(input_name, f"{ident.file_name}: {ident.broken}", "give the LoRA file the training wrote")
    elif ident.family and ident.family != "lora":
        ctx.error(input_name, f"{ident.file_name} is {ident.label()}, not a LoRA",
                  "give the LoRA file the training wrote (output folder, .safetensors)")


def file_options(arch: Any, models: Optional[Mapping[str, Any]], cwd: Optional[str] = None) -> dict[str, Any]:
    """Training settings that follow the chosen files; the caller applies them only where the
    user set nothing."""
    idents = {}
    for name in _DECIDING:
        value = (models or {}).get(name)
        if not isinstance(value, str) or not value or value.startswith("-") or "\x00" in value:
            continue
        path = resolve(value, cwd)
        if os.path.isfile(path):
            idents[name] = identify(path)
    return file_recommendations(arch.id, idents)


def model_verdicts(arch: Any, paths: Mapping[str, str],
                   selectors: Optional[Mapping[str, Any]] = None) -> list[tuple[str, str]]:
    """(input, verdict) per chosen file of ``arch``; the verdict starts with OK, CHECK or REFUSED
    (see ``modelfiles.fit.verdict``). Judged with the training settings that would apply
    (recommended, then what the files call for), for the Models nodes and the Setup Check.
    Hugging Face ids and missing paths are left out."""
    values = arch.resolve_selectors(selectors)
    # the training options as effective_options makes them when the user set nothing
    opts = {**arch.recommended_for(values), **file_options(arch, paths)}
    lines = []
    for m in arch.models:
        path = paths.get(m.name)
        if not path or expectation(arch.id, m.name) is None or not os.path.exists(path):
            continue
        if os.path.isdir(path) and not expectation(arch.id, m.name).folder:
            lines.append((m.name, f"REFUSED {os.path.basename(path)} is a folder; pick the model file"))
            continue
        lines.append((m.name, verdict(identify(path), arch.id, m.name, selectors=values, options=opts)))
    return lines

"""One "Musubi Models (<architecture>)" node per catalogue architecture, generated: dropdowns of the
ComfyUI model folder each input belongs to (``(none)`` where a file is optional), text fields for
Hugging Face ids, and the architecture's selectors (task, model_version, ...). Output: MUSUBI_MODELS.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional

from ..executor import catalogue
from ..executor.catalogue import Architecture, ModelInput, Selector
from . import host
from .errors import user_error
from .fingerprint import digest, file_state
from .values import MODELS_TYPE, MusubiModels

NONE = "(none)"
CATEGORY = "Musubi Tuner/Models"


def node_id(arch: Architecture) -> str:
    return "MusubiModels" + "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", arch.id) if p)


def is_optional(model: ModelInput) -> bool:
    """Offered with (none): never required, or required only for some variants (checked
    against the chosen selectors when the node runs)."""
    return not model.required_for or bool(model.required_when)


def _step_names(steps: tuple[str, ...]) -> str:
    names = {catalogue.CACHE_LATENTS: "latent caching", catalogue.CACHE_TEXT_ENCODER: "text-encoder caching",
             catalogue.TRAIN: "training"}
    return ", ".join(names.get(s, s) for s in steps)


def model_tooltip(model: ModelInput) -> str:
    text = model.tooltip or f"{model.label or model.name} ({model.flag})."
    if model.required_for and model.required_when:
        when = "; ".join(f"{name} {', '.join(map(str, values))}" for name, values in model.required_when)
        text += f" Needed for {_step_names(model.required_for)} with {when}."
    elif model.required_for:
        text += f" Needed for {_step_names(model.required_for)}."
    elif model.sampling:
        text += f" Only needed for sample images during training; {NONE} skips it."
    else:
        text += f" Optional; {NONE} leaves it out."
    if model.kind == "hf_id":
        text += " A Hugging Face model id or a local folder."
    else:
        text += f" Listed from ComfyUI's models/{model.folder} folder."
    return text


def _selector_is_bool(sel: Selector) -> bool:
    return all(isinstance(c, bool) for c in sel.choices)


def selector_input(sel: Selector) -> tuple[Any, dict[str, Any]]:
    tooltip = sel.tooltip or f"{sel.label or sel.name}: must be the same for caching and training."
    if _selector_is_bool(sel):
        return ("BOOLEAN", {"default": bool(sel.default), "tooltip": tooltip})
    return ([str(c) for c in sel.choices], {"default": str(sel.default), "tooltip": tooltip})


def selector_value(sel: Selector, value: Any) -> Any:
    """The catalogue's value for what the widget sent (combos carry strings)."""
    if _selector_is_bool(sel):
        return bool(value)
    for choice in sel.choices:
        if str(choice) == str(value):
            return choice
    raise user_error(f"{sel.name} {value!r} is not one of {[str(c) for c in sel.choices]}",
                     "pick a value from the list")


def model_input(model: ModelInput) -> tuple[Any, dict[str, Any]]:
    if model.kind == "hf_id":
        return ("STRING", {"default": model.default or "", "tooltip": model_tooltip(model)})
    files = host.model_files(model.folder)
    choices = [NONE] + files if is_optional(model) else files
    options: dict[str, Any] = {"tooltip": model_tooltip(model)}
    if choices:
        options["default"] = choices[0]
    return (choices, options)


class ModelsNodeBase:
    """Shared behaviour; subclasses set ``ARCH`` (a catalogue id)."""

    ARCH = ""
    CATEGORY = CATEGORY
    FUNCTION = "pick"
    RETURN_TYPES = (MODELS_TYPE,)
    RETURN_NAMES = ("models",)
    OUTPUT_TOOLTIPS = ("The chosen model files and variant settings; wire it to the cache and training nodes.",)

    @classmethod
    def arch(cls) -> Architecture:
        return catalogue.get_architecture(cls.ARCH)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        arch = cls.arch()
        required: dict[str, Any] = {}
        optional: dict[str, Any] = {}
        for sel in arch.selectors:
            required[sel.name] = selector_input(sel)
        for model in arch.models:
            (optional if is_optional(model) else required)[model.name] = model_input(model)
        types: dict[str, Any] = {"required": required}
        if optional:
            types["optional"] = optional
        return types

    @classmethod
    def IS_CHANGED(cls, **inputs: Any) -> str:
        arch = cls.arch()
        states = []
        for model in arch.models:
            name = inputs.get(model.name)
            if model.kind != "hf_id" and isinstance(name, str) and name != NONE:
                path = host.model_path(model.folder, name)
                states.append((model.name, name, file_state(path) if path else ("missing",)))
        return digest(sorted((k, str(v)) for k, v in inputs.items()), states)

    def pick(self, **inputs: Any) -> tuple[MusubiModels]:
        arch = self.arch()
        paths: dict[str, str] = {}
        names: dict[str, str] = {}
        selectors = {sel.name: selector_value(sel, inputs.get(sel.name, sel.default)) for sel in arch.selectors}
        values = arch.resolve_selectors(selectors)
        for model in arch.models:
            value = inputs.get(model.name)
            if value is None or value == NONE or (isinstance(value, str) and not value.strip()):
                if any(model.required(step, values) for step in catalogue.STEPS):
                    raise user_error(f"{arch.display_name}: choose a file for {model.name}",
                                     f"put the model into ComfyUI's models/{model.folder} folder, refresh, "
                                     "and pick it")
                continue
            if model.kind == "hf_id":
                paths[model.name] = resolve_hf_or_path(value)
            else:
                path = host.model_path(model.folder, value)
                if path is None:
                    raise user_error(f"{arch.display_name}: {model.name} {value!r} is not in ComfyUI's "
                                     f"models/{model.folder} folder",
                                     "refresh the node list (R) and pick a file that is listed")
                paths[model.name] = path
            names[model.name] = str(value)
        return (MusubiModels(arch=arch.id, paths=paths, selectors=selectors, names=names),)


def resolve_hf_or_path(value: str) -> str:
    """A Hugging Face id stays as typed; a path gets ``~`` expanded."""
    value = value.strip()
    if value.startswith("~"):
        return os.path.expanduser(value)
    return value


def _description(arch: Architecture) -> str:
    media = " and ".join(arch.media)
    return (f"Picks the {arch.display_name} models for musubi-tuner ({media} training) from ComfyUI's model "
            "folders, plus the variant settings that caching and training must agree on.")


def generate() -> tuple[dict[str, type], dict[str, str]]:
    classes: dict[str, type] = {}
    names: dict[str, str] = {}
    for arch in catalogue.ARCHITECTURES.values():
        nid = node_id(arch)
        classes[nid] = type(nid, (ModelsNodeBase,), {"ARCH": arch.id, "DESCRIPTION": _description(arch)})
        names[nid] = f"Musubi Models ({arch.display_name})"
    return classes, names


NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = generate()


def find_models_node(arch_id: str) -> Optional[str]:
    for nid, cls in NODE_CLASS_MAPPINGS.items():
        if cls.ARCH == arch_id:
            return nid
    return None

"""One "Musubi Models (<architecture>)" node per catalogue architecture, generated: dropdowns of the
ComfyUI model folder each input belongs to (``(none)`` where a file is optional), text fields for
Hugging Face ids, and the architecture's selectors (task, model_version, ...). Output: MUSUBI_MODELS.
When it runs, the node shows one verdict line per chosen file (what its header says it is, and
whether musubi takes it); the dropdowns still list every file.
"""

from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import host, registry
from .deferred import catalogue
from .errors import user_error
from .fingerprint import digest, file_state
from .values import MODELS_TYPE, MusubiModels

if TYPE_CHECKING:
    from ..executor.musubi.catalogue import Architecture, ModelInput, Selector

NONE = "(none)"
CATEGORY = "Musubi Tuner/Models"

# The architectures' index lives with the registry (ComfyUI's start reads only that).
ARCHITECTURES = registry.ARCHITECTURES


def node_id(arch: Architecture | str) -> str:
    """``MusubiModels<Id>`` for an architecture (or its catalogue id)."""
    return registry.models_node_id(arch if isinstance(arch, str) else arch.id)


def no_files_choice(folder: str) -> str:
    """The only entry of a required file dropdown whose folder is empty: the frontend shows an
    empty list as "undefined"; this says what is missing (and validation refuses it)."""
    return f"(no files in models/{folder})"


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


# Files an input also offers from another ComfyUI folder, when their header says they fit:
# ComfyUI keeps the HiDream-O1 checkpoints (Comfy-Org/HiDream-O1-Image) in models/checkpoints.
EXTRA_FOLDERS: dict[tuple[str, str], tuple[str, str]] = {("hidream_o1", "dit"): ("checkpoints", "hidream_o1")}


def listed_files(arch_id: str, model: ModelInput) -> list[str]:
    """The dropdown's file names: the input's folder, then fitting files of an extra folder."""
    files = host.model_files(model.folder)
    extra = EXTRA_FOLDERS.get((arch_id, model.name))
    if extra is not None:
        from ..executor.musubi.modelfiles.identify import identify

        folder, family = extra
        seen = set(files)
        for name in host.model_files(folder):
            if name in seen or not name.lower().endswith((".safetensors", ".sft")):
                continue  # ComfyUI's checkpoints for it are safetensors; old .ckpt pickles are not read
            path = host.model_path(folder, name)
            if path and identify(path).family == family:
                files.append(name)
    return files


def file_path(arch_id: str, model: ModelInput, name: str) -> Optional[str]:
    """Full path of a listed file (its own folder first, then the extra folder), or None."""
    path = host.model_path(model.folder, name)
    extra = EXTRA_FOLDERS.get((arch_id, model.name))
    if path is None and extra is not None:
        path = host.model_path(extra[0], name)
    return path


def model_input(model: ModelInput, arch_id: str = "") -> tuple[Any, dict[str, Any]]:
    if model.kind == "hf_id":
        return ("STRING", {"default": model.default or "", "tooltip": model_tooltip(model)})
    files = listed_files(arch_id, model)
    if is_optional(model):
        choices = [NONE] + files
    else:
        choices = files or [no_files_choice(model.folder)]
    return (choices, {"default": choices[0], "tooltip": model_tooltip(model)})


def check_model_files(arch: Architecture, inputs: dict[str, Any]) -> Any:
    """True, or one message naming every chosen file ComfyUI does not list (an empty folder's
    placeholder included), with what to do."""
    problems = []
    for model in arch.models:
        value = inputs.get(model.name)
        if model.kind == "hf_id" or not isinstance(value, str) or value == NONE:
            continue  # not a file, wired (checked when the node runs), or left out
        if value == no_files_choice(model.folder):
            problems.append(f"{model.name}: ComfyUI's models/{model.folder} folder has no files; put the "
                            f"{model.label or model.name} there and refresh the node list (R)")
        elif file_path(arch.id, model, value) is None:
            problems.append(f"{model.name}: {value!r} is not in ComfyUI's models/{model.folder} folder; "
                            "refresh the node list (R) and pick a file that is listed")
    return True if not problems else "; ".join(problems)


class _ModelFilesValidation:
    """The models nodes' VALIDATE_INPUTS, with the node's file inputs as its parameters.

    ComfyUI passes VALIDATE_INPUTS only the inputs its signature names and skips its own
    "value not in list" check for exactly those (execution.py validate_inputs, 0.3.75 and
    current), so naming just the file inputs keeps ComfyUI's checks of the selectors and shows
    the message on the file inputs alone. The names come from the catalogue, which is loaded
    here, when a prompt is validated, not when ComfyUI imports the pack.
    """

    def __get__(self, instance: Any, owner: type) -> Callable[..., Any]:
        arch = owner.arch()

        def validate(**inputs: Any) -> Any:
            return check_model_files(arch, inputs)

        validate.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
            inspect.Parameter(m.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
            for m in arch.models if m.kind != "hf_id"])
        return validate


class ModelsNodeBase:
    """Shared behaviour; subclasses set ``ARCH`` (a catalogue id)."""

    ARCH = ""
    CATEGORY = CATEGORY
    FUNCTION = "pick"
    RETURN_TYPES = (MODELS_TYPE,)
    RETURN_NAMES = ("models",)
    OUTPUT_TOOLTIPS = ("The chosen model files and variant settings; wire it to the cache and training nodes.",)

    VALIDATE_INPUTS = _ModelFilesValidation()

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
            (optional if is_optional(model) else required)[model.name] = model_input(model, arch.id)
        types: dict[str, Any] = {"required": required, "hidden": {"unique_id": "UNIQUE_ID"}}
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
                path = file_path(arch.id, model, name)
                states.append((model.name, name, file_state(path) if path else ("missing",)))
        return digest(sorted((k, str(v)) for k, v in inputs.items()), states)

    def pick(self, unique_id: Any = None, **inputs: Any) -> dict[str, Any]:
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
                path = file_path(arch.id, model, value)
                if path is None:
                    raise user_error(f"{arch.display_name}: {model.name} {value!r} is not in ComfyUI's "
                                     f"models/{model.folder} folder",
                                     "refresh the node list (R) and pick a file that is listed")
                paths[model.name] = path
            names[model.name] = str(value)
        text = verdict_text(arch, paths, selectors)
        host.send_text(text, unique_id)
        return {"ui": {"text": [text]},
                "result": (MusubiModels(arch=arch.id, paths=paths, selectors=selectors, names=names),)}


def verdict_text(arch: Architecture, paths: dict[str, str], selectors: dict[str, Any]) -> str:
    """The node's text: one line per chosen file, from its header (cached per path, size, mtime)."""
    from ..executor.musubi.preflight_models import model_verdicts

    lines = [f"{name}: {line}" for name, line in model_verdicts(arch, paths, selectors)]
    return "\n".join(lines) if lines else "no model files chosen"


def resolve_hf_or_path(value: str) -> str:
    """A Hugging Face id stays as typed; a path gets ``~`` expanded."""
    value = value.strip()
    if value.startswith("~"):
        return os.path.expanduser(value)
    return value


def _description(display_name: str, media: tuple[str, ...]) -> str:
    return (f"Picks the {display_name} models for musubi-tuner ({' and '.join(media)} training) from ComfyUI's "
            "model folders, plus the variant settings that caching and training must agree on.")


def generate() -> tuple[dict[str, type], dict[str, str]]:
    classes: dict[str, type] = {}
    names: dict[str, str] = {}
    for arch_id, display_name, media in ARCHITECTURES:
        nid = node_id(arch_id)
        classes[nid] = type(nid, (ModelsNodeBase,), {"ARCH": arch_id, "DESCRIPTION": _description(display_name, media)})
        names[nid] = registry.models_display_name(display_name)
    return classes, names


NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = generate()


def find_models_node(arch_id: str) -> Optional[str]:
    for nid, cls in NODE_CLASS_MAPPINGS.items():
        if cls.ARCH == arch_id:
            return nid
    return None

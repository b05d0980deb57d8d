"""What ComfyUI's start needs from the pack: every node's id, display name and where its class
lives, so registering the nodes runs (and, on the first start after an install, compiles) almost
nothing of the pack.

ComfyUI times each pack's import and prints it at start. On the first start Python also compiles
every module it imports; the node modules are about 3,000 lines, which cost 25-30 ms there, twice
that on a busy 2-core machine. So ``NODE_CLASS_MAPPINGS`` holds a stand-in class per node
(``LazyNodeClass``) that imports the real class's module when ComfyUI first reads anything from
it (``/object_info`` when a browser connects, or a queued prompt) and from then on answers with
the real class: its attributes and classmethods, and calling it makes a real node. ComfyUI writes
``RELATIVE_PYTHON_MODULE`` on the class it was given; that stays on the stand-in, where ComfyUI
reads it. tests/test_pack_import.py checks this table against the modules' own mappings.
"""

from __future__ import annotations

import importlib
import re
import threading
from typing import Any

# (catalogue id, display name, media) of every architecture: all that registering the models
# nodes needs, so ComfyUI's start does not build the catalogue (nodes/deferred.py; it loads on
# first INPUT_TYPES, validation or run). tests/test_pack_import.py checks this list against it.
ARCHITECTURES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("hv", "HunyuanVideo", ("image", "video")),
    ("hv15", "HunyuanVideo 1.5", ("image", "video")),
    ("wan", "Wan 2.1 / 2.2", ("image", "video")),
    ("framepack", "FramePack", ("image", "video")),
    ("flux_kontext", "FLUX.1 Kontext", ("image",)),
    ("flux_2", "FLUX.2", ("image",)),
    ("qwen_image", "Qwen-Image", ("image",)),
    ("zimage", "Z-Image", ("image",)),
    ("kandinsky5", "Kandinsky 5", ("image", "video")),
    ("ideogram4", "Ideogram 4", ("image",)),
    ("krea2", "Krea 2", ("image",)),
    ("hidream_o1", "HiDream-O1-Image", ("image",)),
)

# node id -> (module in nodes/, display name); the models nodes are added from ARCHITECTURES.
NODES: dict[str, tuple[str, str]] = {
    "MusubiDatasetConfig": ("dataset", "Musubi Dataset Config"),
    "MusubiLoadDatasetConfig": ("dataset", "Musubi Load Dataset Config"),
    "MusubiCacheLatents": ("steps", "Musubi Cache Latents"),
    "MusubiCacheTextEncoder": ("steps", "Musubi Cache Text Encoder Outputs"),
    "MusubiTrainLoRA": ("training", "Musubi Train LoRA"),
    "MusubiOptimizerOptions": ("options", "Musubi Optimizer Options"),
    "MusubiMemoryOptions": ("options", "Musubi Memory Options"),
    "MusubiTimestepOptions": ("options", "Musubi Timestep Options"),
    "MusubiSampleOptions": ("options", "Musubi Sample Options"),
    "MusubiLaunchOptions": ("options", "Musubi Launch Options"),
    "MusubiSaveOptions": ("options", "Musubi Save Options"),
    "MusubiWaitForJob": ("waitjob", "Musubi Wait for Job"),
    "MusubiSetupCheck": ("check", "Musubi Setup Check"),
}


def models_node_id(arch_id: str) -> str:
    """``MusubiModels<Id>`` for a catalogue architecture id."""
    return "MusubiModels" + "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", arch_id) if p)


def models_display_name(display_name: str) -> str:
    return f"Musubi Models ({display_name})"


def all_nodes() -> dict[str, tuple[str, str]]:
    """Every node id -> (module, display name), in the order ComfyUI lists them."""
    nodes = dict(NODES)
    for arch_id, display_name, _ in ARCHITECTURES:
        nodes[models_node_id(arch_id)] = ("models", models_display_name(display_name))
    return nodes


_LOADING = threading.Lock()


class LazyNodeClass(type):
    """The class of a stand-in node class: attribute reads it cannot answer itself, and calls,
    go to the real class, imported on first use."""

    def real(cls) -> type:
        found = cls.__dict__.get("_real")
        if found is None:
            with _LOADING:  # ComfyUI's HTTP and execution threads may both be first
                found = cls.__dict__.get("_real")
                if found is None:
                    module = importlib.import_module(f"{__package__}.{cls._module}")
                    found = module.NODE_CLASS_MAPPINGS[cls._node_id]
                    type.__setattr__(cls, "_real", found)
        return found

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # copy, pickle and friends ask the stand-in itself
        return getattr(cls.real(), name)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls.real()(*args, **kwargs)


def mappings() -> tuple[dict[str, type], dict[str, str]]:
    """ComfyUI's NODE_CLASS_MAPPINGS (stand-ins) and NODE_DISPLAY_NAME_MAPPINGS."""
    classes: dict[str, type] = {}
    names: dict[str, str] = {}
    for node_id, (module, display_name) in all_nodes().items():
        classes[node_id] = LazyNodeClass(node_id, (), {"_node_id": node_id, "_module": module, "_real": None,
                                                       "__module__": f"{__package__}.{module}"})
        names[node_id] = display_name
    return classes, names

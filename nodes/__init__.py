"""ComfyUI adapters: the only package that imports ComfyUI modules.

Import ComfyUI's own modules absolutely (``folder_paths``, ``comfy.utils``) and this pack's
packages relatively: inside ComfyUI the name ``nodes`` is ComfyUI's. Each module here ends
in its own NODE_CLASS_MAPPINGS; this file only merges them. Classic (V1) node classes:
they load unchanged in ComfyUI 0.3.75 and in current ComfyUI.
"""

from __future__ import annotations

from . import check, dataset, models, steps, training

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

for _module in (dataset, models, steps, training, check):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

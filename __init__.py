"""Musubi Tuner nodes for ComfyUI.

ComfyUI loads this file by location and reads NODE_CLASS_MAPPINGS. The node
classes live in ``nodes/`` (the only package that imports ComfyUI); outside
ComfyUI (tests, the debugging CLIs) this module imports nothing heavy.
"""

from __future__ import annotations

try:
    import folder_paths  # noqa: F401  (present only inside a running ComfyUI)
except ImportError:
    NODE_CLASS_MAPPINGS: dict = {}
    NODE_DISPLAY_NAME_MAPPINGS: dict = {}
else:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

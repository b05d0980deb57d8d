"""ComfyUI adapters: the only package that imports ComfyUI (``folder_paths``, ``comfy.*``, ``server``),
always absolutely and only inside functions; this pack's packages are imported relatively, since
inside ComfyUI ``nodes`` is ComfyUI's own module. Classic (V1) node classes: they load unchanged in
ComfyUI 0.3.75 and in current ComfyUI. Each module has its own mappings; ComfyUI gets stand-ins
from ``registry`` that import a module when its node is first used, so the start stays small.
"""

from __future__ import annotations

from . import registry, routes

NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = registry.mappings()

routes.register()  # the runs' status routes, when ComfyUI's server is up

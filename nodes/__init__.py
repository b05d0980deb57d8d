"""ComfyUI adapters: the only package that imports ComfyUI (``folder_paths``, ``comfy.*``, ``server``),
always absolutely and only inside functions; this pack's packages are imported relatively, since
inside ComfyUI ``nodes`` is ComfyUI's own module. Classic (V1) node classes: they load unchanged in
ComfyUI 0.3.75 and in current ComfyUI. Each module has its own mappings; this file merges them.
"""

from __future__ import annotations

from . import check, dataset, jobroutes, jobs, models, options, routes, steps, training, waitjob

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

for _module in (dataset, models, steps, training, options, waitjob, check):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

routes.register()  # the runs' status routes, when ComfyUI's server is up
jobroutes.register()  # the background jobs' routes, likewise
jobs.start()  # the background job manager's thread (imports the executor there, not here)

"""ComfyUI adapters: the only package that imports ComfyUI (``folder_paths``, ``comfy.*``, ``server``),
always absolutely and only inside functions; this pack's packages are imported relatively, since
inside ComfyUI ``nodes`` is ComfyUI's own module. Classic (V1) node classes: they load unchanged in
ComfyUI 0.3.75 and in current ComfyUI. Each module has its own mappings; ComfyUI gets stand-ins
from ``registry`` that import a module when its node is first used, so the start stays small.
The background job manager (``jobs``) is imported and started on a thread of its own.
"""

from __future__ import annotations

import sys
import threading

from . import jobroutes, registry, routes

NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = registry.mappings()

routes.register()  # the runs' status routes, when ComfyUI's server is up
jobroutes.register()  # the background jobs' routes, likewise


def _start_jobs() -> None:
    """Re-attach and run background jobs as soon as ComfyUI's server is up; the manager's module
    (and the executor under it) is imported on that thread, not during ComfyUI's start."""
    if getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None) is None:
        return

    def start() -> None:
        from . import jobs

        jobs.start()

    threading.Thread(target=start, name="musubi-tuner-jobs-start", daemon=True).start()


_start_jobs()

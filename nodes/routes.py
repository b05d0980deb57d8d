"""HTTP routes on ComfyUI's server: ``GET /musubi-tuner/runs`` (the newest runs) and
``GET /musubi-tuner/runs/{run_id}`` (one run's status, progress and loss history), read from the run
folders, so they answer after the prompt finished and after a restart; ``GET /musubi-tuner/recommended``
(the values a Models node's architecture recommends, for web/musubi_train.js). ComfyUI mirrors them
under ``/api/``. Registered only when ComfyUI's server is running; aiohttp is ComfyUI's, imported then.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional


ROUTE = "/musubi-tuner/runs"
RECOMMENDED_ROUTE = "/musubi-tuner/recommended"
MAX_LIST = 500
_registered = False


def register() -> bool:
    """Add the routes to ``PromptServer.instance`` if there is one (inside ComfyUI, before
    its ``add_routes`` copies them under /api). Never imports the server module itself."""
    global _registered
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None or _registered:
        return False
    import asyncio

    from aiohttp import web

    @instance.routes.get(ROUTE)
    async def list_runs(request: Any) -> Any:
        limit = _int_query(request, "limit", 50)
        if limit is None or not 1 <= limit <= MAX_LIST:
            return web.json_response({"error": f"limit must be a whole number from 1 to {MAX_LIST}"}, status=400)
        from . import host

        return web.json_response(await asyncio.to_thread(runs_listing, host.runs_directory(), limit))

    @instance.routes.get(ROUTE + "/{run_id}")
    async def get_run(request: Any) -> Any:
        since = _int_query(request, "since", 0)
        if since is None or since < 0:
            return web.json_response({"error": "since must be a step number (0 or more)"}, status=400)
        with_history = request.query.get("history", "1") not in ("0", "false", "no")
        from . import host

        status, body = await asyncio.to_thread(run_report, host.runs_directory(), request.match_info["run_id"],
                                               since, with_history)
        return web.json_response(body, status=status)

    @instance.routes.get(RECOMMENDED_ROUTE)
    async def recommended(request: Any) -> Any:
        from .recommend import recommendation

        status, body = recommendation(request.query.get("node", ""), request.query)
        return web.json_response(body, status=status)

    _registered = True
    return True


def _int_query(request: Any, name: str, default: int) -> Optional[int]:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        return None


def run_folder(runs_dir: str, run_id: str) -> Optional[str]:
    """The folder of ``run_id`` directly inside ``runs_dir``, or None: the id must be a plain
    folder name, and the folder, symlinks resolved, must not lead out of ``runs_dir``."""
    from ..executor.runs.history import valid_run_id

    if not valid_run_id(run_id):
        return None
    root = os.path.realpath(runs_dir)
    path = os.path.realpath(os.path.join(root, run_id))
    if os.path.dirname(path) != root or not os.path.isdir(path):
        return None
    return path


def run_report(runs_dir: str, run_id: str, since: int = 0, history: bool = True) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for ``GET /musubi-tuner/runs/{run_id}``."""
    from ..executor.runs.history import run_status, valid_run_id

    if not valid_run_id(run_id):
        return 400, {"error": "not a run id: use a folder name from GET /musubi-tuner/runs"}
    folder = run_folder(runs_dir, run_id)
    if folder is None:
        return 404, {"error": f"no run {run_id}"}
    body = run_status(folder, since=since, history=history)
    body["can_continue"], body["continue_note"] = continue_info(folder, body.get("kind"))
    return 200, body


def continue_info(run_dir: str, kind: Any) -> tuple[bool, str]:
    """Whether the Train node (resume = this run's id) can continue the run, and why not."""
    if kind != "train":
        return False, "only training runs are continued"
    try:
        from ..executor.runs.resume import continue_check

        return continue_check(run_dir)
    except Exception as exc:  # noqa: BLE001 - a status route answers even when the record is unreadable
        return False, f"the record of training states could not be read: {exc}"


def runs_listing(runs_dir: str, limit: int = 50) -> dict[str, Any]:
    """The newest ``limit`` runs (folder names start with their time), without histories."""
    from ..executor.runs.history import run_status, valid_run_id

    try:
        names = sorted((n for n in os.listdir(runs_dir) if valid_run_id(n)), reverse=True)
    except OSError:
        names = []
    runs = []
    for name in names:
        folder = run_folder(runs_dir, name)
        if folder is not None:
            runs.append(run_status(folder, history=False))
        if len(runs) >= limit:
            break
    return {"runs": runs}

"""HTTP routes for background jobs on ComfyUI's server (mirrored under ``/api`` by ComfyUI):

    GET  /musubi-tuner/jobs               {"jobs": [job, ...]}, newest first
    GET  /musubi-tuner/jobs/{id}          job + "loss_history": [{"step", "loss", "epoch"}]
    POST /musubi-tuner/jobs/{id}/stop     {"job": job}        (a running job: its whole tree)
    POST /musubi-tuner/jobs/{id}/remove   {"ok": true}        (a queued job only; else 409)

An id is 32 hexadecimal characters (400 otherwise, 404 when unknown); nothing in a request names
a path or a command. The job JSON is ``jobs.job_json``. The store is read off the event loop.
"""

from __future__ import annotations

import sys
from typing import Any

ROUTE = "/musubi-tuner/jobs"
_registered = False


def register() -> bool:
    """Add the routes to ``PromptServer.instance`` when ComfyUI's server runs (before its
    ``add_routes`` copies them under /api)."""
    global _registered
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None or _registered:
        return False
    import asyncio

    from aiohttp import web

    def answer(status: int, body: dict[str, Any]) -> Any:
        return web.json_response(body, status=status)

    @instance.routes.get(ROUTE)
    async def list_jobs(request: Any) -> Any:
        return answer(*await asyncio.to_thread(listing))

    @instance.routes.get(ROUTE + "/{job_id}")
    async def get_job(request: Any) -> Any:
        return answer(*await asyncio.to_thread(one, request.match_info["job_id"]))

    @instance.routes.post(ROUTE + "/{job_id}/stop")
    async def stop_job(request: Any) -> Any:
        return answer(*await asyncio.to_thread(stop, request.match_info["job_id"]))

    @instance.routes.post(ROUTE + "/{job_id}/remove")
    async def remove_job(request: Any) -> Any:
        return answer(*await asyncio.to_thread(remove, request.match_info["job_id"]))

    _registered = True
    return True


def _known(job_id: str) -> tuple[Any, Any, Any]:
    """(manager, job, error answer)."""
    from ..executor.runs.jobstore import valid_job_id
    from . import jobs

    if not valid_job_id(job_id):
        return None, None, (400, {"error": "not a job id: 32 hexadecimal characters from GET /musubi-tuner/jobs"})
    manager = jobs.manager()
    job = manager.get(job_id)
    if job is None:
        return manager, None, (404, {"error": f"no job {job_id}"})
    return manager, job, None


def listing() -> tuple[int, dict[str, Any]]:
    from . import jobs

    manager = jobs.manager()
    queued = [j.id for j in manager.store.queue_order() if j.state == "queued"]
    positions = {job_id: i + 1 for i, job_id in enumerate(queued)}
    return 200, {"jobs": [jobs.job_json(j, position=positions.get(j.id)) for j in manager.list()]}


def one(job_id: str) -> tuple[int, dict[str, Any]]:
    from . import jobs

    manager, job, error = _known(job_id)
    if error:
        return error
    body = jobs.job_json(job, manager)
    body["loss_history"] = jobs.loss_history(job)
    return 200, body


def stop(job_id: str) -> tuple[int, dict[str, Any]]:
    from . import jobs

    manager, job, error = _known(job_id)
    if error:
        return error
    return 200, {"job": jobs.job_json(manager.stop(job_id) or job, manager)}


def remove(job_id: str) -> tuple[int, dict[str, Any]]:
    manager, job, error = _known(job_id)
    if error:
        return error
    if job.state != "queued" or not manager.remove(job_id):
        return 409, {"error": f"job {job_id} is {job.state}: only a queued job can be removed (stop it first)"}
    return 200, {"ok": True}

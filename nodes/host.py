"""Every call this pack makes into ComfyUI, in one place.

ComfyUI modules are imported inside the functions, not at module import: inside ComfyUI
they are already loaded (the import is a dict lookup), and outside it (unit tests of the
node helpers) this module still imports. Nothing here imports torch, PIL or numpy itself.
"""

from __future__ import annotations

import os
from typing import Any, Optional

# ComfyUI's own sub-folder for everything this pack writes (runs, generated dataset TOMLs,
# delivered LoRAs under models/loras/).
PACK_FOLDER = "musubi-tuner"


# --- folders ---------------------------------------------------------------------------------

def model_files(folder: str) -> list[str]:
    """File names ComfyUI lists for a model folder (``diffusion_models``, ``vae``, ...).

    An unknown folder name gives an empty list rather than an error, so one missing folder
    type in an older ComfyUI does not break every node.
    """
    import folder_paths

    try:
        return list(folder_paths.get_filename_list(folder))
    except KeyError:
        return []


def model_path(folder: str, name: str) -> Optional[str]:
    """Full path of a listed model file, or None when ComfyUI does not know it."""
    import folder_paths

    try:
        return folder_paths.get_full_path(folder, name)
    except KeyError:
        return None


def output_directory() -> str:
    import folder_paths

    return folder_paths.get_output_directory()


def input_directory() -> str:
    import folder_paths

    return folder_paths.get_input_directory()


def model_directories() -> list[str]:
    """Every folder ComfyUI reads models from: ``models/`` and each model type's folders
    (extra_model_paths.yaml included); not custom_nodes, which ComfyUI lists beside them."""
    import folder_paths

    found = [folder_paths.models_dir]
    for name, entry in getattr(folder_paths, "folder_names_and_paths", {}).items():
        if name != "custom_nodes":
            found += [folder for folder in entry[0] if isinstance(folder, str)]
    return list(dict.fromkeys(found))


def runs_directory() -> str:
    """``<output>/musubi-tuner/runs``: one folder per launched (or dry-run) step."""
    return os.path.join(output_directory(), PACK_FOLDER, "runs")


def datasets_directory() -> str:
    """``<output>/musubi-tuner/datasets``: TOML files written by the dataset node."""
    return os.path.join(output_directory(), PACK_FOLDER, "datasets")


def loras_directory() -> str:
    """``<first loras folder>/musubi-tuner``: where finished LoRAs are delivered.

    The first configured ``loras`` folder is ``models/loras`` unless extra_model_paths.yaml
    says otherwise; LoraLoader lists its sub-folders as ``musubi-tuner/<name>``.
    """
    import folder_paths

    folders = folder_paths.get_folder_paths("loras")
    base = folders[0] if folders else os.path.join(folder_paths.models_dir, "loras")
    return os.path.join(base, PACK_FOLDER)


def lora_name(path: str) -> Optional[str]:
    """The name LoraLoader lists for ``path`` (relative to its loras folder), or None."""
    import folder_paths

    real = os.path.realpath(path)
    for folder in folder_paths.get_folder_paths("loras"):
        base = os.path.realpath(folder)
        if real.startswith(base + os.sep):
            return os.path.relpath(real, base).replace(os.sep, "/")
    return None


def resolve_user_path(path: str) -> str:
    """A user-typed path: ``~`` expanded; a relative path is taken relative to ComfyUI's
    input folder (custom nodes run with ComfyUI's cwd, so a bare relative path would be
    ambiguous)."""
    path = os.path.expanduser(path.strip())
    if not os.path.isabs(path):
        path = os.path.join(input_directory(), path)
    return os.path.normpath(path)


# --- execution -------------------------------------------------------------------------------

def progress_bar(total: int, node_id: Optional[str]) -> Any:
    """A ``comfy.utils.ProgressBar`` attributed to ``node_id``.

    Its hook checks ComfyUI's interrupt flag and raises InterruptProcessingException in the
    calling thread, so it must only be used on the node's execution thread.
    """
    import comfy.utils

    return comfy.utils.ProgressBar(total, node_id=node_id)


def bar_throttle() -> tuple[float, float]:
    """(seconds, percent): the smallest gap and move between two ProgressBar updates that
    ComfyUI passes on; newer versions drop the others (comfy/utils.py); 0.3.75 has no limits."""
    try:
        import comfy.utils
    except ImportError:
        return 0.0, 0.0
    return (float(getattr(comfy.utils, "PROGRESS_THROTTLE_MIN_INTERVAL", 0.0) or 0.0),
            float(getattr(comfy.utils, "PROGRESS_THROTTLE_MIN_PERCENT", 0.0) or 0.0))


def send_text(text: str, node_id: Optional[str]) -> None:
    """Show ``text`` on the node (the frontend's progress-text preview; replaces the last)."""
    if node_id is None:
        return
    from server import PromptServer

    instance = getattr(PromptServer, "instance", None)
    if instance is None or not hasattr(instance, "send_progress_text"):
        return  # ComfyUI older than 0.3.34 has no progress text
    instance.send_progress_text(text, node_id, instance.client_id)


def send_event(event: str, data: dict[str, Any]) -> None:
    """A custom websocket message ``{"type": event, "data": data}`` to the prompt's client
    (every client when the prompt has none). ``send_sync`` is thread-safe; a ComfyUI without
    a running server (unit tests) sends nothing."""
    try:
        from server import PromptServer
    except ImportError:
        return
    instance = getattr(PromptServer, "instance", None)
    if instance is not None:
        instance.send_sync(event, data, instance.client_id)


def broadcast(event: str, data: dict[str, Any]) -> None:
    """A custom websocket message to every connected client (all browser tabs and API
    clients); thread-safe. Without a running server nothing is sent."""
    import sys

    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is not None:
        instance.send_sync(event, data, None)


def prompt_id() -> Optional[str]:
    """The id of the prompt this thread executes (ComfyUI's executing context, else the
    server's last prompt id), or None outside ComfyUI."""
    try:
        from comfy_execution.utils import get_executing_context

        context = get_executing_context()
        if context is not None:
            return context.prompt_id
    except ImportError:
        pass
    try:
        from server import PromptServer
    except ImportError:
        return None
    return getattr(getattr(PromptServer, "instance", None), "last_prompt_id", None)


def interrupted() -> bool:
    """ComfyUI's Cancel flag, read without clearing it."""
    import comfy.model_management

    return comfy.model_management.processing_interrupted()


def raise_interrupt() -> None:
    """End the node as a quiet cancel (``execution_interrupted``, not an error)."""
    import comfy.model_management

    comfy.model_management.throw_exception_if_processing_interrupted()
    # the flag was already consumed (e.g. by a ProgressBar hook): raise it ourselves
    raise comfy.model_management.InterruptProcessingException()


def interrupt_exception() -> type:
    import comfy.model_management

    return comfy.model_management.InterruptProcessingException


def free_gpu() -> None:
    """Let a GPU step have the card: unload ComfyUI's models and empty its cache."""
    import comfy.model_management

    comfy.model_management.unload_all_models()
    comfy.model_management.soft_empty_cache()


def user_config_file() -> Optional[str]:
    """``<ComfyUI user dir>/__musubi-tuner-nodes/config.json``: settings that live with this
    ComfyUI. The ``__`` prefix follows ComfyUI's system-user folders, which its user-data
    HTTP routes refuse, so a browser cannot rewrite which Python the pack launches."""
    import folder_paths

    getter = getattr(folder_paths, "get_user_directory", None)
    if getter is None:
        return None
    return os.path.join(getter(), "__musubi-tuner-nodes", "config.json")


def pack_directory() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

"""Writing the musubi-tuner paths into the user settings file, and nothing else.

The file (``config.user_config_path()``) may hold other keys the user set; they are kept
as they are. The new file is written next to the old one and moved over it in one step,
so a failure (disk full, the file open in an editor on Windows) leaves the old file
whole. Paths that are replaced are kept under ``_previous_musubi_tuner`` (keys starting
with ``_`` are comments to the settings loader), so nothing the user wrote is lost.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["read_settings_file", "write_musubi_paths"]


def read_settings_file(path: Path) -> dict[str, Any]:
    """The file's JSON object ({} when the file does not exist). Raises ValueError with a
    readable reason when it is not a JSON object, OSError when it cannot be read."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object {{...}}")
    return data


def write_musubi_paths(path: Path, root: str, venv: str) -> tuple[bool, dict[str, str]]:
    """Set ``musubi_tuner.root_path`` and ``venv_path``; (changed?, the previous values)."""
    data = read_settings_file(path)
    section = data.get("musubi_tuner")
    if section is not None and not isinstance(section, dict):
        raise ValueError(f"\"musubi_tuner\" in {path} must be an object {{...}}")
    section = dict(section or {})
    previous = {k: section.get(k, "") for k in ("root_path", "venv_path")}
    if previous == {"root_path": root, "venv_path": venv}:
        return False, previous
    if any(previous.values()):
        data["_previous_musubi_tuner"] = {k: v for k, v in previous.items() if v}
    section.update(root_path=root, venv_path=venv)
    data["musubi_tuner"] = section
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return True, previous

"""The install command as text to paste, for this pack folder, this Python and this shell.

Kept apart from the installer so the Setup Check node and ``check`` can show the command
without importing anything that downloads or installs (tests/test_security.py checks that no
node reaches the installer modules).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..process.command import Command, format_command

__all__ = ["install_command"]

_BOOTSTRAP = "import runpy, sys; sys.path.insert(0, ''); runpy.run_module('executor', run_name='__main__')"


def _isolated(python: str) -> bool:
    """Embedded Pythons (ComfyUI's portable build) have a ``python3XX._pth`` file, which
    turns on isolated mode: ``-m`` then does not look in the current folder."""
    folder = Path(python).parent
    try:
        return any(folder.glob("python*._pth"))
    except OSError:
        return False


def install_command(pack_dir: str, python: str, shell: str = "posix", extra: Sequence[str] = ()) -> str:
    """The exact command that installs musubi-tuner for the pack in ``pack_dir`` with
    ``python``, as text to paste into ``shell`` (posix, cmd or powershell)."""
    if _isolated(python):
        argv = (python, "-c", _BOOTSTRAP, "install", *extra)
    else:
        argv = (python, "-m", "executor", "install", *extra)
    return format_command(Command(argv=argv, env={}, cwd=pack_dir), shell)

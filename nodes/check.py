"""MusubiSetupCheck: what ``python -m executor check`` prints, shown inside ComfyUI.

Which settings files were read, which musubi-tuner checkout and venv were chosen (and
why), and the probe of that venv (Python, musubi_tuner, torch/CUDA, accelerate, optional
attention libraries), each missing piece with its fix. When there is no musubi-tuner at all:
the exact ``python -m executor install`` command for this OS, this pack folder and this Python.
With a Models node wired in, also one verdict line per chosen model file (what its header says it
is, and whether musubi takes it).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from . import host
from .values import MODELS_TYPE


def settings():
    """The pack's settings as seen from inside ComfyUI (adds ComfyUI's user-folder file).

    Inside ComfyUI the steps may write only into ComfyUI's output and input folders and the
    configured ``output_roots``: those become the settings' output_roots, which pre-flight
    enforces for output and cache folders (anyone who can queue a prompt chooses those paths).
    Likewise musubi may be given only paths inside those, ComfyUI's models folders and the
    configured ``read_roots`` to read: the settings' read_roots.
    """
    from dataclasses import replace

    from ..executor.setup.settings import load_settings
    from .guards import read_roots, write_roots

    loaded = load_settings(host.pack_directory(), user_config=host.user_config_file())
    return replace(loaded, output_roots=tuple(write_roots(loaded.output_roots)),
                   read_roots=tuple(read_roots(loaded.output_roots, loaded.read_roots)))


def models_text(models: Any) -> tuple[str, bool]:
    """(the models section, no file refused) for a wired MUSUBI_MODELS value."""
    from .deferred import catalogue
    from ..executor.musubi.preflight_models import model_verdicts

    arch = catalogue.get_architecture(models.arch)
    chosen = ", ".join(f"{k}={v}" for k, v in models.selectors.items())
    verdicts = model_verdicts(arch, models.paths, models.selectors)
    lines = [f"  {name}: {line}" for name, line in verdicts] or ["  no model files chosen"]
    head = f"model files ({arch.display_name}{': ' + chosen if chosen else ''}):"
    return "\n".join([head, *lines]), not any(line.startswith("REFUSED") for _, line in verdicts)


def report_text(refresh: bool = False) -> tuple[str, bool]:
    """(text, usable). Setup errors become text too: this node's job is to explain them."""
    from ..executor.setup.discovery import resolve_install
    from ..executor.errors import SetupError, TrainerNotFound
    from ..executor.setup.probe import format_report, probe

    lines: list[str] = []
    try:
        s = settings()
        lines.append("settings, lowest precedence first:")
        lines += [f"  {source}" for source in s.sources]
        if host.user_config_file():
            lines.append(f"  (settings for this ComfyUI may go in {host.user_config_file()})")
        from ..executor.setup.probe import roots_lines

        lines += ["folders of this ComfyUI (its own, plus output_roots / read_roots from the settings):",
                  *roots_lines(s)]
        install = resolve_install(s)
        lines += ["", "musubi-tuner install:", f"  checkout: {install.root}", f"  venv:     {install.venv}",
                  f"  python:   {install.python} ({install.python_version})",
                  f"  chosen:   {install.chosen_by}", ""]
        report = probe(install, s, refresh=refresh)
        lines.append(format_report(report, install))
        return "\n".join(lines), report.usable
    except SetupError as error:
        lines += ["", f"{type(error).__name__}: {error}"]
        if isinstance(error, TrainerNotFound):
            lines += [""] + install_instructions(host.pack_directory(), sys.executable, windows=os.name == "nt")
        return "\n".join(lines), False


def install_instructions(pack_dir: str, python: str, *, windows: bool) -> list[str]:
    """The one command that installs musubi-tuner for this pack (nothing is installed from here:
    a node never installs anything)."""
    from ..executor.setup.install_hint import install_command

    shells = [("Command Prompt (cmd)", "cmd"), ("PowerShell", "powershell")] if windows else [("a terminal", "posix")]
    lines = ["To install musubi-tuner into its own venv and point this pack at it, run one command",
             "(it downloads torch and musubi-tuner's dependencies, several GB, and takes 5-20 minutes;",
             "see docs/install-command.md), then queue this node again:"]
    for name, shell in shells:
        lines.append(f"  in {name}:")
        lines += ["    " + line for line in install_command(pack_dir, python, shell).splitlines()]
    return lines


class MusubiSetupCheck:
    DESCRIPTION = ("Checks the musubi-tuner installation this pack will use: settings, checkout, venv, "
                   "Python, torch and CUDA, accelerate and optional attention libraries, with a fix for "
                   "each missing piece.")
    CATEGORY = "Musubi Tuner"
    FUNCTION = "check"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING", "BOOLEAN")
    RETURN_NAMES = ("report", "usable")
    OUTPUT_TOOLTIPS = ("The setup report as text.",
                       "True when training can start (musubi-tuner, torch and accelerate import, and no wired "
                       "model file is refused).")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "refresh": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Ask the venv again instead of using the answer remembered since ComfyUI "
                               "started (after installing something into musubi-tuner's venv)."}),
            },
            "optional": {
                "models": (MODELS_TYPE, {
                    "tooltip": "Optional: a Musubi Models node, to also check each chosen model file from its "
                               "header (what it is, and whether musubi takes it for that input)."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def IS_CHANGED(cls, **_: Any) -> float:
        # The installation can change at any time; the probe itself is remembered per venv.
        return float("nan")

    def check(self, refresh: bool, models: Any = None, unique_id: Any = None) -> dict[str, Any]:
        text, usable = report_text(refresh)
        if models is not None:
            section, fits = models_text(models)
            text, usable = f"{text}\n\n{section}", usable and fits
        host.send_text(text, unique_id)
        return {"ui": {"text": [text]}, "result": (text, usable)}


NODE_CLASS_MAPPINGS = {"MusubiSetupCheck": MusubiSetupCheck}
NODE_DISPLAY_NAME_MAPPINGS = {"MusubiSetupCheck": "Musubi Setup Check"}

"""MusubiSetupCheck: what ``python -m executor check`` prints, shown inside ComfyUI.

Which settings files were read, which musubi-tuner checkout and venv were chosen (and
why), and the probe of that venv (Python, musubi_tuner, torch/CUDA, accelerate, optional
attention libraries), each missing piece with its fix.
"""

from __future__ import annotations

from typing import Any

from . import host


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


def report_text(refresh: bool = False) -> tuple[str, bool]:
    """(text, usable). Setup errors become text too: this node's job is to explain them."""
    from ..executor.setup.discovery import resolve_install
    from ..executor.errors import SetupError
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
        return "\n".join(lines), False


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
                       "True when training can start (musubi-tuner, torch and accelerate import).")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "refresh": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Ask the venv again instead of using the answer remembered since ComfyUI "
                               "started (after installing something into musubi-tuner's venv)."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def IS_CHANGED(cls, **_: Any) -> float:
        # The installation can change at any time; the probe itself is remembered per venv.
        return float("nan")

    def check(self, refresh: bool, unique_id: Any = None) -> dict[str, Any]:
        text, usable = report_text(refresh)
        host.send_text(text, unique_id)
        return {"ui": {"text": [text]}, "result": (text, usable)}


NODE_CLASS_MAPPINGS = {"MusubiSetupCheck": MusubiSetupCheck}
NODE_DISPLAY_NAME_MAPPINGS = {"MusubiSetupCheck": "Musubi Setup Check"}

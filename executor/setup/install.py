"""``python -m executor install``: musubi-tuner in its own venv, and the pack pointed at it.

    checks -> musubi-tuner (git) -> venv -> torch -> dependencies -> check -> settings

Every step looks before it acts, so running the command again finishes an interrupted
install and redoes nothing that is complete. The user settings file is written last,
and only when the check says the install is usable: a failure leaves it untouched.
Standard library only (it runs with ComfyUI's Python, or any 3.10+); never ComfyUI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Optional, TextIO

from ..errors import ConfigError, SetupError, TrainerNotFound
from .discovery import resolve_install, venv_python
from .packages import TorchSource, ensure_musubi, ensure_torch
from .runner import InstallError, InstallLog, Reporter, free_bytes
from .steps import Session, ensure_checkout, ensure_venv, git_hint, is_checkout, venv_state
from .torch_index import VARIANTS, choose_variant, query_nvidia_smi
from .settings import ENV_ROOT, ENV_USER_CONFIG, ENV_VENV, load_settings, user_config_path, user_data_dir
from .user_settings import read_settings_file, write_musubi_paths
from .install_hint import install_command  # noqa: F401 (the command this module runs, as text)

__all__ = ["PACK_REF", "PACK_COMMIT", "DEFAULT_GIT_URL", "ENV_GIT", "add_arguments", "cli_install",
           "install", "install_command", "default_install_dir"]

# The musubi-tuner release the pack's flag facts (executor/musubi/data/musubi_flags.json) were
# recorded from; tests/test_install.py keeps these two equal to that file.
PACK_REF = "v0.3.4"
PACK_COMMIT = "30c658c4f4b0bf05038b3346eff9670259b10fc7"
DEFAULT_GIT_URL = "https://github.com/kohya-ss/musubi-tuner.git"
ENV_GIT = "MUSUBI_TUNER_GIT"  # another repository or a local mirror (file://...)
PHASES = 7
# Disk space each missing part takes, in GB. Measured on Linux x86-64 with the real v0.3.4
# (docs/install-command.md): checkout 14 MB; CUDA torch 2.14.1 + torchvision with its nvidia-*
# and triton wheels 5.5 GB; musubi-tuner's dependencies 0.6 GB. Rounded up for other builds.
NEED_GB = {"clone": 0.1, "venv": 0.1, "torch-cpu": 1.5, "torch-cuda": 7.0, "dependencies": 1.0}
MARGIN_GB = 1.0


def default_install_dir(environ: Optional[Mapping[str, str]] = None) -> Path:
    """``<per-user data folder>/musubi-tuner``."""
    return user_data_dir(environ) / "musubi-tuner"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default=None,
                        help="folder for the musubi-tuner checkout (and its .venv); default: the "
                             "configured install, else " + str(default_install_dir()))
    parser.add_argument("--ref", default=PACK_REF,
                        help=f"musubi-tuner version (tag, branch or commit); default {PACK_REF}, the "
                             "version the pack's flag checks were recorded from")
    parser.add_argument("--torch", default="auto", choices=("auto", *VARIANTS),
                        help="torch build: auto (from nvidia-smi) or a CUDA version / cpu")
    parser.add_argument("--python", default=None,
                        help="the Python 3.10-3.12 to make the venv with (default: found)")
    parser.add_argument("--upgrade", action="store_true",
                        help="move an existing checkout to --ref (default: an existing checkout is kept)")
    parser.add_argument("--torch-index-url", default=None,
                        help="get torch from this package index instead of download.pytorch.org")
    parser.add_argument("--torch-wheels", default=None, metavar="DIR",
                        help="install torch and torchvision from the wheel files in DIR (offline "
                             "installs; the tests' stand-in for the torch download)")


def cli_install(args: argparse.Namespace) -> int:
    return install(args)


def install(args: argparse.Namespace, *, environ: Optional[Mapping[str, str]] = None,
            out: Optional[TextIO] = None, comfy_python: Optional[str] = None) -> int:
    """Run the whole install; the exit code (0 usable, 1 failed, 130 interrupted)."""
    env = dict(os.environ if environ is None else environ)
    ui = Reporter(out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = user_data_dir(env) / "install-logs" / f"install-{stamp}-{os.getpid()}.log"
    try:
        log = InstallLog(log_path)
    except OSError as exc:
        ui.print(f"error: cannot write the install log {log_path}: {exc}")
        return 1
    started = time.monotonic()
    ui.print("Installing musubi-tuner for the Musubi Tuner nodes")
    ui.print(f"full log: {log_path}")
    log.write(f"python -m executor install {vars(args)}\nrunning on {sys.executable} {sys.version}")
    try:
        _run(args, env, ui, log, comfy_python or sys.executable)
    except InstallError as exc:
        exc.log_path = exc.log_path or str(log_path)
        log.write(f"FAILED: {exc}")
        ui.print("")
        ui.print(f"error: {exc}")
        ui.print("Nothing was written to the settings.")
        return 1
    except SetupError as exc:  # a settings file that cannot be read, a broken venv
        log.write(f"FAILED: {exc}")
        ui.print("")
        ui.print(f"error: {exc}\nfull log: {log_path}")
        ui.print("Nothing was written to the settings.")
        return 1
    except KeyboardInterrupt:
        log.write("interrupted by the user")
        ui.print("\ninterrupted. Nothing was written to the settings; run the same command again "
                 "to continue (finished parts are kept).")
        return 130
    finally:
        log.close()
    ui.print(f"Done in {time.monotonic() - started:.0f} s.")
    return 0


def _run(args: argparse.Namespace, env: dict[str, str], ui: Reporter, log: InstallLog, comfy_python: str) -> None:
    ui.phase(1, PHASES, "checks")
    settings_file = user_config_path(env)
    try:
        read_settings_file(settings_file)
        # A file named by MUSUBI_TUNER_NODES_CONFIG that does not exist yet is ours to create.
        reading = env if settings_file.exists() else {k: v for k, v in env.items() if k != ENV_USER_CONFIG}
        settings = load_settings(environ=reading)
    except (ValueError, OSError) as exc:
        raise InstallError(f"the settings file cannot be read: {exc}",
                           hint=f"fix {settings_file} (or move it away), then run again") from None
    except ConfigError as exc:
        raise InstallError(f"the settings cannot be read: {exc.message}", hint=exc.hint) from None
    root, venv, why = _where(args, settings)
    git_url = env.get(ENV_GIT, "").strip() or DEFAULT_GIT_URL
    log.write(f"checkout {root}, venv {venv} ({why}); git {git_url}; settings file {settings_file}")
    ui.print(f"    musubi-tuner: {root} ({why})")
    ui.print(f"    venv:         {venv}")
    ui.print(f"    settings:     {settings_file}")
    if args.ref != PACK_REF:
        ui.warn(f"the pack's flag checks were recorded for musubi-tuner {PACK_REF}; with {args.ref} some flags "
                "may be missing or wrongly refused. Refresh them after installing: python -m executor.musubi.flagfacts "
                f"--musubi-root \"{root}\" --python \"{venv_python(venv) or venv}\" "
                "--out executor/musubi/data/musubi_flags.json (see docs/development.md)")
    s = Session(root=root, venv=venv, ref=args.ref, git_url=git_url, upgrade=args.upgrade, log=log, ui=ui,
                environ=env)
    python = venv_python(venv)
    state = venv_state(s, python) if python else {}
    if (not is_checkout(root) or args.upgrade) and shutil.which("git", path=env.get("PATH")) is None:
        raise InstallError("git is not installed (or not on PATH)", hint=git_hint())
    source = _torch_source(args, s, need=not state.get("torch"))
    _check_space(s, state, source)
    ui.done("ok")

    ui.phase(2, PHASES, f"musubi-tuner {args.ref} from {git_url}")
    moved, commit = ensure_checkout(s)
    if args.ref == PACK_REF and commit and commit != PACK_COMMIT:
        ui.warn(f"{PACK_REF} in {git_url} is commit {commit[:7]}; the pack's flag checks were recorded at "
                f"{PACK_COMMIT[:7]}")

    ui.phase(3, PHASES, "venv")
    python = ensure_venv(s, args.python, comfy_python)

    ui.phase(4, PHASES, "torch + torchvision")
    if source is None:
        source = _torch_source(args, s, need=True)
    state = ensure_torch(s, python, source)

    ui.phase(5, PHASES, "musubi-tuner and its dependencies")
    ensure_musubi(s, python, state, moved)

    ui.phase(6, PHASES, "check (the same as `python -m executor check`)")
    _check(s, settings)

    ui.phase(7, PHASES, "settings")
    _write_settings(s, settings_file, env)


def _where(args: argparse.Namespace, settings) -> tuple[Path, Path, str]:
    """(checkout, venv, why): --dir, else the install the settings point at, else the default."""
    if args.dir:
        root = Path(os.path.abspath(os.path.expanduser(args.dir)))
        why = "--dir"
    else:
        try:
            found = resolve_install(settings)
            return Path(found.root), Path(found.venv), "the install the settings point at"
        except TrainerNotFound:
            configured = Path(settings.root_path) if settings.root_path else None
            if configured is not None and is_checkout(configured):
                root, why = configured, f"root_path from {settings.origin('musubi_tuner.root_path')}"
                venv = Path(settings.venv_path) if settings.venv_path else root / ".venv"
                return root, venv, why
            root, why = default_install_dir(), "the default place"
        except ConfigError as exc:
            raise InstallError(f"the configured musubi-tuner install cannot be used: {exc.message}",
                               hint=f"{exc.hint}; or install a new one with --dir FOLDER") from None
    existing = next((root / name for name in (".venv", "venv") if venv_python(root / name)), None)
    return root, existing or root / ".venv", why


def _torch_source(args: argparse.Namespace, s: Session, *, need: bool) -> Optional[TorchSource]:
    if args.torch_wheels:
        folder = Path(os.path.abspath(args.torch_wheels))
        if not folder.is_dir():
            raise InstallError(f"--torch-wheels {folder} is not a folder")
        return TorchSource(None if args.torch == "auto" else args.torch, explicit=True, wheels=folder)
    if args.torch_index_url:
        return TorchSource(None if args.torch == "auto" else args.torch, explicit=True, index=args.torch_index_url)
    if args.torch != "auto":
        return TorchSource(args.torch, explicit=True, reason="--torch")
    if not need:
        return None  # torch is there: no need to ask the driver
    s.ui.status("asking nvidia-smi which CUDA version the driver supports")
    info, raw = query_nvidia_smi(s.environ)
    s.log.write("nvidia-smi:\n" + (raw or "(not found)"))
    choice = choose_variant(info)
    if choice.error:
        raise InstallError(choice.error)
    s.ui.print(f"    torch build:  {choice.reason}")
    for warning in choice.warnings:
        s.ui.warn(warning)
    return TorchSource(choice.variant, explicit=False, reason=choice.reason)


def _check_space(s: Session, state: dict, source: Optional[TorchSource]) -> None:
    parts: list[tuple[str, float]] = []
    if not is_checkout(s.root):
        parts.append(("clone", NEED_GB["clone"]))
    if not venv_python(s.venv):
        parts.append(("venv", NEED_GB["venv"]))
    if not state.get("torch") and source is not None:
        if source.wheels is not None:
            # A CUDA torch wheel pulls the nvidia-* wheels from the index: size by build, not file.
            cpu = all("+cpu" in w.name for w in source.wheels.glob("torch-*.whl"))
            parts.append(("torch", NEED_GB["torch-cpu" if cpu else "torch-cuda"]))
        else:
            parts.append(("torch", NEED_GB["torch-cpu" if source.variant == "cpu" else "torch-cuda"]))
    if not state.get("musubi"):
        parts.append(("dependencies", NEED_GB["dependencies"]))
    if not parts:
        return
    need = sum(gb for _, gb in parts) + MARGIN_GB
    free = free_bytes(str(s.root))
    if free is not None and free / 1e9 < need:
        shown = ", ".join(f"{name} {gb:.1f} GB" for name, gb in parts)
        raise InstallError(
            f"not enough disk space for {s.root}: {free / 1e9:.1f} GB free, about {need:.1f} GB needed "
            f"({shown}, plus {MARGIN_GB:.0f} GB to spare)",
            hint="free some space, or install on another drive with --dir (e.g. --dir D:\\musubi-tuner), "
                 "then run again")
    s.log.write(f"disk: {free / 1e9 if free is not None else -1:.1f} GB free, about {need:.1f} GB needed")


def _check(s: Session, settings) -> None:
    from .probe import format_report, probe

    trial = replace(settings, root_path=str(s.root), venv_path=str(s.venv),
                    origins={**settings.origins, "musubi_tuner.root_path": "python -m executor install",
                             "musubi_tuner.venv_path": "python -m executor install"})
    install = resolve_install(trial)
    s.ui.status("asking the venv what it can do (importing torch takes a few seconds)", important=True)
    report = probe(install, trial, refresh=True)
    text = format_report(report, install, ascii_only=not _can_print(s.ui.out, "✓✗–"))
    s.log.write(text)
    s.ui.print("\n".join("    " + line for line in text.splitlines()))
    if not report.usable:
        raise InstallError("musubi-tuner is installed, but the check finds it not usable yet",
                           hint="fix the lines marked above, then run this command again (finished parts "
                                "are kept)")


def _can_print(out: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(out, "encoding", None) or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def _write_settings(s: Session, settings_file: Path, env: dict[str, str]) -> None:
    try:
        changed, previous = write_musubi_paths(settings_file, str(s.root), str(s.venv))
    except (OSError, ValueError) as exc:
        raise InstallError(f"the settings file {settings_file} could not be written: {exc}",
                           hint="close any program that has it open, check the disk, then run again "
                                "(the old file is unchanged)") from None
    if changed:
        s.ui.done(f"wrote musubi_tuner.root_path and venv_path to {settings_file}")
        if any(previous.values()):
            s.ui.note("the previous paths are kept in the file under \"_previous_musubi_tuner\"")
    else:
        s.ui.done(f"{settings_file} already points at this install")
    after = load_settings(environ=env)
    for key, value, var in (("root_path", s.root, ENV_ROOT), ("venv_path", s.venv, ENV_VENV)):
        if getattr(after, key) != str(value):
            s.ui.warn(f"{after.origin('musubi_tuner.' + key)} sets {key} to {getattr(after, key)}, "
                      f"which wins over the settings file; unset {var} or change it to use this install")
    comfy_file = _comfy_user_file(Path(after.pack_dir))
    if comfy_file is not None:
        s.ui.warn(f"{comfy_file} also sets musubi-tuner paths and wins inside that ComfyUI; remove its "
                  "\"musubi_tuner\" entry to use this install there")
    s.ui.print("")
    s.ui.print("musubi-tuner is ready. In ComfyUI, queue the \"Musubi Setup Check\" node to see it "
               "(no restart needed).")


def _comfy_user_file(pack: Path) -> Optional[Path]:
    """ComfyUI's own settings file for the pack (default user folder), when it sets paths."""
    if pack.parent.name != "custom_nodes":
        return None
    path = pack.parent.parent / "user" / "__musubi-tuner-nodes" / "config.json"
    try:
        section = read_settings_file(path).get("musubi_tuner") or {}
    except (OSError, ValueError):
        return None
    return path if isinstance(section, dict) and (section.get("root_path") or section.get("venv_path")) else None


# --- the command for a person to run -----------------------------------------------------------

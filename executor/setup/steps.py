"""The installer's steps, each safe to run again: it looks first and does only what is missing.

    checkout   git clone (into a side folder, moved into place when complete), or check /
               move an existing checkout (moving only with --upgrade, never over local changes)
    venv       a Python 3.10-3.12 venv with a pip new enough for machine-readable progress
    torch      torch + torchvision from the chosen index (or given wheel files)
    musubi     ``pip install -e <checkout>`` with torch pinned, so no dependency swaps it

Standard library only; every command goes through ``runner.run_logged``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote

from .discovery import venv_python, venv_python_version
from . import pythons
from .runner import InstallError, InstallLog, Reporter, Result, explain, run_logged

__all__ = ["Session", "ensure_checkout", "ensure_venv", "venv_state", "is_checkout", "git_hint", "pip", "PipWatcher"]

MIN_PIP = (24, 1)  # --progress-bar raw ("Progress N of M" lines)
TORCH_REQUIREMENTS = ("torch>=2.5.1", "torchvision>=0.20.1")  # musubi-tuner's README: 2.5.1 or later


@dataclass
class Session:
    """One install run: where things go, the log, the screen, and the environment children get."""

    root: Path
    venv: Path
    ref: str
    git_url: str
    upgrade: bool
    log: InstallLog
    ui: Reporter
    environ: dict[str, str]
    done: list[str] = field(default_factory=list)
    raw_progress: bool = False  # the venv's pip prints "Progress N of M" lines

    def child_env(self) -> dict[str, str]:
        env = dict(self.environ)
        # ComfyUI's or a shell's Python settings must not leak into musubi's venv.
        for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PIP_USER", "PIP_TARGET", "PIP_PREFIX",
                     "PIP_REQUIRE_VIRTUALENV", "VIRTUAL_ENV", "CONDA_PREFIX"):
            env.pop(name, None)
        env.update(PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1", PIP_NO_INPUT="1",
                   PIP_DISABLE_PIP_VERSION_CHECK="1")
        return env

    def git_env(self) -> dict[str, str]:
        env = dict(self.environ)
        # Never wait for a password prompt nobody sees; English messages for explain().
        env.update(GIT_TERMINAL_PROMPT="0", GCM_INTERACTIVE="never", LC_ALL="C", LANGUAGE="C")
        return env

    def failed(self, message: str, result: Optional[Result] = None, hint: str = "") -> InstallError:
        tail = [line for line in (result.tail if result else []) if line.strip()][-15:]
        known = explain("\n".join(result.tail), places=[str(self.root)]) if result else None
        return InstallError(message, hint=known.hint if known else hint, log_path=str(self.log.path),
                            tail=tail)


# --- musubi-tuner's checkout ---------------------------------------------------------------

def _git(s: Session, *args: str, cwd: Optional[Path] = None, quiet: bool = False) -> Result:
    git = shutil.which("git", path=s.environ.get("PATH"))
    if git is None:
        raise InstallError("git is not installed (or not on PATH)", hint=git_hint(), log_path=str(s.log.path))
    on_line = (lambda line: None) if quiet else (lambda line: _git_status(s, line))
    return run_logged([git, *args], log=s.log, env=s.git_env(), cwd=str(cwd) if cwd else None, on_line=on_line)


def git_hint() -> str:
    if os.name == "nt":
        return ("install Git for Windows (https://git-scm.com/download/win, or `winget install Git.Git`), "
                "open a new terminal and run this command again")
    return "install git (Debian/Ubuntu: sudo apt install git; Fedora: sudo dnf install git) and run this command again"


def _git_status(s: Session, line: str) -> None:
    match = re.match(r"(Receiving objects|Resolving deltas|Updating files):\s+(\d+)%", line)
    if match:
        s.ui.status(f"{match.group(1).lower()}: {match.group(2)} %")


def _rev(s: Session, ref: str) -> Optional[str]:
    result = _git(s, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=s.root, quiet=True)
    return result.tail[-1].strip() if result.ok and result.tail else None


def _describe(s: Session, commit: str) -> str:
    result = _git(s, "describe", "--tags", "--always", commit, cwd=s.root, quiet=True)
    name = result.tail[-1].strip() if result.ok and result.tail else commit
    return name if name.startswith(commit[:7]) else f"{name} ({commit[:7]})"


def is_checkout(path: Path) -> bool:
    return (path / "src" / "musubi_tuner").is_dir()


def ensure_checkout(s: Session) -> tuple[bool, str]:
    """Clone or check the checkout; (moved to another commit in this run?, its commit)."""
    if is_checkout(s.root):
        if not (s.root / ".git").exists():
            if s.upgrade:
                raise InstallError(f"{s.root} is not a git checkout, so --upgrade cannot move it",
                                   hint="move the folder away (or use --dir for a new one) and run again")
            s.ui.done(f"{s.root} is not a git checkout: kept as it is (its version cannot be checked)")
            return False, ""
        head = _rev(s, "HEAD") or ""
        target = _rev(s, s.ref)
        if target == head:
            s.ui.done(f"already at {s.ref} ({head[:7]}) in {s.root}")
            return False, head
        if not s.upgrade:
            s.ui.done(f"kept at {_describe(s, head)} in {s.root}")
            s.ui.note(f"{s.ref} was asked for; run with --upgrade to move the checkout there")
            return False, head
        s.ui.status(f"fetching {s.git_url}", important=True)
        fetched = _git(s, "fetch", "--tags", "--force", "--progress", "origin", cwd=s.root)
        if not fetched.ok:
            raise s.failed(f"git fetch from {s.git_url} failed", fetched)
        target = _rev(s, s.ref)
        if target is None:
            raise InstallError(f"{s.ref} does not exist in {s.git_url}",
                               hint=explain("unknown revision").hint, log_path=str(s.log.path))
        dirty = _git(s, "status", "--porcelain", "--untracked-files=no", cwd=s.root, quiet=True)
        if [line for line in dirty.tail if line.strip()]:
            raise InstallError(f"{s.root} has local changes, so it was not moved to {s.ref}",
                               hint="commit or stash them (git stash), or copy them elsewhere, then run again",
                               log_path=str(s.log.path), tail=list(dirty.tail)[-10:])
        moved = _git(s, "-c", "advice.detachedHead=false", "checkout", "--detach", target, cwd=s.root)
        if not moved.ok:
            raise s.failed(f"git could not move {s.root} to {s.ref}", moved)
        s.ui.done(f"moved from {_describe(s, head)} to {s.ref} ({target[:7]})")
        s.done.append(f"checkout moved to {s.ref}")
        return True, target

    if s.root.exists() and any(s.root.iterdir()):
        raise InstallError(f"{s.root} is not empty and is not a musubi-tuner checkout",
                           hint=f"choose a new or empty folder, e.g. --dir {s.root / 'musubi-tuner'}",
                           log_path=str(s.log.path))
    # Clone beside the target and move it into place when complete: an interrupted clone
    # never leaves a half checkout that a later run would take for a real one.
    partial = s.root.parent / f".{s.root.name}.partial-{os.getpid()}"
    s.root.parent.mkdir(parents=True, exist_ok=True)
    _remove_tree(partial)
    try:
        s.ui.status(f"cloning {s.git_url}", important=True)
        cloned = _git(s, "clone", "--progress", "--no-checkout", s.git_url, str(partial))
        if not cloned.ok:
            raise s.failed(f"git clone {s.git_url} failed", cloned)
        checked_out = _git(s, "-c", "advice.detachedHead=false", "checkout", "--detach", s.ref, cwd=partial)
        if not checked_out.ok:
            raise s.failed(f"{s.ref} could not be checked out from {s.git_url}", checked_out)
        if not is_checkout(partial):
            raise InstallError(f"{s.git_url} at {s.ref} is not musubi-tuner (it has no src/musubi_tuner)",
                               log_path=str(s.log.path))
        if s.root.exists():
            s.root.rmdir()  # empty, checked above
        os.replace(partial, s.root)
    finally:
        _remove_tree(partial)
    head = _rev(s, "HEAD") or ""
    s.ui.done(f"cloned {s.ref} ({head[:7]}) into {s.root}")
    s.done.append(f"cloned musubi-tuner {s.ref}")
    return True, head


def _remove_tree(path: Path) -> None:
    def writable(func, target, _exc):  # git marks its pack files read-only on Windows
        os.chmod(target, stat.S_IWRITE)
        func(target)
    if path.exists():
        shutil.rmtree(path, onerror=writable)


# --- the venv ------------------------------------------------------------------------------

_STATE = r"""
import json, sys
from importlib import metadata
def version(name):
    try:
        return metadata.version(name)
    except Exception:
        return None
musubi = None
try:
    dist = metadata.distribution("musubi-tuner")
    musubi = {"version": dist.version, "direct_url": dist.read_text("direct_url.json"),
              "requires": dist.requires or []}
except Exception:
    pass
print(json.dumps({"python": "%d.%d.%d" % sys.version_info[:3], "pip": version("pip"),
                  "torch": version("torch"), "torchvision": version("torchvision"), "musubi": musubi}))
"""


def venv_state(s: Session, python: str) -> dict[str, Any]:
    """What is installed in the venv, from package metadata (nothing is imported)."""
    done = subprocess.run([python, "-I", "-c", _STATE], stdin=subprocess.DEVNULL, capture_output=True,
                          env=s.child_env(), timeout=120)
    try:
        return json.loads(done.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        s.log.write(f"venv state query failed: {done.stderr.decode('utf-8', 'replace')}")
        return {}


def _version_tuple(text: Optional[str]) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text or "")[:3])


def ensure_venv(s: Session, explicit_python: Optional[str], comfy_python: Optional[str]) -> str:
    """The venv's Python, making the venv first when there is none."""
    python = venv_python(s.venv)
    if python is not None:
        version = venv_python_version(s.venv, python)
        if not pythons.supported(_version_tuple(version)):
            raise InstallError(f"the venv {s.venv} uses Python {version}; musubi-tuner needs {pythons.RANGE_TEXT}",
                               hint=f"delete the folder {s.venv} and run this command again (it makes a new "
                                    "venv), or install into a new folder with --dir",
                               log_path=str(s.log.path))
        s.ui.done(f"using the venv {s.venv} (Python {version})")
    else:
        try:
            found = pythons.find_python(explicit_python, environ=s.environ, comfy_python=comfy_python,
                                        on_status=s.ui.status, log=s.log.write)
        except pythons.NoPython as exc:
            tried = "\n".join(f"  - {t}" for t in exc.tried)
            raise InstallError(f"{exc}; tried:\n{tried}", hint=pythons.no_python_hint(comfy_python),
                               log_path=str(s.log.path)) from None
        s.ui.status(f"making the venv with Python {found.version_text} ({found.executable})", important=True)
        # pip is added in a second, separate step: venv hides ensurepip's own error message
        # (a full temp drive shows only "returned non-zero exit status 1").
        made = run_logged([found.executable, "-m", "venv", "--without-pip", str(s.venv)], log=s.log,
                          env=s.child_env())
        python = venv_python(s.venv)
        if made.ok and python is not None:
            made = run_logged([python, "-m", "ensurepip", "--upgrade", "--default-pip"], log=s.log,
                              env=s.child_env())
        if not made.ok or python is None:
            _remove_tree(s.venv)  # ours, half made: a later run must not take it for a venv
            raise s.failed(f"making the venv {s.venv} failed", made)
        s.ui.done(f"made the venv {s.venv} with Python {found.version_text} (found via {found.source})")
        s.done.append(f"made the venv (Python {found.version_text})")
    state = venv_state(s, python)
    if state.get("pip") is None:
        repaired = run_logged([python, "-m", "ensurepip", "--upgrade"], log=s.log, env=s.child_env())
        if not repaired.ok:
            raise s.failed(f"the venv {s.venv} has no pip and ensurepip could not add it", repaired,
                           hint=f"delete the folder {s.venv} and run this command again")
        state = venv_state(s, python)
    if _version_tuple(state.get("pip")) < MIN_PIP:
        s.ui.status(f"updating pip {state.get('pip')} (for download progress)", important=True)
        updated = pip(s, python, ["install", "--upgrade", "pip"], progress=False)
        if not updated.ok:
            raise s.failed("updating pip in the venv failed", updated,
                           hint="see the output above and the full log")
        state = venv_state(s, python)
        if _version_tuple(state.get("pip")) < MIN_PIP:
            # pip says "already satisfied" when it cannot reach the index: go on, and let a
            # step that really needs the network say so.
            s.ui.warn(f"pip could not be updated (still {state.get('pip')}); downloads will show no progress")
        else:
            s.ui.done(f"updated pip to {state.get('pip')}")
            s.done.append("updated pip")
    s.raw_progress = _version_tuple(state.get("pip")) >= MIN_PIP
    return python


# --- pip -----------------------------------------------------------------------------------

def _megabytes(size: str) -> float:
    match = re.match(r"([\d.]+)\s*(kB|MB|GB)", size or "")
    if not match:
        return 0.0
    return float(match.group(1)) * {"kB": 1e-3, "MB": 1.0, "GB": 1e3}[match.group(2)]


class PipWatcher:
    """Turns pip's output into one status line: collecting, downloading (with size and
    progress), installing."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.file = ""
        self.size = ""
        self.downloads: list[tuple[float, str, str]] = []  # (MB, file, size as pip shows it)
        self.collected = 0

    def __call__(self, line: str) -> None:
        line = line.strip()
        ui = self.s.ui
        if line.startswith("Collecting "):
            self.collected += 1
            ui.status(f"collecting {line[11:].split(' ')[0]} ({self.collected} requirements so far)")
        elif line.startswith("Downloading "):
            match = re.match(r"Downloading (\S+)(?: \(([^)]+)\))?", line)
            if match:
                self.file = unquote(match.group(1).rsplit("/", 1)[-1])  # older pip shows the URL
                self.size = match.group(2) or ""
                self.downloads.append((_megabytes(self.size), self.file, self.size))
                big = bool(re.search(r"\d+(\.\d+)?\s*GB|\d{3,}(\.\d+)?\s*MB", self.size))
                ui.status(f"downloading {self.file} ({self.size or 'size unknown'})", important=big)
        elif line.startswith("Progress "):
            match = re.match(r"Progress (\d+) of (\d+)", line)
            if match and int(match.group(2)) > 0:
                done, total = int(match.group(1)), int(match.group(2))
                ui.status(f"downloading {self.file}: {done / 1e6:,.0f} of {total / 1e6:,.0f} MB "
                          f"({100 * done // total} %)")
        elif line.startswith("Installing collected packages:"):
            count = len(line.split(":", 1)[1].split(","))
            ui.status(f"installing {count} package{'s' if count != 1 else ''}"
                      + (" (this can take a few minutes)" if count > 5 else ""), important=True)
        elif line.startswith(("Building editable", "Building wheel", "Preparing editable metadata")):
            ui.status(line.rstrip(". ").lower())


    def summary(self) -> str:
        """``downloaded 19 files, 2,402 MB; the largest torch-...whl (908.2 MB)`` or ""."""
        if not self.downloads:
            return ""
        total = sum(mb for mb, _, _ in self.downloads)
        mb, name, size = max(self.downloads)
        count = len(self.downloads)
        return (f"downloaded {count} file{'s' if count != 1 else ''}, {total:,.0f} MB"
                + (f"; the largest {name} ({size})" if count > 1 else ""))


def pip(s: Session, python: str, args: list[str], *, progress: bool = True,
        watcher: Optional[PipWatcher] = None) -> Result:
    extra = ["--progress-bar", "raw"] if progress and s.raw_progress else []
    return run_logged([python, "-m", "pip", *args[:1], *extra, *args[1:]], log=s.log, env=s.child_env(),
                      on_line=watcher or PipWatcher(s))

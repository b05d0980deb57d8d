"""What the musubi-tuner venv can do: Python, musubi_tuner, torch + CUDA, accelerate, extras.

Runs the venv's Python once with a small stdlib script (the same environment a
training gets), caches the answer, and renders it for people
(``python -m executor check``). Imports only the standard library, its room and ``process.command``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Optional

from ..process.command import child_environment, is_secret_name
from .settings import IS_WINDOWS, Settings, load_settings, user_config_path
from .discovery import MusubiInstall, resolve_install
from ..errors import SetupError, TrainerNotFound, describe_exit_code

__all__ = ["ProbeReport", "probe", "format_report", "attention_available", "cli_check",
           "REQUIRED_MODULES", "OPTIONAL_MODULES", "ATTENTION_BACKENDS"]

PROBE_TIMEOUT = 60.0
_MARK = "@@probe "

# musubi-tuner v0.3.4 pyproject dependencies, by import name (torchvision: every
# train script imports it). find_spec only: nothing heavy is imported for these.
REQUIRED_MODULES = ("accelerate", "av", "cv2", "diffusers", "easydict", "einops", "ftfy",
                    "huggingface_hub", "PIL", "safetensors", "sentencepiece", "toml", "torchvision",
                    "tqdm", "transformers", "voluptuous")
# Optional extras: import name -> (distribution name, what needs it, how to get it).
OPTIONAL_MODULES: dict[str, tuple[str, str, str]] = {
    "flash_attn": ("flash-attn", "--flash_attn",
                   "install a flash-attn wheel built for this torch, CUDA and Python version"),
    "flash_attn_interface": ("flash-attn-3", "--flash3 (FlashAttention 3 on Hopper GPUs)",
                             "build it from the flash-attention repository's hopper/ folder"),
    "xformers": ("xformers", "--xformers",
                 "{python} -m pip install xformers  (pick the build matching torch {torch})"),
    "sageattention": ("sageattention", "--sage_attn",
                      "{python} -m pip install sageattention  (on Windows it also needs triton-windows)"),
    "bitsandbytes": ("bitsandbytes", "8-bit optimizers such as --optimizer_type AdamW8bit",
                     "{python} -m pip install bitsandbytes"),
}
# musubi's attention flags -> the module each needs (sdpa is part of torch).
ATTENTION_BACKENDS = {"sdpa": "torch", "flash_attn": "flash_attn", "flash3": "flash_attn_interface",
                      "xformers": "xformers", "sage_attn": "sageattention"}
_ALIASES = {"torch": "sdpa", "flash": "flash_attn", "flash_attention": "flash_attn",
            "flash_attn_3": "flash3", "sageattn": "sage_attn", "sageattention": "sage_attn",
            "sage": "sage_attn"}

# Runs inside the musubi venv: stdlib only, and must work on Python 3.8+ so that a
# wrong venv still gets a useful answer. One line per section, flushed, so a
# crash while importing torch still leaves the earlier answers.
PROBE_SCRIPT = r"""
import importlib, importlib.util, json, sys
def emit(section, **data):
    data["section"] = section
    sys.stdout.write(%(mark)r + json.dumps(data) + "\n")
    sys.stdout.flush()
def dist_version(name):
    try:
        from importlib import metadata
        return metadata.version(name)
    except Exception:
        return None
def present(name):
    try:
        return importlib.util.find_spec(name) is not None
    except Exception:
        return False
def error(exc):
    return "%%s: %%s" %% (type(exc).__name__, exc)
emit("python", version="%%d.%%d.%%d" %% sys.version_info[:3], executable=sys.executable,
     prefix=sys.prefix, base_prefix=getattr(sys, "base_prefix", sys.prefix))
try:
    import musubi_tuner
    emit("musubi_tuner", ok=True, file=getattr(musubi_tuner, "__file__", None)
         or next(iter(getattr(musubi_tuner, "__path__", [])), None))
except BaseException as exc:
    emit("musubi_tuner", ok=False, error=error(exc))
required = %(required)r
optional = %(optional)r
emit("modules", missing=[m for m in required if not present(m)],
     optional=dict((m, (dist_version(d) or "") if present(m) else None) for m, d in optional))
try:
    import torch
    cuda = bool(torch.cuda.is_available())
    devices = []
    if cuda:
        for i in range(torch.cuda.device_count()):
            try:
                devices.append(str(torch.cuda.get_device_name(i)))
            except Exception as exc:
                devices.append("device %%d (%%s)" %% (i, error(exc)))
    emit("torch", ok=True, version=str(getattr(torch, "__version__", "?")), cuda_available=cuda,
         cuda_version=getattr(getattr(torch, "version", None), "cuda", None), devices=devices)
except BaseException as exc:
    emit("torch", ok=False, error=error(exc))
version = dist_version("accelerate")
if version:
    emit("accelerate", ok=True, version=version)
else:
    try:
        import accelerate
        emit("accelerate", ok=True, version=str(getattr(accelerate, "__version__", "?")))
    except BaseException as exc:
        emit("accelerate", ok=False, error=error(exc))
emit("done")
""" % {"mark": _MARK, "required": REQUIRED_MODULES,
       "optional": tuple((m, d[0]) for m, d in OPTIONAL_MODULES.items())}


@dataclass(frozen=True)
class ProbeReport:
    """The venv's answers. ``problems`` holds probe-level trouble (timeout, crash);
    ``checked`` names the parts that answered before the probe ended."""

    python: str
    python_version: Optional[str] = None
    musubi_ok: bool = False
    musubi_file: Optional[str] = None
    musubi_error: Optional[str] = None
    musubi_expected_dir: Optional[str] = None
    torch_version: Optional[str] = None
    torch_error: Optional[str] = None
    cuda_available: bool = False
    cuda_version: Optional[str] = None
    devices: tuple[str, ...] = ()
    accelerate_version: Optional[str] = None
    accelerate_error: Optional[str] = None
    optional: Mapping[str, Optional[str]] = field(default_factory=dict)
    missing_modules: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    checked: tuple[str, ...] = ()
    elapsed: float = 0.0
    cached: bool = False

    @property
    def musubi_from_checkout(self) -> bool:
        """musubi_tuner was imported from the configured checkout (not a stale installed copy)."""
        if not (self.musubi_ok and self.musubi_file and self.musubi_expected_dir):
            return False
        found = os.path.normcase(os.path.abspath(self.musubi_file))
        expected = os.path.normcase(os.path.abspath(self.musubi_expected_dir))
        return found == expected or found.startswith(expected + os.sep)

    @property
    def usable(self) -> bool:
        """Training can start: musubi imports from the checkout, torch and accelerate load,
        nothing musubi requires is missing. CUDA and the extras are not required."""
        return (self.musubi_ok and self.musubi_from_checkout and self.torch_version is not None
                and self.accelerate_version is not None and not self.missing_modules
                and not self.problems)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["optional"] = dict(self.optional)
        data["usable"] = self.usable
        data["musubi_from_checkout"] = self.musubi_from_checkout
        return data


def attention_available(report: ProbeReport, backend: str) -> bool:
    """Whether the venv has what musubi's ``--<backend>`` attention flag needs.

    ``backend`` is a musubi flag name (``sdpa``, ``flash_attn``, ``flash3``,
    ``xformers``, ``sage_attn``), with or without ``--``, or a common alias.
    """
    name = backend.strip().lstrip("-").lower()
    name = _ALIASES.get(name, name)
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; "
                         f"known: {', '.join(ATTENTION_BACKENDS)}")
    module = ATTENTION_BACKENDS[name]
    if module == "torch":
        return report.torch_version is not None
    return report.optional.get(module) is not None


# --- running it ----------------------------------------------------------------------------

_MEMO: dict[str, ProbeReport] = {}


def probe(install: MusubiInstall, settings: Settings, *, timeout: float = PROBE_TIMEOUT,
          refresh: bool = False, cache_dir: Optional[os.PathLike[str] | str] = None,
          base_env: Optional[Mapping[str, str]] = None) -> ProbeReport:
    """Ask the venv (about 5-10 s with a real torch), or return a cached answer.

    Cached in memory, and in ``cache_dir`` when given, per interpreter, venv
    (``pyvenv.cfg`` and site-packages modification times, so a pip install
    invalidates it), checkout and the settings' extra environment.
    """
    key = _cache_key(install, settings)
    disk = Path(cache_dir) / f"probe-{key}.json" if cache_dir is not None else None
    if not refresh:
        if key in _MEMO:
            return replace(_MEMO[key], cached=True)
        if disk is not None and disk.is_file():
            try:
                report = _from_dict(json.loads(disk.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                report = None  # unreadable or from another version: probe again
            if report is not None:
                _MEMO[key] = report
                return replace(report, cached=True)

    report = _run_probe(install, settings, timeout, base_env)
    if not report.problems:  # a timeout may be a one-off; do not remember it
        _MEMO[key] = report
        if disk is not None:
            try:
                disk.parent.mkdir(parents=True, exist_ok=True)
                tmp = disk.with_suffix(".tmp")
                tmp.write_text(json.dumps(report.to_dict()), encoding="utf-8")
                os.replace(tmp, disk)
            except OSError:
                pass  # a cache that cannot be written is only slower
    return report


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _cache_key(install: MusubiInstall, settings: Settings) -> str:
    venv = Path(install.venv)
    site = sorted(str(p) for p in [*venv.glob("lib/python*/site-packages"), venv / "Lib" / "site-packages"]
                  if p.is_dir())
    parts = [install.python, _mtime(venv / "pyvenv.cfg"), [(s, _mtime(Path(s))) for s in site],
             install.root, _mtime(Path(install.package_dir)), sorted(settings.env.items())]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def _from_dict(data: dict[str, Any]) -> ProbeReport:
    names = {f for f in ProbeReport.__dataclass_fields__}
    values = {k: v for k, v in data.items() if k in names}
    for name in ("devices", "missing_modules", "problems", "checked"):
        values[name] = tuple(values.get(name, ()))
    return ProbeReport(**values)


def _run_probe(install: MusubiInstall, settings: Settings, timeout: float,
               base_env: Optional[Mapping[str, str]]) -> ProbeReport:
    env = child_environment(install, settings, base=base_env)
    start = time.monotonic()
    problems: list[str] = []
    out = err = b""
    code: Optional[int] = None
    try:
        done = subprocess.run([install.python, "-c", PROBE_SCRIPT], env=env, cwd=install.root,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                              creationflags=0x08000000 if IS_WINDOWS else 0)  # CREATE_NO_WINDOW
        out, err, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        out, err = exc.stdout or b"", exc.stderr or b""
        problems.append(f"the venv's Python did not finish the check within {timeout:g} s "
                        "(importing torch on a cold disk can be slow; run the check again)")
    except OSError as exc:
        problems.append(f"cannot start {install.python}: {exc}")
    elapsed = time.monotonic() - start

    sections: dict[str, dict[str, Any]] = {}
    for line in out.decode("utf-8", "replace").splitlines():
        if line.startswith(_MARK):
            try:
                data = json.loads(line[len(_MARK):])
            except ValueError:
                continue
            sections[data.pop("section", "")] = data
    if "done" not in sections and not problems:
        last = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()][-5:]
        stage = next((s for s in ("python", "musubi_tuner", "modules", "torch", "accelerate")
                      if s not in sections), "the end")
        problems.append(f"the check stopped before '{stage}' ({describe_exit_code(code)})"
                        + (":\n    " + "\n    ".join(last) if last else ""))

    py = sections.get("python", {})
    mu = sections.get("musubi_tuner", {})
    mods = sections.get("modules", {})
    to = sections.get("torch", {})
    ac = sections.get("accelerate", {})
    return ProbeReport(
        python=install.python,
        python_version=py.get("version"),
        musubi_ok=bool(mu.get("ok")),
        musubi_file=mu.get("file"),
        musubi_error=mu.get("error"),
        musubi_expected_dir=install.package_dir,
        torch_version=to.get("version") if to.get("ok") else None,
        torch_error=to.get("error"),
        cuda_available=bool(to.get("cuda_available")),
        cuda_version=to.get("cuda_version"),
        devices=tuple(to.get("devices") or ()),
        accelerate_version=ac.get("version") if ac.get("ok") else None,
        accelerate_error=ac.get("error"),
        optional=dict(mods.get("optional") or {}),
        missing_modules=tuple(mods.get("missing") or ()),
        problems=tuple(problems),
        checked=tuple(s for s in sections if s != "done"),
        elapsed=round(elapsed, 3),
    )


# --- rendering -----------------------------------------------------------------------------

def format_report(report: ProbeReport, install: Optional[MusubiInstall] = None, *,
                  ascii_only: bool = False) -> str:
    """Readable ✓/✗ lines, each missing piece followed by what to do about it."""
    ok, bad, warn, opt = ("[ok]", "[X] ", "[!] ", "[-] ") if ascii_only else ("✓", "✗", "!", "–")
    py = report.python
    root = install.root if install else (os.path.dirname(os.path.dirname(report.musubi_expected_dir))
                                         if report.musubi_expected_dir else "<checkout>")
    pip_e = f"cd {root} && {py} -m pip install -e ."
    lines: list[str] = []

    def line(mark: str, text: str, fix: str = "") -> None:
        lines.append(f"{mark} {text}")
        if fix:
            lines.append(f"    fix: {fix}")

    for problem in report.problems:
        line(bad, problem)
    line(ok if report.python_version else bad, f"Python {report.python_version or '?'} ({py})")

    if report.musubi_ok and report.musubi_from_checkout:
        line(ok, f"musubi_tuner imports from the checkout ({report.musubi_file})")
    elif report.musubi_ok:
        line(bad, f"musubi_tuner imports from {report.musubi_file}, not from the checkout "
                  f"{report.musubi_expected_dir}",
             f"an installed copy shadows the checkout: {py} -m pip uninstall musubi-tuner, then {pip_e}")
    else:
        line(bad, f"musubi_tuner does not import: {report.musubi_error or 'not checked'}",
             f"install musubi-tuner's dependencies into the venv: {pip_e}")

    if report.torch_version:
        cuda = (f"CUDA {report.cuda_version}: {', '.join(report.devices) or 'no devices'}"
                if report.cuda_available else "")
        line(ok, f"torch {report.torch_version}" + (f", {cuda}" if cuda else ""))
        if not report.cuda_available:
            # A warning, not a failure: musubi runs on the CPU (tests do), just far too slowly to train.
            if "+cpu" in report.torch_version or not report.cuda_version:
                line(warn, "CUDA is not available: this is a CPU-only build of torch; training would run "
                           "on the CPU",
                     f"{py} -m pip install --force-reinstall torch torchvision "
                     "--index-url https://download.pytorch.org/whl/cu124  (pick the CUDA version your "
                     "driver supports)")
            else:
                line(warn, f"CUDA is not available: torch is built for CUDA {report.cuda_version} but sees "
                           "no GPU; training would run on the CPU",
                     "check `nvidia-smi` works, update the NVIDIA driver if it is older than CUDA "
                     f"{report.cuda_version} needs, and check CUDA_VISIBLE_DEVICES in the settings' env")
    else:
        line(bad, f"torch does not import: {report.torch_error or 'not checked'}",
             f"{py} -m pip install torch torchvision --index-url https://download.pytorch.org/whl/cu124"
             "  (musubi-tuner needs torch 2.5.1 or later)")

    if report.accelerate_version:
        line(ok, f"accelerate {report.accelerate_version}")
    else:
        line(bad, f"accelerate is missing: {report.accelerate_error or 'not checked'}", pip_e)

    if report.missing_modules:
        line(bad, f"musubi-tuner dependencies missing: {', '.join(report.missing_modules)}", pip_e)
    elif "modules" in report.checked:
        line(ok, "musubi-tuner dependencies present")

    for module, (dist, needed_by, fix) in OPTIONAL_MODULES.items():
        if "modules" not in report.checked:
            break
        version = report.optional.get(module)
        if version is not None:
            line(ok, f"{dist} {version}".rstrip() + f" (for {needed_by})")
        else:
            line(opt, f"{dist} not installed; optional, needed only for {needed_by}",
                 fix.format(python=py, torch=report.torch_version or "?"))

    lines.append("")
    lines.append("usable: yes" if report.usable else "usable: NO - fix the lines marked " + bad.strip())
    return "\n".join(lines)


# --- python -m executor check --------------------------------------------------------------

def cli_check(args: Any) -> int:
    """``python -m executor check [--json]``: settings sources, chosen install, probe report.

    Exit 0 when the install is usable, 1 otherwise (with the setup error's text).
    """
    as_json = bool(getattr(args, "json", False))
    user_config = getattr(args, "config", None)
    out: dict[str, Any] = {"settings": None, "install": None, "report": None, "error": None}
    text: list[str] = []
    code = 1
    try:
        settings = load_settings(user_config=user_config)
        out["settings"] = _settings_summary(settings)
        text += _settings_lines(settings)
        install = resolve_install(settings)
        out["install"] = asdict(install)
        text += ["", "musubi-tuner install:",
                 f"  checkout: {install.root}", f"  venv:     {install.venv}",
                 f"  python:   {install.python} ({install.python_version})",
                 f"  chosen:   {install.chosen_by}", ""]
        if not as_json:
            _print("\n".join(text))
            text = []
            print("probing the venv (importing torch can take a while)...", file=sys.stderr, flush=True)
        report = probe(install, settings, refresh=True)
        out["report"] = report.to_dict()
        text.append(format_report(report, install, ascii_only=not _can_print("✓✗–")))
        code = 0 if report.usable else 1
    except SetupError as exc:
        out["error"] = {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}
        text += ["", f"{type(exc).__name__}: {exc}"]
        if isinstance(exc, TrainerNotFound):
            text += ["", "To install musubi-tuner into its own venv and point the pack at it, run from the "
                         "pack folder: python -m executor install   (docs/install-command.md)"]
    if as_json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        _print("\n".join(text))
    return code


def _settings_summary(settings: Settings) -> dict[str, Any]:
    data = asdict(settings)
    data["env"] = {k: ("***" if is_secret_name(k) else v) for k, v in settings.env.items()}
    data["origins"] = dict(settings.origins)
    return data


def _settings_lines(settings: Settings) -> list[str]:
    user = Path(settings.user_config_file or user_config_path())
    lines = ["settings, lowest precedence first:"]
    lines += [f"  {s}" for s in settings.sources]
    if str(user) not in settings.sources:
        lines.append(f"  (user settings file {user} does not exist; create it to keep your paths "
                     "across pack updates)")
    for key, value in (("musubi_tuner.venv_path", settings.venv_path),
                       ("musubi_tuner.root_path", settings.root_path)):
        lines.append(f"  {key} = {value or '(unset: searched for)'}"
                     + (f"  [{settings.origin(key)}]" if value else ""))
    if settings.env:
        shown = ", ".join(f"{k}={'***' if is_secret_name(k) else v}" for k, v in settings.env.items())
        lines.append(f"  env: {shown}")
    lines += roots_lines(settings)
    return lines


def roots_lines(settings: Settings) -> list[str]:
    """Where a step may write and what it may give musubi to read (``output_roots``/``read_roots``)."""
    lines = []
    for key, roots, what in (("output_roots", settings.output_roots, "steps may write into"),
                             ("read_roots", settings.read_roots, "musubi may be given files from")):
        if not roots:
            lines.append(f"  {key}: not set, so {what} any folder (inside ComfyUI: its own folders only)")
            continue
        lines.append(f"  {key} ({what}):" + (f"  [{settings.origin(key)}]" if key in settings.origins else ""))
        lines += [f"    {root}" for root in roots]
    return lines


def _can_print(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def _print(text: str) -> None:
    # A Windows console or pipe may use a code page without every character of a path.
    encoding = sys.stdout.encoding or "utf-8"
    print(text.encode(encoding, "replace").decode(encoding, "replace"), flush=True)

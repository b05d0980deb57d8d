"""Flag facts: which flags each musubi-tuner script accepts, read from a real checkout, and the
committed data file (``executor/data/musubi_flags.json``) that the catalogue is tested against.
Imports only the standard library.

    python -m executor.musubi.flagfacts --musubi-root R --python P --out executor/musubi/data/musubi_flags.json

Why introspection instead of parsing ``--help``: help text wraps choices and metavars at the
terminal width, hides ``type`` and ``default``, and 23 scripts print lines before ``usage:``.
``argparse_probe.py`` instead runs each script in musubi's venv until its first
``parse_known_args`` call and dumps the parser's actions, so the facts are exact. It needs the
same thing ``--help`` needs (the script must import), and never loads a model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

__all__ = ["DATA_FILE", "load_flags", "discover_scripts", "probe", "collect", "dumps", "main"]

DATA_FILE = Path(__file__).resolve().parent / "data" / "musubi_flags.json"
PROBE = Path(__file__).resolve().parent / "argparse_probe.py"
MARKER = "@@ARGPARSE_PROBE@@"

# Script families we record (paths relative to src/musubi_tuner). Generators and tools such
# as merge_lora.py are never launched by the pack.
_PATTERNS = ("*cache_latents.py", "*cache_text_encoder_outputs.py", "*_cache_pixel.py",
             "*_train_network.py", "*_train_network_*.py", "*_train.py", "convert_lora.py",
             "networks/convert_*.py")


def load_flags(path: Optional[os.PathLike] = None) -> dict[str, Any]:
    """The committed flag facts: ``{"scripts": {script: {"flags": {...}, "positionals": [...]}}}``."""
    with open(path or DATA_FILE, encoding="utf-8") as f:
        return json.load(f)


def discover_scripts(musubi_root: os.PathLike) -> list[str]:
    package = Path(musubi_root) / "src" / "musubi_tuner"
    found = {p.relative_to(package).as_posix() for pattern in _PATTERNS for p in package.glob(pattern)}
    return sorted(found)


def probe_environment(musubi_root: os.PathLike, extra_pythonpath: Sequence[str] = ()) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(Path(musubi_root) / "src"), *extra_pythonpath]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONIOENCODING"] = "utf-8"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def probe(python: str, musubi_root: os.PathLike, script: str, mode: str = "facts",
          argv: Sequence[str] = (), *, argv_lists: Sequence[Sequence[str]] = (),
          env: Optional[Mapping[str, str]] = None, timeout: float = 180.0) -> dict[str, Any]:
    """Run ``argparse_probe.py`` for one script in musubi's venv and return its JSON answer.

    ``mode="check"`` parses ``argv`` with the script's own parser: ``{"ok", "error", "unknown"}``.
    ``mode="batch"`` returns ``{"facts": ..., "results": [one check per argv_lists item]}`` from a
    single import. Raises RuntimeError (with the child's output tail) when the script cannot
    even be imported.
    """
    path = Path(musubi_root) / "src" / "musubi_tuner" / script
    cmd = [python, str(PROBE), mode, str(path)]
    tmp = None
    if mode == "check":
        cmd += ["--", *argv]
    elif mode == "batch":
        fd, tmp = tempfile.mkstemp(prefix="argv-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump([list(a) for a in argv_lists], f)
        cmd.append(tmp)
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                              env=dict(env) if env is not None else probe_environment(musubi_root),
                              cwd=str(musubi_root))
    finally:
        if tmp:
            os.unlink(tmp)
    out = proc.stdout.decode("utf-8", "replace")
    for line in reversed(out.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    tail = "\n".join((out + proc.stderr.decode("utf-8", "replace")).splitlines()[-15:])
    raise RuntimeError(f"{script}: probe failed (exit {proc.returncode}):\n{tail}")


def collect(python: str, musubi_root: os.PathLike, *, scripts: Optional[Sequence[str]] = None,
            extra_pythonpath: Sequence[str] = (), jobs: int = 2) -> dict[str, Any]:
    """Flag facts of every discovered script, as the data file's JSON object."""
    env = probe_environment(musubi_root, extra_pythonpath)
    names = list(scripts or discover_scripts(musubi_root))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(lambda s: probe(python, musubi_root, s, env=env), names))
    facts: dict[str, Any] = {}
    for name, result in zip(names, results):
        if "flags" not in result:
            raise RuntimeError(f"{name}: {result.get('error')}")
        result.pop("prog", None)  # the probe's file path, not a fact about the script
        facts[name] = result
    return {"musubi_tuner": _describe_checkout(musubi_root), "scripts": facts}


def dumps(data: Mapping[str, Any]) -> str:
    """The data file's text: one line per flag, so a musubi upgrade reads as a small diff."""
    def line(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    out = ["{", f' "musubi_tuner": {line(data["musubi_tuner"])},', ' "scripts": {']
    scripts = sorted(data["scripts"].items())
    for i, (name, facts) in enumerate(scripts):
        out.append(f"  {line(name)}: {{")
        out.append(f'   "allow_abbrev": {line(facts["allow_abbrev"])},')
        out.append(f'   "positionals": {line(facts["positionals"])},')
        out.append('   "flags": {')
        flags = sorted(facts["flags"].items())
        out.extend(f"    {line(flag)}: {line(entry)}{',' if j < len(flags) - 1 else ''}"
                   for j, (flag, entry) in enumerate(flags))
        out.append("   }")
        out.append("  }" + ("," if i < len(scripts) - 1 else ""))
    out += [" }", "}"]
    return "\n".join(out) + "\n"


def _describe_checkout(musubi_root: os.PathLike) -> dict[str, Optional[str]]:
    version = commit = None
    try:
        text = (Path(musubi_root) / "pyproject.toml").read_text(encoding="utf-8")
        for line in text.splitlines():
            if line.startswith("version"):
                version = line.split("=", 1)[1].strip().strip('"')
                break
        commit = subprocess.run(["git", "-C", str(musubi_root), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"version": version, "commit": commit}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m executor.musubi.flagfacts",
                                     description="Record the flags each musubi-tuner script accepts.")
    parser.add_argument("--musubi-root", required=True, help="musubi-tuner checkout (holds src/)")
    parser.add_argument("--python", required=True, help="python of musubi-tuner's venv")
    parser.add_argument("--out", default=str(DATA_FILE), help="JSON file to write")
    parser.add_argument("--pythonpath", action="append", default=[],
                        help="extra PYTHONPATH entry for the scripts (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="scripts probed at once")
    parser.add_argument("--script", action="append", default=None, help="only this script (repeatable)")
    args = parser.parse_args(argv)
    data = collect(args.python, args.musubi_root, scripts=args.script,
                   extra_pythonpath=args.pythonpath, jobs=args.jobs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(dumps(data), encoding="utf-8")
    os.replace(tmp, out)
    print(f"{len(data['scripts'])} scripts -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

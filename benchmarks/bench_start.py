"""How long the pack adds to ComfyUI's start, on the first start after an install (no
``__pycache__``: Python compiles every module it imports) and on every start after it.

Usage, from the project root: ``python3 benchmarks/bench_start.py [--rounds N] [--commit REV] [--folder NAME]``.
It clones the committed pack as ComfyUI-Manager does (``git clone`` into ``custom_nodes/NAME``),
then starts the pinned test ComfyUI (tests/comfy_harness.py; ``MUSUBI_NODES_COMFYUI_DIR`` for
another) with ``--quick-test-for-ci`` (it loads every node, then exits) ``--rounds`` times cold
(every ``__pycache__`` of the clone deleted first) and warm (right after). The time is the one
ComfyUI prints under "Import times for custom nodes" (``nodes.load_custom_node``: importing the
pack, then reading its pyproject.toml), taken with four more decimals by a ``sitecustomize`` on
the server's PYTHONPATH that wraps that function. Prints a markdown table; not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import comfy_harness  # noqa: E402  (standard library only)

BUDGET = 0.050
# Wraps ComfyUI's nodes.load_custom_node once ComfyUI's ``nodes`` module is loaded, and appends
# (path, seconds) of every call to the file named by MUSUBI_BENCH_TIMES.
SITECUSTOMIZE = '''\
import importlib.abc, importlib.machinery, json, os, sys, time


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "nodes" or path is not None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not str(spec.origin).endswith(os.sep + "nodes.py"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            load = module.load_custom_node

            async def timed(module_path, *args, **kwargs):
                started = time.perf_counter()
                try:
                    return await load(module_path, *args, **kwargs)
                finally:
                    with open(os.environ["MUSUBI_BENCH_TIMES"], "a", encoding="utf-8") as out:
                        out.write(json.dumps([module_path, time.perf_counter() - started]) + "\\n")

            module.load_custom_node = timed

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Hook())
'''


def clone(destination: Path, commit: str) -> Path:
    subprocess.run(["git", "clone", "--quiet", ROOT.as_uri(), str(destination)], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    subprocess.run(["git", "-C", str(destination), "checkout", "--quiet", commit], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    return destination


def drop_pycache(folder: Path) -> None:
    for cache in folder.rglob("__pycache__"):
        shutil.rmtree(cache)


def start_once(install: comfy_harness.ComfyInstall, base: Path, pack: Path, hook_dir: Path) -> tuple[float, str]:
    """(precise seconds, the line ComfyUI printed) for the pack in one --quick-test-for-ci start."""
    times = base / "times.jsonl"
    times.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (hook_dir, install.stub_path) if p)
    env["MUSUBI_BENCH_TIMES"] = str(times)
    done = subprocess.run([str(install.python), "main.py", "--cpu", "--quick-test-for-ci", "--base-directory",
                           str(base), "--database-url", "sqlite:///:memory:", "--disable-api-nodes", "--log-stdout"],
                          cwd=install.comfyui_dir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=300)
    found = {}
    if times.exists():
        for line in times.read_text(encoding="utf-8").splitlines():
            path, seconds = json.loads(line)
            found[os.path.realpath(path)] = seconds
    output = done.stdout + done.stderr
    printed = next((line.strip() for line in output.splitlines() if line.rstrip().endswith(str(pack))), "")
    if os.path.realpath(pack) not in found:
        raise SystemExit(f"ComfyUI did not load the pack (exit {done.returncode}):\n{output[-3000:]}")
    return found[os.path.realpath(pack)], printed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--folder", default="ComfyUI-Musubi-Tuner", help="the clone's folder name")
    parser.add_argument("--commit", default="HEAD", help="the committed state to clone (default HEAD)")
    args = parser.parse_args()
    install = comfy_harness.ensure_comfyui(log=lambda text: print(f"[comfyui] {text}", file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="bench-start-") as scratch:
        base = Path(scratch) / "base"
        pack = clone(base / "custom_nodes" / args.folder, args.commit)
        label = subprocess.run(["git", "-C", str(pack), "log", "-1", "--format=%h %s"], capture_output=True,
                               text=True).stdout.strip()[:72]
        hook_dir = Path(scratch) / "hook"
        hook_dir.mkdir()
        (hook_dir / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
        cold, warm, printed = [], [], {"cold": set(), "warm": set()}
        for _ in range(args.rounds):
            drop_pycache(pack)
            seconds, line = start_once(install, base, pack, hook_dir)
            cold.append(seconds)
            printed["cold"].add(re.sub(r"\s+", " ", line.split(":")[0]))
            seconds, line = start_once(install, base, pack, hook_dir)
            warm.append(seconds)
            printed["warm"].add(re.sub(r"\s+", " ", line.split(":")[0]))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Pack at {label}; ComfyUI {install.version}, Python in {install.python}, {args.rounds} rounds, "
          f"load average {load:.2f}, {time.strftime('%Y-%m-%d')}\n")
    print("| Start | median | min | max | ComfyUI printed | within 50 ms |")
    print("|---|---|---|---|---|---|")
    for name, values in (("first start (no `__pycache__`)", cold), ("later starts", warm)):
        key = "cold" if name.startswith("first") else "warm"
        within = sum(v <= BUDGET for v in values)
        print(f"| {name} | {statistics.median(values) * 1000:.1f} ms | {min(values) * 1000:.1f} ms | "
              f"{max(values) * 1000:.1f} ms | {', '.join(sorted(printed[key]))} | {within} / {len(values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Start a local, pinned ComfyUI 0.3.75 with this pack installed: the README's quick start.

    python3 .ci/comfyui.py [--port 8188] [--base-directory DIR] [--musubi-root DIR] [--musubi-venv DIR]
    python3 .ci/comfyui.py --write-stubs DIR   (torchvision/torchaudio import stubs for another ComfyUI)

The first run sets ComfyUI up under ~/.cache/musubi-tuner-nodes/ (about 1.5 minutes, then
cached); the server runs until Ctrl-C. It is the same harness the tests use (tests/comfy_harness.py),
standard library only. Models, inputs and outputs live in --base-directory and survive restarts.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import comfy_harness  # noqa: E402  (after the path set-up above)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 .ci/comfyui.py",
        description=f"Start a pinned ComfyUI {comfy_harness.COMFYUI_VERSION} on this machine with the Musubi Tuner "
                    "nodes installed (symlinked from this checkout). Ctrl-C stops it.")
    parser.add_argument("--port", type=int, default=8188, help="port to listen on (default: %(default)s)")
    parser.add_argument("--base-directory", type=Path, default=comfy_harness.cache_root() / "comfyui-base",
                        help="ComfyUI's --base-directory: custom_nodes, models/, input/, output/, user/ "
                             "(default: %(default)s; kept between runs)")
    parser.add_argument("--musubi-root", type=Path,
                        help="your musubi-tuner checkout (passed to the nodes as MUSUBI_TUNER_ROOT)")
    parser.add_argument("--musubi-venv", type=Path,
                        help="the venv musubi-tuner is installed in (passed as MUSUBI_TUNER_ENV)")
    parser.add_argument("--torch-index-url",
                        help="pip index for torch on a machine without the local torch wheel, e.g. "
                             "https://download.pytorch.org/whl/cpu (part of the cache key)")
    parser.add_argument("--write-stubs", type=Path, metavar="DIR",
                        help="only write the torchvision and torchaudio import stubs a CPU-only ComfyUI venv "
                             "needs into DIR (for MUSUBI_NODES_COMFYUI_STUBS, docs/development.md) and exit")
    parser.add_argument("--folder-name", default=comfy_harness.PACK_FOLDER_NAME,
                        help="folder name of the pack under custom_nodes (default: %(default)s)")
    return parser.parse_args(argv)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stop_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.write_stubs is not None:
        for package in comfy_harness.write_import_stubs(args.write_stubs):
            print(f"wrote {package}")
        return 0
    if not port_is_free(args.port):
        print(f"Port {args.port} is in use (another ComfyUI?). Pick another with --port.", file=sys.stderr)
        return 2
    env = {}
    for name, path in (("MUSUBI_TUNER_ROOT", args.musubi_root), ("MUSUBI_TUNER_ENV", args.musubi_venv)):
        if path is not None:
            env[name] = str(path.expanduser().resolve())
    try:
        install = comfy_harness.ensure_comfyui(torch_index_url=args.torch_index_url)
    except comfy_harness.SetupFailed as exc:
        print(f"Could not set up ComfyUI: {exc}\nSetup log: {comfy_harness.cache_root()}", file=sys.stderr)
        return 1
    base = args.base_directory.expanduser().resolve()
    server = comfy_harness.ComfyServer(install, base, pack_dir=ROOT, folder_name=args.folder_name,
                                       port=args.port, env=env, log_path=base / "comfyui.log")
    # Ctrl-C reaches only us (the server has its own process group); SIGTERM stops us the same way.
    # SIGINT too: a shell may start us with SIGINT ignored (a background job), and Python then
    # installs no KeyboardInterrupt handler of its own.
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)
    print(f"Starting ComfyUI {install.version} (log: {server.log_path}) ...", flush=True)
    try:
        server.start()
    except comfy_harness.ServerFailed as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        server.stop()
        return 130
    entry = server.pack_import()
    if entry is None or entry.failed:
        print(f"WARNING: the pack did not import; see {server.log_path}", file=sys.stderr)
    for name, value in env.items():
        print(f"  {name}={value}")
    print(f"\nComfyUI is running at {server.url}  (started in {server.startup_seconds:.1f} s)")
    print(f"  models, inputs, outputs: {base}\n  Press Ctrl-C to stop.", flush=True)
    try:
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
        print(f"ComfyUI exited with {server.process.returncode if server.process else '?'}; "
              f"see {server.log_path}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping ComfyUI ...", flush=True)
        code = server.stop()
        print(f"Stopped (exit {code}).")
        return 0


if __name__ == "__main__":
    sys.exit(main())

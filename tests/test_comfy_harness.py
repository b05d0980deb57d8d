"""The harness's pure parts, without a server: import-time parsing, binary message decoding,
base-directory layout, the setup cache marker and its lock, an existing ComfyUI from the environment."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

import pytest

import comfy_harness
from comfy_harness import ImportTime, decode_binary, parse_import_times, prepare_base_directory

LOG = """\
Cannot import /c/comfy_extras/nodes_audio.py module for custom nodes: No module named 'torchaudio'

Import times for custom nodes:
   0.0 seconds: /base/custom_nodes/musubi-tuner-nodes
   0.1 seconds (IMPORT FAILED): /base/custom_nodes/broken pack
  12.3 seconds: /base/custom_nodes/slow.py

WARNING: some comfy_extras/ nodes did not import correctly.
IMPORT FAILED: nodes_audio.py
"""


def test_import_times_block_is_parsed_with_failures_and_spaces() -> None:
    assert parse_import_times(LOG) == [
        ImportTime(0.0, "/base/custom_nodes/musubi-tuner-nodes", False),
        ImportTime(0.1, "/base/custom_nodes/broken pack", True),
        ImportTime(12.3, "/base/custom_nodes/slow.py", False),
    ]


def test_no_import_times_block_gives_an_empty_list() -> None:
    assert parse_import_times("Starting server\n") == []


def test_progress_text_binary_message_is_decoded() -> None:
    payload = struct.pack(">I", 3) + struct.pack(">I", 2) + b"12" + "steps 3/10 ✓".encode()
    message = decode_binary(payload)
    assert (message.type, message.data) == ("progress_text", {"node": "12", "text": "steps 3/10 ✓"})


def test_preview_images_are_decoded() -> None:
    plain = decode_binary(struct.pack(">II", 1, 2) + b"\x89PNG")
    assert (plain.type, plain.data, plain.binary) == ("preview_image", {"format": "PNG"}, b"\x89PNG")
    meta = json.dumps({"node_id": "4"}).encode()
    rich = decode_binary(struct.pack(">II", 4, len(meta)) + meta + b"JPEGDATA")
    assert (rich.type, rich.data, rich.binary) == ("preview_image_with_metadata", {"node_id": "4"}, b"JPEGDATA")


def test_base_directory_has_model_folders_and_links_the_pack(tmp_path: Path) -> None:
    pack = tmp_path / "checkout"
    pack.mkdir()
    probe = tmp_path / "probe.py"
    probe.write_text("")
    base = prepare_base_directory(tmp_path / "base", pack_dir=pack, folder_name="Some-Name",
                                  extra_custom_nodes={"probe.py": probe})
    for sub in ("input", "output", "user", "models/diffusion_models", "models/vae", "models/text_encoders",
                "models/clip_vision", "models/loras"):
        assert (base / sub).is_dir(), sub
    assert (base / "custom_nodes" / "Some-Name").resolve() == pack.resolve()
    assert (base / "custom_nodes" / "probe.py").resolve() == probe.resolve()
    # idempotent, and a persistent base keeps what the user put in it
    (base / "models" / "loras" / "mine.safetensors").write_bytes(b"x")
    prepare_base_directory(base, pack_dir=pack, folder_name="Some-Name")
    assert (base / "models" / "loras" / "mine.safetensors").exists()


def test_cached_build_runs_once_across_concurrent_callers(tmp_path: Path) -> None:
    builds: list[int] = []

    def build(home: Path, log_path: Path) -> None:
        builds.append(1)
        (home / "payload").write_text("ok")

    recipe = {"v": 1}
    threads = [threading.Thread(target=comfy_harness._ensure_cached, args=(tmp_path / "home", recipe, build,
                                                                           lambda _: None)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(builds) == 1
    assert (tmp_path / "home" / "payload").read_text() == "ok"
    # a changed recipe rebuilds from scratch
    assert comfy_harness._ensure_cached(tmp_path / "home", {"v": 2}, build, lambda _: None) is True
    assert len(builds) == 2


def test_failed_build_leaves_no_marker(tmp_path: Path) -> None:
    def build(home: Path, log_path: Path) -> None:
        raise comfy_harness.SetupFailed("pip said no")

    with pytest.raises(comfy_harness.SetupFailed):
        comfy_harness._ensure_cached(tmp_path / "home", {"v": 1}, build, lambda _: None)
    assert not (tmp_path / "home" / "recipe.json").exists()


def test_import_times_lines_with_a_coloured_level_tag_are_parsed() -> None:
    # ComfyUI 0.33 logs "\x1b[32m[INFO]\x1b[0m    0.0 seconds: ..." where 0.3.75 logs the bare line
    log = LOG.replace("\n   0.0", "\n\x1b[32m[INFO]\x1b[0m    0.0").replace("\n  12.3", "\n[INFO]   12.3")
    assert parse_import_times(log) == parse_import_times(LOG)


def test_an_existing_comfyui_is_used_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    (comfy / "main.py").write_text("")
    (comfy / "comfyui_version.py").write_text('__version__ = "0.33.0"\n')
    python = tmp_path / "env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    monkeypatch.setenv("MUSUBI_NODES_COMFYUI_DIR", str(comfy))
    monkeypatch.setenv("MUSUBI_NODES_COMFYUI_PYTHON", str(python))
    monkeypatch.setenv("MUSUBI_NODES_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MUSUBI_NODES_COMFYUI_STUBS", raising=False)
    install = comfy_harness.ensure_comfyui(log=lambda text: None)
    assert (install.comfyui_dir, install.python, install.version) == (comfy.resolve(), python, "0.33.0")
    assert install.stub_path is None and not (tmp_path / "cache").exists()
    server = comfy_harness.ComfyServer(install, tmp_path / "base")
    assert "PYTHONPATH" not in server.environment() and server.command()[0] == str(python)

    monkeypatch.setenv("MUSUBI_NODES_COMFYUI_STUBS", str(tmp_path / "stubs"))
    stubbed = comfy_harness.ComfyServer(comfy_harness.ensure_comfyui(log=lambda text: None), tmp_path / "base")
    assert stubbed.environment()["PYTHONPATH"] == str(tmp_path / "stubs")

    monkeypatch.setenv("MUSUBI_NODES_COMFYUI_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(comfy_harness.SetupFailed, match="no ComfyUI main.py"):
        comfy_harness.ensure_comfyui(log=lambda text: None)

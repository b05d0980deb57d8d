"""Common set-up of the hardening catalogue's tests against a real ComfyUI (pytest plugin).

One ComfyUI server for the session whose base folder, and the fake musubi-tuner checkout and venv
it runs, all live under paths with spaces and non-ASCII characters, so every catalogue case
also proves those paths work. The musubi paths and the fake's knobs go into the pack's settings
file in ComfyUI's user folder (``user/__musubi-tuner-nodes/config.json``), rewritten per test by
``hard.configure``; no ``MUSUBI_TUNER_*`` environment variable is set, so a test can point the
pack at another venv. After each test the ``hard`` fixture checks that no process of a run is
left (the fake writes every pid it starts to FAKE_MUSUBI_PIDFILE) and records the count.

Loaded with ``pytest_plugins = ["hardening", "hardening_e2e"]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import psutil
import pytest

import hardening  # noqa: F401  (registers the marker before the test modules' decorators run)
from comfy_fixtures import put_tiny_models, tiny
from comfy_harness import ComfyClient, ComfyServer, PromptRun
from fakes import FakeMusubi, build_fake_musubi, png_bytes
from procs import alive, wait_all_gone

# Every path of the hardening server holds these: a space, CJK and an accent.
ODD = "ユニコード é"
RUN_GONE_WITHIN = 10.0


@pytest.fixture(scope="session")
def hard_fake(tmp_path_factory: pytest.TempPathFactory) -> FakeMusubi:
    """A fake musubi-tuner whose checkout and venv live under a path with spaces and non-ASCII."""
    return build_fake_musubi(tmp_path_factory.mktemp("hardening") / f"musubi tuner {ODD}")


@pytest.fixture(scope="session")
def hard_server(comfy_servers: Any, hard_fake: FakeMusubi, tmp_path_factory: pytest.TempPathFactory) -> ComfyServer:
    base = tmp_path_factory.mktemp("hardening-comfy") / f"Comfy UI {ODD}"
    server = comfy_servers.start("hardening", base_dir=base)
    put_tiny_models(server)
    Hard.write_config(server, hard_fake, {})
    return server


class Hard:
    """The hardening server, its fake musubi, and helpers to drive one test."""

    def __init__(self, server: ComfyServer, fake: FakeMusubi, tmp: Path) -> None:
        self.server = server
        self.fake = fake
        self.base = server.base_dir
        self.tmp = tmp
        self.pidfile = tmp / "pids.txt"
        self.client: ComfyClient = server.client()
        self.settings: dict[str, Any] = {}

    # --- settings ------------------------------------------------------------------------

    @staticmethod
    def config_path(server: ComfyServer) -> Path:
        return server.base_dir / "user" / "__musubi-tuner-nodes" / "config.json"

    @staticmethod
    def write_config(server: ComfyServer, fake: FakeMusubi, settings: dict[str, Any]) -> None:
        data = {"musubi_tuner": {"venv_path": str(fake.venv), "root_path": str(fake.root)}}
        data.update(settings)
        path = Hard.config_path(server)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)

    def configure(self, *, env: Optional[dict[str, str]] = None, venv: Optional[Path] = None,
                  **settings: Any) -> None:
        """The pack's settings for the next runs; the fake always gets FAKE_MUSUBI_PIDFILE."""
        values = dict(settings)
        values["env"] = {"FAKE_MUSUBI_PIDFILE": str(self.pidfile), **{k: str(v) for k, v in (env or {}).items()}}
        self.settings = values
        self.write_config(self.server, self.fake, values)
        if venv is not None:
            data = json.loads(self.config_path(self.server).read_text(encoding="utf-8"))
            data["musubi_tuner"]["venv_path"] = str(venv)
            self.config_path(self.server).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    # --- processes -----------------------------------------------------------------------

    def pids(self) -> list[int]:
        """Every process the fake started (launcher, scripts, workers)."""
        if not self.pidfile.exists():
            return []
        return [int(line.split()[1]) for line in self.pidfile.read_text().splitlines() if line.strip()]

    def run_tree(self) -> list[int]:
        """Living descendants of ComfyUI that belong to a run (supervisor or fake musubi)."""
        marks = ("supervisor.py", str(self.fake.root), str(self.fake.venv))
        found = []
        try:
            children = psutil.Process(self.server.process.pid).children(recursive=True)
        except psutil.Error:
            return []
        for proc in children:
            try:
                cmdline = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            if any(mark in cmdline for mark in marks):
                found.append(proc.pid)
        return alive(found)

    def left_behind(self, within: float = RUN_GONE_WITHIN) -> list[int]:
        return wait_all_gone(self.pids() + self.run_tree(), within=within)

    # --- inputs --------------------------------------------------------------------------

    def image_folder(self, name: str, count: int = 3, *, video: bool = False) -> str:
        """``input/<name>`` with images (or clips) and captions; returns the name."""
        folder = self.base / "input" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, count + 1):
            media = folder / (f"clip{i}.mp4" if video else f"img{i}.png")
            media.write_bytes(b"\x00\x00\x00\x18ftypmp42" if video else png_bytes(64, 64))
            media.with_suffix(".txt").write_text(f"a photo number {i}", encoding="utf-8")
        return name

    @staticmethod
    def dataset_node(directory: str, **changes: Any) -> dict[str, Any]:
        inputs = {"media": "image", "directory": directory, "caption_extension": ".txt", "width": 64, "height": 64,
                  "batch_size": 1, "num_repeats": 1, "enable_bucket": False, "bucket_no_upscale": False,
                  "target_frames": "1", "frame_extraction": "head", "frame_stride": 1, "frame_sample": 1,
                  "max_frames": 129, "source_fps": 0.0}
        inputs.update(changes)
        return {"class_type": "MusubiDatasetConfig", "inputs": inputs}

    @staticmethod
    def models_node(**changes: Any) -> dict[str, Any]:
        inputs = {"task": "t2v-1.3B", "one_frame": False, "dit": tiny("diffusion_models"), "vae": tiny("vae"),
                  "t5": tiny("text_encoders"), "clip": tiny("clip_vision"), "dit_high_noise": "(none)"}
        inputs.update(changes)
        return {"class_type": "MusubiModelsWan", "inputs": inputs}

    def workflow(self, directory: str, *, output_name: str = "hard_lora", cache: bool = True, train: bool = True,
                 dataset: Optional[dict[str, Any]] = None, latents: Optional[dict[str, Any]] = None,
                 **train_inputs: Any) -> dict[str, Any]:
        """dataset (1) -> models (2) -> cache latents (3) -> cache text encoder (4) -> train (5).
        ``cache=False`` wires training straight to the dataset (caches made earlier)."""
        prompt: dict[str, Any] = {"1": self.dataset_node(directory, **(dataset or {})), "2": self.models_node()}
        source = ["1", 0]
        if cache:
            prompt["3"] = {"class_type": "MusubiCacheLatents",
                           "inputs": {"dataset": ["1", 0], "models": ["2", 0], **(latents or {})}}
            prompt["4"] = {"class_type": "MusubiCacheTextEncoder", "inputs": {"dataset": ["3", 0], "models": ["2", 0]}}
            source = ["4", 0]
        if train:
            inputs = {"dataset": source, "models": ["2", 0], "output_name": output_name, "max_train_epochs": 2,
                      "optimizer_type": "AdamW"}
            inputs.update(train_inputs)
            prompt["5"] = {"class_type": "MusubiTrainLoRA", "inputs": inputs}
        return prompt

    # --- outputs -------------------------------------------------------------------------

    @property
    def runs_dir(self) -> Path:
        return self.base / "output" / "musubi-tuner" / "runs"

    @property
    def loras_dir(self) -> Path:
        return self.base / "models" / "loras" / "musubi-tuner"

    def run_folders(self) -> set[Path]:
        return set(self.runs_dir.glob("*")) if self.runs_dir.is_dir() else set()

    @staticmethod
    def result(run_dir: Path) -> dict[str, Any]:
        return json.loads((run_dir / "result.json").read_text(encoding="utf-8"))

    def run(self, prompt: dict[str, Any], timeout: float = 120) -> PromptRun:
        return self.client.run(prompt, timeout=timeout)

    def snapshot(self, *roots: Path) -> dict[str, str]:
        """sha256 of every file under ``roots`` (default: the whole ComfyUI base and the fake)."""
        out: dict[str, str] = {}
        for root in roots or (self.base, self.fake.root):
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "custom_nodes")]
                for name in filenames:
                    path = os.path.join(dirpath, name)
                    try:
                        with open(path, "rb") as fh:
                            out[path] = hashlib.sha256(fh.read()).hexdigest()
                    except OSError:
                        pass
        return out


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Files that existed before and are now missing or different."""
    return sorted(p for p, digest in before.items() if after.get(p) != digest)


def error_text(run: PromptRun) -> str:
    assert run.terminal is not None, f"the prompt did not end; got {run.types[-20:]}"
    return run.terminal.data.get("exception_message", "")


def run_dir_from(message: str) -> Path:
    match = re.search(r"full log: (.+run\.log)", message)
    assert match, message
    return Path(match.group(1)).parent


@pytest.fixture
def hard(hard_server: ComfyServer, hard_fake: FakeMusubi, tmp_path: Path, hardening: Any) -> Iterator[Hard]:
    """The hardening server for one test; afterwards no process of its runs may be left."""
    helper = Hard(hard_server, hard_fake, tmp_path)
    helper.configure()
    try:
        yield helper
    finally:
        left = helper.left_behind()
        hardening.record(processes_left=len(left))
        for pid in left:  # do not let one test's leftovers break the next
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        Hard.write_config(hard_server, hard_fake, {})
        assert not left, f"processes of the run were left behind: {left}"


def wait_for_text(sock: Any, node: str, pattern: str, timeout: float = 90) -> Any:
    return sock.wait_for(lambda m: m.type == "progress_text" and m.data.get("node") == node
                         and re.search(pattern, m.data.get("text", "")), timeout)


def until(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())

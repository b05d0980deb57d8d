"""The fake musubi must stay faithful to the real one: the captures decide.

Comparisons run the fake on the same dataset shape as the captures (three 64x64
images, Wan, two epochs) and compare what the parsers make of both.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from parsers import OutputParser

if TYPE_CHECKING:
    from fakes import FakeMusubi


# musubi-tuner-cli.md §2.0 (cache latents, cache TE, train) plus the extras the pack runs.
REFERENCE_SCRIPTS = [
    "cache_latents", "cache_text_encoder_outputs", "hv_train_network",
    "hv_1_5_cache_latents", "hv_1_5_cache_text_encoder_outputs", "hv_1_5_train_network",
    "wan_cache_latents", "wan_cache_text_encoder_outputs", "wan_train_network",
    "fpack_cache_latents", "fpack_cache_text_encoder_outputs", "fpack_train_network",
    "flux_kontext_cache_latents", "flux_kontext_cache_text_encoder_outputs", "flux_kontext_train_network",
    "flux_2_cache_latents", "flux_2_cache_text_encoder_outputs", "flux_2_train_network",
    "qwen_image_cache_latents", "qwen_image_cache_text_encoder_outputs", "qwen_image_train_network",
    "zimage_cache_latents", "zimage_cache_text_encoder_outputs", "zimage_train_network",
    "kandinsky5_cache_latents", "kandinsky5_cache_text_encoder_outputs", "kandinsky5_train_network",
    "ideogram4_cache_latents", "ideogram4_cache_text_encoder_outputs", "ideogram4_train_network",
    "krea2_cache_latents", "krea2_cache_text_encoder_outputs", "krea2_train_network",
    "hidream_o1_cache_pixel", "hidream_o1_cache_text_encoder_outputs", "hidream_o1_train_network",
    "convert_lora",
]


class Runner:
    def __init__(self, fake: FakeMusubi, base: Path, *, images: int = 3) -> None:
        self.fake = fake
        self.base = base
        self.toml = fake.make_dataset(base / "data", images=images)
        self.dit = fake.make_model(base / "models" / "dit.safetensors")
        self.vae = fake.make_model(base / "models" / "vae.safetensors")
        self.out = base / "out"

    def run(self, script: str, *args: str, merged: bool = False, accelerate: bool = False,
            scenario: str | None = None, **knobs: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.fake.argv(script, *args, accelerate=accelerate),
                              env=self.fake.env(scenario, **knobs), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT if merged else subprocess.PIPE, timeout=60)

    def cache(self) -> None:
        assert self.run("wan_cache_latents", "--dataset_config", str(self.toml), "--vae", str(self.vae)).returncode == 0
        assert self.run("wan_cache_text_encoder_outputs", "--dataset_config", str(self.toml)).returncode == 0

    def train_args(self, *extra: str) -> list[str]:
        return ["--dataset_config", str(self.toml), "--dit", str(self.dit), "--sdpa", "--max_train_epochs", "2",
                "--save_every_n_epochs", "1", "--output_dir", str(self.out), "--output_name", "tiny-lora", *extra]


@pytest.fixture
def runner(fake_musubi: FakeMusubi, tmp_path: Path) -> Runner:
    return Runner(fake_musubi, tmp_path)


def events(data: bytes) -> list:
    parser = OutputParser()
    return parser.feed("stderr", data) + parser.finish()


def milestones(data: bytes) -> list[tuple]:
    """Everything but log lines and frames, with the numbers that matter."""
    found = []
    for e in events(data):
        if e.type in ("log", "progress"):
            continue
        found.append((e.type, getattr(e, "name", None) or getattr(e, "count", None) or getattr(e, "n", None)))
    return found


def steps(data: bytes) -> list:
    return [e for e in events(data) if e.type == "progress" and e.desc == "steps"]


def last_line(data: bytes) -> str:
    return data.decode("utf-8").rstrip("\n").splitlines()[-1]


def neutral(text: str) -> str:
    """Paths differ between the capture and the fake; nothing else may."""
    return re.sub(r'"[^"]*"|/\S+', "PATH", text)


@pytest.mark.timeout(60)
def test_every_script_of_the_reference_exists_as_a_wrapper(fake_musubi: FakeMusubi) -> None:
    for script in REFERENCE_SCRIPTS:
        path = fake_musubi.script(script)
        assert path.is_file(), script
        assert f'main("{script}")' in path.read_text()
        assert (fake_musubi.root / f"{script}.py").is_file()


@pytest.mark.timeout(60)
def test_caching_output_matches_the_capture(runner: Runner, captures_dir: Path) -> None:
    captured = (captures_dir / "wan_cache_latents.stderr").read_bytes()
    ours = runner.run("wan_cache_latents", "--dataset_config", str(runner.toml), "--vae", str(runner.vae))
    assert ours.returncode == 0 and ours.stdout == b""  # the capture's stdout was empty too
    assert milestones(ours.stderr) == milestones(captured)
    frames = [e for e in events(ours.stderr) if e.type == "progress"]
    assert [(f.n, f.total) for f in frames] == [(0, None), (1, None), (2, None), (3, None), (3, None)]
    block = re.compile(rb"\[Dataset 0\]\n.*?\n\n\n", re.S)
    assert neutral(block.search(ours.stderr)[0].decode()) == neutral(block.search(captured)[0].decode())
    names = sorted(p.name for p in (runner.base / "data" / "cache").iterdir())
    assert names == ["img1_0064x0064_wan.safetensors", "img2_0064x0064_wan.safetensors",
                     "img3_0064x0064_wan.safetensors"]


@pytest.mark.timeout(60)
def test_training_output_matches_the_capture(runner: Runner, captures_dir: Path) -> None:
    captured = (captures_dir / "wan_train_python.merged").read_bytes()
    runner.cache()
    ours = runner.run("wan_train_network", *runner.train_args(), merged=True)
    assert ours.returncode == 0
    assert milestones(ours.stdout) == milestones(captured)
    mine, theirs = steps(ours.stdout), steps(captured)
    assert [s.n for s in mine[:8]] == [s.n for s in theirs[:8]] == [0, 0, 1, 2, 2, 3, 4, 4]
    assert (mine[-1].n, mine[-1].total, mine[-1].postfix) == (theirs[-1].n, theirs[-1].total, theirs[-1].postfix)
    # The glued lines of the capture: a log line right after a frame's closing bracket.
    for glued in (rb"\]INFO:musubi_tuner\.training\.trainer_base:network weights will be saved",):
        assert re.search(glued, ours.stdout) and re.search(glued, captured)
    japanese = "running training / 学習開始".encode()
    assert japanese in ours.stdout and japanese in captured


@pytest.mark.timeout(60)
def test_on_separate_pipes_model_saved_is_glued_to_the_last_frame(runner: Runner) -> None:
    runner.cache()
    ours = runner.run("wan_train_network", *runner.train_args())
    assert re.search(rb"avr_loss=[\d.]+\]INFO:musubi_tuner\.training\.trainer_base:model saved\.\n", ours.stderr)
    assert ours.stderr.endswith(b"]\n")  # tqdm closes the never-closed bar at exit
    assert b"\nepoch 1/2\n" in ours.stdout
    assert [p.name for p in sorted(runner.out.iterdir())] == ["tiny-lora-000001.safetensors",
                                                               "tiny-lora.safetensors"]
    header = read_safetensors_header(runner.out / "tiny-lora.safetensors")
    assert header["__metadata__"]["ss_output_name"] == "tiny-lora"


def read_safetensors_header(path: Path) -> dict:
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    end = max(t["data_offsets"][1] for k, t in header.items() if k != "__metadata__")
    assert len(data) == 8 + size + end
    return header


@pytest.mark.timeout(60)
@pytest.mark.parametrize("capture, make", [
    ("tr_no_cache", lambda r: r.run("wan_train_network", *r.train_args())),
    ("tr_no_attn_flag", lambda r: (r.cache(), r.run("wan_train_network",
                                                    *[a for a in r.train_args() if a != "--sdpa"]))[1]),
    ("cl_missing_required", lambda r: r.run("wan_cache_latents", "--vae", str(r.vae))),
    ("cl_vae_missing", lambda r: r.run("wan_cache_latents", "--dataset_config", str(r.toml),
                                       "--vae", "/nonexistent/wan_vae.safetensors")),
])
def test_failures_end_with_the_capture_s_last_line(runner: Runner, captures_dir: Path, capture: str, make) -> None:
    ours = make(runner)
    expected_rc = int((captures_dir / f"{capture}.rc").read_text())
    assert ours.returncode == expected_rc
    assert last_line(ours.stderr) == last_line((captures_dir / f"{capture}.stderr").read_bytes())


@pytest.mark.timeout(60)
def test_an_empty_image_folder_exits_0_like_the_capture(fake_musubi: FakeMusubi, tmp_path: Path,
                                                       captures_dir: Path) -> None:
    runner = Runner(fake_musubi, tmp_path, images=0)
    ours = runner.run("wan_cache_latents", "--dataset_config", str(runner.toml), "--vae", str(runner.vae))
    captured = (captures_dir / "cl_empty_image_dir.stderr").read_bytes()
    assert ours.returncode == 0
    assert ours.stderr.endswith(b"\r0it [00:00, ?it/s]\r0it [00:00, ?it/s]\n") and captured.endswith(
        b"\r0it [00:00, ?it/s]\r0it [00:00, ?it/s]\n")
    for data in (ours.stderr, captured):
        parser = OutputParser()
        parser.feed("stderr", data)
        parser.finish()
        assert parser.classify(0).kind == "empty_dataset"


@pytest.mark.timeout(60)
def test_accelerate_hides_the_exit_code_in_a_called_process_error(runner: Runner) -> None:
    ours = runner.run("wan_train_network", *runner.train_args(), accelerate=True)  # no caches: exit 1 in the child
    assert ours.returncode == 1
    assert re.fullmatch(r"subprocess\.CalledProcessError: Command '\[.*wan_train_network\.py.*\]' returned "
                        r"non-zero exit status 1\.", last_line(ours.stderr))
    runner.cache()
    ours = runner.run("wan_train_network", *runner.train_args(), accelerate=True, scenario="sigkill")
    assert "died with <Signals.SIGKILL: 9>." in last_line(ours.stderr)


@pytest.mark.timeout(60)
def test_samples_and_cache_files_are_named_per_musubi_rules(runner: Runner) -> None:
    runner.cache()
    prompts = runner.base / "prompts.txt"
    prompts.write_text("# comment\na cat --w 64 --h 64\n\na dog\n", encoding="utf-8")
    ours = runner.run("wan_train_network", *runner.train_args("--sample_prompts", str(prompts),
                                                               "--sample_every_n_epochs", "1", "--seed", "42"))
    assert ours.returncode == 0
    names = sorted(p.name for p in (runner.out / "sample").iterdir())
    assert len(names) == 4
    assert all(re.fullmatch(r"tiny-lora_e00000[12]_0[01]_\d{14}_42_000\.png", n) for n in names), names
    assert (runner.out / "sample" / names[0]).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    te = sorted(p.name for p in (runner.base / "data" / "cache").iterdir() if p.name.endswith("_te.safetensors"))
    assert te == ["img1_wan_te.safetensors", "img2_wan_te.safetensors", "img3_wan_te.safetensors"]


@pytest.mark.timeout(60)
def test_stale_cache_files_are_removed_like_musubi_does(runner: Runner) -> None:
    stale = runner.base / "data" / "cache" / "gone_0064x0064_wan.safetensors"
    stale.write_bytes(b"")
    ours = runner.run("wan_cache_latents", "--dataset_config", str(runner.toml), "--vae", str(runner.vae))
    assert not stale.exists()
    assert f"INFO:musubi_tuner.cache_latents:Removed old cache file: {stale}".encode() in ours.stderr


@pytest.mark.timeout(60)
def test_an_unknown_scenario_is_refused(runner: Runner) -> None:
    ours = runner.run("wan_cache_latents", "--dataset_config", str(runner.toml), scenario="no_such_thing")
    assert ours.returncode == 3 and b"unknown FAKE_MUSUBI_SCENARIO" in ours.stderr

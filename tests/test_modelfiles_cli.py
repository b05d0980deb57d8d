"""``python -m executor inspect``: the identification as text or JSON, an optional check for an
architecture's input, and an exit code that says whether every file is usable (a real
subprocess, as a user runs it for a bug report)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import modelfile_keys as K
from modelfile_writers import write_safetensors, write_torch_zip

ROOT = Path(__file__).resolve().parent.parent


def inspect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "executor", "inspect", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_text_report_of_good_files(tmp_path: Path) -> None:
    dit = write_safetensors(tmp_path / "wan2.1_t2v_1.3B_fp16.safetensors",
                            K.prefixed(K.wan_dit(1536, dtype="F16"), "model.diffusion_model."))
    t5 = write_torch_zip(tmp_path / "models_t5_umt5-xxl-enc-bf16.pth", K.umt5_wan())
    done = inspect(str(dit), str(t5))
    assert done.returncode == 0, done.stderr
    assert "what:       Wan DiT 1.3B, text-to-video (DiT (diffusion model), family wan_dit)" in done.stdout
    assert "layout:     comfy, key prefix 'model.diffusion_model.'" in done.stdout
    assert "UMT5-XXL text encoder, Wan's original layout" in done.stdout and "pytorch-zip" in done.stdout
    assert done.stdout.count("read in ") == 2


def test_check_for_an_input_and_the_exit_code(tmp_path: Path) -> None:
    dit = write_safetensors(tmp_path / "wan2.1_t2v_1.3B_fp16.safetensors", K.wan_dit(1536, dtype="F16"))
    done = inspect(str(dit), "--arch", "wan", "--input", "dit", "--set", "task=t2v-14B")
    assert done.returncode == 1
    assert "wan.dit: REFUSED wan2.1_t2v_1.3B_fp16.safetensors is Wan DiT 1.3B" in done.stdout
    assert "-> set task to t2v-1.3B" in done.stdout
    ok = inspect(str(dit), "--arch", "wan", "--input", "dit", "--set", "task=t2v-1.3B")
    assert ok.returncode == 0 and "wan.dit: OK" in ok.stdout
    bad = inspect(str(dit), "--arch", "wan", "--input", "nope")
    assert bad.returncode == 2 and "known: hv:dit" in bad.stderr


def test_json_report_and_a_cut_short_file(tmp_path: Path) -> None:
    vae = write_safetensors(tmp_path / "wan_2.1_vae.safetensors", K.wan_vae(), complete=False)
    done = inspect(str(vae), "--json", "--arch", "wan", "--input", "vae")
    assert done.returncode == 1
    [entry] = json.loads(done.stdout)
    assert entry["family"] == "wan_vae" and entry["component"] == "vae" and entry["size"] < entry["expected_size"]
    assert "cut short" in entry["problems"][0] and entry["seconds"] < 5
    assert entry["check"]["findings"][0]["level"] == "error"
    assert entry["file_name"] == "wan_2.1_vae.safetensors"

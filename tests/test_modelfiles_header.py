"""The header reader: safetensors (split parts merged), PyTorch zip and legacy files read as
pickle opcodes, folders by their config/index files; completeness from the header's offsets;
broken downloads named as such. Files are written by the tests (modelfile_writers.py)."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest

import modelfile_keys as K
from executor.musubi.modelfiles.header import read_header, split_parts
from modelfile_writers import safetensors_bytes, write_safetensors, write_torch_legacy, write_torch_zip


def test_safetensors_header_gives_keys_dtypes_shapes_and_metadata(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors", {"a.weight": ("BF16", (3, 4)), "b": ("F8_E4M3", (5,))},
                             metadata={"model_type": "ideogram4_cond"})
    h = read_header(str(path))
    assert h.format == "safetensors" and not h.broken and not h.problems
    assert {k: (v.dtype, v.shape) for k, v in h.tensors.items()} == {"a.weight": ("BF16", (3, 4)),
                                                                     "b": ("F8_E4M3", (5,))}
    assert h.metadata == {"model_type": "ideogram4_cond"}
    assert h.size == h.expected_size == os.path.getsize(path)


def test_a_30_gb_model_is_read_from_its_header_alone(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "big.safetensors", K.wan_dit(5120, full=True))
    h = read_header(str(path))
    assert h.size > 25 * 1024 ** 3 and not h.truncated and len(h.tensors) > 1000


def test_cut_short_download_is_named_with_its_share(tmp_path: Path) -> None:
    head, data = safetensors_bytes(K.wan_vae())
    path = tmp_path / "wan_2.1_vae.safetensors"
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(len(head) + data // 4)
    h = read_header(str(path))
    assert h.truncated and not h.broken
    assert len(h.problems) == 1 and "cut short" in h.problems[0] and "interrupted download" in h.problems[0]


def test_cut_inside_the_header_is_broken(tmp_path: Path) -> None:
    head, _ = safetensors_bytes(K.wan_vae())
    path = tmp_path / "half.safetensors"
    path.write_bytes(head[: len(head) // 2])
    assert "cut short" in read_header(str(path)).broken


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n", "Git LFS pointer"),
    (b"<!DOCTYPE html><html><body>Sign in</body></html>", "HTML page"),
    (b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!", "not JSON"),
    (b"\xff\xff\xff\xff\xff\xff\xff\x7f{}", "bad header length"),
])
def test_broken_downloads_say_what_they_are(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    assert words in read_header(str(path)).broken


def test_split_names_follow_musubi(tmp_path: Path) -> None:
    parts = split_parts(str(tmp_path / "model-00002-of-00003.safetensors"))
    assert [Path(p).name for p in parts] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert split_parts(str(tmp_path / "model.safetensors")) is None


def test_split_model_merges_every_part(tmp_path: Path) -> None:
    keys = list(K.qwen3("8B").items())
    for i, chunk in enumerate((keys[:40], keys[40:80], keys[80:]), 1):
        write_safetensors(tmp_path / f"model-0000{i}-of-00003.safetensors", dict(chunk))
    h = read_header(str(tmp_path / "model-00001-of-00003.safetensors"))
    assert len(h.parts) == 3 and set(h.tensors) == set(dict(keys)) and not h.problems


def test_split_model_with_a_missing_part_says_so(tmp_path: Path) -> None:
    keys = list(K.qwen3("4B").items())
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors", dict(keys[:20]))
    h = read_header(str(tmp_path / "model-00001-of-00002.safetensors"))
    assert any("1 of 2 parts" in p and "model-00002-of-00002.safetensors" in p for p in h.problems)


def test_torch_zip_is_read_without_unpickling(tmp_path: Path) -> None:
    path = write_torch_zip(tmp_path / "mp_rank_00_model_states.pt", K.hv_dit(), wrapper="module")
    h = read_header(str(path))
    assert h.format == "pytorch-zip" and h.wrapper == "module" and h.top_keys == ("module",)
    assert h.tensors["img_in.proj.weight"].shape == (3072, 16, 1, 2, 2)
    assert h.tensors["img_in.proj.weight"].dtype == "BF16"


def test_torch_fp8_tensors_keep_their_dtype(tmp_path: Path) -> None:
    path = write_torch_zip(tmp_path / "fp8.pt", {"w": ("F8_E4M3", (4, 4)), "b": ("F32", (4,))})
    h = read_header(str(path))
    assert (h.tensors["w"].dtype, h.tensors["b"].dtype) == ("F8_E4M3", "F32")


def test_torch_legacy_format_and_its_completeness(tmp_path: Path) -> None:
    path = write_torch_legacy(tmp_path / "Wan2.1_VAE.pth", K.wan_vae())
    h = read_header(str(path))
    assert h.format == "pytorch-legacy" and set(h.tensors) == set(K.wan_vae()) and not h.truncated
    cut = read_header(str(write_torch_legacy(tmp_path / "cut.pth", K.wan_vae(), complete=False)))
    assert cut.truncated and "cut short" in cut.problems[0]


def test_a_pickle_that_would_run_code_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
    h = read_header(str(path))
    assert not marker.exists()
    assert not h.tensors  # nothing tensor-like; the os.system call stayed two strings


def test_a_zip_cut_short_is_broken(tmp_path: Path) -> None:
    path = write_torch_zip(tmp_path / "m.pt", K.wan_vae())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 30])
    assert "cut short" in read_header(str(path)).broken


def test_diffusers_folder_by_index_and_config(tmp_path: Path) -> None:
    folder = tmp_path / "text_encoder"
    keys = list(K.llava_llama3().items())
    write_safetensors(folder / "model-00001-of-00002.safetensors", dict(keys[:30]))
    write_safetensors(folder / "model-00002-of-00002.safetensors", dict(keys[30:]))
    index = {"weight_map": {k: f"model-0000{1 if i < 30 else 2}-of-00002.safetensors" for i, (k, _) in enumerate(keys)}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaModel"]}))
    h = read_header(str(folder))
    assert h.format == "folder" and set(h.tensors) == set(dict(keys)) and h.config["architectures"] == ["LlamaModel"]


def test_gguf_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "wan2.1-t2v-14b-Q4_K_M.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 64)
    assert read_header(str(path)).format == "gguf"

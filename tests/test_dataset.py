"""Dataset configs: building, our TOML writer, atomic writes, and loading a user's file
with musubi's schema rules (each problem named by its TOML path, with a fix)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from executor.musubi.dataset import (MARKER, DatasetConfig, DatasetSpec, GeneralSpec, build_dataset_config,
                              load_dataset_config, render_toml, save_dataset_config, write_atomic)
from executor.errors import ConfigError

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib


def problem(config: DatasetConfig, name: str):
    found = [p for p in config.problems if p.input == name]
    assert found, f"no problem for {name}; got {[str(p) for p in config.problems]}"
    return found[0]


def load_text(tmp_path: Path, text: str, name: str = "dataset.toml") -> DatasetConfig:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_dataset_config(path)


GOOD = """
[general]
resolution = [64, 64]
caption_extension = ".txt"
batch_size = 1
enable_bucket = true

[[datasets]]
image_directory = "/data/images"
cache_directory = "/data/images_cache"
num_repeats = 2

[[datasets]]
video_directory = "/data/videos"
cache_directory = "/data/videos_cache"
target_frames = [1, 25, 45]
frame_extraction = "head"
source_fps = 30.0
"""


# ---------------------------------------------------------------- building and writing

def test_build_render_and_load_round_trip(tmp_path: Path) -> None:
    config = build_dataset_config(
        [DatasetSpec(image_directory="/data/imgs", cache_directory="/data/imgs_cache", num_repeats=2,
                     control_directory="/data/ctrl", control_resolution=(512, 512), no_resize_control=True),
         DatasetSpec(video_directory="/data/vids", cache_directory="/data/vids_cache", target_frames=(1, 25),
                     frame_extraction="uniform", frame_sample=4, max_frames=129, source_fps=30)],
        GeneralSpec(resolution=(64, 48), caption_extension=".txt", batch_size=1, enable_bucket=True,
                    bucket_no_upscale=False))
    assert config.ok, config.problems
    text = render_toml(config)
    assert text.startswith(MARKER)
    data = tomllib.loads(text)
    assert data["general"] == {"resolution": [64, 48], "caption_extension": ".txt", "batch_size": 1,
                               "enable_bucket": True, "bucket_no_upscale": False}
    assert data["datasets"][1]["source_fps"] == 30.0 and isinstance(data["datasets"][1]["source_fps"], float)
    assert data["datasets"][0]["control_resolution"] == [512, 512]
    path = tmp_path / "d.toml"
    path.write_text(text, encoding="utf-8")
    loaded = load_dataset_config(path)
    assert loaded.ok and not loaded.warnings, loaded.problems
    assert loaded.to_dict() == config.to_dict()


WEIRD_PATHS = [
    "C:\\Users\\me\\My Pictures\\set 1\\",
    "D:\\data\\\"quoted\"\\x",
    "/home/ünï/cödé with spaces/[brackets] #hash 'single'",
    "\\\\server\\share\\imgs",
    "C:\\tab\there\\new\nline",
]


@pytest.mark.parametrize("path", WEIRD_PATHS)
def test_paths_survive_our_toml_writer(tmp_path: Path, path: str) -> None:
    config = DatasetConfig(general=GeneralSpec(caption_extension=".txt", resolution=64),
                           datasets=[DatasetSpec(image_directory=path)])
    data = tomllib.loads(render_toml(config))
    assert data["datasets"][0]["image_directory"] == path


@pytest.mark.parametrize("path", WEIRD_PATHS)
def test_paths_survive_musubis_toml_reader(path: str) -> None:
    # musubi reads dataset configs with the `toml` package (0.10.2), not tomllib.
    toml = pytest.importorskip("toml")
    config = DatasetConfig(datasets=[DatasetSpec(image_directory=path)])
    assert toml.loads(render_toml(config))["datasets"][0]["image_directory"] == path


def test_build_makes_relative_paths_absolute(tmp_path: Path) -> None:
    config = build_dataset_config([DatasetSpec(image_directory="imgs", cache_directory="cache")],
                                  GeneralSpec(caption_extension=".txt", resolution=64), base_dir=tmp_path)
    ds = config.datasets[0]
    assert ds.image_directory == str(tmp_path / "imgs")
    assert ds.cache_directory == str(tmp_path / "cache")
    assert config.ok and not config.warnings


def test_build_reports_the_same_problems_as_loading() -> None:
    config = build_dataset_config([DatasetSpec(image_directory="/a", target_frames=[1])],
                                  GeneralSpec(caption_extension=".txt", resolution=64))
    p = problem(config, "datasets[0].target_frames")
    assert "video" in p.message and "remove target_frames" in p.fix


def test_save_refuses_a_config_with_errors(tmp_path: Path) -> None:
    config = build_dataset_config([DatasetSpec()], GeneralSpec(resolution=64))
    with pytest.raises(ConfigError):
        save_dataset_config(config, tmp_path / "x.toml")
    assert not (tmp_path / "x.toml").exists()


def test_write_atomic_replaces_only_our_own_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "dataset.toml"
    write_atomic(target, MARKER + "\nfirst\n")
    write_atomic(target, MARKER + "\nsecond\n")
    assert target.read_text(encoding="utf-8").endswith("second\n")
    users = tmp_path / "users.toml"
    users.write_text("# my own config\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        write_atomic(users, MARKER + "\n")
    assert "another file name" in info.value.hint
    assert users.read_text(encoding="utf-8") == "# my own config\n"
    with pytest.raises(ConfigError):
        write_atomic(target, "x", overwrite="never")
    write_atomic(users, "replaced", overwrite="always")
    assert users.read_text(encoding="utf-8") == "replaced"
    with pytest.raises(ConfigError):
        write_atomic(tmp_path / "sub", "x")
    assert sorted(p.name for p in tmp_path.rglob("*.tmp")) == []


def test_write_atomic_keeps_windows_line_ends_out_and_utf8_in(tmp_path: Path) -> None:
    target = write_atomic(tmp_path / "a.toml", MARKER + "\nä = 1\n")
    assert target.read_bytes() == (MARKER + "\nä = 1\n").encode("utf-8")


def test_save_dataset_config_writes_loadable_toml(tmp_path: Path) -> None:
    config = build_dataset_config([DatasetSpec(image_directory=str(tmp_path / "i"))],
                                  GeneralSpec(caption_extension=".txt", resolution=[64, 64]))
    path = save_dataset_config(config, tmp_path / "ours.toml")
    assert load_dataset_config(path).ok
    save_dataset_config(config, path)  # ours: may be replaced


# ---------------------------------------------------------------- loading: musubi's rules

def test_a_good_config_loads_clean(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD)
    assert config.ok and not config.problems
    assert [ds.kind for ds in config.datasets] == ["image", "video"]
    assert config.caption_extension(1) == ".txt"
    assert config.cache_directory(0) == "/data/images_cache"


def test_json_configs_load_too(tmp_path: Path) -> None:
    data = tomllib.loads(GOOD)
    config = load_text(tmp_path, json.dumps(data), "dataset.json")
    assert config.ok and config.datasets[1].source_fps == 30.0


def test_unknown_key_names_the_toml_path_and_suggests_the_right_key(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD.replace("num_repeats = 2", "num_repeat = 2"))
    p = problem(config, "datasets[0].num_repeat")
    assert "unknown key" in p.message and "line" in p.message
    assert "rename num_repeat to num_repeats" in p.fix


def test_unknown_top_level_key(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[generl]\nresolution = 64\n" + GOOD)
    assert "general" in problem(config, "generl").fix


def test_int_source_fps_is_a_wrong_type(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD.replace("source_fps = 30.0", "source_fps = 30"))
    p = problem(config, "datasets[1].source_fps")
    assert "decimal" in p.message and p.fix == "write source_fps = 30.0"
    assert not config.ok


@pytest.mark.parametrize("line, name, fix", [
    ("batch_size = true", "general.batch_size", "a whole number"),
    ("batch_size = 1.0", "general.batch_size", "write batch_size = 1"),
    ('batch_size = "1"', "general.batch_size", "a whole number"),
    ("enable_bucket = 1", "general.enable_bucket", "write enable_bucket = true"),
    ("resolution = [64, 64, 3]", "general.resolution", "[768, 512]"),
    ("caption_extension = 1", "general.caption_extension", "quotes"),
])
def test_wrong_types_in_general(tmp_path: Path, line: str, name: str, fix: str) -> None:
    key = line.split(" ")[0]
    text = "\n".join(l for l in GOOD.splitlines() if not l.startswith(key + " "))
    config = load_text(tmp_path, text.replace("[general]", "[general]\n" + line, 1))
    assert fix in problem(config, name).fix


def test_cache_directory_in_general_is_refused(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD.replace("[general]", '[general]\ncache_directory = "/c"'))
    p = problem(config, "general.cache_directory")
    assert "not allowed in [general]" in p.message and "[[datasets]]" in p.fix


def test_video_key_in_an_image_dataset(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD.replace("num_repeats = 2", "num_repeats = 2\nframe_extraction = \"head\""))
    p = problem(config, "datasets[0].frame_extraction")
    assert "image dataset" in p.message and "video_directory" in p.fix


def test_image_key_in_a_video_dataset(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD + "no_resize_control = true\n")
    assert "only applies to image datasets" in problem(config, "datasets[1].no_resize_control").fix


def test_two_datasets_sharing_a_cache_directory(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD.replace("/data/videos_cache", "/data/images_cache/"))
    p = problem(config, "datasets[1].cache_directory")
    assert "datasets[0] and datasets[1]" in p.message and "own cache_directory" in p.fix


def test_default_cache_directory_is_the_source_folder(tmp_path: Path) -> None:
    text = GOOD.replace('cache_directory = "/data/images_cache"\n', "") + \
        '\n[[datasets]]\ncache_directory = "/data/images"\nimage_directory = "/other"\n'
    config = load_text(tmp_path, text)
    p = problem(config, "datasets[2].cache_directory")
    assert "caches into its image/video folder" in p.message


def test_dataset_without_a_source(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD + '\n[[datasets]]\ncache_directory = "/c3"\n')
    assert "image_directory" in problem(config, "datasets[2]").fix


def test_no_datasets_at_all(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[general]\nresolution = 64\n")
    assert "[[datasets]]" in problem(config, "datasets").fix


def test_missing_file_and_folder_and_wrong_extension(tmp_path: Path) -> None:
    assert "absolute path" in problem(load_dataset_config(tmp_path / "nope.toml"), "dataset_config").fix
    assert "file inside" in problem(load_dataset_config(tmp_path), "dataset_config").fix
    (tmp_path / "d.yaml").write_text("x: 1", encoding="utf-8")
    assert ".toml" in problem(load_dataset_config(tmp_path / "d.yaml"), "dataset_config").fix


def test_toml_syntax_error_reports_the_line(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD.replace('"/data/videos"', "C:\\data\\videos"))
    p = problem(config, "dataset_config")
    line = GOOD.splitlines().index('video_directory = "/data/videos"') + 1
    assert f"line {line}" in p.message and f"fix line {line}" in p.fix and "quoted" in p.fix


def test_bad_escape_in_a_windows_path_gets_a_specific_fix(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD.replace('"/data/videos"', '"C:\\data\\videos"'))
    assert "doubled" in problem(config, "dataset_config").fix


def test_json_syntax_error_reports_the_line(tmp_path: Path) -> None:
    config = load_text(tmp_path, '{\n "datasets": [\n  {"image_directory": }\n ]\n}', "d.json")
    assert "line 3" in problem(config, "dataset_config").message


def test_byte_order_mark_is_refused_like_musubi_does(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert "without BOM" in problem(load_dataset_config(path), "dataset_config").fix


def test_deprecated_keys_are_renamed_with_a_warning(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD.replace("num_repeats = 2", "qwen_image_edit_control_resolution = 512"))
    p = problem(config, "datasets[0].qwen_image_edit_control_resolution")
    assert p.level == "warning" and "control_resolution" in p.fix
    assert config.datasets[0].control_resolution == 512 and config.ok


def test_caption_extension_missing_or_without_dot(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD.replace('caption_extension = ".txt"\n', ""))
    assert '".txt"' in problem(config, "datasets[0].caption_extension").fix
    config = load_text(tmp_path, GOOD.replace('".txt"', '"txt"'))
    assert problem(config, "datasets[0].caption_extension").fix == 'write caption_extension = ".txt"'


def test_jsonl_dataset_needs_a_cache_directory(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD + '\n[[datasets]]\nimage_jsonl_file = "/data/list.jsonl"\n')
    assert "cache_directory" in problem(config, "datasets[2].cache_directory").fix


def test_frame_options_are_checked(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD.replace('"head"', '"heads"').replace("[1, 25, 45]", "[1, 24]"))
    assert problem(config, "datasets[1].frame_extraction").fix == 'use frame_extraction = "head"'
    p = problem(config, "datasets[1].target_frames")
    assert p.level == "warning" and "[1, 21]" in p.fix


def test_relative_paths_in_a_user_toml_are_warned_about(tmp_path: Path) -> None:
    config = load_text(tmp_path, GOOD.replace('"/data/images"', '"images"'))
    p = problem(config, "datasets[0].image_directory")
    assert p.level == "warning" and "absolute" in p.fix and "working folder" in p.message
    assert config.ok
    assert config.resolve("images", "/musubi") == os.path.join("/musubi", "images")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("[general]", '[general]\ncache_directory = "/c"') \
        .replace("source_fps = 30.0", "source_fps = 30").replace("num_repeats = 2", "num_repeat = 2")
    config = load_text(tmp_path, text)
    names = {p.input for p in config.errors}
    assert {"general.cache_directory", "datasets[1].source_fps", "datasets[0].num_repeat"} <= names
    assert all(p.fix for p in config.problems)

"""Settings files, their precedence and validation, and finding the musubi install."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from executor.setup import discovery as discovery_module, settings as settings_module
from executor.setup.discovery import MusubiInstall, candidate_roots, resolve_install
from executor.setup.settings import Settings, load_settings, user_config_path
from executor.errors import ConfigError, TrainerNotFound

pytestmark = pytest.mark.timeout(60)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# --- helpers ---------------------------------------------------------------------------------

def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def make_checkout(root: Path) -> Path:
    (root / "src" / "musubi_tuner").mkdir(parents=True)
    (root / "src" / "musubi_tuner" / "__init__.py").write_text("")
    return root


def make_venv(venv: Path, version: str | None = "3.11.7", *, windows: bool = False,
              key: str = "version") -> Path:
    """A venv-shaped folder: interpreter file and pyvenv.cfg, never run while pyvenv.cfg has a version."""
    bindir = venv / ("Scripts" if windows else "bin")
    bindir.mkdir(parents=True)
    (bindir / ("python.exe" if windows else "python")).write_text("")
    if windows:
        (bindir / "accelerate.exe").write_text("")
    if version is not None:
        (venv / "pyvenv.cfg").write_text(f"home = /usr/bin\ninclude-system-site-packages = false\n"
                                         f"{key} = {version}\n")
    return venv


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose user settings file lives in tmp (never the real home)."""
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "USERPROFILE": str(home), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    pack = tmp_path / "ComfyUI" / "custom_nodes" / "musubi-tuner-nodes"
    pack.mkdir(parents=True)
    return pack


# --- loading ---------------------------------------------------------------------------------

def test_defaults_when_no_file_exists(pack: Path, env: dict[str, str]) -> None:
    settings = load_settings(pack, environ=env)
    assert settings.venv_path == "" and settings.root_path == ""
    assert settings.num_cpu_threads_per_process == 1 and settings.mixed_precision == "bf16"
    assert settings.command_timeout == 0 and settings.stall_timeout == 0
    assert dict(settings.env) == {} and settings.output_roots == ()
    assert settings.sources == ("defaults",)
    assert settings.origin("musubi_tuner.venv_path") == "default"


def test_the_shipped_config_json_loads_and_keeps_its_keys(env: dict[str, str]) -> None:
    shipped = json.loads((PROJECT_ROOT / "config.json").read_text(encoding="utf-8"))
    settings = load_settings(PROJECT_ROOT, environ=env)
    assert str(PROJECT_ROOT / "config.json") in settings.sources
    accel = shipped["default_accelerate_config"]
    assert settings.num_cpu_threads_per_process == accel["num_cpu_threads_per_process"]
    assert settings.mixed_precision == accel["mixed_precision"]
    assert settings.progress_update_interval == shipped["progress_update_interval"]
    assert settings.command_timeout == shipped["command_timeout"]


def test_later_files_win_key_by_key_and_env_maps_add_up(pack: Path, env: dict[str, str],
                                                       tmp_path: Path) -> None:
    write_json(pack / "config.json", {
        "default_accelerate_config": {"num_cpu_threads_per_process": 2, "mixed_precision": "fp16"},
        "command_timeout": 100, "env": {"A": "pack", "B": "pack"}})
    user = write_json(user_config_path(env), {
        "default_accelerate_config": {"mixed_precision": "bf16"},
        "env": {"B": "user", "C": "user"}})
    comfy_user = write_json(tmp_path / "ComfyUI" / "user" / "default" / "musubi.json", {
        "stall_timeout": 30, "env": {"C": "comfy"}})

    s = load_settings(pack, environ=env, user_config=comfy_user)

    assert s.num_cpu_threads_per_process == 2  # only the pack file set it
    assert s.mixed_precision == "bf16"  # user file beat the pack file
    assert s.command_timeout == 100 and s.stall_timeout == 30
    assert dict(s.env) == {"A": "pack", "B": "user", "C": "comfy"}
    assert s.sources == ("defaults", str(pack / "config.json"), str(user), str(comfy_user))
    assert s.origin("default_accelerate_config.mixed_precision") == str(user)
    assert s.origin("env.C") == str(comfy_user)


def test_environment_variables_override_every_file(pack: Path, env: dict[str, str], tmp_path: Path) -> None:
    write_json(user_config_path(env), {"musubi_tuner": {"venv_path": "/from/file/venv",
                                                         "root_path": "/from/file"}})
    env = dict(env, MUSUBI_TUNER_ENV=str(tmp_path / "v"), MUSUBI_TUNER_ROOT=str(tmp_path / "r"))
    s = load_settings(pack, environ=env)
    assert s.venv_path == str(tmp_path / "v") and s.root_path == str(tmp_path / "r")
    assert s.origin("musubi_tuner.venv_path") == "environment variable MUSUBI_TUNER_ENV"
    assert s.sources[-2:] == ("environment variable MUSUBI_TUNER_ENV",
                              "environment variable MUSUBI_TUNER_ROOT")


def test_empty_environment_variables_are_ignored(pack: Path, env: dict[str, str]) -> None:
    write_json(pack / "config.json", {"musubi_tuner": {"venv_path": "/x/venv"}})
    s = load_settings(pack, environ=dict(env, MUSUBI_TUNER_ENV="  "))
    assert s.venv_path == os.path.abspath("/x/venv")


def test_user_file_outside_the_pack_survives_a_pack_update(pack: Path, env: dict[str, str]) -> None:
    user = write_json(user_config_path(env), {"musubi_tuner": {"root_path": "/opt/musubi-tuner"}})
    assert pack not in user.parents
    # An update replaces the pack folder's files, config.json included.
    write_json(pack / "config.json", {"musubi_tuner": {"venv_path": "", "root_path": ""},
                                      "progress_update_interval": 1.0})
    s = load_settings(pack, environ=env)
    assert s.root_path == os.path.abspath("/opt/musubi-tuner")
    assert s.progress_update_interval == 1.0
    assert s.user_config_file == str(user)


def test_user_config_path_per_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = str(tmp_path / "h")
    assert user_config_path({"MUSUBI_TUNER_NODES_CONFIG": "/etc/m.json", "HOME": home}) == Path("/etc/m.json")
    assert user_config_path({"XDG_CONFIG_HOME": "/x", "HOME": home}) == \
        Path("/x/musubi-tuner-nodes/config.json")
    # A relative XDG_CONFIG_HOME is invalid per the spec and ignored.
    assert user_config_path({"XDG_CONFIG_HOME": "rel", "HOME": home}) == \
        Path(home) / ".config" / "musubi-tuner-nodes" / "config.json"
    monkeypatch.setattr(settings_module, "IS_WINDOWS", True)
    monkeypatch.setattr(discovery_module, "IS_WINDOWS", True)
    assert user_config_path({"APPDATA": "/C/Users/Åsa/AppData/Roaming"}) == \
        Path("/C/Users/Åsa/AppData/Roaming/musubi-tuner-nodes/config.json")
    assert user_config_path({"USERPROFILE": home}) == \
        Path(home) / "AppData" / "Roaming" / "musubi-tuner-nodes" / "config.json"


def test_a_named_user_file_that_is_missing_is_an_error(pack: Path, env: dict[str, str],
                                                      tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as err:
        load_settings(pack, environ=dict(env, MUSUBI_TUNER_NODES_CONFIG=str(missing)))
    assert "MUSUBI_TUNER_NODES_CONFIG" in str(err.value) and str(missing) in str(err.value)


def test_relative_paths_are_relative_to_their_file(pack: Path, env: dict[str, str]) -> None:
    write_json(pack / "config.json", {"musubi_tuner": {"root_path": "../../../musubi-tuner",
                                                       "venv_path": "~/venvs/musubi"},
                                      "output_roots": ["out"]})
    s = load_settings(pack, environ=env)
    assert s.root_path == str((pack / "../../../musubi-tuner").resolve())
    assert s.venv_path == os.path.join(os.path.expanduser("~"), "venvs", "musubi")
    assert s.output_roots == (str(pack / "out"),)


def test_a_bom_and_comment_keys_are_accepted(pack: Path, env: dict[str, str]) -> None:
    (pack / "config.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(
        {"_comment": "Notepad saves a BOM", "stall_timeout": 5}).encode())
    assert load_settings(pack, environ=env).stall_timeout == 5


@pytest.mark.parametrize("data, words", [
    ({"comand_timeout": 5}, ['unknown key "comand_timeout"', "command_timeout"]),
    ({"musubi_tuner": {"venv": "x"}}, ['unknown key "musubi_tuner.venv"', "venv_path"]),
    ({"command_timeout": "60"}, ['"command_timeout"', "number of seconds", "a string"]),
    ({"stall_timeout": -1}, ['"stall_timeout"', "must not be negative"]),
    ({"progress_update_interval": True}, ['"progress_update_interval"', "true/false"]),
    ({"default_accelerate_config": {"num_cpu_threads_per_process": 0}},
     ['"default_accelerate_config.num_cpu_threads_per_process"', "1 or more"]),
    ({"default_accelerate_config": {"num_cpu_threads_per_process": 2.5}}, ["whole number"]),
    ({"default_accelerate_config": {"mixed_precision": "fp32"}}, ["no, fp16, bf16, fp8", '"fp32"']),
    ({"env": {"CUDA_VISIBLE_DEVICES": 0}}, ['"env.CUDA_VISIBLE_DEVICES" must be a string', '"0"']),
    ({"env": {"HF_HUB_OFFLINE": True}}, ['"env.HF_HUB_OFFLINE" must be a string', '"true"']),
    ({"env": ["HF_HOME"]}, ['"env" must be an object']),
    ({"env": {"A=B": "x"}}, ["invalid variable name"]),
    ({"musubi_tuner": {"venv_path": 3}}, ['"musubi_tuner.venv_path" must be a string path']),
    ({"musubi_tuner": "C:/venv"}, ['"musubi_tuner" must be an object']),
    ({"output_roots": "D:/loras"}, ['"output_roots" must be a list']),
    ({"gpus": "0,1"}, ['"gpus" must be a list of GPU numbers', '"0,1"']),
    ({"gpus": [0, -1]}, ['"gpus" must be a list of GPU numbers']),
    ({"reserved_gpus": None}, ['"reserved_gpus" must be a list of GPU numbers']),
    ({"reserved_gpus": [1, 1]}, ['"reserved_gpus" lists a GPU twice']),
])
def test_bad_values_name_the_file_and_key(pack: Path, env: dict[str, str], data: dict, words: list[str]) -> None:
    path = write_json(user_config_path(env), data)
    with pytest.raises(ConfigError) as err:
        load_settings(pack, environ=env)
    text = str(err.value)
    assert str(path) in text
    for word in words:
        assert word in text


def test_gpu_lists_are_read_and_null_means_detect(pack: Path, env: dict[str, str]) -> None:
    assert load_settings(pack, environ=env).gpus is None
    write_json(user_config_path(env), {"gpus": [1, 0], "reserved_gpus": [1]})
    s = load_settings(pack, environ=env)
    assert s.gpus == (1, 0) and s.reserved_gpus == (1,)
    write_json(user_config_path(env), {"gpus": []})
    assert load_settings(pack, environ=env).gpus == ()


def test_all_problems_of_a_file_are_listed_at_once(pack: Path, env: dict[str, str]) -> None:
    write_json(pack / "config.json", {"command_timeout": -5, "stall_timeout": "x", "bogus": 1})
    with pytest.raises(ConfigError) as err:
        load_settings(pack, environ=env)
    text = str(err.value)
    assert "3 problems" in text and "bogus" in text and "stall_timeout" in text
    assert "command_timeout" in text


def test_invalid_json_names_file_line_and_column(pack: Path, env: dict[str, str]) -> None:
    (pack / "config.json").write_text('{\n  "musubi_tuner": {"venv_path": "C:\\venv"}\n}')
    with pytest.raises(ConfigError) as err:
        load_settings(pack, environ=env)
    assert str(pack / "config.json") in str(err.value) and "line 2" in str(err.value)
    assert "backslashes" in err.value.hint


def test_top_level_must_be_an_object(pack: Path, env: dict[str, str]) -> None:
    (pack / "config.json").write_text("[]")
    with pytest.raises(ConfigError, match="top level must be a JSON object"):
        load_settings(pack, environ=env)


# --- resolving the install --------------------------------------------------------------------

def settings_for(pack: Path, env: dict[str, str], **paths: str) -> Settings:
    extra = {}
    if "venv" in paths:
        extra["MUSUBI_TUNER_ENV"] = paths["venv"]
    if "root" in paths:
        extra["MUSUBI_TUNER_ROOT"] = paths["root"]
    return load_settings(pack, environ=dict(env, **extra))


def test_explicit_root_and_venv(pack: Path, env: dict[str, str], tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "m")
    venv = make_venv(tmp_path / "envs" / "m")
    install = resolve_install(settings_for(pack, env, root=str(root), venv=str(venv)), search_roots=[])
    assert install == MusubiInstall(root=str(root), venv=str(venv), python=str(venv / "bin" / "python"),
                                    accelerate=None, python_version="3.11.7", chosen_by=install.chosen_by)
    assert "MUSUBI_TUNER_ENV" in install.chosen_by and "MUSUBI_TUNER_ROOT" in install.chosen_by
    assert install.src == str(root / "src")


@pytest.mark.parametrize("venv_name", [".venv", "venv"])
def test_finds_a_checkout_and_the_venv_inside_it(pack: Path, env: dict[str, str], tmp_path: Path,
                                                 venv_name: str) -> None:
    base = tmp_path / "search"
    root = make_checkout(base / "musubi-tuner")
    make_venv(root / venv_name)
    install = resolve_install(settings_for(pack, env), search_roots=[tmp_path / "empty", base])
    assert install.root == str(root) and install.venv == str(root / venv_name)
    assert f"checkout found at {root}" in install.chosen_by
    assert f"venv found inside the checkout ({venv_name})" in install.chosen_by


def test_prefers_a_checkout_that_has_a_venv(pack: Path, env: dict[str, str], tmp_path: Path) -> None:
    bare = make_checkout(tmp_path / "a" / "musubi-tuner")
    ready = make_checkout(tmp_path / "b" / "musubi_tuner")
    make_venv(ready / ".venv")
    install = resolve_install(settings_for(pack, env), search_roots=[tmp_path / "a", tmp_path / "b"])
    assert install.root == str(ready)
    assert str(bare) in install.chosen_by  # "also found"


def test_a_venv_inside_a_checkout_names_its_checkout(pack: Path, env: dict[str, str], tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "m")
    venv = make_venv(root / "venv")
    install = resolve_install(settings_for(pack, env, venv=str(venv)), search_roots=[])
    assert install.root == str(root)
    assert "folder holding the venv" in install.chosen_by


def test_default_search_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    comfy = tmp_path / "ComfyUI_windows_portable" / "ComfyUI"
    pack = comfy / "custom_nodes" / "musubi-tuner-nodes"
    home = tmp_path / "home"
    settings = Settings(pack_dir=str(pack))
    roots = candidate_roots(settings, {"HOME": str(home)})
    for expected in (comfy / "musubi-tuner", comfy.parent / "musubi-tuner",
                     comfy.parent.parent / "musubi-tuner", home / "musubi-tuner",
                     home / "src" / "musubi-tuner", Path.cwd()):
        assert expected in roots
    assert roots.index(comfy / "musubi-tuner") < roots.index(home / "musubi-tuner")
    monkeypatch.setattr(settings_module, "IS_WINDOWS", True)
    monkeypatch.setattr(discovery_module, "IS_WINDOWS", True)
    roots = candidate_roots(settings, {"USERPROFILE": str(home)})
    # (On POSIX the drive path is just a relative name; on Windows it is C:\musubi-tuner.)
    assert any(str(r).endswith(str(Path("C:\\") / "musubi-tuner")) for r in roots)


def test_default_search_finds_a_checkout_next_to_comfyui(pack: Path, env: dict[str, str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    comfy = pack.parent.parent
    root = make_checkout(comfy.parent / "musubi-tuner")
    make_venv(root / ".venv")
    monkeypatch.chdir(pack)
    install = resolve_install(settings_for(pack, env))
    assert install.root == str(root)


def test_no_checkout_anywhere(pack: Path, env: dict[str, str], tmp_path: Path) -> None:
    settings = settings_for(pack, env)
    with pytest.raises(TrainerNotFound) as err:
        resolve_install(settings, search_roots=[tmp_path / "x"])
    text = str(err.value)
    assert str(tmp_path / "x" / "musubi-tuner") in text
    assert "MUSUBI_TUNER_ROOT" in text and settings.user_config_file in text and "root_path" in text


def test_checkout_without_a_venv(pack: Path, env: dict[str, str], tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "m")
    with pytest.raises(TrainerNotFound) as err:
        resolve_install(settings_for(pack, env, root=str(root)))
    text = str(err.value)
    assert str(root / ".venv") in text and str(root / "venv") in text
    assert "MUSUBI_TUNER_ENV" in text and "venv_path" in text


def test_venv_that_does_not_exist(pack: Path, env: dict[str, str], tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "m")
    with pytest.raises(TrainerNotFound) as err:
        resolve_install(settings_for(pack, env, root=str(root), venv=str(tmp_path / "gone")))
    assert str(tmp_path / "gone") in str(err.value) and "does not exist" in str(err.value)
    assert "environment variable MUSUBI_TUNER_ENV" in str(err.value)


def test_venv_path_pointing_at_the_python_file(pack: Path, env: dict[str, str], tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "m")
    venv = make_venv(tmp_path / "v")
    with pytest.raises(ConfigError) as err:
        resolve_install(settings_for(pack, env, root=str(root), venv=str(venv / "bin" / "python")))
    assert "is a file" in str(err.value) and f"probably {venv}" in str(err.value)


def test_venv_without_a_python(pack: Path, env: dict[str, str], tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "m")
    (tmp_path / "v").mkdir()
    with pytest.raises(TrainerNotFound) as err:
        resolve_install(settings_for(pack, env, root=str(root), venv=str(tmp_path / "v")))
    assert str(tmp_path / "v" / "bin" / "python") in str(err.value)


def test_root_that_is_not_a_checkout(pack: Path, env: dict[str, str], tmp_path: Path) -> None:
    outer = tmp_path / "tools"
    make_checkout(outer / "musubi-tuner")
    venv = make_venv(tmp_path / "v")
    with pytest.raises(TrainerNotFound) as err:
        resolve_install(settings_for(pack, env, root=str(outer), venv=str(venv)))
    text = str(err.value)
    assert str(outer / "src" / "musubi_tuner") in text
    assert f"did you mean {outer / 'musubi-tuner'}" in text


def test_root_that_does_not_exist_or_is_a_file(pack: Path, env: dict[str, str], tmp_path: Path) -> None:
    venv = make_venv(tmp_path / "v")
    with pytest.raises(TrainerNotFound, match="does not exist"):
        resolve_install(settings_for(pack, env, root=str(tmp_path / "no"), venv=str(venv)))
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        resolve_install(settings_for(pack, env, root=str(tmp_path / "f"), venv=str(venv)))


@pytest.mark.parametrize("version, key", [("3.13.1", "version"), ("3.9.18", "version"),
                                          ("3.13.0.final.0", "version_info")])
def test_python_outside_3_10_to_3_12_is_refused(pack: Path, env: dict[str, str], tmp_path: Path,
                                                version: str, key: str) -> None:
    root = make_checkout(tmp_path / "m")
    make_venv(root / ".venv", version, key=key)
    with pytest.raises(ConfigError) as err:
        resolve_install(settings_for(pack, env, root=str(root)))
    text = str(err.value)
    assert version.split(".final")[0] in text and "3.10 to 3.12" in text and "MUSUBI_TUNER_ENV" in text


@pytest.mark.parametrize("version, key", [("3.10.12.final.0", "version_info"), ("3.12.4", "version_info"),
                                          ("3.12", "version")])
def test_uv_and_virtualenv_pyvenv_cfg_forms(pack: Path, env: dict[str, str], tmp_path: Path,
                                            version: str, key: str) -> None:
    root = make_checkout(tmp_path / "m")
    make_venv(root / ".venv", version, key=key)
    install = resolve_install(settings_for(pack, env, root=str(root)))
    assert version.startswith(install.python_version)


@pytest.mark.skipif(os.name == "nt", reason="POSIX shell-script interpreter stand-ins")
def test_without_pyvenv_cfg_the_python_is_asked_once(pack: Path, env: dict[str, str], tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "m")
    venv = root / ".venv"
    (venv / "bin").mkdir(parents=True)
    os.symlink(sys.executable, venv / "bin" / "python")
    install = resolve_install(settings_for(pack, env, root=str(root)))
    assert install.python_version == "%d.%d.%d" % sys.version_info[:3]
    # abspath, not realpath: the venv's own interpreter path is kept.
    assert install.python == str(venv / "bin" / "python")

    fake = venv / "bin" / "python"
    fake.unlink()
    fake.write_text("#!/bin/sh\necho 3.13.0\n")
    fake.chmod(0o755)
    with pytest.raises(ConfigError, match="Python 3.13.0"):
        resolve_install(settings_for(pack, env, root=str(root)))

    fake.write_text("#!/bin/sh\necho 'broken install' >&2\nexit 3\n")
    with pytest.raises(TrainerNotFound, match="exit code 3.*broken install"):
        resolve_install(settings_for(pack, env, root=str(root)))

    fake.chmod(0o644)
    with pytest.raises(TrainerNotFound, match="cannot start"):
        resolve_install(settings_for(pack, env, root=str(root)))


def test_windows_venv_layout(pack: Path, env: dict[str, str], tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "IS_WINDOWS", True)
    monkeypatch.setattr(discovery_module, "IS_WINDOWS", True)
    root = make_checkout(tmp_path / "musubi-tuner")
    venv = make_venv(root / "venv", "3.10.11", windows=True)
    install = resolve_install(settings_for(pack, env, root=str(root)))
    assert install.python == str(venv / "Scripts" / "python.exe")
    assert install.accelerate == str(venv / "Scripts" / "accelerate.exe")
    assert install.python_version == "3.10.11"


def test_windows_message_names_scripts_python_exe(pack: Path, env: dict[str, str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "IS_WINDOWS", True)
    monkeypatch.setattr(discovery_module, "IS_WINDOWS", True)
    root = make_checkout(tmp_path / "m")
    make_venv(root / "venv")  # a POSIX layout seen from Windows has no Scripts\python.exe
    with pytest.raises(TrainerNotFound) as err:
        resolve_install(settings_for(pack, env, root=str(root), venv=str(root / "venv")))
    assert "Scripts\\python.exe" in str(err.value)


# --- read_roots --------------------------------------------------------------------------------

def test_read_roots_add_up_across_files_relative_to_each_file(pack: Path, env: dict[str, str], tmp_path: Path) -> None:
    user = write_json(user_config_path(env), {"read_roots": ["/data/a", "b"]})
    comfy = write_json(tmp_path / "ComfyUI" / "user" / "__musubi-tuner-nodes" / "config.json",
                       {"read_roots": ["/data/c", "/data/a"]})
    s = load_settings(pack, environ=env, user_config=comfy)
    assert s.read_roots == ("/data/a", str(user.parent / "b"), "/data/c")
    assert s.origin("read_roots") == str(comfy) and s.local_config_file == str(comfy)


@pytest.mark.parametrize("value", ["/data", [1], [""], "  "])
def test_read_roots_must_be_a_list_of_paths(pack: Path, env: dict[str, str], value: object) -> None:
    write_json(user_config_path(env), {"read_roots": value})
    with pytest.raises(ConfigError, match="read_roots"):
        load_settings(pack, environ=env)


def test_the_read_root_fix_is_the_exact_line_for_the_comfyui_settings_file(pack: Path, env: dict[str, str],
                                                                           tmp_path: Path) -> None:
    from executor.setup.settings import read_root_fix

    comfy = tmp_path / "ComfyUI" / "user" / "__musubi-tuner-nodes" / "config.json"
    folder = "/data/\u5199\u771f \"x\" \\ y"  # quotes and a backslash must come out as valid JSON
    # no file yet: the whole file
    fix = read_root_fix(load_settings(pack, environ=env, user_config=comfy), folder)
    entry = json.dumps(folder, ensure_ascii=False)
    assert fix == f'create the settings file {comfy} containing: {{"read_roots": [{entry}]}}'
    created = json.loads(fix.split(" containing: ", 1)[1])
    assert created["read_roots"] == [folder]
    # a file without read_roots: one line inside its braces, and that line makes it valid JSON with the folder
    write_json(comfy, {"musubi_tuner": {"venv_path": ""}})
    fix = read_root_fix(load_settings(pack, environ=env, user_config=comfy), folder)
    assert fix.startswith(f"add this line inside the {{ }} of the settings file {comfy}: ")
    line = fix.split(f"{comfy}: ", 1)[1]
    comfy.write_text(comfy.read_text().replace("{", "{" + line + " ", 1))
    assert load_settings(pack, environ=env, user_config=comfy).read_roots == (folder,)
    # a file with read_roots: the line to put instead, keeping what it had
    fix = read_root_fix(load_settings(pack, environ=env, user_config=comfy), "/more")
    assert fix == (f'in the settings file {comfy}, change the "read_roots" line to: '
                   f'"read_roots": [{entry}, "/more"],')


def test_without_a_comfyui_file_the_fix_names_the_user_settings_file(pack: Path, env: dict[str, str]) -> None:
    from executor.setup.settings import read_root_fix

    fix = read_root_fix(load_settings(pack, environ=env), "/data")
    assert fix == f'create the settings file {user_config_path(env)} containing: {{"read_roots": ["/data"]}}'

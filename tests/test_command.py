"""Command values: argv shapes, the child environment, and command.txt in three shells."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from executor.process import command as command_module
from executor.process.command import (AccelerateOptions, Command, accelerate_command, child_environment,
                              format_command, python_command, script_path)
from executor.setup.discovery import MusubiInstall
from executor.setup.settings import Settings
from executor.errors import ConfigError, TrainerNotFound

pytestmark = pytest.mark.timeout(60)

COMFY_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/u",
    "VIRTUAL_ENV": "/comfy/venv",
    "PYTHONHOME": "/comfy/python",
    "PYTHONPATH": "/comfy/ComfyUI",
    "PYTHONSTARTUP": "/home/u/.pythonrc",
    "TQDM_DISABLE": "1",
    "TQDM_ASCII": "1",
    "CONDA_PREFIX": "/opt/conda/envs/comfy",
    "HF_HOME": "/data/hf",
}


@pytest.fixture
def install(tmp_path: Path) -> MusubiInstall:
    root = tmp_path / "musubi tuner"
    pkg = root / "src" / "musubi_tuner"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name in ("wan_train_network.py", "wan_cache_latents.py"):
        (pkg / name).write_text("")
    venv = root / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    return MusubiInstall(root=str(root), venv=str(venv), python=str(venv / "bin" / "python"),
                         accelerate=None, python_version="3.10.12", chosen_by="test")


SETTINGS = Settings(num_cpu_threads_per_process=2, mixed_precision="bf16")


# --- script paths and argv -------------------------------------------------------------------

def test_script_path_is_inside_the_package(install: MusubiInstall) -> None:
    assert script_path(install, "wan_train_network.py") == os.path.join(
        install.root, "src", "musubi_tuner", "wan_train_network.py")


@pytest.mark.parametrize("name", ["../wan_train_network.py", "networks/../../x.py", "a/b/c.py", "/abs.py",
                                  "..\\x.py", "networks\\..\\x.py", "wan_train_network", "", ".."])
def test_script_names_cannot_leave_the_package(install: MusubiInstall, name: str) -> None:
    with pytest.raises(ConfigError, match="inside src/musubi_tuner"):
        script_path(install, name)


def test_dedicated_converters_one_folder_deep_are_scripts(install: MusubiInstall) -> None:
    converter = os.path.join(install.root, "src", "musubi_tuner", "networks", "convert_z_image_lora_to_comfy.py")
    os.makedirs(os.path.dirname(converter), exist_ok=True)
    open(converter, "w").close()
    assert script_path(install, "networks/convert_z_image_lora_to_comfy.py") == converter


def test_a_script_missing_from_the_checkout(install: MusubiInstall) -> None:
    with pytest.raises(TrainerNotFound) as err:
        script_path(install, "krea2_train_network.py")
    assert "krea2_train_network.py" in str(err.value) and install.root in str(err.value)


def test_python_command_shape(install: MusubiInstall) -> None:
    cmd = python_command(install, "wan_cache_latents.py", ["--dataset_config", "d.toml"], SETTINGS,
                         base_env=COMFY_ENV)
    assert cmd.argv == (install.python, script_path(install, "wan_cache_latents.py"),
                        "--dataset_config", "d.toml")
    assert cmd.cwd == install.root
    assert cmd.env["OMP_NUM_THREADS"] == "2"


def test_python_command_keeps_a_users_omp_threads(install: MusubiInstall) -> None:
    cmd = python_command(install, "wan_cache_latents.py", [], SETTINGS,
                         base_env=dict(COMFY_ENV, OMP_NUM_THREADS="8"))
    assert cmd.env["OMP_NUM_THREADS"] == "8" and "OMP_NUM_THREADS" not in cmd.added_env


def test_args_must_be_strings(install: MusubiInstall) -> None:
    with pytest.raises(TypeError):
        python_command(install, "wan_cache_latents.py", ["--batch_size", 1], SETTINGS)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        python_command(install, "wan_cache_latents.py", "--batch_size 1", SETTINGS)


def test_accelerate_command_passes_every_value(install: MusubiInstall) -> None:
    cmd = accelerate_command(install, "wan_train_network.py", ["--sdpa"], SETTINGS, base_env=COMFY_ENV)
    assert cmd.argv == (install.python, "-m", "accelerate.commands.launch",
                        "--num_cpu_threads_per_process", "2", "--mixed_precision", "bf16",
                        "--num_processes", "1", "--num_machines", "1", "--dynamo_backend", "no",
                        script_path(install, "wan_train_network.py"), "--sdpa")
    assert "OMP_NUM_THREADS" not in cmd.added_env  # accelerate sets it from the flag


def test_accelerate_command_several_gpus(install: MusubiInstall) -> None:
    opts = AccelerateOptions(num_processes=2, gpu_ids="0, 1", mixed_precision="fp16",
                             num_cpu_threads_per_process=4, main_process_port=29501)
    argv = accelerate_command(install, "wan_train_network.py", [], SETTINGS, opts).argv
    assert argv[3:-1] == ("--num_cpu_threads_per_process", "4", "--mixed_precision", "fp16",
                          "--num_processes", "2", "--num_machines", "1", "--multi_gpu",
                          "--gpu_ids", "0,1", "--dynamo_backend", "no", "--main_process_port", "29501")


def test_accelerate_command_several_machines(install: MusubiInstall) -> None:
    opts = AccelerateOptions(num_processes=4, num_machines=2, machine_rank=1,
                             main_process_ip="10.0.0.1", main_process_port=29500, gpu_ids="all")
    argv = accelerate_command(install, "wan_train_network.py", [], SETTINGS, opts).argv
    tail = list(argv[3:-1])
    assert tail[tail.index("--num_machines") + 1] == "2"
    assert tail[-6:] == ["--machine_rank", "1", "--main_process_ip", "10.0.0.1",
                         "--main_process_port", "29500"]
    assert "--multi_gpu" in tail and tail[tail.index("--gpu_ids") + 1] == "all"


def test_accelerate_config_file_passes_only_explicit_options(install: MusubiInstall, tmp_path: Path) -> None:
    cfg = tmp_path / "accel.yaml"
    cfg.write_text("distributed_type: MULTI_GPU\n")
    opts = AccelerateOptions(config_file=str(cfg), num_processes=2)
    argv = accelerate_command(install, "wan_train_network.py", ["--sdpa"], SETTINGS, opts).argv
    assert argv == (install.python, "-m", "accelerate.commands.launch", "--config_file", str(cfg),
                    "--num_processes", "2", script_path(install, "wan_train_network.py"), "--sdpa")


def test_accelerate_config_file_must_exist(install: MusubiInstall, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        accelerate_command(install, "wan_train_network.py", [], SETTINGS,
                           AccelerateOptions(config_file=str(tmp_path / "no.yaml")))


@pytest.mark.parametrize("kwargs, words", [
    ({"num_processes": 0}, "num_processes"),
    ({"num_machines": -1}, "num_machines"),
    ({"num_cpu_threads_per_process": True}, "num_cpu_threads_per_process"),
    ({"mixed_precision": "fp32"}, "no, fp16, bf16, fp8"),
    ({"gpu_ids": "0;1"}, "gpu_ids"),
    ({"gpu_ids": "cuda:0"}, "gpu_ids"),
    ({"gpu_ids": "0", "num_processes": 2}, "fewer GPUs"),
    ({"num_processes": 1, "num_machines": 2, "main_process_ip": "h"}, "cannot be less"),
    ({"num_processes": 2, "num_machines": 2}, "main_process_ip"),
    ({"num_processes": 2, "num_machines": 2, "main_process_ip": "h", "machine_rank": 2}, "machine_rank"),
    ({"main_process_port": 70000}, "main_process_port"),
])
def test_accelerate_options_are_validated(kwargs: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        AccelerateOptions(**kwargs)


# --- the child environment -------------------------------------------------------------------

def test_comfyuis_interpreter_variables_do_not_leak(install: MusubiInstall) -> None:
    env = child_environment(install, SETTINGS, base=COMFY_ENV)
    for name in ("PYTHONHOME", "PYTHONSTARTUP", "TQDM_DISABLE", "TQDM_ASCII", "CONDA_PREFIX"):
        assert name not in env
    assert env["VIRTUAL_ENV"] == install.venv
    assert env["PYTHONPATH"] == install.src
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONIOENCODING"] == "utf-8" and env["PYTHONUTF8"] == "1"
    assert env["PATH"] == install.bin_dir + os.pathsep + "/usr/bin:/bin"
    assert env["HF_HOME"] == "/data/hf" and env["HOME"] == "/home/u"


def test_settings_env_is_added_and_its_pythonpath_comes_after_src(install: MusubiInstall) -> None:
    settings = Settings(env={"PYTHONPATH": "/shim", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "1"})
    env = child_environment(install, settings, base=COMFY_ENV, extra={"PYTHONPATH": "/more",
                                                                      "CUDA_VISIBLE_DEVICES": "0"})
    assert env["PYTHONPATH"].split(os.pathsep) == [install.src, "/shim", "/more"]
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["CUDA_VISIBLE_DEVICES"] == "0"  # extra beats settings


def test_a_path_from_settings_still_has_the_venv_first(install: MusubiInstall) -> None:
    env = child_environment(install, Settings(env={"PATH": "/opt/cuda/bin"}), base=COMFY_ENV)
    assert env["PATH"] == install.bin_dir + os.pathsep + "/opt/cuda/bin"


def test_the_musubi_venv_as_conda_env_keeps_conda_prefix(install: MusubiInstall) -> None:
    env = child_environment(install, SETTINGS, base=dict(COMFY_ENV, CONDA_PREFIX=install.venv))
    assert env["CONDA_PREFIX"] == install.venv


def test_added_and_removed_are_recorded_for_display(install: MusubiInstall) -> None:
    cmd = python_command(install, "wan_cache_latents.py", [], SETTINGS, base_env=dict(COMFY_ENV, PYTHONUTF8="1"))
    assert set(cmd.removed_env) == {"PYTHONHOME", "PYTHONSTARTUP", "TQDM_DISABLE", "TQDM_ASCII", "CONDA_PREFIX"}
    assert {"PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONIOENCODING", "VIRTUAL_ENV", "PATH"} <= set(cmd.added_env)
    assert "PYTHONUTF8" not in cmd.added_env  # unchanged from the parent
    assert "HF_HOME" not in cmd.added_env


def test_os_environ_is_not_modified(install: MusubiInstall, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/comfy")
    before = dict(os.environ)
    env = child_environment(install, SETTINGS)
    assert dict(os.environ) == before and env["PYTHONPATH"] == install.src


def test_windows_names_ignore_case(install: MusubiInstall, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command_module, "IS_WINDOWS", True)
    env = child_environment(install, SETTINGS, base={"Path": "C:\\Windows", "PythonPath": "C:\\comfy",
                                                     "tqdm_disable": "1"})
    assert "PythonPath" not in env and "tqdm_disable" not in env
    assert env["Path"].startswith(install.bin_dir) and "PATH" not in env


def test_a_real_child_imports_musubi_from_the_checkout(install: MusubiInstall, tmp_path: Path) -> None:
    real = MusubiInstall(root=install.root, venv=install.venv, python=sys.executable,
                         accelerate=None, python_version="", chosen_by="test")
    probe = Path(real.package_dir) / "wan_cache_latents.py"
    probe.write_text("import json, os, sys, musubi_tuner\n"
                     "print(json.dumps({'file': musubi_tuner.__file__, 'argv': sys.argv[1:],"
                     " 'cwd': os.getcwd(), 'env': {k: os.environ.get(k) for k in"
                     " ('PYTHONHOME', 'TQDM_DISABLE', 'PYTHONUNBUFFERED', 'HF_HOME')}}))\n")
    base = dict(os.environ, PYTHONPATH=str(tmp_path), TQDM_DISABLE="1")
    cmd = python_command(real, "wan_cache_latents.py", ["--x", "a b"], Settings(env={"HF_HOME": "/hf"}),
                         base_env=base)
    done = subprocess.run(list(cmd.argv), env=dict(cmd.env), cwd=cmd.cwd, capture_output=True, text=True,
                          timeout=30)
    out = json.loads(done.stdout)
    assert Path(out["file"]) == Path(real.package_dir) / "__init__.py"
    assert out["argv"] == ["--x", "a b"] and Path(out["cwd"]) == Path(real.root)
    assert out["env"] == {"PYTHONHOME": None, "TQDM_DISABLE": None, "PYTHONUNBUFFERED": "1", "HF_HOME": "/hf"}


# --- command.txt -----------------------------------------------------------------------------

NASTY_ARGS = ["plain", "with space", "ünïcødé 日本語", "a&b|c<d>e^f", "50%", "%PATH%", 'say "hi"',
              "it's", "$HOME `id` $(id)", "trailing\\", 'back\\"slash', "!bang!", "(paren)", "",
              "--output_dir=C:\\Users\\Åsa\\My LoRAs"]

ECHO_CHILD = ("import json, os, sys\n"
              "names = json.loads(os.environ['ECHO_NAMES'])\n"
              "print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(),"
              " 'env': {n: os.environ.get(n) for n in names}}))\n")


def nasty_command(tmp_path: Path, script: Path) -> Command:
    cwd = tmp_path / "run dir & 'quoted'"
    cwd.mkdir()
    added = {"PYTHONPATH": "/src dir/with 'quote'", "NOTE": 'a "b" $c `d` 100%', "UNI": "日本語",
             "ECHO_NAMES": json.dumps(["PYTHONPATH", "NOTE", "UNI", "GONE", "KEPT"])}
    return Command(argv=(sys.executable, str(script), *NASTY_ARGS), env={}, cwd=str(cwd),
                   added_env=added, removed_env=("GONE",))


@pytest.mark.skipif(os.name == "nt", reason="needs a POSIX sh")
def test_posix_line_round_trips_through_sh(tmp_path: Path) -> None:
    script = tmp_path / "echo child.py"
    script.write_text(ECHO_CHILD, encoding="utf-8")
    cmd = nasty_command(tmp_path, script)
    line = format_command(cmd, "posix")
    assert "\n" not in line
    env = dict(os.environ, GONE="inherited", KEPT="kept")
    done = subprocess.run(["sh", "-c", line], env=env, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.decode("utf-8"))
    assert out["argv"] == NASTY_ARGS
    assert out["cwd"] == cmd.cwd
    assert out["env"] == {"PYTHONPATH": "/src dir/with 'quote'", "NOTE": 'a "b" $c `d` 100%',
                          "UNI": "日本語", "GONE": None, "KEPT": "kept"}


def test_posix_line_does_not_change_the_pasting_shell(tmp_path: Path) -> None:
    line = format_command(nasty_command(tmp_path, tmp_path / "x.py"), "posix")
    assert line.startswith("(cd ") and line.endswith(")")


def cmd_phase2(line: str) -> str:
    """What cmd.exe hands the program for a line with no unescaped quotes: carets removed."""
    return re.sub(r"\^(.)", r"\1", line)


def msvc_split(text: str) -> list[str]:
    """The MSVC runtime's argv parsing (CommandLineToArgvW rules, arguments after the program)."""
    args: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        cur, quoted, started = [], False, True
        while i < n and (quoted or text[i] not in " \t"):
            if text[i] == "\\":
                j = i
                while j < n and text[j] == "\\":
                    j += 1
                count = j - i
                if j < n and text[j] == '"':
                    cur.append("\\" * (count // 2))
                    if count % 2:
                        cur.append('"')
                        i = j + 1
                    else:
                        i = j
                    continue
                cur.append("\\" * count)
                i = j
                continue
            if text[i] == '"':
                if quoted and i + 1 < n and text[i + 1] == '"':
                    cur.append('"')
                    i += 2
                    continue
                quoted = not quoted
                i += 1
                continue
            cur.append(text[i])
            i += 1
        if started:
            args.append("".join(cur))
    return args


def test_cmd_lines_escape_every_metacharacter(tmp_path: Path) -> None:
    cmd = nasty_command(tmp_path, tmp_path / "echo child.py")
    lines = format_command(cmd, "cmd").splitlines()
    assert lines[0].startswith("cd /d ^\"")
    assert lines[1] == 'set ^"GONE=^"'
    # set is built into cmd: it keeps everything between the first and the last quote.
    assert 'set ^"NOTE=a ^"b^" $c `d` 100^%^"' in lines
    last = lines[-1]
    exe = f'"{sys.executable}"'
    assert last.startswith(exe + " ")
    rest = last[len(exe) + 1:]
    # Outside the program name no quote is left unescaped, so cmd sees no quoted
    # region: & | < > % are all literal, and the caret-stripped text parses back.
    assert not re.search(r'(?<!\^)"', rest)
    assert not re.search(r"(?<!\^)[&|<>%!()]", rest.replace("^^", ""))
    assert msvc_split(cmd_phase2(rest)) == [str(tmp_path / "echo child.py"), *NASTY_ARGS]


def test_powershell_lines(tmp_path: Path) -> None:
    cmd = nasty_command(tmp_path, tmp_path / "echo child.py")
    text = format_command(cmd, "powershell")
    lines = text.splitlines()
    assert lines[0] == f"Set-Location -LiteralPath '{cmd.cwd.replace(chr(39), chr(39) * 2)}'"
    assert "Remove-Item -LiteralPath 'Env:GONE' -ErrorAction SilentlyContinue" in lines
    assert "$env:PYTHONPATH = '/src dir/with ''quote'''" in lines
    assert "$env:NOTE = 'a \"b\" $c `d` 100%'" in lines
    assert lines[-1].startswith(f"& '{sys.executable}' ")
    assert "'it''s'" in lines[-1] and "'a&b|c<d>e^f'" in lines[-1] and " ''" in lines[-1]
    assert any(line.startswith("# ") and "7.3" in line for line in lines)


def test_powershell_doubles_typographic_quotes_and_braces_odd_names() -> None:
    cmd = Command(argv=("py.exe", "it\u2019s"), env={}, cwd="C:\\x",
                  added_env={"ProgramFiles(x86)": "C:\\P"})
    text = format_command(cmd, "powershell")
    assert "'it\u2019\u2019s'" in text
    assert "${env:ProgramFiles(x86)} = 'C:\\P'" in text


@pytest.mark.parametrize("shell", ["posix", "cmd", "powershell"])
def test_secrets_are_redacted(shell: str) -> None:
    cmd = Command(argv=("python", "train.py", "--huggingface_token", "hf_v4lue1", "--wandb_api_key=v4lue2",
                        "--max_new_tokens", "64", "--metadata_author", "me"),
                  env={}, cwd="/r",
                  added_env={"HF_TOKEN": "hf_v4lue3", "WANDB_API_KEY": "v4lue4", "AWS_SECRET_ACCESS_KEY": "v4lue5",
                             "MY_PASSWORD": "v4lue6", "HF_HOME": "/hf"})
    text = format_command(cmd, shell)
    assert "v4lue" not in text
    assert "***" in text and "/hf" in text
    assert "64" in text and "me" in text  # --max_new_tokens and --metadata_author are not secrets
    assert "HF_TOKEN" in text  # the name stays, so the user knows to fill it in


def test_format_command_of_a_built_command_defaults_cwd_to_the_root(install: MusubiInstall) -> None:
    cmd = accelerate_command(install, "wan_train_network.py", ["--output_name", "my lora"], SETTINGS,
                             base_env=COMFY_ENV)
    line = format_command(cmd)
    assert line.startswith(f"(cd '{install.root}' && unset ")
    assert "PYTHONHOME" in line and "accelerate.commands.launch" in line and "'my lora'" in line


def test_unknown_shell() -> None:
    with pytest.raises(ValueError, match="posix, cmd or powershell"):
        format_command(Command(argv=("x",), env={}, cwd="/"), "fish")

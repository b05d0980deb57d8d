"""The fault catalogue where users meet it: the nodes in a real ComfyUI 0.3.75, over HTTP and the
websocket. Each fault has one defined outcome a user sees (tests/hardening_cases.py) and leaves no
process behind (the ``hard`` fixture checks the pids the fake musubi records). The server, the fake
musubi-tuner and its venv all live under paths with spaces and non-ASCII characters.

Faults that only exist between two lines of code (the venv vanishing between pre-flight and launch
inside one node call) are also caught at plan level in tests/test_faults.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

pytest.register_assert_rewrite("hardening", "hardening_e2e")  # before they are imported below

from hardening_e2e import Hard, error_text, run_dir_from, until, wait_for_text  # noqa: E402
from procs import wait_all_gone  # noqa: E402

pytestmark = pytest.mark.comfyui
pytest_plugins = ["hardening", "hardening_e2e"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# the fake dies by os.kill(SIGSEGV / SIGKILL); RLIMIT_FSIZE is set on a running process via prlimit
POSIX_SIGNALS = pytest.mark.skipif(sys.platform == "win32", reason="the fake dies by a POSIX signal")
LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prlimit(RLIMIT_FSIZE) is Linux's")


def cached(hard: Hard, name: str, count: int = 3, **train: Any) -> dict[str, Any]:
    """Cache a fresh dataset now; return the training-only prompt for it."""
    folder = hard.image_folder(name, count)
    run = hard.run(hard.workflow(folder, train=False))
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types
    return hard.workflow(folder, cache=False, output_name=name, **train)


def train_error(hard: Hard, prompt: dict[str, Any], timeout: float = 120) -> tuple[dict[str, Any], str]:
    run = hard.run(prompt, timeout=timeout)
    assert run.outcome == "error", run.types[-20:]
    data = run.terminal.data
    assert data["node_type"] == "MusubiTrainLoRA", data
    return data, data["exception_message"]


def final_text(run: Any, node: str) -> str:
    texts = run.progress_texts(node)
    assert texts, f"no progress text for node {node}"
    return texts[-1]


# ---------------------------------------------------------------------------------------- crashes

@pytest.mark.hardening("fault", "sigsegv")
@POSIX_SIGNALS
@pytest.mark.timeout(240)
def test_a_segfaulting_trainer_is_reported_with_the_signal(hard: Hard) -> None:
    prompt = cached(hard, "f_segv")
    hard.configure(env={"FAKE_MUSUBI_SCENARIO": "segfault"})
    data, message = train_error(hard, prompt)
    assert data["exception_type"] == "musubi_tuner.TrainerFailed"
    assert message.startswith("Training failed in wan_train_network.py: killed by SIGSEGV"), message
    assert "\nhint: " in message
    run_dir = run_dir_from(message)
    assert hard.result(run_dir)["status"] == "failed"
    assert not list(hard.loras_dir.glob("f_segv*")), "a crashed run delivered a LoRA"


@pytest.mark.hardening("fault", "sigkill")
@POSIX_SIGNALS
@pytest.mark.timeout(240)
def test_a_trainer_killed_by_the_oom_killer_gets_the_ram_hint(hard: Hard) -> None:
    prompt = cached(hard, "f_kill")
    hard.configure(env={"FAKE_MUSUBI_SCENARIO": "sigkill"})
    data, message = train_error(hard, prompt)
    assert "killed without an error message" in message and "SIGKILL" in message, message
    assert "system RAM" in message
    assert hard.result(run_dir_from(message))["status"] == "failed"
    assert not list(hard.loras_dir.glob("f_kill*"))


@pytest.mark.hardening("fault", "dtype_clash")
@pytest.mark.timeout(240)
@pytest.mark.parametrize("scenario, kind", [("dtype_mismatch", "dtype_mismatch"),
                                            ("fp8_unsupported", "fp8_unsupported")])
def test_a_dtype_clash_in_the_forward_pass_names_the_precision_settings(hard: Hard, scenario: str, kind: str) -> None:
    prompt = cached(hard, f"f_{scenario}", fp8="fp8_base", mixed_precision="bf16")
    hard.configure(env={"FAKE_MUSUBI_SCENARIO": scenario})
    data, message = train_error(hard, prompt)
    assert data["exception_type"] == "musubi_tuner.TrainerFailed"
    assert "Float8_e4m3fn" in message.splitlines()[0], message  # the trainer's own line leads
    hint = message.split("\nhint: ", 1)[1]
    for setting in ("fp8", "mixed_precision", "DiT file"):
        assert setting in hint, hint
    result = hard.result(run_dir_from(message))
    assert result["status"] == "failed" and result["failure_kind"] == kind, result
    assert not list(hard.loras_dir.glob(f"f_{scenario}*"))


@pytest.mark.hardening("fault", "exit0_no_lora")
@pytest.mark.timeout(240)
def test_training_that_exits_0_without_a_lora_is_a_failure(hard: Hard) -> None:
    prompt = cached(hard, "f_nolora")
    hard.configure(env={"FAKE_MUSUBI_SCENARIO": "no_output"})
    data, message = train_error(hard, prompt)
    assert "exited 0 but produced no output" in message, message
    runs = sorted(hard.runs_dir.glob("*-f_nolora"))
    assert hard.result(runs[-1])["status"] == "no_output"
    assert not list(hard.loras_dir.glob("f_nolora*"))


@pytest.mark.hardening("fault", "exit0_no_cache")
@pytest.mark.timeout(240)
def test_caching_that_exits_0_without_cache_files_is_a_failure(hard: Hard) -> None:
    folder = hard.image_folder("f_nocache")
    hard.configure(env={"FAKE_MUSUBI_SCENARIO": "no_output"})
    run = hard.run(hard.workflow(folder, train=False))
    assert run.outcome == "error" and run.terminal.data["node_id"] == "3", run.types[-20:]
    message = error_text(run)
    assert "exited 0 but produced no output" in message, message
    assert "hint:" in message


# ---------------------------------------------------------------------------------------- limits

@pytest.mark.hardening("fault", "hang_timeout")
@pytest.mark.timeout(240)
def test_a_silent_hang_is_stopped_at_the_time_limit(hard: Hard) -> None:
    prompt = cached(hard, "f_hang")
    hard.configure(command_timeout=4, env={"FAKE_MUSUBI_SCENARIO": "hang"})
    started = time.monotonic()
    data, message = train_error(hard, prompt)
    assert time.monotonic() - started < 60
    assert data["exception_type"] == "musubi_tuner.TimedOut"
    assert "ran longer than the 4 s time limit" in message and "command_timeout" in message, message


@pytest.mark.hardening("fault", "stall")
@pytest.mark.timeout(240)
def test_a_run_without_output_for_the_stall_limit_is_stopped(hard: Hard) -> None:
    prompt = cached(hard, "f_stall")
    hard.configure(stall_timeout=3, env={"FAKE_MUSUBI_LOAD_SECONDS": "120"})
    data, message = train_error(hard, prompt)
    assert data["exception_type"] == "musubi_tuner.Stalled"
    assert "no output for 3 s" in message and "stall timeout" in message, message


# ---------------------------------------------------------------------------------------- hostile output

@pytest.mark.hardening("fault", "line_10mb")
@pytest.mark.timeout(300)
def test_a_10_mb_line_neither_breaks_the_run_nor_floods_the_client(hard: Hard) -> None:
    prompt = cached(hard, "f_longline")
    hard.configure(env={"FAKE_MUSUBI_SCENARIO": "long_line"})
    run = hard.run(prompt, timeout=240)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types[-20:]
    assert (hard.loras_dir / "f_longline.safetensors").is_file()
    longest = max(len(json.dumps(m.data)) for m in run.messages)
    assert longest < 20_000, f"a websocket message of {longest} characters"
    run_dir = Path(run.of_type("executed")[-1].data["output"]["run_dir"][0])
    assert (run_dir / "run.log").stat().st_size > 10 * 1024 * 1024, "the log keeps every byte"
    assert all(len(line) <= 2000 for line in hard.result(run_dir)["tail"])


@pytest.mark.hardening("fault", "bad_bytes")
@pytest.mark.timeout(240)
def test_invalid_utf8_and_cp932_output_is_shown_and_logged(hard: Hard) -> None:
    prompt = cached(hard, "f_bytes")
    hard.configure(env={"FAKE_MUSUBI_SCENARIO": "bad_bytes"})
    run = hard.run(prompt)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types[-20:]
    run_dir = Path(run.of_type("executed")[-1].data["output"]["run_dir"][0])
    raw = (run_dir / "run.log").read_bytes()
    assert b"bad bytes \xff\xfe\x80 end" in raw and "学習開始".encode("cp932") in raw
    assert (hard.loras_dir / "f_bytes.safetensors").is_file()


@pytest.mark.hardening("fault", "pipes_held")
@pytest.mark.timeout(240)
def test_leftover_children_holding_the_pipes_are_stopped_and_reported(hard: Hard) -> None:
    prompt = cached(hard, "f_pipes")
    hard.configure(env={"FAKE_MUSUBI_SCENARIO": "leftover_workers", "FAKE_MUSUBI_WORKER_LINGER": "300"})
    started = time.monotonic()
    run = hard.run(prompt, timeout=180)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types[-20:]
    assert time.monotonic() - started < 60, "the leftovers alone would hold the pipes for 300 s"
    workers = [int(line.split()[1]) for line in hard.pidfile.read_text().splitlines() if line.startswith("worker")]
    assert len(workers) == 2
    assert wait_all_gone(workers, 10) == []
    text = final_text(run, "5")
    assert "still running after wan_train_network.py exited" in text, text
    run_dir = Path(run.of_type("executed")[-1].data["output"]["run_dir"][0])
    assert any("still running after" in w for w in hard.result(run_dir)["warnings"])


@pytest.mark.hardening("fault", "log_disk_full")
@LINUX_ONLY
@pytest.mark.timeout(300)
def test_a_log_that_cannot_grow_does_not_stop_the_run_and_the_user_is_told(hard: Hard) -> None:
    """RLIMIT_FSIZE on the running ComfyUI: its writes to a regular file past the limit fail
    with EFBIG (CPython ignores SIGXFSZ), the same OSError path as a full disk (ENOSPC, covered at
    plan level on a real full tmpfs). The trainer's files stay far below the limit."""
    prompt = cached(hard, "f_logfull")
    comfy = psutil.Process(hard.server.process.pid)
    limit = max(2 * 1024 * 1024, hard.server.log_path.stat().st_size + 1024 * 1024)
    hard.configure(env={"FAKE_MUSUBI_SCENARIO": "long_line", "FAKE_MUSUBI_LONG_LINE_BYTES": str(limit + 4 * 1024 * 1024)})
    previous = comfy.rlimit(psutil.RLIMIT_FSIZE)
    comfy.rlimit(psutil.RLIMIT_FSIZE, (limit, previous[1]))
    try:
        run = hard.run(prompt, timeout=240)
    finally:
        comfy.rlimit(psutil.RLIMIT_FSIZE, previous)
    assert run.outcome == "success", run.terminal.data if run.terminal else run.types[-20:]
    assert (hard.loras_dir / "f_logfull.safetensors").is_file()
    run_dir = Path(run.of_type("executed")[-1].data["output"]["run_dir"][0])
    assert (run_dir / "run.log").stat().st_size <= limit
    text = final_text(run, "5")
    assert "could not be written" in text and "run.log" in text, text
    assert any("could not be written" in w for w in hard.result(run_dir)["warnings"])


# ---------------------------------------------------------------------------------------- ComfyUI dies

@pytest.mark.hardening("fault", "comfyui_killed")
@pytest.mark.timeout(300)
def test_when_comfyui_is_killed_mid_training_the_trainer_tree_dies(comfy_servers: Any, hard_fake: Any,
                                                                  tmp_path: Path, hardening: Any) -> None:
    from comfy_fixtures import put_tiny_models
    from hardening_e2e import ODD

    server = comfy_servers.start("hardening-kill", base_dir=tmp_path / f"Comfy UI {ODD} killed")
    put_tiny_models(server)
    victim = Hard(server, hard_fake, tmp_path)
    victim.configure()
    prompt = cached(victim, "f_killed", max_train_epochs=50)
    victim.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "0.5", "FAKE_MUSUBI_IGNORE_SIGTERM": "1"})
    with victim.client.socket() as sock:
        victim.client.queue_prompt(prompt)
        sock.wait_for(lambda m: m.type == "progress" and m.data.get("node") == "5" and m.data["value"] >= 2, 90)
    tree = [p.pid for p in psutil.Process(server.process.pid).children(recursive=True)]
    pids = sorted(set(tree + victim.pids()))
    assert len(victim.pids()) >= 2, "the launcher and the trainer should be running"
    os.kill(server.process.pid, signal.SIGKILL)  # no cleanup code of ours can run
    server.process.wait(10)
    left = wait_all_gone(pids, within=20.0)
    hardening.record(processes_left=len(left))
    for pid in left:
        psutil.Process(pid).kill()
    assert left == [], f"the trainer tree outlived ComfyUI: {left}"


# ---------------------------------------------------------------------------------------- two runs

@pytest.mark.hardening("fault", "same_output_folder")
@pytest.mark.timeout(300)
def test_a_second_run_into_a_busy_cache_folder_is_refused_and_touches_nothing(hard: Hard, hardening: Any) -> None:
    """Two ComfyUIs (here: the CLI and ComfyUI) cache the same dataset at once: the second is refused."""
    folder = hard.image_folder("f_twice")
    cache = hard.base / "output" / "f_twice cache"
    toml = hard.base / "input" / "f_twice.toml"
    toml.write_text(f'[general]\nresolution = [64, 64]\ncaption_extension = ".txt"\nbatch_size = 1\n\n[[datasets]]\n'
                    f'image_directory = {json.dumps(str(hard.base / "input" / folder))}\n'
                    f'cache_directory = {json.dumps(str(cache))}\n', encoding="utf-8")
    spec = tmp_spec = hard.tmp / "spec.json"
    tmp_spec.write_text(json.dumps({
        "architecture": "wan", "step": "cache_latents", "dataset_config": str(toml),
        "models": {"vae": str(hard.base / "models" / "vae" / "tiny_vae.safetensors")},
        "selectors": {"task": "t2v-1.3B"}}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_MUSUBI_", "MUSUBI_TUNER"))}
    env.update(MUSUBI_TUNER_ROOT=str(hard.fake.root), MUSUBI_TUNER_ENV=str(hard.fake.venv),
               MUSUBI_TUNER_NODES_CONFIG=str(hard.tmp / "no-user-settings.json"),
               FAKE_MUSUBI_STEP_SECONDS="16", FAKE_MUSUBI_PIDFILE=str(hard.pidfile))
    (hard.tmp / "no-user-settings.json").write_text("{}", encoding="utf-8")
    first = subprocess.Popen([sys.executable, "-m", "executor", "plan", str(spec), "--run", "--runs-dir",
                              str(hard.tmp / "cli runs")], cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, encoding="utf-8")
    try:
        for line in first.stdout:
            if line.startswith('{"event"'):
                break  # the first run holds its folder lock and its trainer runs
        assert first.poll() is None, first.stderr.read()
        lock = cache / ".musubi-tuner-nodes.lock"
        assert lock.is_file()
        held = lock.read_bytes()
        runs_before = hard.run_folders()
        prompt = {"1": {"class_type": "MusubiLoadDatasetConfig", "inputs": {"path": str(toml)}},
                  "2": hard.models_node(),
                  "3": {"class_type": "MusubiCacheLatents", "inputs": {"dataset": ["1", 0], "models": ["2", 0]}}}
        run = hard.run(prompt)
        assert run.outcome == "error" and run.terminal.data["node_id"] == "3", run.types[-20:]
        message = error_text(run)
        assert "another run" in message and "refused and touched nothing" in message, message
        assert str(cache) in message
        assert hard.run_folders() == runs_before, "the refused run made a run folder"
        assert lock.read_bytes() == held, "the refused run touched the first run's lock"
        rest, errors = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, errors
    result = json.loads(rest.strip().splitlines()[-1])["result"]
    assert result["status"] == "succeeded" and len(result["files_produced"]) == 3
    assert not lock.exists()
    hardening.record(files_lost=0)


# ---------------------------------------------------------------------------------------- Cancel

def interrupt_when(hard: Hard, prompt: dict[str, Any], ready: Any, *, settle: float = 0.0) -> Any:
    with hard.client.socket() as sock:
        prompt_id = hard.client.queue_prompt(prompt)["prompt_id"]
        ready(sock)
        time.sleep(settle)
        assert hard.pids(), "nothing was running"
        hard.client.interrupt(prompt_id)
        return sock.collect(prompt_id, timeout=60)


@pytest.mark.hardening("fault", "cancel_loading")
@pytest.mark.timeout(240)
def test_cancel_while_the_model_loads(hard: Hard) -> None:
    prompt = cached(hard, "f_cancel_load")
    hard.configure(env={"FAKE_MUSUBI_LOAD_SECONDS": "120"})
    run = interrupt_when(hard, prompt, lambda sock: wait_for_text(sock, "5", "loading model"), settle=1.0)
    assert run.outcome == "interrupted" and run.terminal.data["node_type"] == "MusubiTrainLoRA"
    assert not run.of_type("execution_error")
    assert wait_all_gone(hard.pids(), 3.0) == [], "the tree outlived the Cancel by 3 s"
    runs = sorted(hard.runs_dir.glob("*-f_cancel_load"))
    assert hard.result(runs[-1])["status"] == "cancelled"


@pytest.mark.hardening("fault", "cancel_caching")
@pytest.mark.timeout(240)
def test_cancel_during_latent_caching(hard: Hard) -> None:
    folder = hard.image_folder("f_cancel_cache", 4)
    hard.configure(env={"FAKE_MUSUBI_STEP_SECONDS": "12"})  # 3 s per cached batch
    before = hard.run_folders()
    run = interrupt_when(hard, hard.workflow(folder, train=False), lambda sock: sock.wait_for(
        lambda m: m.type == "progress" and m.data.get("node") == "3" and m.data["value"] >= 1, 90))
    assert run.outcome == "interrupted" and run.terminal.data["node_type"] == "MusubiCacheLatents"
    assert wait_all_gone(hard.pids(), 3.0) == []
    (run_dir,) = hard.run_folders() - before
    assert hard.result(run_dir)["status"] == "cancelled"


@pytest.mark.hardening("fault", "cancel_saving")
@pytest.mark.timeout(240)
def test_cancel_while_the_lora_is_written_delivers_nothing(hard: Hard) -> None:
    prompt = cached(hard, "f_cancel_save")
    hard.configure(env={"FAKE_MUSUBI_SCENARIO": "slow_save", "FAKE_MUSUBI_SAVE_SECONDS": "60"})
    before = hard.run_folders()
    partial: list[Path] = []

    def saving(sock: Any) -> None:
        wait_for_text(sock, "5", r"saving.*f_cancel_save\.safetensors")
        (run_dir,) = hard.run_folders() - before
        target = run_dir / "f_cancel_save.safetensors"
        assert until(lambda: target.is_file() and target.stat().st_size > 0, 30), "no partial file appeared"
        partial.append(target)

    run = interrupt_when(hard, prompt, saving)
    assert run.outcome == "interrupted"
    assert wait_all_gone(hard.pids(), 3.0) == []
    (target,) = partial
    assert target.is_file(), "the partial file stays in the run folder only"
    assert not list(hard.loras_dir.glob("f_cancel_save*")), "a partial LoRA was delivered"
    assert hard.result(target.parent)["status"] == "cancelled"


# ---------------------------------------------------------------------------------------- setup vanishes

@pytest.mark.hardening("fault", "venv_vanishes")
@pytest.mark.timeout(240)
def test_a_venv_deleted_after_pre_flight_is_named_with_the_fix(hard: Hard) -> None:
    """The user moved or deleted musubi's venv after a (dry) run checked it."""
    prompt = cached(hard, "f_venv")
    venv = hard.tmp / "moved venv é"
    shutil.copytree(hard.fake.venv, venv, symlinks=True)
    hard.configure(venv=venv)
    dry = hard.run({**prompt, "5": {**prompt["5"], "inputs": {**prompt["5"]["inputs"], "dry_run": True}}})
    assert dry.outcome == "success", "pre-flight passed with the venv in place"
    shutil.rmtree(venv)
    before = hard.pids()
    data, message = train_error(hard, prompt)
    assert str(venv) in message and "venv_path" in message, message
    assert data["exception_type"] in ("musubi_tuner.TrainerNotFound", "musubi_tuner.PreflightError")
    assert hard.pids() == before, "something was started"

"""Plans and run folders: ``python -m executor plan`` JSON, run folder contents after a real
(fake-musubi) run, folder locks, never overwriting a LoRA, command.txt for three shells."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

import media
from conftest import PROJECT_ROOT
from executor.setup.settings import Settings
from executor.setup.discovery import resolve_install
from executor.errors import ConfigError, PreflightError, TrainerFailed
from executor.runs.folders import COMMAND_FILE, LOCK_NAME, LOG_FILE, RESULT_FILE
from executor.runs.plan import PlanSpec, make_plan
from executor.runs.locks import RunLock, RunLocked
from executor.runs.execute import execute_plan
from fakes import fake_musubi  # noqa: F401  (session fixture)

pytestmark = pytest.mark.timeout(120)


class Work:
    """A dataset, model files and settings for the fake musubi install."""

    def __init__(self, tmp: Path, fake, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.fake = fake
        self.toml = fake.make_dataset(tmp / "data")
        self.models = media.wan_models(tmp / "models")
        self.settings = Settings(venv_path=str(fake.venv), root_path=str(fake.root), env=env or {})
        self.install = resolve_install(self.settings)
        self.out = tmp / "out"
        self.runs = tmp / "runs"

    def spec(self, step: str, **kwargs) -> PlanSpec:
        values = dict(architecture="wan", step=step, dataset_config=str(self.toml), models=self.models,
                      selectors={"task": "t2v-1.3B"}, options={"max_train_epochs": 2, "optimizer_type": "adamw"},
                      output_dir=str(self.out), output_name="my_lora", runs_dir=str(self.runs))
        values.update(kwargs)
        return PlanSpec(**values)

    def plan(self, step: str, settings: Settings | None = None, **kwargs):
        return make_plan(settings or self.settings, self.spec(step, **kwargs), install=self.install)

    def cache_all(self) -> None:
        for step in ("cache_latents", "cache_text_encoder"):
            assert execute_plan(self.plan(step)).ok


@pytest.fixture
def work(tmp_path: Path, fake_musubi) -> Work:  # noqa: F811
    return Work(tmp_path, fake_musubi)


# ---------------------------------------------------------------- python -m executor plan

def cli(args: list[str], tmp: Path, fake, *, config: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MUSUBI_TUNER", "FAKE_MUSUBI"))}
    env.update(MUSUBI_TUNER_ENV=str(fake.venv), MUSUBI_TUNER_ROOT=str(fake.root),
               XDG_CONFIG_HOME=str(tmp / "config"), XDG_CACHE_HOME=str(tmp / "cache-home"))
    if config is not None:
        path = tmp / "user-config.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        env["MUSUBI_TUNER_NODES_CONFIG"] = str(path)
    return subprocess.run([sys.executable, "-m", "executor", "plan", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=90)


def write_spec(tmp: Path, data: dict, name: str = "spec.json") -> Path:
    path = tmp / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_plan_prints_the_exact_command_as_json(work: Work) -> None:
    spec = write_spec(work.tmp, {
        "architecture": "wan", "step": "train", "dataset_config": "data/dataset.toml",
        "models": {"dit": "models/dit.safetensors", "vae": "models/vae.safetensors"},
        "selectors": {"task": "t2v-1.3B"}, "options": {"optimizer_type": "adamw", "max_train_epochs": 1},
        "extra_args": "--max_grad_norm 0.5", "output_dir": "out", "output_name": "my_lora"})
    work.cache_all()
    cli_runs = work.tmp / "cli-runs"
    done = cli([str(spec), "--runs-dir", str(cli_runs)], work.tmp, work.fake,
               config={"env": {"HF_TOKEN": "hf_secret_value", "HF_HOME": "/hf"}})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    argv = out["argv"]
    assert argv[:3] == [str(work.fake.python), "-m", "accelerate.commands.launch"]
    script = argv.index(str(work.fake.script("wan_train_network")))
    args = argv[script + 1:]
    # Paths in the spec are relative to the spec's folder; the argv holds absolute ones.
    assert args[args.index("--dataset_config") + 1] == str(work.toml)
    assert args[args.index("--dit") + 1] == work.models["dit"]
    assert args[args.index("--output_dir") + 1] == str(work.out)
    assert args[-2:] == ["--max_grad_norm", "0.5"]
    assert out["cwd"] == str(work.fake.root)
    assert out["env"]["PYTHONPATH"].startswith(str(work.fake.src))
    assert out["env"]["HF_HOME"] == "/hf" and out["env"]["HF_TOKEN"] == "***"
    assert "hf_secret_value" not in done.stdout
    assert "PATH" in out["env"] and "HOME" not in out["env"]  # only what the plan adds
    assert out["warnings"] == []
    assert out["run_dir"].startswith(str(cli_runs)) and not cli_runs.exists()  # planning creates nothing


def test_plan_lists_every_problem_and_exits_non_zero(work: Work) -> None:
    spec = write_spec(work.tmp, {
        "architecture": "wan", "step": "train", "dataset_config": str(work.toml),
        "models": {"dit": str(work.tmp / "nope.safetensors")},
        "options": {"fp8_base": False, "fp8_scaled": True, "blocks_to_swap": 99},
        "extra_args": "--output_dir /elsewhere", "output_dir": "out", "output_name": "my_lora"})
    done = cli([str(spec)], work.tmp, work.fake)
    assert done.returncode == 1
    out = json.loads(done.stdout)
    assert out["ok"] is False
    names = {p["input"] for p in out["problems"]}
    assert {"models.dit", "options.fp8_scaled", "options.blocks_to_swap", "extra_args",
            "datasets[0].cache_directory"} <= names
    assert all(p["fix"] for p in out["problems"])
    assert "problems found; nothing was run" in done.stderr and "fix:" in done.stderr


def test_plan_refuses_an_unreadable_or_unknown_spec(work: Work) -> None:
    (work.tmp / "bad.json").write_text("{nope", encoding="utf-8")
    done = cli([str(work.tmp / "bad.json")], work.tmp, work.fake)
    assert done.returncode == 2 and json.loads(done.stdout)["problems"][0]["input"] == "spec"
    spec = write_spec(work.tmp, {"architecture": "wan", "step": "train", "colour": "blue"})
    done = cli([str(spec)], work.tmp, work.fake)
    assert done.returncode == 2 and "colour" in done.stdout
    spec = write_spec(work.tmp, {"architecture": "sdxl", "step": "train"})
    done = cli([str(spec)], work.tmp, work.fake)
    assert done.returncode == 1 and "unknown architecture" in done.stdout


def test_plan_run_prints_json_lines_and_fills_the_run_folder(work: Work) -> None:
    spec = write_spec(work.tmp, {"architecture": "wan", "step": "cache_latents", "dataset_config": str(work.toml),
                                 "models": {"vae": work.models["vae"]}})
    done = cli([str(spec), "--run", "--runs-dir", str(work.runs)], work.tmp, work.fake)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert "plan" in lines[0] and "result" in lines[-1]
    assert any(line.get("event", {}).get("type") == "items_found" for line in lines[1:-1])
    result = lines[-1]["result"]
    assert result["status"] == "succeeded" and len(result["files_produced"]) == 3
    (run_dir,) = work.runs.iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        [COMMAND_FILE, "dataset.toml", LOG_FILE, "plan.json", RESULT_FILE])


# ---------------------------------------------------------------- run folders

def test_a_training_run_folder_holds_everything(work: Work) -> None:
    work.cache_all()
    plan = work.plan("train")
    result = execute_plan(plan)
    assert result.ok
    run_dir = Path(plan.run_dir)
    assert run_dir.parent == work.runs and "train_my_lora" in run_dir.name
    record = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
    assert record["status"] == "succeeded" and record["exit_code"] == 0 and record["duration"] > 0
    assert str(work.out / "my_lora.safetensors") in record["files_produced"]
    assert str(work.out / "my_lora-000001.safetensors") in record["files_produced"]
    assert isinstance(record["last_loss"], float)
    assert (run_dir / "dataset.toml").read_bytes() == work.toml.read_bytes()
    log = (run_dir / LOG_FILE).read_bytes()
    assert b"steps:" in log and b"model saved." in log
    assert not (work.out / LOCK_NAME).exists()  # released
    assert plan.expected_outputs == [str(work.out / "my_lora.safetensors")]


def test_command_txt_has_the_command_for_three_shells(work: Work) -> None:
    plan = work.plan("cache_latents")
    execute_plan(plan)
    text = (Path(plan.run_dir) / COMMAND_FILE).read_text(encoding="utf-8")
    assert "# --- POSIX shells" in text and "# --- Windows cmd.exe ---" in text and "# --- Windows PowerShell ---" in text
    posix = text.split("# --- POSIX shells (bash, zsh, sh) ---\n")[1].split("\n")[0]
    assert "Set-Location" in text and "cd /d" in text
    # The POSIX block really runs the same command.
    for cached in (work.tmp / "data" / "cache").glob("*.safetensors"):
        cached.unlink()
    done = subprocess.run(["bash", "-c", posix], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(list((work.tmp / "data" / "cache").glob("*_wan.safetensors"))) == 3


def test_a_dataset_given_as_data_is_written_into_the_run_folder(work: Work) -> None:
    data = {"general": {"resolution": [64, 64], "caption_extension": ".txt"},
            "datasets": [{"image_directory": str(work.tmp / "data" / "images"),
                          "cache_directory": str(work.tmp / "cache2")}]}
    plan = work.plan("cache_latents", dataset_config=data)
    assert plan.dataset_config == os.path.join(plan.run_dir, "dataset.toml")
    assert execute_plan(plan).ok
    assert len(list((work.tmp / "cache2").glob("*_wan.safetensors"))) == 3


def test_a_failed_run_is_recorded(work: Work) -> None:
    work.cache_all()
    settings = replace(work.settings, env={"FAKE_MUSUBI_SCENARIO": "oom"})
    plan = work.plan("train", settings=settings)
    result = execute_plan(plan)
    assert not result.ok
    record = json.loads((Path(plan.run_dir) / RESULT_FILE).read_text(encoding="utf-8"))
    assert record["status"] == "failed" and record["failure_kind"] == "out_of_memory" and record["tail"]


def test_exit_zero_without_the_lora_is_no_output(work: Work) -> None:
    work.cache_all()
    settings = replace(work.settings, env={"FAKE_MUSUBI_SCENARIO": "no_output"})
    plan = work.plan("train", settings=settings)
    with pytest.raises(TrainerFailed) as info:
        execute_plan(plan, check=True)
    assert info.value.kind == "no_output"
    record = json.loads((Path(plan.run_dir) / RESULT_FILE).read_text(encoding="utf-8"))
    assert record["status"] == "no_output" and record["exit_code"] == 0


def test_run_folder_names_are_unique(work: Work) -> None:
    plans = [work.plan("cache_latents") for _ in range(20)]
    assert len({p.run_dir for p in plans}) == 20
    assert all("cache_latents_my_lora" in os.path.basename(p.run_dir) for p in plans)
    execute_plan(plans[0])
    assert work.plan("cache_latents").run_dir != plans[0].run_dir


# ---------------------------------------------------------------- never overwrite a LoRA

def test_an_existing_lora_is_never_overwritten_unless_asked(work: Work) -> None:
    work.cache_all()
    lora = media.fake_safetensors(work.out / "my_lora.safetensors", b'{"mine": "yes"}')
    before = lora.read_bytes()
    with pytest.raises(PreflightError) as info:
        work.plan("train")
    (problem,) = [p for p in info.value.problems if p.input == "output_name"]
    assert "would overwrite" in problem.message and "my_lora-2" in problem.fix
    assert lora.read_bytes() == before
    plan = work.plan("train", overwrite=True)
    assert execute_plan(plan).ok and lora.read_bytes() != before


def test_a_lora_that_appears_after_planning_is_not_overwritten(work: Work) -> None:
    work.cache_all()
    plan = work.plan("train")
    lora = media.fake_safetensors(work.out / "my_lora.safetensors", b'{"late": "arrival"}')
    with pytest.raises(ConfigError) as info:
        execute_plan(plan)
    assert "new output_name" in info.value.hint
    assert lora.read_bytes().endswith(b'{"late": "arrival"}')
    assert not Path(plan.run_dir).exists()


# ---------------------------------------------------------------- locks

def test_a_second_run_on_the_same_folder_is_refused(work: Work) -> None:
    work.cache_all()
    slow = replace(work.settings, env={"FAKE_MUSUBI_STEP_SECONDS": "0.4"})
    first = work.plan("train", settings=slow)
    second = work.plan("train", settings=slow)
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("result", execute_plan(first)))
    thread.start()
    lock = work.out / LOCK_NAME
    deadline = time.monotonic() + 20
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lock.exists()
    with pytest.raises(RunLocked) as info:
        execute_plan(second)
    assert "another run" in info.value.message and "touched nothing" in info.value.message
    assert not Path(second.run_dir).exists()
    thread.join(60)
    assert outcome["result"].ok
    record = json.loads((Path(first.run_dir) / RESULT_FILE).read_text(encoding="utf-8"))
    assert record["status"] == "succeeded"
    assert not lock.exists()


def test_a_live_lock_refuses_and_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    with RunLock([str(folder)], "run-a"):
        with pytest.raises(RunLocked):
            RunLock([str(folder)], "run-b").acquire()
        assert json.loads((folder / LOCK_NAME).read_text())["run_dir"] == "run-a"
    assert not (folder / LOCK_NAME).exists()
    # A lock left by a process that is gone.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (folder / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "started": 1.0,
                                                "host": __import__("socket").gethostname(), "run_dir": "old"}))
    with RunLock([str(folder)], "run-c"):
        assert json.loads((folder / LOCK_NAME).read_text())["run_dir"] == "run-c"
    # A lock whose pid now belongs to another process (pid reuse): start time differs.
    (folder / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "started": 1.0,
                                                "host": __import__("socket").gethostname(), "run_dir": "old"}))
    with RunLock([str(folder)], "run-d"):
        pass


def test_cache_steps_lock_their_cache_folders(work: Work) -> None:
    plan = work.plan("cache_latents")
    assert plan.lock_dirs == [str(work.tmp / "data" / "cache")]
    with RunLock(plan.lock_dirs, "someone-else"):
        with pytest.raises(RunLocked):
            execute_plan(plan)
    assert not Path(plan.run_dir).exists()


def test_spec_paths_are_relative_to_the_spec_folder_but_hugging_face_ids_stay(tmp_path: Path) -> None:
    (tmp_path / "run-state").mkdir()
    spec = PlanSpec.from_dict({"architecture": "kandinsky5", "step": "cache_text_encoder",
                               "dataset_config": "d.toml",
                               "models": {"text_encoder_qwen": "Qwen/Qwen2.5-VL-7B-Instruct",
                                          "vae": "models/vae.safetensors", "text_encoder_clip": "./clip"},
                               "options": {"resume": "run-state"}, "output_dir": "out"}, base_dir=tmp_path)
    assert spec.dataset_config == str(tmp_path / "d.toml")
    assert spec.models == {"text_encoder_qwen": "Qwen/Qwen2.5-VL-7B-Instruct",
                           "vae": str(tmp_path / "models" / "vae.safetensors"),
                           "text_encoder_clip": str(tmp_path / "clip")}
    assert spec.options["resume"] == str(tmp_path / "run-state") and spec.output_dir == str(tmp_path / "out")
    # a resume value that is no folder there is a run's id (its folder name), kept as it is
    named = PlanSpec.from_dict({"architecture": "wan", "step": "train", "options": {"resume": "20250101-my_lora"}},
                               base_dir=tmp_path)
    assert named.options["resume"] == "20250101-my_lora"
    with pytest.raises(ConfigError):
        PlanSpec.from_dict({"architecture": "wan"})


# ---------------------------------------------------------------- caller's run folder, launcher, cache check

def test_a_given_run_folder_is_used_locked_and_may_be_the_output_folder(work: Work) -> None:
    work.cache_all()
    run_dir = work.tmp / "my-run"
    plan = work.plan("train", run_dir=str(run_dir), output_dir=str(run_dir))
    assert plan.run_dir == str(run_dir) and not run_dir.exists()  # planning creates nothing
    assert str(run_dir) in plan.lock_dirs
    seen: list[bool] = []
    assert execute_plan(plan, on_event=lambda e: seen.append((run_dir / LOCK_NAME).exists())).ok
    assert all(seen) and seen, "the run folder is locked while the run writes into it"
    assert not (run_dir / LOCK_NAME).exists()
    assert (run_dir / "my_lora.safetensors").is_file() and (run_dir / RESULT_FILE).is_file()
    with pytest.raises(PreflightError) as info:
        work.plan("train", run_dir=str(run_dir), output_dir=str(run_dir / "again"))
    assert any(p.input == "run_dir" and "already exists" in p.message for p in info.value.problems)


def test_a_refused_run_leaves_no_run_folder_it_made_before_locking(work: Work) -> None:
    work.cache_all()
    run_dir = work.tmp / "refused-run"
    plan = work.plan("train", run_dir=str(run_dir), output_dir=str(run_dir))
    with RunLock([str(work.tmp / "data" / "cache"), str(work.out)], "someone-else"):
        plan.lock_dirs.append(str(work.out))
        with pytest.raises(RunLocked):
            execute_plan(plan)
    assert not run_dir.exists()


def test_the_python_launcher_runs_training_in_one_process(work: Work) -> None:
    work.cache_all()
    plan = work.plan("train", launcher="python", accelerate={"num_processes": 2})
    argv = list(plan.command.argv)
    assert argv[:2] == [str(work.fake.python), str(work.fake.script("wan_train_network"))]
    assert "accelerate.commands.launch" not in argv
    assert any(p.input == "launcher" and "num_processes 2" in p.message for p in plan.warnings)
    accelerate = work.plan("train", accelerate={"num_processes": 1})
    assert accelerate.command.argv[1:3] == ("-m", "accelerate.commands.launch")
    # the musubi arguments are the same either way
    assert argv[2:] == list(accelerate.command.argv[accelerate.command.argv.index(argv[1]) + 1:])
    with pytest.raises(PreflightError) as info:
        work.plan("train", launcher="torchrun")
    assert [p.input for p in info.value.problems] == ["launcher"]


def test_the_cache_check_alone_can_be_skipped_for_a_dry_run_of_the_chain(work: Work) -> None:
    with pytest.raises(PreflightError) as info:
        work.plan("train")
    assert all(p.input.endswith(".cache_directory") for p in info.value.problems)
    plan = make_plan(work.settings, work.spec("train"), install=work.install, check_caches=False)
    assert "--dataset_config" in plan.command.argv
    with pytest.raises(PreflightError) as other:  # every other check still applies
        make_plan(work.settings, work.spec("train", output_name="bad/name"), install=work.install,
                  check_caches=False)
    assert [p.input for p in other.value.problems] == ["output_name"]


def test_taking_over_an_unreadable_lock_never_removes_a_competitors_fresh_lock(tmp_path: Path) -> None:
    # Two runs find the same garbage lock (a torn write, older than the grace time); the
    # competitor takes it over first and writes its own lock. Our take-over then moves the
    # competitor's lock, not the garbage: it must be put back, or both runs would write.
    from executor.runs.locks import _take_over

    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / LOCK_NAME
    competitor = RunLock([str(folder)], "run-competitor")
    competitor.acquire()
    try:
        _take_over(str(path), None)  # None: what we read before the competitor replaced it
        assert json.loads(path.read_text())["run_dir"] == "run-competitor"
        with pytest.raises(RunLocked):
            RunLock([str(folder)], "run-late").acquire()
    finally:
        competitor.release()
    assert not path.exists()
    assert sorted(p.name for p in folder.iterdir()) == []


def test_a_lock_that_cannot_be_written_is_not_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    folder = tmp_path / "out"
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fd: int, *args: object) -> None:
            self.fh = real_fdopen(fd, *args)

        def __enter__(self) -> "FullDisk":
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", FullDisk)
    with pytest.raises(OSError):
        RunLock([str(folder)], "run-a").acquire()
    monkeypatch.undo()
    assert not (folder / LOCK_NAME).exists()
    with RunLock([str(folder)], "run-b"):  # not refused as "another run is writing"
        pass


def test_gpu_ids_beyond_the_gpus_the_probe_saw_are_refused_before_launch(work: Work) -> None:
    from executor.setup.probe import ProbeReport

    work.cache_all()
    two = ProbeReport(python="python", torch_version="2.5.1", cuda_available=True, devices=("GPU A", "GPU B"))
    spec = work.spec("train", accelerate={"num_processes": 2, "gpu_ids": "1,2"})
    with pytest.raises(PreflightError) as info:
        make_plan(work.settings, spec, install=work.install, probe_report=two)
    problem = next(p for p in info.value.problems if p.input == "accelerate.gpu_ids")
    assert "names GPU 2, but the musubi venv sees 2 GPU(s) (0: GPU A, 1: GPU B)" in problem.message
    assert "0 to 1" in problem.fix
    ok = make_plan(work.settings, work.spec("train", accelerate={"num_processes": 2, "gpu_ids": "0,1"}),
                   install=work.install, probe_report=two)
    assert ok.command.argv[ok.command.argv.index("--gpu_ids") + 1] == "0,1"
    # no CUDA in the probe (or no probe): the count is unknown, so nothing is refused on it
    no_cuda = ProbeReport(python="python", torch_version="2.5.1")
    assert make_plan(work.settings, spec, install=work.install, probe_report=no_cuda).command is not None

"""Continuing a stopped run, through the executor with the fake musubi (which resumes exactly as
musubi v0.3.4 does: counters back to 0, files numbered from 1, the scheduler position restored,
no batch skipped, the loop sized from this run's arguments).

The case of issue 12: an 8-epoch cosine run stopped after epoch 3, continued -> 8 epochs of steps
in all, files -000001..-000007 + the final one, nothing overwritten, one loss curve, and the
learning rate at every step equal to an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest

import media
from executor.errors import Cancelled, PreflightError
from executor.runs.execute import execute_plan
from executor.runs.plan import PlanSpec, make_plan
from executor.runs.resume import continuable_runs, lookup_source
from executor.runs.trust import Registry, path_key
from executor.setup.discovery import resolve_install
from executor.setup.settings import Settings
from fakes import fake_musubi  # noqa: F401  (session fixture)

pytestmark = pytest.mark.timeout(180)

EPOCHS, SPE = 8, 3  # 3 images, batch 1: 3 steps per epoch


class Runs:
    """Node-style runs (the run folder is the output folder) of one dataset with the fake."""

    def __init__(self, tmp: Path, fake: Any) -> None:
        self.tmp, self.fake = tmp, fake
        self.toml = fake.make_dataset(tmp / "data")
        self.models = {name: str(media.fake_safetensors(tmp / "models" / f"{name}.safetensors"))
                       for name in ("dit", "vae", "t5")}
        self.runs = tmp / "runs"

    def settings(self, **env: str) -> Settings:
        return Settings(venv_path=str(self.fake.venv), root_path=str(self.fake.root),
                        env={"FAKE_MUSUBI_STEP_SECONDS": "0.05", **env})

    def plan(self, name: str, *, settings: Settings, step: str = "train", **options: Any) -> Any:
        run_dir = self.runs / name
        opts = {"max_train_epochs": EPOCHS, "optimizer_type": "adamw", "lr_scheduler": "cosine",
                "lr_warmup_steps": 2, "learning_rate": 1e-3, "save_every_n_epochs": 1, "save_state": True,
                "seed": 7, **options}
        spec = PlanSpec(architecture="wan", step=step, dataset_config=str(self.toml), models=self.models,
                        selectors={"task": "t2v-1.3B"}, options=opts, output_dir=str(run_dir), output_name="my_lora",
                        run_dir=str(run_dir), launcher="python")
        return make_plan(settings, spec, install=resolve_install(settings), use_probe=False)

    def cache(self) -> None:
        settings = self.settings()
        for step in ("cache_latents", "cache_text_encoder"):
            spec = PlanSpec(architecture="wan", step=step, dataset_config=str(self.toml), models=self.models,
                            selectors={"task": "t2v-1.3B"}, runs_dir=str(self.runs))
            assert execute_plan(make_plan(settings, spec, install=resolve_install(settings), use_probe=False)).ok


def lr_log(path: Path) -> list[float]:
    return [json.loads(line)["lr"] for line in path.read_text(encoding="utf-8").splitlines()]


def assert_one_curve(steps: list[int], parent: Path, resumed: int, total: int) -> None:
    """Steps strictly increasing to the plan's last; up to the resume point exactly the parent's
    recorded points. (The foreground parser shows only the newest of the frames one read brings,
    so a fake step of 50 ms on a busy machine may leave a step out of a loss.jsonl; real steps
    take seconds.)"""
    parent_steps = [json.loads(line)["step"] for line in (parent / "loss.jsonl").read_text(encoding="utf-8").splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == total, steps
    assert [s for s in steps if s <= resumed] == [s for s in parent_steps if s <= resumed]
    assert len([s for s in steps if s > resumed]) >= (total - resumed) // 2, steps


def files(folder: Path) -> dict[str, str]:
    """name -> sha256 of every file under ``folder`` (relative names)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def loras(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.safetensors"))


def stop_after_state(registry: Registry, state: Path):
    """should_cancel: True once the state is in the record (the fake then waits to be stopped)."""
    return lambda: registry.state(str(state)) is not None


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own state registry: which runs are offered must not depend on the runs of
    other tests in the session (another test's run may be called "first" too)."""
    monkeypatch.setenv("MUSUBI_TUNER_NODES_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def runs(tmp_path: Path, fake_musubi: Any) -> Runs:  # noqa: F811
    r = Runs(tmp_path, fake_musubi)
    r.cache()
    return r


def test_a_stopped_cosine_run_continues_to_exactly_the_uninterrupted_run(runs: Runs, tmp_path: Path) -> None:
    registry = Registry()
    # The run as it should have gone: 8 epochs, nothing stopped.
    whole_lr = tmp_path / "whole-lr.jsonl"
    whole = runs.plan("whole", settings=runs.settings(FAKE_MUSUBI_LR_LOG=str(whole_lr)))
    assert execute_plan(whole).ok
    assert len(lr_log(whole_lr)) == EPOCHS * SPE

    # The same run stopped after epoch 3 (a Cancel once its state is written).
    first_lr = tmp_path / "first-lr.jsonl"
    first = runs.plan("first", settings=runs.settings(FAKE_MUSUBI_LR_LOG=str(first_lr),
                                                     FAKE_MUSUBI_PAUSE_AFTER_STEP=str(3 * SPE)))
    first_dir = Path(first.run_dir)
    with pytest.raises(Cancelled):
        execute_plan(first, should_cancel=stop_after_state(registry, first_dir / "my_lora-000003-state"), check=True)
    assert loras(first_dir) == ["my_lora-000001.safetensors", "my_lora-000002.safetensors",
                                "my_lora-000003.safetensors"]
    # states are kept to the newest two
    assert sorted(p.name for p in first_dir.glob("*-state")) == ["my_lora-000002-state", "my_lora-000003-state"]
    offered = {r["run_id"]: r for r in continuable_runs(registry)}
    assert offered["first"]["epoch"] == 3 and offered["first"]["step"] == 9 and offered["first"]["epochs"] == EPOCHS
    before = files(first_dir)

    # Continued: a new run folder, the rest of the plan, the original schedule.
    second_lr = tmp_path / "second-lr.jsonl"
    second = runs.plan("second", settings=runs.settings(FAKE_MUSUBI_LR_LOG=str(second_lr)),
                       resume=str(first_dir))
    args = second.command.argv[second.command.argv.index(str(runs.fake.script("wan_train_network"))) + 1:]
    assert args[args.index("--max_train_epochs") + 1] == "5"
    assert args[args.index("--lr_scheduler_type") + 1] == "transformers.optimization.get_cosine_schedule_with_warmup"
    assert args[args.index("--output_name") + 1] == "my_lora-continued"
    assert args[-2] == "--resume" and not args[-1].startswith(str(first_dir))  # the verified copy
    assert execute_plan(second).ok
    second_dir = Path(second.run_dir)

    assert files(first_dir) == before, "the stopped run's files were changed"
    assert loras(second_dir) == [f"my_lora-{n:06d}.safetensors" for n in range(4, 8)] + ["my_lora.safetensors"]
    assert sorted(loras(first_dir) + loras(second_dir)) == (
        [f"my_lora-{n:06d}.safetensors" for n in range(1, 8)] + ["my_lora.safetensors"])
    assert sorted(p.name for p in second_dir.glob("*-state")) == ["my_lora-000007-state", "my_lora-state"]
    assert not list(second_dir.glob("*continued*")), "musubi's own names were all renamed"
    link = json.loads((second_dir / "resume.json").read_text(encoding="utf-8"))
    assert link["parent_run"] == "first" and link["resume_points"] == [9] and link["resumed_at"]["epoch"] == 3

    # One loss curve: the stopped run's points up to step 9, then the continuation's up to 24, each
    # step once, the epochs of the whole plan.
    points = [json.loads(line) for line in (second_dir / "loss.jsonl").read_text(encoding="utf-8").splitlines()]
    assert_one_curve([p["step"] for p in points], first_dir, 3 * SPE, EPOCHS * SPE)
    epochs = [p["epoch"] for p in points]  # (a step at an epoch's end may carry the next epoch's number)
    assert epochs == sorted(epochs) and epochs[0] == 1 and epochs[-1] == EPOCHS
    assert max(epochs[:3 * SPE]) <= 4 and min(epochs[3 * SPE:]) >= 4
    assert all(p["total"] == EPOCHS * SPE for p in points[9:])
    result = json.loads((second_dir / "result.json").read_text(encoding="utf-8"))
    assert result["status"] == "succeeded" and result["steps"] == EPOCHS * SPE

    # The learning rate the fake used at every step: the uninterrupted run's.
    stopped = lr_log(first_lr)[:3 * SPE]
    continued = lr_log(second_lr)
    assert len(continued) == (EPOCHS - 3) * SPE
    assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15) for a, b in zip(stopped + continued, lr_log(whole_lr)))
    assert lr_log(whole_lr)[-1] < 0.01 * max(lr_log(whole_lr))  # a real cosine decay to ~0

    # The chain is one run now: the stopped run is no longer offered, the finished one neither.
    ids = [r["run_id"] for r in continuable_runs(registry)]
    assert "first" not in ids and "second" not in ids


def test_musubis_own_resume_collapses_the_cosine_schedule(runs: Runs, tmp_path: Path) -> None:
    """What the pack corrects (reference §4): --resume with --max_train_epochs N-k alone
    rebuilds the cosine for the shorter run; the fake does the same, so the test above can fail."""
    registry = Registry()
    first = runs.plan("naive-first", settings=runs.settings(FAKE_MUSUBI_PAUSE_AFTER_STEP=str(3 * SPE)))
    state = Path(first.run_dir) / "my_lora-000003-state"
    with pytest.raises(Cancelled):
        execute_plan(first, should_cancel=stop_after_state(registry, state), check=True)
    whole_lr, naive_lr = tmp_path / "whole.jsonl", tmp_path / "naive.jsonl"
    assert execute_plan(runs.plan("naive-whole", settings=runs.settings(FAKE_MUSUBI_LR_LOG=str(whole_lr)))).ok
    naive = runs.plan("naive-second", settings=runs.settings(FAKE_MUSUBI_LR_LOG=str(naive_lr)),
                      max_train_epochs=EPOCHS - 3)
    # musubi's own command: the state folder itself, no schedule arguments, its own name
    argv = list(naive.command.argv) + ["--resume", str(state)]
    from dataclasses import replace

    naive = replace(naive, command=replace(naive.command, argv=tuple(argv)), record=None)
    assert execute_plan(naive).ok
    naive_dir = Path(naive.run_dir)
    # counters reset: epoch files from 1 again, and "epoch 1/5" in the log
    assert loras(naive_dir)[:2] == ["my_lora-000001.safetensors", "my_lora-000002.safetensors"]
    assert "epoch 1/5" in (naive_dir / "run.log").read_text(encoding="utf-8")
    expected, got = lr_log(whole_lr)[3 * SPE:], lr_log(naive_lr)
    assert math.isclose(got[0], expected[0])  # the first step uses the restored optimizer's rate
    assert got[1] < 0.6 * expected[1]  # then the schedule drops at once
    assert min(got) == 0.0 or got[-1] > got[-2], "the transformers cosine reaches 0 early (and rises again)"


def test_a_state_whose_file_changed_is_refused_before_launch(runs: Runs, tmp_path: Path) -> None:
    registry = Registry()
    first = runs.plan("changed", settings=runs.settings(FAKE_MUSUBI_PAUSE_AFTER_STEP=str(2 * SPE)))
    state = Path(first.run_dir) / "my_lora-000002-state"
    with pytest.raises(Cancelled):
        execute_plan(first, should_cancel=stop_after_state(registry, state), check=True)
    pid_file = tmp_path / "pids"
    second = runs.plan("changed-2", settings=runs.settings(FAKE_MUSUBI_PIDFILE=str(pid_file)), resume="changed")
    # a client of ComfyUI could upload into output/: the state is swapped after planning
    (state / "random_states_0.pkl").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    from executor.runs.resume import ResumeRefused

    with pytest.raises(ResumeRefused) as refused:
        execute_plan(second)
    assert "random_states_0.pkl changed since musubi wrote it" in refused.value.message
    assert "resume list" in refused.value.hint
    assert not Path(second.run_dir).exists() and not pid_file.exists(), "nothing was launched or written"
    # planning refuses too once the files differ
    with pytest.raises(PreflightError):
        runs.plan("changed-3", settings=runs.settings(), resume=str(state), network_dim=8)


@pytest.mark.parametrize("value, why", [
    ("no-such-run", "there is no run 'no-such-run'"),
    ("/tmp/planted-state", "is not a training state or run this pack recorded"),
])
def test_a_resume_value_the_pack_did_not_record_is_refused(value: str, why: str) -> None:
    from executor.runs.resume import ResumeRefused

    with pytest.raises(ResumeRefused) as refused:
        lookup_source(value)
    assert why in refused.value.message and "trust-state" in refused.value.hint


def test_another_dim_dataset_or_architecture_is_refused_and_ignored_settings_are_notes(runs: Runs) -> None:
    registry = Registry()
    first = runs.plan("compare", settings=runs.settings(FAKE_MUSUBI_PAUSE_AFTER_STEP=str(SPE)))
    with pytest.raises(Cancelled):
        execute_plan(first, should_cancel=stop_after_state(registry, Path(first.run_dir) / "my_lora-000001-state"),
                     check=True)
    with pytest.raises(PreflightError) as refused:
        runs.plan("compare-2", settings=runs.settings(), resume="compare", network_dim=8, network_alpha=4)
    text = str(refused.value)
    assert "network_dim was" in text and "network_alpha was" in text and "(none) to start fresh" in text
    other = runs.fake.make_dataset(runs.tmp / "other", images=4)
    spec = PlanSpec(architecture="wan", step="train", dataset_config=str(other), models=runs.models,
                    selectors={"task": "t2v-1.3B"}, options={"resume": "compare", "max_train_epochs": EPOCHS},
                    output_dir=str(runs.runs / "c3"), output_name="my_lora", run_dir=str(runs.runs / "c3"))
    settings = runs.settings()
    with pytest.raises(PreflightError) as refused:
        make_plan(settings, spec, install=resolve_install(settings), use_probe=False)
    assert "the dataset differs" in str(refused.value)
    spec = PlanSpec(architecture="qwen_image", step="train", dataset_config=str(runs.toml),
                    models={"dit": runs.models["dit"], "vae": runs.models["vae"], "text_encoder": runs.models["t5"]},
                    options={"resume": "compare"}, output_dir=str(runs.runs / "c4"), output_name="my_lora",
                    run_dir=str(runs.runs / "c4"))
    with pytest.raises(PreflightError) as refused:
        make_plan(settings, spec, install=resolve_install(settings), use_probe=False)
    assert "the run trained wan, this plan trains qwen_image" in str(refused.value)
    # musubi would ignore a new learning rate: the plan says so and goes on
    plan = runs.plan("compare-5", settings=settings, resume="compare", learning_rate=5e-4, max_train_epochs=10)
    notes = [p.message for p in plan.warnings]
    assert any("learning_rate 0.0005 is not used" in n for n in notes), notes
    assert any("max_train_epochs 10 is not used" in n for n in notes), notes
    args = list(plan.command.argv)
    assert args[args.index("--max_train_epochs") + 1] == str(EPOCHS - 1)


def test_the_record_lives_in_the_data_folder_and_names_paths_by_their_real_path(tmp_path: Path) -> None:
    registry = Registry()
    assert Path(registry.path).parent == Path(__import__("os").environ["MUSUBI_TUNER_NODES_DATA_DIR"])
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert path_key(str(tmp_path / "link")) == path_key(str(tmp_path / "real"))


def test_a_continuation_stopped_again_is_continued_again_as_one_run(runs: Runs, tmp_path: Path) -> None:
    """Two stops: after epoch 3, and after epoch 5 (the continuation's second); the third part
    ends the plan with the whole run's numbering, schedule and curve."""
    registry = Registry()
    logs = [tmp_path / f"lr-{i}.jsonl" for i in range(4)]
    assert execute_plan(runs.plan("w", settings=runs.settings(FAKE_MUSUBI_LR_LOG=str(logs[0])))).ok
    first = runs.plan("a", settings=runs.settings(FAKE_MUSUBI_LR_LOG=str(logs[1]),
                                                 FAKE_MUSUBI_PAUSE_AFTER_STEP=str(3 * SPE)))
    with pytest.raises(Cancelled):
        execute_plan(first, should_cancel=stop_after_state(registry, Path(first.run_dir) / "my_lora-000003-state"),
                     check=True)
    second = runs.plan("b", settings=runs.settings(FAKE_MUSUBI_LR_LOG=str(logs[2]),
                                                  FAKE_MUSUBI_PAUSE_AFTER_STEP=str(2 * SPE)), resume="a")
    # musubi's own name and numbering while it runs (its epoch 2 is the run's epoch 5), renamed when it ends
    with pytest.raises(Cancelled):
        execute_plan(second, check=True, should_cancel=stop_after_state(
            registry, Path(second.run_dir) / "my_lora-continued-000002-state"))
    assert registry.state(str(Path(second.run_dir) / "my_lora-000005-state"))["epoch"] == 5
    assert loras(Path(second.run_dir)) == ["my_lora-000004.safetensors", "my_lora-000005.safetensors"]
    assert [r["run_id"] for r in continuable_runs(registry) if r["run_id"] in ("a", "b")] == ["b"]
    third = runs.plan("c", settings=runs.settings(FAKE_MUSUBI_LR_LOG=str(logs[3])), resume="b")
    args = list(third.command.argv)
    assert args[args.index("--max_train_epochs") + 1] == "3"
    assert execute_plan(third).ok
    third_dir = Path(third.run_dir)
    assert loras(third_dir) == ["my_lora-000006.safetensors", "my_lora-000007.safetensors", "my_lora.safetensors"]
    assert json.loads((third_dir / "resume.json").read_text(encoding="utf-8"))["resume_points"] == [9, 15]
    points = [json.loads(line)["step"] for line in (third_dir / "loss.jsonl").read_text(encoding="utf-8").splitlines()]
    assert_one_curve(points, Path(second.run_dir), 5 * SPE, EPOCHS * SPE)
    got = lr_log(logs[1])[:3 * SPE] + lr_log(logs[2])[:2 * SPE] + lr_log(logs[3])
    assert len(got) == EPOCHS * SPE
    assert all(math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15) for a, b in zip(got, lr_log(logs[0])))

"""The pieces of continuing a run, without processes: what is left of a plan, the schedule options
for every scheduler the node offers (checked against the fake musubi's transformers formulas:
the continued schedule equals the original at every step), argument parsing, renaming without
replacing anything, finishing the renaming of a continuation that was killed, the record of
states, and the resume mark on the loss curve."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from executor.runs.continuation import (Continuation, RAW_SUFFIX, int_or_float, parse_args, remaining_options,
                                        schedule_options)
from executor.runs.saves import renumber
from executor.runs.states import MARKER, StateChanged, hash_files, is_complete, parse_state_name, stage_copy
from executor.runs.trust import Registry

FAKE_STATE = Path(__file__).resolve().parent / "fixtures" / "fake_musubi" / "_fake_state.py"


def fake_state() -> Any:
    spec = importlib.util.spec_from_file_location("_fake_state_for_tests", FAKE_STATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def namespace(**values: Any) -> argparse.Namespace:
    base = dict(lr_scheduler="constant", lr_warmup_steps=0, lr_scheduler_num_cycles=1, lr_scheduler_power=1.0,
                lr_scheduler_min_lr_ratio=None, lr_scheduler_type="", lr_scheduler_args=None, learning_rate=1e-3)
    base.update(values)
    return argparse.Namespace(**base)


@pytest.mark.parametrize("name, extra", [
    ("constant", {}), ("constant_with_warmup", {}), ("linear", {}), ("cosine", {}),
    ("cosine_with_restarts", {"--lr_scheduler_num_cycles": ["3"]}), ("polynomial", {"--lr_scheduler_power": ["2"]}),
    ("cosine_with_min_lr", {"--lr_scheduler_min_lr_ratio": ["0.1"]}),
])
@pytest.mark.parametrize("warmup", ["4", "0.25"])
def test_the_continued_schedule_is_the_original_at_every_step(name: str, extra: dict, warmup: str) -> None:
    if name == "constant" and warmup != "0":
        warmup = "0"  # musubi refuses warm-up for the constant schedule
    total, stopped = 24, 9
    state = fake_state()
    origin = {"--lr_scheduler": [name], "--lr_warmup_steps": [warmup], **extra}
    args = {flag[2:]: values[0] for flag, values in origin.items()}
    original = namespace(**{**args, "lr_warmup_steps": state.int_or_float(warmup),
                            "lr_scheduler_num_cycles": int(args.get("lr_scheduler_num_cycles", 1)),
                            "lr_scheduler_power": float(args.get("lr_scheduler_power", 1)),
                            "lr_scheduler_min_lr_ratio": float(args["lr_scheduler_min_lr_ratio"])
                            if "lr_scheduler_min_lr_ratio" in args else None})
    whole, _ = state.build_schedule(original, total)
    options, note = schedule_options(origin, total)
    assert note is None
    continued_args = vars(original).copy()
    if "lr_warmup_steps" in options:
        continued_args["lr_warmup_steps"] = options["lr_warmup_steps"]
    if "lr_scheduler_type" in options:
        continued_args.update(lr_scheduler_type=options["lr_scheduler_type"],
                              lr_scheduler_args=options["lr_scheduler_args"])
    continued, _ = state.build_schedule(argparse.Namespace(**continued_args), total - stopped)
    for position in range(stopped, total + 1):
        assert math.isclose(continued(position), whole(position), rel_tol=1e-12, abs_tol=1e-15), (name, position)
    if name not in ("constant", "constant_with_warmup"):
        # musubi's own rebuild for the shorter run differs somewhere after the stop
        naive, _ = state.build_schedule(original, total - stopped)
        assert any(not math.isclose(naive(p), whole(p), abs_tol=1e-12) for p in range(stopped, total))


def test_a_custom_scheduler_or_schedule_free_optimizer_gets_no_override() -> None:
    options, note = schedule_options({"--lr_scheduler_type": ["torch.optim.lr_scheduler.CosineAnnealingLR"]}, 100)
    assert options == {} and "custom lr_scheduler_type" in note
    assert schedule_options({"--optimizer_type": ["RAdamScheduleFree"], "--lr_scheduler": ["cosine"]}, 100) == ({},
                                                                                                                None)
    options, _ = schedule_options({"--lr_scheduler": ["cosine"]}, 100, processes=2)
    assert "num_training_steps=200" in options["lr_scheduler_args"]  # max_train_steps x processes, as musubi


def test_what_is_left_of_a_plan() -> None:
    assert remaining_options("epoch", 3, 9, 8, 24) == {"max_train_epochs": 5, "max_train_steps": None}
    assert remaining_options("step", 1, 5, 8, 24) == {"max_train_steps": 19, "max_train_epochs": None}
    assert remaining_options("epoch", 3, 300, None, 1000) == {"max_train_steps": 700, "max_train_epochs": None}
    assert remaining_options("epoch", 8, 24, 8, 24) == {}
    assert remaining_options("final", None, None, 8, 24) == {}


def test_arguments_and_musubis_int_or_float() -> None:
    args = parse_args(["--dit", "/m/dit.safetensors", "--sdpa", "--optimizer_args", "a=1", "b=2", "--seed=7"])
    assert args == {"--dit": ["/m/dit.safetensors"], "--sdpa": [], "--optimizer_args": ["a=1", "b=2"], "--seed": ["7"]}
    assert (int_or_float("10"), int_or_float("0.1"), int_or_float("10%"), int_or_float("1.0"), int_or_float(None)) == (
        10, 0.1, 0.1, 1, None)


def test_state_names_complete_folders_and_the_verified_copy(tmp_path: Path) -> None:
    assert parse_state_name("my-000003-state", "my") == ("epoch", 3)
    assert parse_state_name("my-step00000100-state", "my") == ("step", 100)
    assert parse_state_name("my-state", "my") == ("final", None)
    assert parse_state_name("my-000003-state", "my-000003") == ("final", None)
    assert parse_state_name("other-000003-state", "my") is None
    state = tmp_path / "my-000003-state"
    state.mkdir()
    (state / "optimizer.bin").write_bytes(b"o" * 5000)
    assert not is_complete(str(state))
    (state / MARKER).write_bytes(b"r")
    assert is_complete(str(state))
    recorded = hash_files(str(state))
    assert set(recorded) == {"optimizer.bin", MARKER} and recorded["optimizer.bin"]["size"] == 5000
    (state / "scaler.pt").write_bytes(b"added later")  # not recorded: never copied
    copied = tmp_path / "staging" / "copy"
    assert stage_copy(str(state), str(copied), recorded) == 5001
    assert sorted(os.listdir(copied)) == sorted([MARKER, "optimizer.bin"])
    (state / "optimizer.bin").write_bytes(b"x" * 5000)
    with pytest.raises(StateChanged) as changed:
        stage_copy(str(state), str(tmp_path / "staging" / "again"), recorded)
    assert changed.value.problems == ["optimizer.bin changed since musubi wrote it (SHA-256 differs)"]
    assert not (tmp_path / "staging" / "again").exists()
    os.symlink(tmp_path / "elsewhere", state / "link")
    assert "link" not in hash_files(str(state))


def test_renaming_to_the_runs_numbering_never_replaces_a_file(tmp_path: Path) -> None:
    raw = "my" + RAW_SUFFIX
    for name in (f"{raw}-000001.safetensors", f"{raw}-000002.safetensors", f"{raw}.safetensors",
                 f"{raw}-step00000004.safetensors", f"{raw}-000001-ema.safetensors"):
        (tmp_path / name).write_bytes(name.encode())
    (tmp_path / f"{raw}-000001-state").mkdir()
    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / f"{raw}_e000001_00_20260101120000_42_000.png").write_bytes(b"png")
    (tmp_path / "sample" / f"{raw}_000004_00_20260101120000_42_000.png").write_bytes(b"png")
    (tmp_path / "my-000005.safetensors").write_bytes(b"someone else's")  # the name raw -000002 would take
    cont = Continuation(source_state="", files={}, parent_run_dir="/p", parent_run_id="p", final_name="my",
                        raw_name=raw, epoch_offset=3, step_offset=9)
    notes = renumber(str(tmp_path), cont)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "my-000004.safetensors" in names and "my-000004-state" in names and "my.safetensors" in names
    assert "my-step00000013.safetensors" in names and "my-000004-ema.safetensors" in names
    assert (tmp_path / "my-000005.safetensors").read_bytes() == b"someone else's"
    assert f"{raw}-000002.safetensors" in names and notes == [
        f"{raw}-000002.safetensors kept musubi's name: my-000005.safetensors already exists"]
    assert sorted(p.name for p in (tmp_path / "sample").iterdir()) == [
        "my_000013_00_20260101120000_42_000.png", "my_e000004_00_20260101120000_42_000.png"]
    assert renumber(str(tmp_path), cont) == notes  # nothing else moves a second time


def test_a_continuation_killed_before_renaming_is_renamed_when_looked_at(tmp_path: Path) -> None:
    from executor.runs.resume import lookup_source

    registry = Registry(str(tmp_path / "states.db"))
    parent, child = tmp_path / "parent", tmp_path / "child"
    parent.mkdir()
    child.mkdir()
    registry.add_run(str(parent), {"architecture": "wan", "args": {"--max_train_epochs": ["8"]},
                                   "facts": {"total_steps": 24, "batches_per_epoch": 3}, "status": "cancelled"})
    raw = child / f"my{RAW_SUFFIX}-000001-state"
    raw.mkdir()
    (raw / MARKER).write_bytes(b"r")
    registry.add_run(str(child), {"architecture": "wan", "parent": str(parent), "parent_run_id": "parent",
                                  "output_name": "my", "musubi_name": f"my{RAW_SUFFIX}", "epoch_offset": 3,
                                  "step_offset": 9, "status": "running", "output_dir": str(child),
                                  "plan": {"epochs": 8, "steps": 24, "steps_per_epoch": 3, "processes": 1}})
    registry.add_state(str(raw), run_dir=str(child), kind="epoch", number=1, epoch=4, step=12,
                       files=hash_files(str(raw)))
    run, state = lookup_source("child", registry)
    assert state["path"].endswith("my-000004-state") and (child / "my-000004-state").is_dir()
    assert registry.state(str(child / "my-000004-state"))["number"] == 4
    with pytest.raises(Exception) as refused:  # the parent is represented by its continuation now
        lookup_source(str(parent), registry)
    assert "was already continued by child" in str(refused.value)


def test_the_loss_curve_marks_where_a_run_was_resumed() -> None:
    pytest.importorskip("PIL")
    lossplot = _load_lossplot()
    points = [{"step": s, "avr_loss": 1.0 - s / 100, "epoch": 1 + (s - 1) // 3} for s in range(1, 25)]
    plain = lossplot.render(points)
    marked = lossplot.render(points, resumed=[9])
    box = lossplot.layout(points)
    x = round(box.x(9.5))
    column = [marked.getpixel((x, y)) for y in range(int(box.top) + 5, int(box.bottom) - 20)]
    assert any(abs(p[0] - lossplot.RESUMED[0]) < 40 and abs(p[2] - lossplot.RESUMED[2]) < 40 for p in column)
    assert plain.tobytes() != marked.tobytes()


def _load_lossplot() -> Any:
    spec = importlib.util.spec_from_file_location("lossplot_for_tests",
                                                  Path(__file__).resolve().parent.parent / "nodes" / "lossplot.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_record_survives_concurrent_writers(tmp_path: Path) -> None:
    import threading

    registry = Registry(str(tmp_path / "states.db"))
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for j in range(20):
                registry.add_state(str(tmp_path / f"s{i}-{j}"), run_dir=str(tmp_path), kind="epoch", number=j,
                                   epoch=j, step=j, files={"a": {"sha256": "0" * 64, "size": 1}})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(registry.states(str(tmp_path))) == 80
    assert json.loads(json.dumps(registry.states()[0]["files"])) == {"a": {"sha256": "0" * 64, "size": 1}}

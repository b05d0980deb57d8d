"""The ComfyUI-free helpers of nodes/: progress reporting, LoRA delivery, fingerprints, error
translation and the Train node's option mapping.

nodes/ imports ComfyUI only inside functions, so the pack can be loaded here as ComfyUI loads
it (by file location, as a package) without ComfyUI; ComfyUI's own calls are replaced by fakes.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import struct
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACK = "musubi_nodes_under_test"


@pytest.fixture(scope="module")
def pack() -> Iterator[types.SimpleNamespace]:
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    try:
        spec.loader.exec_module(module)
        names = ("progress", "delivery", "fingerprint", "errors", "training", "values", "models", "dataset",
                 "options")
        loaded = {n: importlib.import_module(f"{PACK}.nodes.{n}") for n in names}
        loaded["events"] = importlib.import_module(f"{PACK}.parsers.events")
        loaded["executor_errors"] = importlib.import_module(f"{PACK}.executor.errors")
        loaded["catalogue"] = importlib.import_module(f"{PACK}.executor.musubi.catalogue")
        loaded["dataset_module"] = importlib.import_module(f"{PACK}.executor.musubi.dataset")
        yield types.SimpleNamespace(**loaded)
    finally:
        for name in [n for n in sys.modules if n == PACK or n.startswith(PACK + ".")]:
            del sys.modules[name]


class Interrupted(Exception):
    """Stands in for comfy.model_management.InterruptProcessingException."""


class FakeComfy:
    """Records what a StepReporter sends; ``interrupt`` makes the bar hook raise, as ComfyUI's does."""

    def __init__(self) -> None:
        self.bars: list[tuple[int, int]] = []
        self.texts: list[str] = []
        self.created: list[int] = []
        self.interrupt = False
        self.hook_raises = False  # Cancel pressed between should_cancel() and the hook
        self.now = 0.0

    def bar(self, total: int, node_id: Any) -> Any:
        self.created.append(total)
        comfy = self

        class Bar:
            def update_absolute(self, value: int, total: int) -> None:
                if comfy.interrupt or comfy.hook_raises:
                    raise Interrupted()
                comfy.bars.append((value, total))
        return Bar()

    def reporter(self, pack: Any, **kwargs: Any) -> Any:
        return pack.progress.StepReporter("7", bar_factory=self.bar, send_text=lambda t, n: self.texts.append(t),
                                          interrupted=lambda: self.interrupt, clock=lambda: self.now, **kwargs)


def frame(pack: Any, n: int, total: Any, desc: str = "steps", **kw: Any) -> Any:
    return pack.events.Progress(desc=desc, n=n, total=total, **kw)


# ---------------------------------------------------------------------------- progress

def test_training_bar_follows_the_steps_bar_with_its_total(pack: Any) -> None:
    comfy = FakeComfy()
    r = comfy.reporter(pack, step="train", interval=0.0)
    r.start("launching")
    r.on_event(pack.events.TotalSteps(6))
    for n in range(6):
        comfy.now += 2  # the bar's own rate and time left are not what the node shows
        r.on_event(frame(pack, n, 6, rate=50.0, remaining=0.1, postfix={"avr_loss": "0.123"}))
    assert "2.00 s/it" in comfy.texts[-1] and "ETA 00:02" in comfy.texts[-1] and "avr_loss 0.123" in comfy.texts[-1]
    comfy.now += 2
    r.on_event(frame(pack, 6, 6, rate=50.0, remaining=0.1, postfix={"avr_loss": "0.123"}))
    assert comfy.created == [6]
    assert comfy.bars[0] == (0, 6) and comfy.bars[-1] == (6, 6)
    assert {t for _, t in comfy.bars} == {6}


def test_updates_are_rate_limited_but_first_last_and_phases_always_go_out(pack: Any) -> None:
    comfy = FakeComfy()
    r = comfy.reporter(pack, step="train", interval=5.0)
    r.on_event(pack.events.TotalSteps(100))
    for n in range(1, 101):
        comfy.now += 0.01  # 100 frames within one second
        r.on_event(frame(pack, n, 100))
    assert comfy.bars[0] == (0, 100) and comfy.bars[-1] == (100, 100)
    assert len(comfy.bars) <= 3
    sent = len(comfy.texts)
    r.on_event(pack.events.Phase("saving", "saving checkpoint"))
    assert len(comfy.texts) == sent + 1 and comfy.texts[-1].startswith("saving")
    r.finish("all done")
    assert comfy.texts[-1].startswith("done") and "all done" in comfy.texts[-1]


def test_epoch_phase_and_loss_appear_in_the_text(pack: Any) -> None:
    comfy = FakeComfy()
    r = comfy.reporter(pack, step="train", interval=0.0, title="Wan train LoRA")
    r.on_event(pack.events.Epoch(2, 16))
    r.on_event(frame(pack, 2, 48))
    comfy.now += 0.5
    r.on_event(frame(pack, 3, 48, rate=9.0, postfix={"avr_loss": "0.0871"}))
    text = comfy.texts[-1]
    assert text.startswith("Wan train LoRA: training") and "epoch 2/16" in text
    assert "step 3/48" in text and "2.00 it/s" in text and "avr_loss 0.0871" in text


def test_caching_counts_batches_over_every_dataset_bar(pack: Any) -> None:
    comfy = FakeComfy()
    r = comfy.reporter(pack, step="cache_latents", interval=0.0, expected=5)
    r.start("launching")
    for n in (0, 1, 2, 3):  # dataset 0: 3 batches (the last frame printed twice)
        r.on_event(frame(pack, n, None, desc=""))
    r.on_event(frame(pack, 3, None, desc=""))
    for n in (0, 1, 2):  # dataset 1: a new bar starts at 0
        r.on_event(frame(pack, n, None, desc=""))
    assert comfy.created == [5]
    assert comfy.bars[-1] == (5, 5)
    assert "batch 5/5" in comfy.texts[-1]


def test_caching_without_expected_counts_uses_the_items_musubi_found(pack: Any) -> None:
    comfy = FakeComfy()
    r = comfy.reporter(pack, step="cache_text_encoder", interval=0.0)
    r.on_event(pack.events.ItemsFound(4, "images"))
    r.on_event(frame(pack, 2, None, desc=""))
    assert comfy.bars[-1] == (2, 4)


def test_loading_bars_only_change_the_text(pack: Any) -> None:
    comfy = FakeComfy()
    r = comfy.reporter(pack, step="train", interval=0.0)
    r.on_event(frame(pack, 12, 825, desc="Loading model.safetensors"))
    assert comfy.created == [] and "loading model" in comfy.texts[-1] and "12/825" in comfy.texts[-1]


def test_a_pending_cancel_is_left_to_the_executors_poll(pack: Any) -> None:
    comfy = FakeComfy()
    r = comfy.reporter(pack, step="train", interval=0.0)
    r.on_event(pack.events.TotalSteps(10))
    comfy.interrupt = True
    assert r.should_cancel()
    r.on_event(frame(pack, 1, 10))  # no bar update, so ComfyUI's hook cannot consume the flag
    assert comfy.bars == [(0, 10)]


def test_the_interrupt_raised_by_the_bar_hook_propagates_out_of_on_event(pack: Any) -> None:
    comfy = FakeComfy()
    r = comfy.reporter(pack, step="train", interval=0.0)
    r.on_event(pack.events.TotalSteps(10))
    comfy.hook_raises = True
    with pytest.raises(Interrupted):
        r.on_event(frame(pack, 1, 10))


def test_durations_and_rates_read_like_tqdm(pack: Any) -> None:
    p = pack.progress
    assert p.format_duration(75) == "01:15" and p.format_duration(3725) == "1:02:05"
    assert p.format_duration(None) == "?"
    assert p.format_rate(0.25) == "4.00 s/it" and p.format_rate(12.345) == "12.35 it/s" and p.format_rate(None) == ""


# ---------------------------------------------------------------------------- delivery

def safetensors(path: Path, names: list[str]) -> Path:
    header: dict[str, Any] = {"__metadata__": {"ss_network_dim": "4"}}
    offset = 0
    for name in names:
        header[name] = {"dtype": "F32", "shape": [2], "data_offsets": [offset, offset + 8]}
        offset += 8
    blob = json.dumps(header).encode()
    data = b"".join(struct.pack("<2f", i, i + 0.5) for i in range(len(names)))
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def test_key_rename_rewrites_only_the_header(pack: Any, tmp_path: Path) -> None:
    d = pack.delivery
    names = ["lora_unet_model_language_model_layers_0_q.lora_down.weight",
             "lora_unet_model_language_model_layers_0_q.alpha", "lora_te_other.weight"]
    source = safetensors(tmp_path / "in.safetensors", names)
    target = tmp_path / "out.safetensors"
    count = d.rename_keys(str(source), str(target), d.prefix_renamer("lora_unet_model_", "lora_unet_"))
    assert count == 2
    header, start = d.read_header(str(target))
    assert (start - 8) % 8 == 0
    assert "lora_unet_language_model_layers_0_q.alpha" in header and "lora_te_other.weight" in header
    assert header["__metadata__"] == {"ss_network_dim": "4"}
    old_header, old_start = d.read_header(str(source))
    assert source.read_bytes()[old_start:] == target.read_bytes()[start:]
    for old, new in (("lora_unet_model_language_model_layers_0_q.alpha", "lora_unet_language_model_layers_0_q.alpha"),):
        assert old_header[old] == header[new]


def test_key_rename_refuses_to_merge_two_tensors(pack: Any, tmp_path: Path) -> None:
    d = pack.delivery
    source = safetensors(tmp_path / "in.safetensors", ["lora_unet_model_a.w", "lora_unet_a.w"])
    with pytest.raises(ValueError, match="clash"):
        d.rename_keys(str(source), str(tmp_path / "out.safetensors"),
                      d.prefix_renamer("lora_unet_model_", "lora_unet_"))


def test_place_never_overwrites_and_temp_files_are_never_listed_as_models(pack: Any, tmp_path: Path) -> None:
    d = pack.delivery
    folder = tmp_path / "loras" / "musubi-tuner"
    first = d.place(d.copy_to_temp(str(safetensors(tmp_path / "a.safetensors", ["x"])), str(folder), "mine"),
                    str(folder), "mine")
    tmp = d.temp_path(str(folder), "mine")
    assert tmp.endswith(".tmp") and not tmp.endswith(".safetensors")
    Path(tmp).write_bytes(b"second")
    second = d.place(tmp, str(folder), "mine")
    assert Path(first).name == "mine.safetensors" and Path(second).name == "mine_2.safetensors"
    assert Path(second).read_bytes() == b"second" and Path(first).read_bytes() != b"second"
    assert sorted(p.name for p in folder.iterdir()) == ["mine.safetensors", "mine_2.safetensors"]


@pytest.mark.parametrize("text, stem", [("my lora", "my_lora"), ("../../evil", "evil"), ("a.safetensors", "a"),
                                        ("", "lora"), ("日本", "lora"), ("v1.2-final", "v1.2-final")])
def test_output_names_become_safe_file_names(pack: Any, text: str, stem: str) -> None:
    assert pack.delivery.safe_name(text) == stem


# ---------------------------------------------------------------------------- fingerprints

def test_output_records_rerun_once_after_a_deleted_output(pack: Any, tmp_path: Path) -> None:
    records = pack.fingerprint.OutputRecords()
    out = tmp_path / "lora.safetensors"
    first = records.token("train", "5", "abc")
    out.write_bytes(b"x")
    records.record("train", "5", [str(out)])
    assert records.token("train", "5", "abc") == first, "an unchanged re-queue must be a cache hit"
    out.unlink()
    changed = records.token("train", "5", "abc")
    assert changed != first
    assert records.token("train", "5", "abc") == changed, "asking twice does not bump again"
    out.write_bytes(b"y")
    records.record("train", "5", [str(out)])
    assert records.token("train", "5", "abc") == changed, "after the re-run the next queue is cached"
    assert records.token("train", "6", "abc") == "abc:0"


def test_folder_state_sees_added_edited_and_removed_files(pack: Any, tmp_path: Path) -> None:
    f = pack.fingerprint
    (tmp_path / "a.png").write_bytes(b"1")
    before = f.folder_state(str(tmp_path))
    (tmp_path / "b.png").write_bytes(b"2")
    added = f.folder_state(str(tmp_path))
    (tmp_path / "a.png").write_bytes(b"11")
    edited = f.folder_state(str(tmp_path))
    (tmp_path / "b.png").unlink()
    assert len({before, added, edited, f.folder_state(str(tmp_path))}) == 4
    assert f.folder_state(str(tmp_path / "missing")) != f.folder_state(None)


def test_dataset_items_are_counted_as_musubi_globs_them(pack: Any, tmp_path: Path) -> None:
    for name in ("a.png", "b.jpg", "c.webp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "a.txt").write_text("cap")
    (tmp_path / "b.txt").write_text("cap")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = pack.dataset_module
    config = ds.build_dataset_config([ds.DatasetSpec(image_directory=str(tmp_path), caption_extension=".txt",
                                                     cache_directory=str(tmp_path / "cache"), batch_size=2)])
    (part,) = pack.values.count_items(config)
    assert part.items == 2 and part.batches == 1  # c.webp has no caption: musubi skips it


def test_the_dataset_node_offers_musubis_frame_extractions(pack: Any) -> None:
    assert tuple(pack.dataset.FRAME_EXTRACTIONS) == tuple(pack.dataset_module.FRAME_EXTRACTIONS)


# ---------------------------------------------------------------------------- errors

@pytest.fixture
def fake_model_management(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    comfy = types.ModuleType("comfy")
    mm = types.ModuleType("comfy.model_management")
    mm.InterruptProcessingException = Interrupted
    mm.flag = True

    def throw() -> None:
        if mm.flag:
            mm.flag = False
            raise Interrupted()
    mm.throw_exception_if_processing_interrupted = throw
    comfy.model_management = mm
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.model_management", mm)
    return mm


def run_result(pack: Any, **kw: Any) -> Any:
    return pack.executor_errors.RunResult(argv=["python", "x.py"], exit_code=1, duration=1.0,
                                          tail=["line one", "line two"], **kw)


def test_run_errors_become_readable_runtime_errors_with_tail_and_hint(pack: Any) -> None:
    e = pack.executor_errors
    error = e.OutOfMemory("Training failed: CUDA ran out of memory", result=run_result(pack),
                          hint="raise blocks_to_swap")
    with pytest.raises(RuntimeError) as info:
        with pack.errors.reported():
            raise error
    raised = info.value
    assert f"{type(raised).__module__}.{type(raised).__qualname__}" == "musubi_tuner.OutOfMemory"
    assert "line two" in str(raised) and "hint: raise blocks_to_swap" in str(raised)
    assert raised.error is error and raised.__cause__ is error


def test_a_cancelled_run_becomes_comfyuis_quiet_interrupt(pack: Any, fake_model_management: Any) -> None:
    e = pack.executor_errors
    shown: list[str] = []
    with pytest.raises(Interrupted):
        with pack.errors.reported(shown.append):
            raise e.Cancelled("cancelled", result=run_result(pack, cancelled=True))
    assert shown == [], "a cancel is not reported as a failure"
    fake_model_management.flag = False  # already consumed by the progress bar's hook
    with pytest.raises(Interrupted):
        with pack.errors.reported():
            raise e.Cancelled("cancelled", result=run_result(pack, cancelled=True))


def test_other_exceptions_pass_through_untouched(pack: Any) -> None:
    with pytest.raises(KeyError):
        with pack.errors.reported():
            raise KeyError("x")


# ---------------------------------------------------------------------------- train options

def test_unset_train_options_are_left_to_the_catalogue_recommendation(pack: Any) -> None:
    opts, accelerate = pack.training.train_options({"network_dim": 0, "learning_rate": 0.0, "optimizer_type":
                                                     "(recommended)", "fp8": "(recommended)", "seed": 7})
    assert "network_dim" not in opts and "learning_rate" not in opts and "optimizer_type" not in opts
    assert "fp8_base" not in opts and opts["seed"] == 7 and accelerate == {}


def test_set_train_options_override(pack: Any) -> None:
    opts, accelerate = pack.training.train_options({
        "network_dim": 16, "learning_rate": 0.0003, "optimizer_type": "AdamW", "optimizer_custom": "",
        "optimizer_args": 'weight_decay=0.01 "betas=(0.9,0.99)"', "fp8": "off", "max_train_steps": 500,
        "max_train_epochs": 3, "gradient_checkpointing": False, "num_processes": 2, "gpu_ids": "0,1",
        "save_every_n_epochs": 0})
    assert opts["network_dim"] == 16 and opts["learning_rate"] == 0.0003 and opts["optimizer_type"] == "AdamW"
    assert opts["optimizer_args"] == ["weight_decay=0.01", "betas=(0.9,0.99)"]
    assert opts["fp8_base"] is False and opts["fp8_scaled"] is False
    assert opts["max_train_steps"] == 500 and "max_train_epochs" not in opts
    # None, not absent: it switches off the recommended save every epoch (only the final LoRA)
    assert opts["gradient_checkpointing"] is False and opts["save_every_n_epochs"] is None
    assert accelerate == {"num_processes": 2, "gpu_ids": "0,1"}


def test_fp8_choices_map_to_musubis_two_switches(pack: Any) -> None:
    both, _ = pack.training.train_options({"fp8": "fp8_base + fp8_scaled"})
    base, _ = pack.training.train_options({"fp8": "fp8_base"})
    assert (both["fp8_base"], both["fp8_scaled"]) == (True, True)
    assert (base["fp8_base"], base["fp8_scaled"]) == (True, False)


def test_train_node_choices_are_values_musubi_accepts(pack: Any) -> None:
    from executor.musubi.flagfacts import load_flags

    flags = load_flags()["scripts"]["wan_train_network.py"]["flags"]
    for name, choices in (("timestep_sampling", pack.options.TIMESTEP_SAMPLING),
                          ("mixed_precision", pack.options.MIXED_PRECISION)):
        allowed = set(flags[f"--{name}"]["choices"])
        assert set(choices) - {pack.options.RECOMMENDED} <= allowed, name


def test_models_node_ids_are_unique_and_cover_the_catalogue(pack: Any) -> None:
    ids = {pack.models.node_id(a) for a in pack.catalogue.ARCHITECTURES.values()}
    assert len(ids) == len(pack.catalogue.ARCHITECTURES)
    assert all(i.startswith("MusubiModels") and i.isidentifier() for i in ids)


def test_importing_the_nodes_needs_no_comfyui_and_no_heavy_module() -> None:
    from test_pack_import import modules_after_importing_the_nodes

    heavy = {"torch", "numpy", "PIL", "folder_paths", "server", "comfy", "tomllib", "tomli"}
    assert not heavy & modules_after_importing_the_nodes()

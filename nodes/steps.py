"""The cache nodes and the plumbing every step node shares: plan a step (``make_plan``: pre-flight and
the exact command) in a run folder ``<output>/musubi-tuner/runs/<timestamp>-<name>``, then either show
the command (``dry_run``) or run it (``execute_plan``) with the node's reporter as event and cancel
callbacks, on ComfyUI's execution thread.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from . import host
from .check import settings as load_settings
from .deferred import catalogue
from .errors import reported, user_error
from .fingerprint import OUTPUTS, digest
from .progress import StepReporter
from .values import DATASET_TYPE, MODELS_TYPE, MusubiDataset, MusubiModels

if TYPE_CHECKING:
    from ..executor.runs.plan import Plan

CATEGORY = "Musubi Tuner/Steps"
# keyed by the catalogue's step ids, spelled out so importing the nodes does not load the catalogue
STEP_TITLES = {"cache_latents": "cache latents", "cache_text_encoder": "cache text encoder",
               "train": "train LoRA", "convert": "convert LoRA"}
DRY_RUN_TOOLTIP = ("Only check the inputs and show the exact command on the node (and in its output); nothing "
                   "is launched.")


def shell_name() -> str:
    return "powershell" if sys.platform == "win32" else "posix"


def new_run_dir(label: str) -> str:
    """``<output>/musubi-tuner/runs/<YYYYmmdd-HHMMSS>-<label>``, not yet existing."""
    from .delivery import safe_name

    base = os.path.join(host.runs_directory(), f"{time.strftime('%Y%m%d-%H%M%S')}-{safe_name(label)}")
    path, n = base, 2
    while os.path.exists(path):
        path, n = f"{base}-{n}", n + 1
    return path


def arch_of(models: MusubiModels) -> catalogue.Architecture:
    return catalogue.get_architecture(models.arch)


def check_wires(dataset: Optional[MusubiDataset], models: Optional[MusubiModels]) -> None:
    if not isinstance(dataset, MusubiDataset):
        raise user_error("the dataset input is not connected", "wire a Musubi Dataset Config node to it")
    if not isinstance(models, MusubiModels):
        raise user_error("the models input is not connected", "wire a Musubi Models node to it")
    arch = arch_of(models)
    if "video" in dataset.media and "video" not in arch.media_for(models.selectors):
        raise user_error(f"{arch.display_name} trains on images only, but the dataset has video folders",
                         "use an image folder, or a video architecture (HunyuanVideo, Wan, FramePack, "
                         "Kandinsky 5)")


def accepted_options(arch: catalogue.Architecture, step: str, options: Mapping[str, Any],
                     selectors: Optional[Mapping[str, Any]] = None) -> tuple[dict[str, Any], list[str]]:
    """Options the step's script accepts (for these variant choices), and the names of set
    ones it does not (reported as ignored: one node serves every architecture).

    An accepted option given as False or None is kept: build_args then switches off the
    architecture's recommendation (fp8 "off", gradient checkpointing off). Callers leave
    out what the user did not choose.
    """
    accepted = arch.options_for(step, selectors)
    keep, ignored = {}, []
    for name, value in options.items():
        if value == "":
            continue
        if name in accepted or name == "attention":
            keep[name] = value
        elif value is not None and value is not False:
            ignored.append(name)
    return keep, ignored


def chosen(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options a cache node's user actually set (None = "recommended/default")."""
    return {k: v for k, v in options.items() if v is not None}


def plan_step(*, step: str, dataset: MusubiDataset, models: MusubiModels, options: Mapping[str, Any],
              label: str, extra_args: str = "", output_name: Optional[str] = None,
              output_in_run_dir: bool = False, accelerate: Optional[dict[str, Any]] = None,
              launcher: str = "accelerate", model_paths: Optional[Mapping[str, str]] = None,
              settings: Any = None, check_caches: bool = True) -> Plan:
    """Pre-flight and the command for one step, with its run folder chosen here.

    The run folder is named by the node (timestamp and label), not by make_plan. For
    training it is also ``--output_dir``: musubi creates the LoRA files in this brand-new
    folder. ``check_caches=False``: see make_plan.
    """
    from ..executor.setup.discovery import resolve_install
    from ..executor.runs.plan import PlanSpec, make_plan

    settings = settings or load_settings()
    install = resolve_install(settings)
    run_dir = new_run_dir(label)
    spec = PlanSpec(architecture=models.arch, step=step, dataset_config=dataset.toml_path if dataset else None,
                    models=dict(model_paths if model_paths is not None else models.paths),
                    selectors=dict(models.selectors), options=dict(options),
                    extra_args=extra_args.strip() or None,
                    output_dir=run_dir if output_in_run_dir else None, output_name=output_name,
                    accelerate=dict(accelerate or {}), launcher=launcher, runs_dir=host.runs_directory(),
                    name=label, run_dir=run_dir)
    return make_plan(settings, spec, install=install, check_caches=check_caches)


def dry_run_text(plan: Plan, arch: catalogue.Architecture, notes: list[str], values: Sequence[str] = ()) -> str:
    """What a dry run shows: the step, the run folder, warnings and notes, ``values`` (the
    Train node lists every value the run will use), then the command."""
    from ..executor.process.command import format_command

    lines = [f"DRY RUN: nothing was launched. {arch.display_name}, {STEP_TITLES.get(plan.step, plan.step)} "
             f"({plan.script})", f"run folder: {plan.run_dir}"]
    for w in plan.warnings:
        lines.append(f"warning: {w}")
    lines += [f"note: {n}" for n in notes]
    if values:
        lines += ["", *values]
    lines += ["", f"command ({shell_name()}):", format_command(plan.command, shell_name())]
    return "\n".join(lines)


def ui(text: str, plan: Optional[Plan] = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"text": [text]}
    if plan is not None:
        out["argv"] = list(plan.to_dict()["argv"])
        out["run_dir"] = [plan.run_dir]
    out.update({k: [v] for k, v in extra.items()})
    return out


def warning_lines(result: Any) -> str:
    """``\\nwarning: ...`` for each thing the run wants the user to know although it worked
    (leftover processes that had to be stopped, a log file that could not be written)."""
    return "".join(f"\nwarning: {w}" for w in getattr(result, "warnings", None) or [])


def run_plan(plan: Plan, reporter: StepReporter) -> Any:
    """Launch a checked plan on this (ComfyUI's execution) thread and wait for it.

    ComfyUI's Cancel arrives as ``should_cancel`` (polled also while the child is silent) or
    as InterruptProcessingException from the progress bar's hook inside ``on_event``;
    either way the executor kills the whole process tree first.
    """
    from ..executor.runs.execute import execute_plan

    host.free_gpu()
    reporter.run_dir = plan.run_dir
    reporter.start(f"launching {plan.script}\nrun folder: {plan.run_dir}")
    with reported(reporter.fail):
        return execute_plan(plan, on_event=reporter.on_event, should_cancel=reporter.should_cancel, check=True)


def cache_files(plan: Plan) -> list[str]:
    files = []
    for folder, ending in plan.cache_patterns:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        te = ending.endswith("_te.safetensors")
        files += [os.path.join(folder, n) for n in names
                  if n.endswith(ending) and (te or not n.endswith("_te.safetensors"))]
    return sorted(files)


# --- shared input definitions -----------------------------------------------------------------

def _wires() -> dict[str, Any]:
    return {
        "dataset": (DATASET_TYPE, {"tooltip": "The dataset from a Musubi dataset node (or the previous step)."}),
        "models": (MODELS_TYPE, {"tooltip": "The models from the Musubi Models node of your architecture."}),
    }


def _int(default: int, minimum: int, maximum: int, tooltip: str) -> tuple[str, dict[str, Any]]:
    return ("INT", {"default": default, "min": minimum, "max": maximum, "tooltip": tooltip})


def _bool(default: bool, tooltip: str) -> tuple[str, dict[str, Any]]:
    return ("BOOLEAN", {"default": default, "tooltip": tooltip})


class CacheNodeBase:
    """Cache Latents and Cache Text Encoder Outputs share everything but options."""

    STEP = ""
    CATEGORY = CATEGORY
    FUNCTION = "cache"
    OUTPUT_NODE = True
    RETURN_TYPES = (DATASET_TYPE, "STRING")
    RETURN_NAMES = ("dataset", "report")
    OUTPUT_TOOLTIPS = ("The same dataset, passed on so the next step runs after this one.",
                       "What was done (or, with dry_run, the exact command).")

    @classmethod
    def step_inputs(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        # Everything but the wires is optional with a default, so an API prompt needs to
        # name only what it changes (ComfyUI fills no defaults into API prompts).
        optional = cls.step_inputs()
        optional["skip_existing"] = _bool(False, "Keep cache files that already exist instead of recomputing "
                                                 "them (faster; do not use after changing resolution or mode).")
        optional["keep_cache"] = _bool(False, "Keep cache files in the cache folder that the dataset no longer "
                                              "produces (musubi deletes them otherwise).")
        optional["batch_size"] = _int(0, 0, 1024, "Items per encoding batch; 0 = the architecture's recommendation "
                                                  "(e.g. 16 for most text encoders), else the dataset's batch size.")
        optional["num_workers"] = _int(0, 0, 64, "Image-loading threads; 0 = musubi's default (CPUs - 1).")
        optional["dry_run"] = _bool(False, DRY_RUN_TOOLTIP)
        return {"required": _wires(), "optional": optional, "hidden": {"unique_id": "UNIQUE_ID"}}

    @classmethod
    def IS_CHANGED(cls, unique_id: Any = None, **inputs: Any) -> str:
        values = digest(sorted((k, str(v)) for k, v in inputs.items() if k not in ("dataset", "models")))
        if inputs.get("dry_run"):
            return values + ":dry"
        return OUTPUTS.token(cls.STEP, unique_id, values)

    def options(self, arch: catalogue.Architecture, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Cache options; None = the architecture's caching recommendation or musubi's default."""
        return {"skip_existing": inputs.get("skip_existing") or None, "keep_cache": inputs.get("keep_cache") or None,
                "batch_size": inputs.get("batch_size") or None, "num_workers": inputs.get("num_workers") or None}

    def cache(self, dataset: MusubiDataset, models: MusubiModels, unique_id: Any = None,
              **inputs: Any) -> dict[str, Any]:
        check_wires(dataset, models)
        arch = arch_of(models)
        step = self.STEP
        title = f"{arch.display_name} {STEP_TITLES[step]}"
        options, ignored = accepted_options(arch, step, chosen(self.options(arch, inputs)), models.selectors)
        notes = [f"{name} is not used by {arch.display_name}'s {STEP_TITLES[step]} script; ignored"
                 for name in ignored]
        with reported(lambda message: host.send_text(f"{title}: failed\n{message}", unique_id)):
            plan = plan_step(step=step, dataset=dataset, models=models, options=options,
                             label=f"{arch.id}-{step.replace('_', '-')}")
        if inputs.get("dry_run"):
            text = dry_run_text(plan, arch, notes)
            host.send_text(text, unique_id)
            return {"ui": ui(text, plan), "result": (replace(dataset, pending=dataset.pending + (step,)), text)}
        s = load_settings()
        reporter = StepReporter(unique_id, step=step, interval=s.progress_update_interval,
                                expected=dataset.expected_batches, title=title)
        result = run_plan(plan, reporter)
        files = cache_files(plan)
        OUTPUTS.record(step, unique_id, files)
        detail = (f"{len(files)} cache files in {', '.join(dataset.cache_directories)} ({result.duration:.1f} s)"
                  f"\nrun folder: {plan.run_dir}")
        detail += warning_lines(result)
        if notes:
            detail += "\n" + "\n".join(f"note: {n}" for n in notes)
        reporter.finish(detail)
        text = f"{title}: done\n{detail}"
        return {"ui": ui(text, plan), "result": (replace(dataset, pending=()), text)}


class MusubiCacheLatents(CacheNodeBase):
    STEP = "cache_latents"
    DESCRIPTION = ("Runs musubi-tuner's latent caching for the dataset (encodes every image or clip with the "
                   "VAE once, so training does not need the VAE). Run it again after changing the dataset.")

    @classmethod
    def step_inputs(cls) -> dict[str, Any]:
        return {
            "vae_dtype": (["(default)", "float16", "bfloat16", "float32"], {
                "default": "(default)",
                "tooltip": "VAE precision; (default) = the architecture's. Some architectures do not accept it "
                           "and ignore it."}),
            "vae_tiling": (["(recommended)", "on", "off"], {
                "default": "(recommended)",
                "tooltip": "HunyuanVideo/FramePack: run the VAE in tiles to save VRAM; (recommended) = what musubi's "
                           "docs use (on for HunyuanVideo)."}),
            "vae_chunk_size": _int(0, 0, 1024, "HunyuanVideo/FramePack: causal-conv chunk size to save VRAM; "
                                               "0 = the recommendation (32 in musubi's docs)."),
            "vae_spatial_tile_sample_min_size": _int(0, 0, 4096, "HunyuanVideo/FramePack: tile size in pixels "
                                                                 "with tiling; 0 = musubi's default."),
        }

    def options(self, arch: catalogue.Architecture, inputs: Mapping[str, Any]) -> dict[str, Any]:
        out = super().options(arch, inputs)
        dtype = inputs.get("vae_dtype")
        tiling = inputs.get("vae_tiling")
        out.update(vae_dtype=None if dtype in (None, "(default)") else dtype,
                   vae_tiling={"on": True, "off": False}.get(tiling),
                   vae_chunk_size=inputs.get("vae_chunk_size") or None,
                   vae_spatial_tile_sample_min_size=inputs.get("vae_spatial_tile_sample_min_size") or None)
        return out


FP8_TEXT_ENCODER_OPTIONS = ("fp8_llm", "fp8_t5", "fp8_vl", "fp8_text_encoder", "fp8_te")


class MusubiCacheTextEncoder(CacheNodeBase):
    STEP = "cache_text_encoder"
    DESCRIPTION = ("Runs musubi-tuner's text-encoder caching: encodes every caption once, so training does not "
                   "need the text encoders. Run it after Cache Latents.")

    @classmethod
    def step_inputs(cls) -> dict[str, Any]:
        return {"fp8_text_encoder": _bool(False, "Load the text encoder in fp8 to save VRAM (the architecture's "
                                                 "fp8 flag: --fp8_llm, --fp8_t5, --fp8_vl, ...).")}

    def options(self, arch: catalogue.Architecture, inputs: Mapping[str, Any]) -> dict[str, Any]:
        out = super().options(arch, inputs)
        if inputs.get("fp8_text_encoder"):
            accepted = arch.step_options.get(self.STEP, frozenset())  # any variant's
            names = [n for n in FP8_TEXT_ENCODER_OPTIONS if n in accepted]
            out[names[0] if names else "fp8_text_encoder"] = True
        return out


NODE_CLASS_MAPPINGS = {"MusubiCacheLatents": MusubiCacheLatents, "MusubiCacheTextEncoder": MusubiCacheTextEncoder}
NODE_DISPLAY_NAME_MAPPINGS = {"MusubiCacheLatents": "Musubi Cache Latents",
                              "MusubiCacheTextEncoder": "Musubi Cache Text Encoder Outputs"}

"""MusubiTrainLoRA, one node for every architecture (options left at ``(recommended)``/0 take the
catalogue's documented value for the chosen architecture and variant), and delivery of the final
LoRA, converted as ComfyUI needs, into ``models/loras/musubi-tuner/``; epoch saves stay in the run folder.
"""

from __future__ import annotations

import os
import shlex
from typing import Any, Mapping, Optional

from . import delivery, host
from .deferred import catalogue
from .errors import MusubiTunerError, error_type, reported, user_error
from .fingerprint import OUTPUTS, digest
from .progress import StepReporter
from .steps import (
    CATEGORY, STEP_TITLES, accepted_options, arch_of, check_wires, dry_run_text,
    plan_step, run_plan, ui, warning_lines,
)
from .values import DATASET_TYPE, MODELS_TYPE, MusubiDataset, MusubiModels

RECOMMENDED = "(recommended)"
NONE = "(none)"
OPTIMIZERS = [RECOMMENDED, "adamw8bit", "AdamW", "AdaFactor", "prodigyopt.Prodigy", "Muon", "Lion"]
SCHEDULERS = [RECOMMENDED, "constant", "constant_with_warmup", "cosine", "cosine_with_restarts", "linear",
              "polynomial", "cosine_with_min_lr", "inverse_sqrt"]
TIMESTEP_SAMPLING = [RECOMMENDED, "shift", "sigma", "uniform", "sigmoid", "flux_shift", "flux2_shift", "qwen_shift",
                     "krea2_shift", "ideogram4_shift", "logsnr", "qinglong_flux", "qinglong_qwen"]
ATTENTION = [RECOMMENDED, "sdpa", "flash_attn", "xformers", "flash3"]
MIXED_PRECISION = [RECOMMENDED, "bf16", "fp16", "no"]
FP8 = [RECOMMENDED, "off", "fp8_base", "fp8_base + fp8_scaled"]
LAUNCHERS = ["accelerate", "python"]
FLOATS = ("network_alpha", "learning_rate", "discrete_flow_shift")


class LoraNameType(str):
    """The type of the ``lora_name`` output, so it can be wired straight into LoraLoader's
    ``lora_name`` dropdown (which also orders the loader after training).

    The frontend links outputs to inputs when their comma-separated types overlap, and calls
    a dropdown's type COMBO. ComfyUI's server checks links with ``received != expected``
    (``comfy_execution/validation.py`` honours ``__ne__`` overrides) and a dropdown's expected
    type is its list of choices: that comparison says "equal"; any other type compares as
    the plain string ``COMBO,STRING``.
    """

    def __ne__(self, other: object) -> bool:
        if isinstance(other, list):
            return False
        return str.__ne__(self, other)

    __hash__ = str.__hash__


LORA_NAME = LoraNameType("COMBO,STRING")


def _opt(kind: Any, default: Any, tooltip: str, **extra: Any) -> tuple[Any, dict[str, Any]]:
    return (kind, {"default": default, "tooltip": tooltip, **extra})


def train_inputs() -> dict[str, Any]:
    loras = [NONE] + host.model_files("loras")
    return {
        "required": {
            "dataset": (DATASET_TYPE, {"tooltip": "The dataset, after Cache Latents and Cache Text Encoder."}),
            "models": (MODELS_TYPE, {"tooltip": "The models from the Musubi Models node of your architecture."}),
            "output_name": _opt("STRING", "my_lora", "File name of the LoRA (without .safetensors). If "
                                "models/loras/musubi-tuner/ already has one, a free name such as my_lora_2 is used."),
        },
        "optional": {
            "network_dim": _opt("INT", 0, "LoRA rank. 0 = the architecture's recommendation (32 for most, "
                                "16 for Qwen-Image).", min=0, max=1024),
            "network_alpha": _opt("FLOAT", 0.0, "LoRA alpha (scales the update by alpha/rank). 0 = the "
                                  "architecture's recommendation, else musubi's default 1.", min=0.0, max=1024.0,
                                  step=0.5),
            "learning_rate": _opt("FLOAT", 0.0, "Learning rate. 0 = the architecture's recommendation "
                                  "(e.g. 2e-4 Wan, 1e-4 FLUX, 5e-5 Qwen-Image).", min=0.0, max=1.0,
                                  step=0.00001, round=False),
            "optimizer_type": _opt(OPTIMIZERS, RECOMMENDED, "Optimizer; (recommended) = adamw8bit for most "
                                   "architectures. Custom optimizers: optimizer_custom."),
            "optimizer_custom": _opt("STRING", "", "A custom optimizer's full import path (e.g. "
                                     "came_pytorch.CAME), installed in musubi's venv; overrides optimizer_type."),
            "optimizer_args": _opt("STRING", "", "Optimizer arguments, space separated key=value "
                                   "(e.g. weight_decay=0.01 \"betas=(0.9,0.99)\")."),
            "lr_scheduler": _opt(SCHEDULERS, RECOMMENDED, "Learning-rate schedule; (recommended) = constant "
                                 "unless the architecture's docs say otherwise."),
            "lr_warmup_steps": _opt("INT", 0, "Warm-up steps for schedulers that use them; 0 = none.",
                                    min=0, max=1000000),
            "max_train_epochs": _opt("INT", 0, "Epochs to train. 0 = the recommendation (16), unless "
                                     "max_train_steps is set.", min=0, max=100000),
            "max_train_steps": _opt("INT", 0, "Train for this many optimizer steps instead of epochs; 0 = use "
                                    "epochs.", min=0, max=100000000),
            "save_every_n_epochs": _opt("INT", 1, "Also save the LoRA every N epochs (kept in the run folder); "
                                        "0 = only the final LoRA.", min=0, max=100000),
            # The frontend gives every INT named "seed" a "randomize after each queue" control;
            # a new seed per queue would re-train every time, so it is switched off.
            "seed": _opt("INT", 42, "Random seed.", min=0, max=0xFFFFFFFF, control_after_generate=False),
            "attention": _opt(ATTENTION, RECOMMENDED, "Attention implementation; (recommended) = sdpa "
                              "(always available). flash_attn/xformers/flash3 must be installed in musubi's venv."),
            "mixed_precision": _opt(MIXED_PRECISION, RECOMMENDED, "Training precision; (recommended) = bf16. "
                                    "Must match the DiT weights (bf16 weights: bf16 or no)."),
            "fp8": _opt(FP8, RECOMMENDED, "Keep the DiT in fp8 to save VRAM: fp8_base, or fp8_base + "
                        "fp8_scaled (better quality; required by Krea 2 and HiDream-O1). (recommended) = what "
                        "the architecture's docs use."),
            "blocks_to_swap": _opt("INT", 0, "Swap this many transformer blocks to the CPU to save VRAM (slower); "
                                   "0 = off. Each architecture has a maximum.", min=0, max=200),
            "gradient_checkpointing": _opt("BOOLEAN", True, "Recompute activations in the backward pass: much "
                                           "less VRAM, a little slower."),
            "timestep_sampling": _opt(TIMESTEP_SAMPLING, RECOMMENDED, "How training timesteps are drawn; "
                                      "(recommended) = the architecture's documented method."),
            "discrete_flow_shift": _opt("FLOAT", 0.0, "Shift for 'shift' timestep sampling. 0 = the "
                                        "recommendation (e.g. 3.0 Wan, 2.2 Qwen-Image).", min=0.0, max=100.0,
                                        step=0.1),
            "sample_prompts": _opt("STRING", "", "Prompts for sample images during training, one per line, with "
                                   "musubi's options (e.g. 'a cat --w 512 --h 512 --s 20'). Needs the VAE and text "
                                   "encoders in the models node. Empty = no samples.", multiline=True),
            "sample_every_n_epochs": _opt("INT", 0, "Make samples every N epochs (0 = every saved epoch when "
                                          "prompts are given, unless sample_every_n_steps is set).",
                                          min=0, max=100000),
            "sample_every_n_steps": _opt("INT", 0, "Make samples every N optimizer steps; 0 = off.", min=0,
                                         max=100000000),
            "sample_at_first": _opt("BOOLEAN", False, "Also make samples before the first step (what the model "
                                    "does without the LoRA)."),
            "sample_prompts_file": _opt("STRING", "", "A prompt file musubi reads (.txt with one prompt per line, "
                                        ".toml or .json) instead of the sample_prompts text; a relative path is "
                                        "in ComfyUI's input folder. It must lie in ComfyUI's input, output or "
                                        "models folders or a read_roots folder of the pack's settings."),
            "initial_weights": _opt(loras, NONE, "Start from an existing LoRA's weights (from models/loras); "
                                    "a fresh optimizer."),
            "resume": _opt("STRING", "", "Resume from a saved training state folder (…-state) of an earlier run: "
                           "weights, optimizer and schedule. Empty = start fresh."),
            "launcher": _opt(LAUNCHERS, "accelerate", "accelerate launch (recommended by musubi; needed for "
                             "several GPUs) or plain python (one process)."),
            "num_processes": _opt("INT", 1, "accelerate: processes (GPUs) to train on.", min=1, max=64),
            "gpu_ids": _opt("STRING", "", "accelerate: which GPUs, e.g. 0 or 0,1; empty = all."),
            "extra_args": _opt("STRING", "", "More musubi flags, full names only (e.g. --max_grad_norm 1.0). "
                               "Checked against the training script's flags; flags set by this node are refused.",
                               multiline=True),
            "dry_run": _opt("BOOLEAN", False, "Only check the inputs and show the exact command on the node "
                            "(and in the prompt's history); nothing is launched."),
        },
        "hidden": {"unique_id": "UNIQUE_ID"},
    }


def _positive(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _chosen(value: Any) -> Any:
    return None if value in (None, "", RECOMMENDED) else value


def train_options(inputs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(musubi options, accelerate options) from the node's inputs; unset = recommended."""
    opts: dict[str, Any] = {
        "network_dim": _positive(inputs.get("network_dim")),
        "network_alpha": _positive(inputs.get("network_alpha")),
        "learning_rate": _positive(inputs.get("learning_rate")),
        "optimizer_type": (inputs.get("optimizer_custom") or "").strip() or _chosen(inputs.get("optimizer_type")),
        "lr_scheduler": _chosen(inputs.get("lr_scheduler")),
        "lr_warmup_steps": _positive(inputs.get("lr_warmup_steps")),
        "seed": inputs.get("seed", 42),
        "attention": _chosen(inputs.get("attention")),
        "mixed_precision": _chosen(inputs.get("mixed_precision")),
        "blocks_to_swap": _positive(inputs.get("blocks_to_swap")),
        "timestep_sampling": _chosen(inputs.get("timestep_sampling")),
        "discrete_flow_shift": _positive(inputs.get("discrete_flow_shift")),
    }
    args_text = (inputs.get("optimizer_args") or "").strip()
    if args_text:
        try:
            opts["optimizer_args"] = shlex.split(args_text)
        except ValueError as exc:
            raise user_error(f"optimizer_args: {exc}", "close the quotes, e.g. \"betas=(0.9,0.99)\"") from None
    steps = _positive(inputs.get("max_train_steps"))
    if steps:
        opts["max_train_steps"] = steps
    else:
        opts["max_train_epochs"] = _positive(inputs.get("max_train_epochs"))
    save = inputs.get("save_every_n_epochs", 1)
    opts["save_every_n_epochs"] = save if save and save > 0 else None
    if "gradient_checkpointing" in inputs:
        opts["gradient_checkpointing"] = bool(inputs["gradient_checkpointing"])
    fp8 = _chosen(inputs.get("fp8"))
    if fp8 is not None:
        opts["fp8_base"] = fp8 != "off"
        opts["fp8_scaled"] = fp8 == "fp8_base + fp8_scaled"
    weights = inputs.get("initial_weights")
    if weights and weights != NONE:
        path = host.model_path("loras", weights)
        if path is None:
            raise user_error(f"initial_weights {weights!r} is not in models/loras", "pick a listed LoRA")
        opts["network_weights"] = path
    resume = (inputs.get("resume") or "").strip()
    if resume:
        opts["resume"] = host.resolve_user_path(resume)
    accelerate: dict[str, Any] = {}
    if inputs.get("num_processes", 1) and inputs.get("num_processes", 1) > 1:
        accelerate["num_processes"] = int(inputs["num_processes"])
    gpu_ids = (inputs.get("gpu_ids") or "").strip()
    if gpu_ids:
        accelerate["gpu_ids"] = gpu_ids
    return {k: v for k, v in opts.items() if v is not None}, accelerate


def write_prompts(text: str) -> str:
    """The sample prompt file musubi reads, content-addressed under output/musubi-tuner/prompts."""
    from ..executor.musubi.dataset import write_atomic

    body = "".join(line.rstrip() + "\n" for line in text.splitlines() if line.strip())
    path = os.path.join(host.output_directory(), host.PACK_FOLDER, "prompts", f"prompts-{digest(body)[:16]}.txt")
    if not os.path.exists(path):
        write_atomic(path, body, overwrite="always")
    return path


def training_models(arch: catalogue.Architecture, models: MusubiModels, sampling: bool) -> dict[str, str]:
    """Training reads the VAE and text encoders only to make samples, so they are passed only
    when sample prompts are set (musubi would otherwise load nothing from them anyway)."""
    out = {}
    values = arch.resolve_selectors(models.selectors)
    for model in arch.models:
        if model.name not in models.paths or catalogue.TRAIN not in model.steps:
            continue
        if model.required(catalogue.TRAIN, values) or not model.sampling or sampling:
            out[model.name] = models.paths[model.name]
    return out


class MusubiTrainLoRA:
    DESCRIPTION = ("Trains a LoRA with musubi-tuner for the architecture of the wired models node, with live "
                   "progress (steps, epoch, loss, ETA, the log's last lines, the newest sample image or the loss "
                   "curve as preview) and a Cancel that stops the whole training. The finished LoRA is put into "
                   "models/loras/musubi-tuner/ so LoraLoader lists it; the loss curve and the last samples are "
                   "outputs.")
    CATEGORY = CATEGORY
    FUNCTION = "train"
    OUTPUT_NODE = True
    RETURN_TYPES = (LORA_NAME, "STRING", "STRING", "IMAGE", "IMAGE")
    RETURN_NAMES = ("lora_name", "lora_path", "run_dir", "loss_curve", "samples")
    OUTPUT_TOOLTIPS = ("The LoRA's name as LoraLoader lists it (musubi-tuner/<name>.safetensors); wire it to "
                       "LoraLoader's lora_name. Empty for a dry run.",
                       "Full path of the delivered LoRA file.",
                       "The run folder: command.txt, dataset config, run.log, result.json, loss.jsonl, the "
                       "epoch saves and sample/.",
                       "The loss curve (step, avr_loss, epochs marked), 768x432; wire it to Preview Image or "
                       "Save Image.",
                       "The images of the last sampling round (first frames of videos); one black 64x64 image "
                       "when no sample was made.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return train_inputs()

    @classmethod
    def VALIDATE_INPUTS(cls, output_name: Optional[str] = None, optimizer_custom: Optional[str] = None,
                        gpu_ids: Optional[str] = None, network_alpha: Optional[float] = None,
                        learning_rate: Optional[float] = None, discrete_flow_shift: Optional[float] = None,
                        sample_prompts_file: Optional[str] = None) -> Any:
        # Refused when queued (HTTP 400): a name that is no file name on every OS, or that would
        # leave the run folder; an optimizer that is no class; gpu_ids that are no GPU numbers;
        # NaN or infinite numbers; a prompt file that is missing or outside the read roots. Wired
        # values arrive as None here and are checked when the node runs (pre-flight: the file).
        from . import guards

        found = [p for p in (guards.labelled("output_name", guards.output_name_problem(output_name))
                             if output_name is not None else None,
                             guards.optimizer_problem(optimizer_custom) if optimizer_custom is not None else None,
                             guards.gpu_ids_problem(gpu_ids),
                             guards.labelled("sample_prompts_file", guards.file_problem(
                                 sample_prompts_file, "sample_prompts_file", readable=True))
                             if sample_prompts_file and sample_prompts_file.strip() else None)
                 if p]
        found += guards.number_problems(cls, {"network_alpha": network_alpha, "learning_rate": learning_rate,
                                              "discrete_flow_shift": discrete_flow_shift})
        return True if not found else "; ".join(found)

    @classmethod
    def IS_CHANGED(cls, unique_id: Any = None, **inputs: Any) -> str:
        values = digest(sorted((k, str(v)) for k, v in inputs.items() if k not in ("dataset", "models")))
        if inputs.get("dry_run"):
            return values + ":dry"
        return OUTPUTS.token(catalogue.TRAIN, unique_id, values)

    def train(self, dataset: MusubiDataset, models: MusubiModels, output_name: str, unique_id: Any = None,
              **inputs: Any) -> dict[str, Any]:
        from . import guards

        # A wired name or optimizer skipped VALIDATE_INPUTS; never let safe_name quietly turn
        # "../../x" into "x".
        problem = (guards.output_name_problem(output_name)
                   or guards.optimizer_problem(inputs.get("optimizer_custom") or "")
                   or guards.gpu_ids_problem(inputs.get("gpu_ids"))
                   or next(iter(guards.number_problems(type(self), {k: inputs.get(k) for k in FLOATS})), None))
        if problem:
            raise user_error(problem, "change the input named above; nothing was run")
        check_wires(dataset, models)
        arch = arch_of(models)
        title = f"{arch.display_name} {STEP_TITLES[catalogue.TRAIN]}"
        name = delivery.safe_name(output_name)
        options, accelerate = train_options(inputs)
        sampling, sample_notes = sample_options(inputs, options)
        recommended = arch.recommended_for(models.selectors)
        precision = options.get("mixed_precision") or recommended.get("mixed_precision")
        if precision:
            accelerate["mixed_precision"] = precision
        options, ignored = accepted_options(arch, catalogue.TRAIN, options, models.selectors)
        if options.get("max_train_steps"):
            # musubi lets --max_train_epochs override --max_train_steps: unset the
            # recommended epoch count when steps are given.
            options["max_train_epochs"] = None
        notes = [f"{n} is not used by {arch.display_name}'s training script; ignored" for n in ignored]
        notes += sample_notes
        dry_run = bool(inputs.get("dry_run"))
        launcher = inputs.get("launcher") or "accelerate"
        plan_args = dict(step=catalogue.TRAIN, dataset=dataset, models=models, options=options, label=name,
                         extra_args=inputs.get("extra_args") or "", output_name=name, output_in_run_dir=True,
                         accelerate=accelerate, launcher=launcher,
                         model_paths=training_models(arch, models, sampling))
        fail_text = lambda message: host.send_text(f"{title}: failed\n{message}", unique_id)  # noqa: E731
        if dry_run:
            if dataset.pending:
                # A dry run of the whole chain: the cache steps above were dry runs too, so
                # their caches need not exist yet; everything else is checked as usual.
                plan_args["check_caches"] = False
                steps = ", ".join(STEP_TITLES.get(s, s) for s in dataset.pending)
                notes.append(f"the cache checks were skipped: the {steps} step(s) above were dry runs, so the "
                             "caches may not exist yet")
            with reported(fail_text):
                plan = plan_step(**plan_args)
            text = dry_run_text(plan, arch, notes)
            host.send_text(text, unique_id)
            from . import watch
            from .lossplot import render

            curve = watch.to_image_batch([render([], message="dry run: nothing was trained")])
            return {"ui": ui(text, plan), "result": ("", "", "", curve, watch.to_image_batch([]))}

        with reported(fail_text):
            plan = plan_step(**plan_args)
        from .check import settings as load_settings

        s = load_settings()
        reporter = StepReporter(unique_id, step=catalogue.TRAIN, interval=s.progress_update_interval, title=title)
        from . import watch

        # musubi writes samples to <output_dir>/sample; the output folder is the run folder
        reporter.watch = watch.TrainWatch(plan.run_dir)
        result = run_plan(plan, reporter)
        reporter.watch = None
        trained = os.path.join(plan.run_dir, f"{name}.safetensors")
        if not os.path.isfile(trained):
            raise user_error(f"training finished but {trained} is missing", f"see {plan.run_dir}/run.log")
        from ..parsers.events import Phase

        reporter.on_event(Phase("delivering", "converting for ComfyUI" if arch.lora_conversion.kind not in
                                ("none", "not_supported") else "copying to models/loras"))
        try:
            with reported():
                lora_path, how = deliver(trained, name, arch, plan.run_dir, reporter)
        except host.interrupt_exception():
            # Cancelled while converting or copying: the training itself is safe; say where.
            host.send_text(f"{title}: cancelled before the LoRA reached models/loras\n"
                           f"The trained LoRA is in the run folder: {trained}", unique_id)
            raise
        except (MusubiTunerError, OSError, ValueError) as exc:
            # Training itself worked: say so, and where the trained file is.
            message = (f"training finished, but the LoRA could not be delivered to models/loras: {exc}\n"
                       f"The trained LoRA is in the run folder: {trained}")
            fail_text(message)
            kind = type(exc) if isinstance(exc, MusubiTunerError) else error_type("DeliveryFailed")
            raise kind(message, getattr(exc, "error", None)) from exc
        lora_name = host.lora_name(lora_path) or os.path.basename(lora_path)
        OUTPUTS.record(catalogue.TRAIN, unique_id, [lora_path])
        record = run_record(plan.run_dir)
        saved = [os.path.basename(p) for p in record.get("files_produced") or [] if p.endswith(".safetensors")]
        curve, curve_path = watch.final_curve(plan.run_dir)
        sample_images, sample_paths = watch.final_samples(plan.run_dir)
        detail = f"LoRA: {lora_name} ({how})\nrun folder: {plan.run_dir}"
        if record.get("final_loss") is not None:
            detail += (f"\nloss: final {record['final_loss']:.4g}, best {record['best_loss']:.4g} at step "
                       f"{record['best_loss_step']} of {record.get('steps')}")
        if saved:
            detail += f"\nsaved in the run folder: {', '.join(saved)}"
        detail += warning_lines(result)
        if notes:
            detail += "\n" + "\n".join(f"note: {n}" for n in notes)
        reporter.finish(detail)
        text = f"{title}: done\n{detail}"
        out = ui(text, plan, lora=lora_name)
        out["lora_files"] = [lora_name] + saved
        out["images"] = watch.output_refs(([curve_path] if curve_path else []) + sample_paths,
                                          host.output_directory())
        return {"ui": out, "result": (lora_name, lora_path, plan.run_dir, watch.to_image_batch([curve]),
                                      watch.to_image_batch(sample_images))}


def run_record(run_dir: str) -> dict[str, Any]:
    """The run folder's result.json (status, losses, files), or {} if unreadable."""
    import json

    from ..executor.runs.folders import RESULT_FILE

    try:
        with open(os.path.join(run_dir, RESULT_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def sample_options(inputs: Mapping[str, Any], options: dict[str, Any]) -> tuple[bool, list[str]]:
    """Put the sampling inputs into ``options``: the prompt file (written from the text, or
    the file given), how often, and at first. Returns (sampling?, notes about unused inputs)."""
    prompts = (inputs.get("sample_prompts") or "").strip()
    prompts_file = (inputs.get("sample_prompts_file") or "").strip()
    if prompts and prompts_file:
        raise user_error("sample prompts are given both as text and as a file",
                         "clear sample_prompts or sample_prompts_file")
    if not (prompts or prompts_file):
        unused = [n for n in ("sample_every_n_epochs", "sample_every_n_steps", "sample_at_first") if inputs.get(n)]
        return False, [f"{n} is ignored: no sample prompts are given" for n in unused]
    options["sample_prompts"] = write_prompts(prompts) if prompts else host.resolve_user_path(prompts_file)
    every_steps = _positive(inputs.get("sample_every_n_steps"))
    every_epochs = _positive(inputs.get("sample_every_n_epochs"))
    if every_steps:
        options["sample_every_n_steps"] = every_steps
    if every_epochs or not every_steps:
        options["sample_every_n_epochs"] = every_epochs or options.get("save_every_n_epochs") or 1
    if inputs.get("sample_at_first"):
        options["sample_at_first"] = True
    return True, []


def deliver(trained: str, name: str, arch: catalogue.Architecture, run_dir: str,
            reporter: StepReporter) -> tuple[str, str]:
    """Put the final LoRA into ``models/loras/musubi-tuner/`` as ComfyUI can load it.

    Returns (delivered path, how). The file appears under its final name only when complete.
    """
    folder = host.loras_directory()
    conversion = arch.lora_conversion
    source, how = trained, "as trained: ComfyUI reads musubi's LoRA keys directly"
    if conversion.kind in ("convert_lora", "script"):
        source = convert(trained, name, arch, run_dir, reporter)
        how = f"converted with {arch.scripts.get(catalogue.CONVERT, 'convert_lora.py')}"
    elif conversion.kind == "key_rename" and conversion.rename:
        old, new = conversion.rename
        tmp = delivery.temp_path(folder, name)
        try:
            count = delivery.rename_keys(trained, tmp, delivery.prefix_renamer(old, new))
            target = delivery.place(tmp, folder, name)
        except BaseException:
            delivery._remove(tmp)
            raise
        return target, f"keys renamed {old}* -> {new}* ({count} tensors)"
    elif conversion.kind == "not_supported":
        how = "as trained; " + (conversion.note or "ComfyUI's LoraLoader does not support this architecture")
    tmp = delivery.copy_to_temp(source, folder, name)
    try:
        return delivery.place(tmp, folder, name), how
    except BaseException:
        delivery._remove(tmp)
        raise


def convert(trained: str, name: str, arch: catalogue.Architecture, run_dir: str, reporter: StepReporter) -> str:
    """Run the architecture's converter (through the executor) into ``<run_dir>/convert/``."""
    from ..executor.setup.discovery import resolve_install
    from ..executor.runs.plan import PlanSpec, make_plan
    from ..executor.runs.execute import execute_plan
    from .check import settings as load_settings

    settings = load_settings()
    out_dir = os.path.join(run_dir, "convert")
    spec = PlanSpec(architecture=arch.id, step=catalogue.CONVERT, models={"lora": trained},
                    output_dir=out_dir, output_name=name, run_dir=out_dir, name=f"{name}-convert")
    plan = make_plan(settings, spec, install=resolve_install(settings), use_probe=False)
    execute_plan(plan, on_event=reporter.on_event, should_cancel=reporter.should_cancel, check=True)
    converted = os.path.join(out_dir, f"{name}.safetensors")
    if not os.path.isfile(converted):
        raise user_error(f"the LoRA conversion finished but wrote no {converted}", f"see {out_dir}/run.log")
    return converted


NODE_CLASS_MAPPINGS = {"MusubiTrainLoRA": MusubiTrainLoRA}
NODE_DISPLAY_NAME_MAPPINGS = {"MusubiTrainLoRA": "Musubi Train LoRA"}

"""MusubiTrainLoRA, one node for every architecture: what a first run needs on the node, the rest on
the optional options nodes (nodes/options.py); inputs left at 0/``(recommended)`` take the catalogue's
documented value for the chosen architecture and variant. Delivery of the final LoRA, converted as
ComfyUI needs, into ``models/loras/musubi-tuner/``; epoch saves stay in the run folder.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from . import delivery, finish, host
from . import resume as resuming
from .deferred import catalogue
from .errors import MusubiTunerError, error_type, reported, user_error
from .fingerprint import OUTPUTS, digest
from .progress import StepReporter
from .steps import (
    CATEGORY, STEP_TITLES, accepted_options, arch_of, check_wires, dry_run_text,
    plan_step, run_plan, ui, warning_lines,
)
from .options import LEGACY_NAMES, check_values, merge, moved_inputs, text_problems
from .trainargs import sample_options, train_options, training_models, used_values, written_prompts  # noqa: F401
from .values import DATASET_TYPE, MODELS_TYPE, OPTIONS_TYPE, MusubiDataset, MusubiModels, TrainingOptions

# Essential FLOAT inputs: NaN/infinity passes ComfyUI's range check, so they are checked again.
FLOATS = ("network_alpha", "learning_rate")
RUN_AS = ["wait", "background"]


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
    """What a first run needs; the rest is on the options nodes (nodes/options.py). Inputs that
    follow a recommendation take it at 0; with a Models node wired, web/musubi_recommended.js
    shows the architecture's value instead and keeps following it until the user changes it."""
    return {
        "required": {
            "dataset": (DATASET_TYPE, {"tooltip": "The dataset, after Cache Latents and Cache Text Encoder."}),
            "models": (MODELS_TYPE, {"tooltip": "The models from the Musubi Models node of your architecture."}),
            "output_name": _opt("STRING", "my_lora", "File name of the LoRA (without .safetensors). If "
                                "models/loras/musubi-tuner/ already has one, a free name such as my_lora_2 is used."),
        },
        "optional": {
            "options": (OPTIONS_TYPE, {"tooltip": "Advanced settings (optional): wire a Musubi Optimizer, Memory, "
                                       "Timestep, Sample or Launch Options node, or a chain of them. Unset, "
                                       "everything follows the architecture's recommendation."}),
            "max_train_epochs": _opt("INT", 0, "How many times training goes through the dataset. 0 = the "
                                     "recommendation (16).", min=0, max=100000),
            "network_dim": _opt("INT", 0, "LoRA rank (its size and capacity). 0 = the architecture's "
                                "recommendation (32 for most, 16 for Qwen-Image).", min=0, max=1024),
            "network_alpha": _opt("FLOAT", 0.0, "LoRA alpha (scales the update by alpha/rank). 0 = the "
                                  "architecture's recommendation, else musubi's default 1.", min=0.0, max=1024.0,
                                  step=0.5),
            "learning_rate": _opt("FLOAT", 0.0, "Learning rate. 0 = the architecture's recommendation "
                                  "(e.g. 2e-4 Wan, 1e-4 FLUX, 5e-5 Qwen-Image).", min=0.0, max=1.0,
                                  step=0.00001, round=False),
            "save_every_n_epochs": _opt("INT", 1, "Also save the LoRA every N epochs (kept in the run folder); "
                                        "0 = only the final LoRA.", min=0, max=100000),
            "sample_prompts": _opt("STRING", "", "Prompts for sample images during training, one per line, with "
                                   "musubi's options (e.g. 'a cat --w 512 --h 512 --s 20'). Empty = one sample from "
                                   "the dataset's first caption at the architecture's documented size and steps "
                                   "(Musubi Sample Options can switch that off). Needs the VAE and text encoders "
                                   "in the models node.", multiline=True),
            "resume": _opt(resuming.choices(), resuming.NONE, resuming.RESUME_TOOLTIP),
            "dry_run": _opt("BOOLEAN", False, "Only check the inputs and show the exact command and every value "
                            "the run would use on the node (and in the prompt's history); nothing is launched."),
            "run_as": _opt(RUN_AS, "wait", "wait: this node trains and ComfyUI's queue waits for it. background: "
                           "the training is queued as a job (one queue per GPU) and the node returns at once with "
                           "its job_id; ComfyUI stays free, the job survives a ComfyUI restart, the LoRA is "
                           "delivered when it ends. Follow it in the Jobs panel or with Musubi Wait for Job."),
        },
        # The inputs that moved to the options nodes: an API prompt of an older version may still
        # set them here (nodes/options.py).
        "hidden": {"unique_id": "UNIQUE_ID", **{name: spec for name, spec in legacy_specs().items()}},
    }


def legacy_specs() -> dict[str, Any]:
    return {name: spec for name, spec in moved_inputs().items() if name in LEGACY_NAMES}


class _TrainValidation:
    """The Train node's VALIDATE_INPUTS: output_name, and the older inputs an API prompt may
    still set on the node (ComfyUI checks no hidden input itself). The parameters are named,
    since ComfyUI passes only what the signature names (see nodes/models.py)."""

    def __get__(self, instance: Any, owner: type) -> Any:
        import inspect

        def validate(output_name: Optional[str] = None, resume: Optional[str] = None, **legacy: Any) -> Any:
            # Refused when queued (HTTP 400): a name that is no file name on every OS, or that
            # would leave the run folder; a resume that is no recorded run or state (naming it
            # here replaces ComfyUI's "not in list" with the reason and the fix); an older input
            # with a value the options node refuses. Wired values arrive as None here and are
            # checked when the node runs.
            from . import guards

            found = [guards.labelled("output_name", guards.output_name_problem(output_name))
                     if output_name is not None else None, resuming.problem(resume)]
            found += check_values(legacy_specs(), legacy) + text_problems(legacy)
            found += guards.number_problems(owner, {k: legacy.pop(k, None) for k in FLOATS})
            found = [p for p in found if p]
            return True if not found else "; ".join(found)

        validate.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
            inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
            for n in ("output_name", "resume") + FLOATS + LEGACY_NAMES])
        return validate


class MusubiTrainLoRA:
    DESCRIPTION = ("Trains a LoRA with musubi-tuner for the architecture of the wired models node, with live "
                   "progress (steps, epoch, loss, ETA, the log's last lines, the newest sample image or the loss "
                   "curve as preview) and a Cancel that stops the whole training. The node holds what a first run "
                   "needs, each following the architecture's recommendation until you change it; the advanced "
                   "settings are on the optional Musubi ... Options nodes wired into options. The finished LoRA is "
                   "put into models/loras/musubi-tuner/ so LoraLoader lists it; the loss curve and the last "
                   "samples are outputs. With run_as background the training runs as a job beside ComfyUI (which "
                   "stays free and may restart) and the node returns its job_id at once.")
    CATEGORY = CATEGORY
    FUNCTION = "train"
    OUTPUT_NODE = True
    RETURN_TYPES = (LORA_NAME, "STRING", "STRING", "IMAGE", "IMAGE", "STRING")
    RETURN_NAMES = ("lora_name", "lora_path", "run_dir", "loss_curve", "samples", "job_id")
    OUTPUT_TOOLTIPS = ("The LoRA's name as LoraLoader lists it (musubi-tuner/<name>.safetensors); wire it to "
                       "LoraLoader's lora_name. Empty for a dry run.",
                       "Full path of the delivered LoRA file.",
                       "The run folder: command.txt, dataset config, run.log, result.json, loss.jsonl, the "
                       "epoch saves and sample/.",
                       "The loss curve (step, avr_loss, epochs marked), 768x432; wire it to Preview Image or "
                       "Save Image.",
                       "The images of the last sampling round (first frames of videos); one black 64x64 image "
                       "when no sample was made.",
                       "The background job's id (run_as background; wire it to Musubi Wait for Job); empty when "
                       "the node waited for the training.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return train_inputs()

    VALIDATE_INPUTS = _TrainValidation()

    @classmethod
    def IS_CHANGED(cls, unique_id: Any = None, **inputs: Any) -> str:
        values = digest(sorted((k, str(v)) for k, v in inputs.items() if k not in ("dataset", "models")))
        if inputs.get("dry_run"):
            return values + ":dry"
        if inputs.get("run_as") == "background":
            from . import jobs

            return f"{values}:job:{jobs.node_token(unique_id)}"
        return OUTPUTS.token(catalogue.TRAIN, unique_id, values)

    def train(self, dataset: MusubiDataset, models: MusubiModels, output_name: str, unique_id: Any = None,
              options: Optional[TrainingOptions] = None, **own: Any) -> dict[str, Any]:
        from . import guards

        # An older input wired on the Train node skipped VALIDATE_INPUTS (it arrives as a value now).
        found = check_values(legacy_specs(), {k: v for k, v in own.items() if k in LEGACY_NAMES})
        if found:
            raise user_error("; ".join(found), "change the input named above; nothing was run")
        inputs, origin = merge(own, options)

        # A wired name or optimizer skipped VALIDATE_INPUTS; never let safe_name quietly turn
        # "../../x" into "x".
        problem = (guards.output_name_problem(output_name)
                   or guards.optimizer_problem(inputs.get("optimizer_custom") or "")
                   or guards.gpu_ids_problem(inputs.get("gpu_ids"))
                   or next(iter(guards.number_problems(type(self), {k: inputs.get(k) for k in FLOATS})), None)
                   or resuming.problem(inputs.get("resume")))
        if problem:
            raise user_error(problem, "change the input named above; nothing was run")
        check_wires(dataset, models)
        arch = arch_of(models)
        title = f"{arch.display_name} {STEP_TITLES[catalogue.TRAIN]}"
        name = delivery.safe_name(output_name)
        options, accelerate = train_options(inputs)
        default = None
        if inputs.get("default_sample", True) and not (inputs.get("sample_prompts") or "").strip() \
                and not (inputs.get("sample_prompts_file") or "").strip():
            from .samples import default_prompt

            default = default_prompt(arch, models, dataset)
        by_node: dict[str, str] = {}
        samples = sample_options(inputs, options, default, by_node)
        recommended = arch.recommended_for(models.selectors)
        precision = options.get("mixed_precision") or recommended.get("mixed_precision")
        if precision:
            accelerate["mixed_precision"] = precision
        options, ignored = accepted_options(arch, catalogue.TRAIN, options, models.selectors)
        options["keep_states"] = int(inputs.get("keep_states") or 2)  # the pack's own; make_plan takes it
        if options.get("max_train_steps"):
            # musubi lets --max_train_epochs override --max_train_steps: unset the
            # recommended epoch count when steps are given.
            options["max_train_epochs"] = None
        notes = [f"{n} is not used by {arch.display_name}'s training script; ignored" for n in ignored]
        notes += samples.notes + resuming.save_notes(options)
        dry_run = bool(inputs.get("dry_run"))
        launcher = inputs.get("launcher") or "accelerate"
        plan_args = dict(step=catalogue.TRAIN, dataset=dataset, models=models, options=options, label=name,
                         extra_args=inputs.get("extra_args") or "", output_name=name, output_in_run_dir=True,
                         accelerate=accelerate, launcher=launcher,
                         model_paths=training_models(arch, models, samples.sampling))
        fail_text = lambda message: host.send_text(f"{title}: failed\n{message}", unique_id)  # noqa: E731
        if dry_run:
            if dataset.pending:
                # A dry run of the whole chain: the cache steps above were dry runs too, so
                # their caches need not exist yet; everything else is checked as usual.
                plan_args["check_caches"] = False
                steps = ", ".join(STEP_TITLES.get(s, s) for s in dataset.pending)
                notes.append(f"the cache checks were skipped: the {steps} step(s) above were dry runs, so the "
                             "caches may not exist yet")
            with written_prompts(samples.pending), reported(fail_text):
                plan = plan_step(**plan_args)
            text = dry_run_text(plan, arch, resuming.note_lines(plan) + notes, used_values(arch, models, options, origin, accelerate,
                                                               launcher, inputs, samples.line, by_node))
            host.send_text(text, unique_id)
            from . import watch
            from .lossplot import render

            curve = watch.to_image_batch([render([], message="dry run: nothing was trained")])
            return {"ui": ui(text, plan), "result": ("", "", "", curve, watch.to_image_batch([]), "")}

        with written_prompts(samples.pending), reported(fail_text):
            plan = plan_step(**plan_args)
            if inputs.get("run_as") == "background":
                from . import jobs

                return jobs.submit_training(plan, arch, name, title, unique_id, resuming.note_lines(plan) + notes)
        from .check import settings as load_settings

        s = load_settings()
        reporter = StepReporter(unique_id, step=catalogue.TRAIN, interval=s.progress_update_interval, title=title)
        from . import watch

        # musubi writes samples to <output_dir>/sample; the output folder is the run folder
        reporter.watch = watch.TrainWatch(plan.run_dir, marks=resuming.marks(plan))
        resuming.seed_curve(reporter, plan)
        notes = resuming.note_lines(plan) + notes
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
                lora_path, how = finish.deliver(trained, name, arch, plan.run_dir, reporter)
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
        OUTPUTS.record(catalogue.TRAIN, unique_id, [lora_path])
        return finish.outputs(title, plan.run_dir, plan.to_dict()["argv"], lora_path, how, reporter,
                              warnings=warning_lines(result), notes=notes)


NODE_CLASS_MAPPINGS = {"MusubiTrainLoRA": MusubiTrainLoRA}
NODE_DISPLAY_NAME_MAPPINGS = {"MusubiTrainLoRA": "Musubi Train LoRA"}

"""After training: the LoRA delivered, converted as ComfyUI needs, into ``models/loras/musubi-tuner/``
(never replacing a file), and the Train node's outputs built from the run folder (the loss curve,
the last round of samples, the text). Shared by the Train node, background jobs finished by the
job manager, and the Wait for Job node. ``reporter`` is anything with ``on_event`` and
``should_cancel`` (the node's StepReporter, or a silent one for a job).
"""

from __future__ import annotations

import os
from typing import Any, Optional

from . import delivery, host
from .deferred import catalogue
from .errors import user_error


def deliver(trained: str, name: str, arch: catalogue.Architecture, run_dir: str,
            reporter: Any, folder: Optional[str] = None) -> tuple[str, str]:
    """Put the final LoRA into ``models/loras/musubi-tuner/`` (or ``folder``) as ComfyUI can load it.

    Returns (delivered path, how). The file appears under its final name only when complete.
    """
    folder = folder or host.loras_directory()
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


def convert(trained: str, name: str, arch: catalogue.Architecture, run_dir: str, reporter: Any) -> str:
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


def outputs(title: str, run_dir: str, argv: list[str], lora_path: str, how: str, reporter: Any, *,
            warnings: str = "", notes: list[str] = (), job_id: str = "") -> dict[str, Any]:
    """The Train node's ``{"ui", "result"}`` for a delivered LoRA: its name as LoraLoader lists
    it, the path, the run folder, the loss curve and the last samples (also as ``ui.images``),
    and the text (losses, epoch saves, warnings, notes) on the node."""
    from . import watch

    lora_name = host.lora_name(lora_path) or os.path.basename(lora_path)
    record = run_record(run_dir)
    saved = [os.path.basename(p) for p in record.get("files_produced") or [] if p.endswith(".safetensors")]
    curve, curve_path = watch.final_curve(run_dir)
    sample_images, sample_paths = watch.final_samples(run_dir)
    detail = f"LoRA: {lora_name} ({how})\nrun folder: {run_dir}"
    if record.get("final_loss") is not None:
        detail += (f"\nloss: final {record['final_loss']:.4g}, best {record['best_loss']:.4g} at step "
                   f"{record['best_loss_step']} of {record.get('steps')}")
    if saved:
        detail += f"\nsaved in the run folder: {', '.join(saved)}"
    detail += warnings
    if notes:
        detail += "\n" + "\n".join(f"note: {n}" for n in notes)
    reporter.finish(detail)
    text = f"{title}: done\n{detail}"
    out: dict[str, Any] = {"text": [text], "argv": list(argv), "run_dir": [run_dir], "lora": [lora_name],
                           "lora_files": [lora_name] + saved,
                           "images": watch.output_refs(([curve_path] if curve_path else []) + sample_paths,
                                                       host.output_directory())}
    if job_id:
        out["job_id"] = [job_id]
    return {"ui": out, "result": (lora_name, lora_path, run_dir, watch.to_image_batch([curve]),
                                  watch.to_image_batch(sample_images), job_id)}

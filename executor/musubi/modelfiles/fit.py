"""Does a model file fit an architecture's input? ``check_model`` answers with findings (errors
refuse the run before launch; warnings only inform) that say what the file is, why it does
not fit and what to pick or download instead; ``verdict`` is the same as one line for the
Models nodes and the Setup Check. Errors only where the header decides; an unrecognised file
or a case only the file name can tell is a warning. Standard library only.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

from .expectations import BELONGS, EXPECT, Expect, expectation
from .identity import COMPONENT_NAMES, Identity
from .variants import ERROR, VARIANT_CHECKS, WARNING, Finding, precision, recommendations

__all__ = ["check_model", "verdict", "explain", "Finding", "file_recommendations", "ERROR", "WARNING", "checked_inputs"]

_AGAIN = "download it again (compare the size with the one on the download page)"


def checked_inputs(arch_id: str) -> tuple[str, ...]:
    """The inputs of ``arch_id`` this module knows what to expect of."""
    return tuple(name for a, name in EXPECT if a == arch_id)


def _belongs(arch_id: str, ident: Identity, here: str) -> str:
    """`` It belongs in the VAE input (vae).`` when another input of this architecture takes it."""
    for (a, name), exp in EXPECT.items():
        if a == arch_id and name != here and ident.family in exp.families:
            return f" It belongs in the {exp.label} input ({name})."
    return ""


def _component_of(input_name: str) -> str:
    if "dit" in input_name:
        return "dit"
    if "vae" in input_name:
        return "vae"
    if "image_encoder" in input_name or input_name == "clip":
        return "image_encoder"
    return "text_encoder"


def _what(ident: Identity) -> str:
    text = ident.label()
    bits = [b for b in (ident.dtype if not ident.quant else "", _quant_text(ident)) if b]
    return text + (f" ({', '.join(bits)})" if bits else "")


def _quant_text(ident: Identity) -> str:
    names = {"fp8": f"plain {ident.quant_detail or 'fp8'}", "fp8_scaled": "ComfyUI fp8_scaled",
             "comfy_quant": f"ComfyUI quantized, {ident.quant_detail}", "bnb4": "bitsandbytes 4-bit"}
    return names.get(ident.quant, "")


def _identity_findings(arch_id: str, input_name: str, exp: Expect, ident: Identity, instead: str) -> list[Finding]:
    """Component/family, unsupported variants, prefix, layout and split-file rules. Messages
    follow "<file> is <what it is>: " (see ``explain``)."""
    label = exp.label
    if ident.family == "gguf":
        return [Finding(ERROR, "musubi-tuner reads only .safetensors and PyTorch checkpoints", f"pick {instead}")]
    if ident.family == "lora":
        return [Finding(ERROR, f"not a {label}",
                        f"pick {instead}; a LoRA to continue from goes in the training node's network_weights")]
    if ident.component == "checkpoint" and "checkpoint" not in exp.families:
        return [Finding(ERROR, f"musubi loads the {label} from a file of its own, not from an all-in-one checkpoint",
                        f"pick {instead}")]
    if not ident.family:
        if ident.component == "pipeline":
            return [Finding(ERROR, f"not a {label}", f"pick {instead}")]
        if not ident.tensors:
            return [Finding(WARNING, "the file holds no tensors, so it cannot be the model (a placeholder?)",
                            f"the {label} musubi expects: {instead}")]
        return [Finding(WARNING, f"its header matches no model the pack knows ({ident.tensors} tensors), so it was not "
                                 "checked; musubi will tell when it loads it",
                        f"the {label} musubi expects: {instead}")]
    if ident.family not in exp.families:
        why = exp.reasons.get(ident.family, "")
        expected_comp = _component_of(input_name)
        lead = f"not a {label}"
        if expected_comp and ident.component != expected_comp and ident.component in BELONGS:
            lead = f"a {COMPONENT_NAMES[ident.component]}, not a {label}"
        return [Finding(ERROR, lead + (f"; {why}" if why else "") + "." + _belongs(arch_id, ident, input_name),
                        f"pick {instead}")]
    out: list[Finding] = []
    if ident.unsupported:
        out.append(Finding(ERROR, f"{ident.unsupported}", f"pick {instead}"))
    if exp.reasons.get(ident.family) and exp.layouts and ident.layout not in exp.layouts:
        out.append(Finding(ERROR, exp.reasons[ident.family], f"pick {instead}"))
    elif exp.layouts and ident.layout not in exp.layouts:
        out.append(Finding(ERROR, f"its keys are in the {ident.layout} layout, which musubi's loader does not read",
                           f"pick {instead}"))
    if ident.prefix not in exp.prefixes:
        out.append(Finding(ERROR, f"its keys start with {ident.prefix!r}, which musubi's {label} loader does not "
                                  "strip (\"Missing key(s)\" at load)", f"pick {instead}"))
    if ident.split_parts > 1 and not exp.split:
        out.append(Finding(ERROR, f"one part of a split model, and musubi's {label} loader reads only the file "
                                  "it is given", f"pick {instead}"))
    if os.path.isdir(ident.path) and not exp.folder:
        out.append(Finding(ERROR, f"a folder; musubi's {label} loader needs a single file",
                           f"pick {instead}"))
    return out


def _quant_findings(exp: Expect, ident: Identity, opts: Mapping[str, Any], instead: str) -> list[Finding]:
    q = ident.quant
    if q == "comfy_quant" and not exp.comfy_quant:
        return [Finding(ERROR, f"ComfyUI-quantized ({ident.quant_detail}); {_QUANT_WHY_SHORT}",
                        f"pick the bf16/fp16 file instead: {instead}")]
    if q == "fp8_scaled" and not exp.fp8_scaled:
        return [Finding(ERROR, "a ComfyUI fp8_scaled file: its scale_weight keys make musubi's strict load "
                               "fail (\"Unexpected key(s)\"), and with fp8_scaled musubi stops with \"already in "
                               "float8 format\"", f"pick the bf16/fp16 file instead: {instead}")]
    if q == "bnb4" and not exp.bnb:
        return [Finding(ERROR, "a bitsandbytes 4-bit file, which only the Ideogram 4 loader reads",
                        f"pick {instead}")]
    if q != "fp8":
        return []
    if exp.fp8 == "refuse":
        return [Finding(ERROR, "it holds plain fp8 weights, which musubi's docs say cannot be used for this model",
                        f"pick the bf16 file: {instead}")]
    if exp.fp8 == "fp8_base":
        if opts.get("fp8_scaled"):
            return [Finding(ERROR, "it holds fp8 weights already, and fp8_scaled would quantize them again (musubi: "
                                   "\"already in float8 format\")", "unset fp8_scaled and keep fp8_base")]
        if not opts.get("fp8_base"):
            return [Finding(WARNING, "it holds fp8 weights; without fp8_base musubi casts them up to the DiT dtype "
                                     "(no quality gained, memory lost)", "set fp8_base")]
        return []
    if exp.fp8 == "file_dtype":
        return [Finding(WARNING, "it holds plain fp8 weights, and musubi loads this DiT in the file's own dtype, "
                                 "so it would train on fp8 weights; its docs name bf16 files",
                        f"prefer the bf16 file: {instead}")]
    if exp.fp8 == "warn":
        return [Finding(WARNING, "it holds plain fp8 weights; musubi casts them up to bf16 when loading, so the "
                                 "fp8 rounding stays in the model (only Wan documents fp8 files)",
                        f"prefer the bf16/fp16 file: {instead}")]
    return []


_QUANT_WHY_SHORT = "only ComfyUI reads those formats; musubi's loader refuses the extra scale keys"


def check_model(ident: Identity, arch_id: str, input_name: str, *, selectors: Optional[Mapping[str, Any]] = None,
                options: Optional[Mapping[str, Any]] = None, step: str = "train") -> list[Finding]:
    """Findings for one chosen file. ``options`` are the effective options of ``step`` (the
    precision rules apply to training only)."""
    sel = dict(selectors or {})
    opts = dict(options or {})
    if ident.broken:
        return [Finding(ERROR, ident.broken, _AGAIN)]
    out: list[Finding] = []
    for problem in ident.problems:
        out.append(Finding(ERROR, problem, "download every part into the same folder" if "missing" in problem
                           else "download it again; the file is incomplete"))
    exp = expectation(arch_id, input_name)
    if exp is None:
        return out
    instead = exp.instead_for(sel)
    found = _identity_findings(arch_id, input_name, exp, ident, instead)
    out += found
    if any(f.level == ERROR for f in found) or not ident.family or ident.family not in exp.families:
        return out
    out += _quant_findings(exp, ident, opts, instead)
    check = VARIANT_CHECKS.get((arch_id, input_name))
    if check is not None:
        out += check(ident, sel, opts, input_name)
    if step == "train":
        out += precision(arch_id, input_name, ident, opts)
    for note in ident.notes:
        out.append(Finding(WARNING, note, ""))
    return out


def explain(ident: Identity, finding: Finding) -> str:
    """``<file> is <what it is>: <finding>``, the sentence pre-flight and the pickers show."""
    if ident.broken or not (ident.family or ident.name):
        return f"{ident.file_name}: {finding.message}"
    return f"{ident.file_name} is {_what(ident)}: {finding.message}"


def verdict(ident: Identity, arch_id: str, input_name: str, *, selectors: Optional[Mapping[str, Any]] = None,
            options: Optional[Mapping[str, Any]] = None) -> str:
    """One line: ``OK``, ``CHECK`` (warnings) or ``REFUSED``, then what the file is and why."""
    findings = check_model(ident, arch_id, input_name, selectors=selectors, options=options)
    worst = next((f for f in findings if f.level == ERROR), None) or next(iter(findings), None)
    if worst is None:
        return f"OK {ident.file_name}: {_what(ident)}"
    tag = "REFUSED" if worst.level == ERROR else "CHECK"
    return f"{tag} {explain(ident, worst)}" + (f" -> {worst.fix}" if worst.fix else "")


def file_recommendations(arch_id: str, idents: Mapping[str, Identity]) -> dict[str, Any]:
    """Training settings that follow the chosen files (see variants.recommendations)."""
    return recommendations(arch_id, idents)

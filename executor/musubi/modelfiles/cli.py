"""``python -m executor inspect FILE... [--json] [--arch ARCH --input NAME [--set NAME=VALUE]]``:
what each model file is, from its header (handy for bug reports), and with ``--arch``/``--input``
whether musubi would take it for that input. Exit code 1 when a file is broken, cut short or
refused, else 0. Standard library only.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Optional

from .expectations import EXPECT
from .fit import ERROR, check_model, explain, verdict
from .identify import identify
from .identity import COMPONENT_NAMES, Identity

__all__ = ["cli_inspect", "inspect_text"]


def _selectors(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set {pair!r}: write NAME=VALUE, e.g. task=t2v-14B")
        out[name.strip()] = {"true": True, "false": False}.get(value.strip().lower(), value.strip())
    return out


def inspect_text(ident: Identity, seconds: float, check: Optional[tuple[str, str, dict[str, Any]]] = None) -> str:
    """The human-readable report of one file."""
    lines = [ident.path]
    if ident.broken:
        lines.append(f"  broken:     {ident.broken}")
    else:
        comp = COMPONENT_NAMES.get(ident.component, ident.component)
        lines.append(f"  what:       {ident.label()}" + (f" ({comp}, family {ident.family})" if ident.family else ""))
        if ident.inner:
            lines.append(f"  inside:     {ident.inner}")
        quant = {"fp8": "plain fp8", "fp8_scaled": "ComfyUI fp8_scaled (scale_weight keys)",
                 "comfy_quant": f"ComfyUI quantized ({ident.quant_detail})", "bnb4": "bitsandbytes 4-bit",
                 "gguf": "GGUF"}.get(ident.quant, "")
        lines.append(f"  dtype:      {ident.dtype or '-'}" + (f", {quant}" if quant else ""))
        if ident.layout or ident.prefix:
            lines.append(f"  layout:     {ident.layout or '-'}" + (f", key prefix {ident.prefix!r}" if ident.prefix
                                                                     else ""))
        facts = {k: v for k, v in ident.variant.items() if k not in ("lm_prefix",)}
        if facts:
            lines.append("  variant:    " + ", ".join(f"{k}={v}" for k, v in facts.items()))
        if ident.undecidable:
            lines.append(f"  cannot tell: {ident.undecidable} (only the file name can)")
        if ident.unsupported:
            lines.append(f"  unsupported: {ident.unsupported}")
    size = f"{ident.size / 1024 ** 3:.2f} GB" if ident.size >= 1024 ** 3 else f"{ident.size / 1024 ** 2:.1f} MB"
    state = "complete" if ident.usable else "incomplete"
    where = f"{ident.format or 'unknown format'}, {ident.tensors} tensors, {size}"
    if ident.split_parts:
        where += f" in {ident.split_parts} parts"
    if ident.wrapper:
        where += f", weights under {ident.wrapper!r}"
    lines.append(f"  file:       {where} ({state})")
    for problem in ident.problems:
        lines.append(f"  problem:    {problem}")
    for note in ident.notes:
        lines.append(f"  note:       {note}")
    if check is not None:
        arch, model, selectors = check
        lines.append(f"  {arch}.{model}: " + verdict(ident, arch, model, selectors=selectors))
    lines.append(f"  read in {seconds * 1000:.1f} ms")
    return "\n".join(lines)


def cli_inspect(args: Any) -> int:
    try:
        selectors = _selectors(list(args.set or []))
    except ValueError as exc:
        print(f"python -m executor inspect: {exc}", file=sys.stderr)
        return 2
    check: Optional[tuple[str, str, dict[str, Any]]] = None
    if args.arch or args.input:
        if (args.arch, args.input) not in EXPECT:
            known = ", ".join(f"{a}:{m}" for a, m in EXPECT)
            print(f"python -m executor inspect: no input {args.input!r} for architecture {args.arch!r} "
                  f"(known: {known})", file=sys.stderr)
            return 2
        check = (args.arch, args.input, selectors)
    failed = False
    reports = []
    for path in args.files:
        start = time.perf_counter()
        ident = identify(path)
        seconds = time.perf_counter() - start
        findings = check_model(ident, check[0], check[1], selectors=check[2]) if check else []
        failed = failed or bool(ident.broken or ident.problems) or any(f.level == ERROR for f in findings)
        if args.json:
            entry = ident.to_dict()
            entry["seconds"] = round(seconds, 6)
            if check:
                entry["check"] = {"architecture": check[0], "input": check[1], "selectors": check[2],
                                  "findings": [{"level": f.level, "message": explain(ident, f), "fix": f.fix}
                                               for f in findings]}
            reports.append(entry)
        else:
            reports.append(inspect_text(ident, seconds, check))
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        print("\n\n".join(reports))
    return 1 if failed else 0

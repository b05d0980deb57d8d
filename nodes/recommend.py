"""Where each training value comes from: the architecture's recommendation (musubi's docs, kept in
the catalogue), the user (the Train node or an options node), or musubi's own default (its argparse
default, from the flag facts). Used for the values the frontend shows on the nodes
(``GET /musubi-tuner/recommended``, web/musubi_recommended.js) and for the dry run's list of every
value a run will use.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, Mapping, Optional

from .deferred import catalogue

if TYPE_CHECKING:
    from ..executor.musubi.catalogue import Architecture

RECOMMENDED, YOU, MUSUBI = "recommended", "you", "musubi"
# Inputs whose unset value (0 or "(recommended)") follows the architecture; the frontend shows
# the value they follow. Numbers first: those the frontend writes into the widget.
NUMBERS = ("max_train_epochs", "network_dim", "network_alpha", "learning_rate", "lr_warmup_steps",
           "discrete_flow_shift")
CHOICES = ("optimizer_type", "lr_scheduler", "fp8", "mixed_precision", "attention", "timestep_sampling")
# The musubi options the nodes set, in the order the dry run lists them (then any other option
# the recommendation adds).
LISTED = ("max_train_epochs", "max_train_steps", "network_dim", "network_alpha", "learning_rate",
          "save_every_n_epochs", "optimizer_type", "optimizer_args", "lr_scheduler", "lr_warmup_steps",
          "network_weights", "resume", "fp8_base", "fp8_scaled", "blocks_to_swap", "gradient_checkpointing",
          "mixed_precision", "attention", "timestep_sampling", "discrete_flow_shift", "seed",
          "sample_every_n_epochs", "sample_every_n_steps", "sample_at_first")
# musubi option -> the node input that sets it, where the names differ
INPUT_OF = {"fp8_base": "fp8", "fp8_scaled": "fp8", "network_weights": "initial_weights",
            "sample_prompts": "sample_prompts"}
SHOWN_ELSEWHERE = ("sample_prompts",)  # the dry run has its own line for it


@functools.lru_cache(maxsize=1)
def _flags() -> dict[str, Any]:
    from ..executor.musubi.flagfacts import load_flags

    return load_flags()["scripts"]


def musubi_default(arch: Architecture, option: str) -> Any:
    """The training script's argparse default for an option (None: not set / unknown)."""
    script = arch.scripts.get(catalogue.TRAIN, "")
    flag = _flags().get(script, {}).get("flags", {}).get(f"--{option}")
    return flag.get("default") if isinstance(flag, dict) else None


def _fp8_choice(values: Mapping[str, Any]) -> str:
    if not values.get("fp8_base"):
        return "off"
    return "fp8_base + fp8_scaled" if values.get("fp8_scaled") else "fp8_base"


def recommended_inputs(arch: Architecture, selectors: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """``{input: {"value", "source"}}`` for every following input the architecture's training
    script takes: its recommendation, else musubi's default (inputs with neither are left out)."""
    rec = arch.recommended_for(selectors)
    accepted = arch.options_for(catalogue.TRAIN, selectors)
    out: dict[str, Any] = {}
    for name in NUMBERS + CHOICES:
        if name == "fp8":
            if "fp8_base" in accepted:
                out[name] = {"value": _fp8_choice(rec), "source": RECOMMENDED if "fp8_base" in rec else MUSUBI}
            continue
        if name != "attention" and name not in accepted:
            continue
        if name in rec:
            out[name] = {"value": rec[name], "source": RECOMMENDED}
        else:
            default = musubi_default(arch, name)
            if default not in (None, ""):
                out[name] = {"value": default, "source": MUSUBI}
    return out


def shown(value: Any) -> str:
    """A value as the dry run writes it: on/off, 2e-04 style only for small floats."""
    if value is True:
        return "on"
    if value is False or value is None:
        return "off"
    if isinstance(value, float):
        short = f"{value:.0e}"
        if value != 0 and abs(value) < 1e-3 and math.isfinite(value) and float(short) == value:
            return short.replace("e-0", "e-")  # 2e-4, as musubi's docs write it
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def run_values(arch: Architecture, selectors: Mapping[str, Any], options: Mapping[str, Any],
               origin: Mapping[str, str], by_node: Optional[Mapping[str, str]] = None) -> list[str]:
    """One line per value the training run will use: ``name value (where it came from)``.

    ``options`` are the user's (after train_options/accepted_options: None or False switch a
    recommendation off); ``origin`` maps node inputs to the options node that set them;
    ``by_node`` names options the Train node chose itself, with why. A user value equal to the
    recommendation counts as recommended. Of epochs and steps only the one in effect is listed.
    """
    rec = arch.recommended_for(selectors)
    accepted = arch.options_for(catalogue.TRAIN, selectors)
    by_epochs = options.get("max_train_epochs", rec.get("max_train_epochs")) and not options.get("max_train_steps")
    unused = {"max_train_steps" if by_epochs else "max_train_epochs"}
    names = [n for n in LISTED if (n in accepted or n == "attention") and n not in unused]
    names += sorted(n for n in rec if n not in names and n not in SHOWN_ELSEWHERE and n not in unused)
    names += sorted(n for n in options if n not in names and n not in SHOWN_ELSEWHERE and n not in unused)
    lines = []
    for name in names:
        if name in (by_node or {}):
            value, source = options.get(name), (by_node or {})[name]
        elif name in options:
            value = options[name]
            if name in rec and rec[name] == value:
                source = f"recommended for {arch.display_name}"
            else:
                where = origin.get(INPUT_OF.get(name, name))
                source = f"you, on {where}" if where else "you"
        elif name in rec:
            value, source = rec[name], f"recommended for {arch.display_name}"
        else:
            value, source = musubi_default(arch, name), "musubi's default"
        lines.append(f"  {name} {shown(value)} ({source})")
    return lines


def recommendation(node_type: str, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for ``GET /musubi-tuner/recommended?node=<Models node id>&<selector>=..``:
    the architecture's display name and ``values`` (input -> value and source) for the chosen
    variant. Query values of other names (the node's model files) are ignored."""
    from . import models

    cls = models.NODE_CLASS_MAPPINGS.get(node_type)
    if cls is None:
        return 404, {"error": f"{node_type!r} is not a Musubi Models node"}
    arch = cls.arch()
    selectors = {}
    for sel in arch.selectors:
        if sel.name in query:
            given = query[sel.name]
            value = given.lower() == "true" if all(isinstance(c, bool) for c in sel.choices) else given
            match = [c for c in sel.choices if str(c) == str(value)]
            if not match:
                return 400, {"error": f"{sel.name} {given!r} is not one of {[str(c) for c in sel.choices]}"}
            selectors[sel.name] = match[0]
    return 200, {"architecture": arch.id, "display_name": arch.display_name,
                 "values": recommended_inputs(arch, selectors)}

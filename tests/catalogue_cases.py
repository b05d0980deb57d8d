"""Argument cases used by both test_catalogue.py (recorded flag facts) and test_real_musubi.py
(the real scripts' parsers): every selector combination, and every option a step takes."""

from __future__ import annotations

import itertools

from executor.musubi import catalogue as cat


def selector_combinations(arch: cat.Architecture):
    names = [s.name for s in arch.selectors]
    for values in itertools.product(*(s.choices for s in arch.selectors)):
        yield dict(zip(names, values))


def all_models(arch: cat.Architecture, folder: str = "/models") -> dict[str, str]:
    return {m.name: f"{folder}/{m.name}.safetensors" for m in arch.models}


def sample_value(arch: cat.Architecture, name: str, flag_facts: dict):
    """A value of the right shape for option ``name``, from the script's own facts."""
    opt = cat.OPTIONS[name]
    if opt.kind == "switch":
        return True
    if opt.kind == "attention":
        return "sdpa"
    if name in arch.allowed_values:
        return arch.allowed_values[name][0]
    facts = flag_facts[opt.flag]
    if opt.kind == "values":
        return [{"float": "0.5", "int": "1"}.get(facts["type"], "key=1")]
    if facts["choices"]:
        return facts["choices"][0]
    return {"int": 1, "float": 0.5}.get(facts["type"], "1" if "int" in str(facts["type"]) else "value")


def every_option(arch: cat.Architecture, step: str, selectors: dict, facts: dict) -> dict:
    """Every option the step takes, with values musubi's rules allow together."""
    flags = facts[arch.scripts[step]]["flags"]
    opts = {n: sample_value(arch, n, flags) for n in arch.options_for(step, selectors)}
    if step == cat.TRAIN:
        opts["blocks_to_swap"] = 1
        for a, b in arch.conflicts:  # keep the first of each conflicting pair
            opts.pop(b, None)
        if "fp8_scaled" in opts:
            opts["fp8_base"] = True
        opts["attention"] = "sdpa"
        opts["max_data_loader_n_workers"] = 1
    return opts

"""User-supplied extra arguments for a musubi script: accepted only when every flag exists
for that script (per the committed flag facts) and is not one the pack sets itself.

Text is split with POSIX shlex rules on every OS (we never run a shell; quotes only group
words). Imports only the standard library and its room.
"""

from __future__ import annotations

import difflib
import functools
import shlex
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from ..errors import PreflightError
from ..problems import Problem

__all__ = ["check_extra_args", "parse_extra_args", "controlled_flags", "script_flags", "ALWAYS_CONTROLLED"]

INPUT = "extra_args"

# Flags the pack always sets or must keep in its own hands: where data comes from and
# where files are written (outputs stay under the configured roots), the network module,
# a second settings file that could override all of it, and secrets.
ALWAYS_CONTROLLED: Mapping[str, str] = {
    "--dataset_config": "the dataset input",
    "--output_dir": "the output folder input",
    "--output_name": "the output name input",
    "--network_module": "the architecture (each has its own network module)",
    "--config_file": "the node inputs (a second settings file would override them)",
    "--sample_prompts": "options.sample_prompts",
    "--resume": "options.resume",
    "--network_weights": "options.network_weights",
    "--base_weights": "options.base_weights",
    "--logging_dir": "options.logging_dir",
    "--log_tracker_config": "the pack (it names a file to read)",
    "--huggingface_token": "the environment (HF_TOKEN); tokens never go on a command line",
    "--wandb_api_key": "the environment (WANDB_API_KEY); keys never go on a command line",
    "--huggingface_repo_id": "the pack (uploads are not started from extra arguments)",
    "--save_state_to_huggingface": "the pack (uploads are not started from extra arguments)",
    "--resume_from_huggingface": "the pack (downloads are not started from extra arguments)",
    "--debug_mode": "the pack (debug mode caches nothing)",
}


@functools.lru_cache(maxsize=4)
def _load_facts(path: Optional[str]) -> dict[str, Any]:
    from .flagfacts import load_flags

    return load_flags(path)


def script_flags(script: str, facts: Optional[Mapping[str, Any]] = None) -> Optional[Mapping[str, Any]]:
    """``{"--flag": {...}}`` for a script (``wan_train_network.py``), or None if unknown."""
    data = facts if facts is not None else _load_facts(None)
    entry = data.get("scripts", {}).get(script)
    return None if entry is None else entry.get("flags", {})


def controlled_flags() -> dict[str, str]:
    """Every flag the pack sets itself -> what to use instead. Derived from the catalogue:
    model-file flags, selector flags and attention backends of every architecture."""
    out = dict(ALWAYS_CONTROLLED)
    try:
        from . import catalogue
    except ImportError:  # pragma: no cover - the catalogue is part of the pack
        return out
    for attention, flag in getattr(catalogue, "ATTENTION_FLAGS", {}).items():
        out.setdefault(flag, f"options.attention = \"{attention}\"")
    for arch in getattr(catalogue, "ARCHITECTURES", {}).values():
        for model in arch.models:
            out.setdefault(model.flag, f"models.{model.name}")
        for selector in arch.selectors:
            for fragments in selector.emit.values():
                for fragment in fragments.values():
                    for token in fragment:
                        if token.startswith("--"):
                            out.setdefault(token, f"selectors.{selector.name}")
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _takes_value(fact: Mapping[str, Any]) -> bool:
    return bool(fact.get("takes_value", fact.get("nargs") != 0))


def check_extra_args(value: Union[str, Sequence[str], None], script: str, *,
                     command_flags: Iterable[str] = (), facts: Optional[Mapping[str, Any]] = None,
                     controlled: Optional[Mapping[str, str]] = None) -> tuple[list[str], list[Problem]]:
    """Split and check extra arguments for ``script``. Returns (argv, problems); argv is
    only meaningful when there are no problems.

    ``command_flags``: flags the pack's own command already has (a repeat would silently
    win or lose in argparse, so it is refused; the fix names the option to use).
    """
    problems: list[Problem] = []
    if value is None or value == "" or value == []:
        return [], problems
    if isinstance(value, str):
        if "\x00" in value:
            return [], [Problem(INPUT, "contains a NUL character", "remove it")]
        try:
            tokens = shlex.split(value, posix=True)
        except ValueError as exc:
            return [], [Problem(INPUT, f"cannot split the text into arguments: {exc}",
                                "close the open quote (quotes only group words; no shell runs them)")]
    else:
        tokens = []
        for item in value:
            if not isinstance(item, str):
                return [], [Problem(INPUT, f"every argument must be a string, got {item!r}",
                                    f'write it as "{item}"')]
            if "\x00" in item:
                return [], [Problem(INPUT, "contains a NUL character", "remove it")]
            tokens.append(item)

    flags = script_flags(script, facts)
    if flags is None:
        return tokens, [Problem(INPUT, f"no flag facts for {script}, so extra arguments cannot be checked",
                                "remove the extra arguments, or regenerate executor/data/musubi_flags.json")]
    controlled = controlled_flags() if controlled is None else controlled
    aliases = {alias: primary for primary, fact in flags.items() for alias in fact.get("aliases") or ()
               if alias.startswith("--")}
    already = set(command_flags)
    seen: set[str] = set()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("-") or _is_number(token):
            problems.append(Problem(INPUT, f"{token!r} is not a flag and follows no flag that takes a value",
                                    "write flags as --name value; quote a value that has spaces"))
            continue
        if token == "--" or not token.startswith("--"):
            problems.append(Problem(INPUT, f"{token!r}: only full --long flag names are accepted",
                                    "use the full name, e.g. --max_train_epochs"))
            continue
        name, eq, inline = token.partition("=")
        name = aliases.get(name, name)
        fact = flags.get(name)
        if fact is None:
            close = difflib.get_close_matches(name, list(flags), n=1, cutoff=0.75)
            prefixed = sorted(f for f in flags if f.startswith(name))
            if prefixed:
                fix = f"write the full flag name ({', '.join(prefixed[:4])}); abbreviations are refused"
            elif close:
                fix = f"did you mean {close[0]}?"
            else:
                fix = f"remove it: {script} has no such flag (see its --help)"
            problems.append(Problem(INPUT, f"{name} is not a flag of {script}", fix))
            # Skip what looks like its value, so one mistake gives one message.
            while i < len(tokens) and not tokens[i].startswith("--"):
                i += 1
            continue
        if name in controlled:
            problems.append(Problem(INPUT, f"{name} is set by the pack", f"use {controlled[name]} instead"))
        elif name in already:
            problems.append(Problem(INPUT, f"{name} is already in the command (from the options)",
                                    f"set options.{name[2:]} instead of passing {name} again"))
        if name in seen:
            problems.append(Problem(INPUT, f"{name} is given twice", "keep one"))
        seen.add(name)

        values: list[str] = []
        nargs = fact.get("nargs")
        if not _takes_value(fact):
            if eq:
                problems.append(Problem(INPUT, f"{name} is a switch and takes no value",
                                        f"write {name} alone"))
            continue
        if eq:
            values.append(inline)
        elif nargs in ("*", "+"):
            while i < len(tokens) and (not tokens[i].startswith("-") or _is_number(tokens[i])):
                values.append(tokens[i])
                i += 1
        else:
            count = nargs if isinstance(nargs, int) else 1
            while len(values) < count and i < len(tokens):
                candidate = tokens[i]
                if candidate.startswith("--") and candidate.partition("=")[0] in flags:
                    break  # a flag, not our value
                values.append(candidate)
                i += 1
        if not values and nargs not in ("*", "?"):
            problems.append(Problem(INPUT, f"{name} needs a value", f"write {name} VALUE"))
            continue
        numeric = fact.get("type") in ("int", "float")
        for v in values:
            if v.startswith("-") and not (numeric and _is_number(v)):
                problems.append(Problem(INPUT, f"the value {v!r} of {name} starts with '-', so it would be read "
                                        "as a flag", f"give {name} a value that does not start with '-' (for a "
                                        "path, write ./-name)"))
            choices = fact.get("choices")
            if choices and v not in [str(c) for c in choices]:
                problems.append(Problem(INPUT, f"{v!r} is not a valid value for {name}",
                                        f"use one of: {', '.join(str(c) for c in choices)}"))
            if numeric and not v.startswith("-") and not _is_number(v):
                problems.append(Problem(INPUT, f"{name} needs a number, got {v!r}", f"write {name} 1"))
    return tokens, problems


def parse_extra_args(value: Union[str, Sequence[str], None], script: str, **kwargs: Any) -> list[str]:
    """``check_extra_args`` that raises PreflightError listing every problem."""
    tokens, problems = check_extra_args(value, script, **kwargs)
    if problems:
        raise PreflightError(problems, hint="fix or remove the extra arguments")
    return tokens

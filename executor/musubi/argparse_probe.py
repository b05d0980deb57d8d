"""Runs INSIDE musubi-tuner's venv: loads one musubi script, stops it at its first
``parse_known_args`` call (``parse_args`` goes through it) and prints JSON: either the parser's
flag facts (``facts`` mode) or the outcome of parsing a given argv (``check`` mode).
Standard library only, and it imports nothing from this pack (it is run by file path).

    python argparse_probe.py facts SCRIPT.py
    python argparse_probe.py check SCRIPT.py -- ARG...
    python argparse_probe.py batch SCRIPT.py ARGV_LISTS.json   (facts + a check per argv list)
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys

MARKER = "@@ARGPARSE_PROBE@@"


class _Stop(BaseException):
    """Raised from the patched parser so the script's main() never runs past argument parsing."""


class _ParseError(Exception):
    pass


def _type_name(t) -> str | None:
    if t is None:
        return None
    return getattr(t, "__name__", None) or type(t).__name__


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return list(value)
    return repr(value)


def _action_kind(action: argparse.Action) -> str:
    # argparse's action classes are private; their names are stable across 3.10-3.12
    name = type(action).__name__
    return {
        "_StoreAction": "store", "_StoreTrueAction": "store_true",
        "_StoreFalseAction": "store_false", "_StoreConstAction": "store_const",
        "_AppendAction": "append", "_AppendConstAction": "append_const", "_CountAction": "count",
        "_HelpAction": "help", "_VersionAction": "version", "_ExtendAction": "extend",
        "BooleanOptionalAction": "boolean_optional",
    }.get(name, name)


def _facts(parser: argparse.ArgumentParser) -> dict:
    flags, positionals = {}, []
    for action in parser._actions:
        kind = _action_kind(action)
        entry = {
            "action": kind,
            "takes_value": action.nargs != 0,
            "nargs": action.nargs if action.nargs is None or isinstance(action.nargs, (int, str)) else str(action.nargs),
            "metavar": _jsonable(action.metavar),
            "choices": None if action.choices is None else [_jsonable(c) for c in action.choices],
            "required": bool(action.required),
            "type": _type_name(action.type),
            "default": None if action.default is argparse.SUPPRESS else _jsonable(action.default),
            "dest": action.dest,
        }
        if not action.option_strings:
            entry["required"] = action.nargs not in ("?", "*")
            positionals.append({"name": action.dest, **entry})
            continue
        longs = [s for s in action.option_strings if s.startswith("--")] or list(action.option_strings)
        entry["aliases"] = [s for s in action.option_strings if s != longs[0]]
        flags[longs[0]] = entry
    return {"prog": parser.prog, "allow_abbrev": parser.allow_abbrev, "flags": flags,
            "positionals": positionals}


def _check(parser: argparse.ArgumentParser, argv: list[str]) -> dict:
    def error(message):  # argparse would print usage and exit 2
        raise _ParseError(message)

    parser.error = error  # type: ignore[method-assign]
    try:
        namespace, unknown = _original(parser, argv)
    except _ParseError as exc:
        return {"ok": False, "error": str(exc), "unknown": []}
    return {"ok": not unknown, "error": None, "unknown": unknown}


_original = argparse.ArgumentParser.parse_known_args


def main() -> int:
    # Running by path puts this file's folder first on sys.path; the pack's modules there
    # (config.py, dataset.py, ...) must not shadow anything musubi imports.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    mode, script = sys.argv[1], sys.argv[2]
    argv = sys.argv[4:] if len(sys.argv) > 3 and sys.argv[3] == "--" else []
    argv_lists: list = []
    if mode == "batch":
        with open(sys.argv[3], encoding="utf-8") as f:
            argv_lists = json.load(f)
    result: dict = {}

    def intercept(self, args=None, namespace=None):
        if mode == "facts":
            result.update(_facts(self))
        elif mode == "check":
            result.update(_check(self, argv))
        else:  # batch: one import, many argv lists (each parse is independent)
            facts = _facts(self)
            result.update(facts=facts, results=[_check(self, a) for a in argv_lists])
        raise _Stop

    argparse.ArgumentParser.parse_known_args = intercept  # type: ignore[method-assign]
    sys.argv = [script]
    try:
        runpy.run_path(script, run_name="__main__")
    except _Stop:
        pass
    if not result:
        result = {"error": "the script never parsed its arguments"}
    sys.stdout.flush()
    # A marker line: musubi imports print to stdout before we get here.
    sys.stdout.write(MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    # Skip interpreter teardown: imported libraries may start threads or print at exit.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())

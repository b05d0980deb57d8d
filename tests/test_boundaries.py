"""The dependency direction is a rule, not a habit: nodes/ -> executor/ -> parsers/.

executor/ and parsers/ must run without ComfyUI (they back the debugging CLIs
and are tested on their own), and parsers/ must stay pure.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMFY_MODULES = {"comfy", "comfy_api", "comfy_execution", "comfy_extras", "folder_paths",
                 "server", "nodes", "execution", "latent_preview", "node_helpers"}
STDLIB = set(sys.stdlib_module_names)


def imported_roots(path: Path) -> list[tuple[int, str, int]]:
    """(line, top-level module, relative level) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0], 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, (node.module or "").split(".")[0], node.level))
    return found


def python_files(package: str) -> list[Path]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    return files


@pytest.mark.parametrize("package", ["executor", "parsers"])
def test_no_comfyui_imports(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in python_files(package)
        for line, name, level in imported_roots(path)
        if level == 0 and name in COMFY_MODULES
    ]
    assert not offenders, "\n".join(offenders)


def test_parsers_use_only_the_standard_library() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in python_files("parsers")
        for line, name, level in imported_roots(path)
        if level == 0 and name not in STDLIB and name != "parsers"
    ]
    assert not offenders, "\n".join(offenders)


def test_parsers_never_reach_into_executor_or_nodes() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in python_files("parsers")
        for line, name, level in imported_roots(path)
        if (level == 0 and name in {"executor", "nodes"}) or (level >= 2 and name in {"executor", "nodes"})
    ]
    assert not offenders, "\n".join(offenders)


def test_executor_imports_only_stdlib_psutil_toml_and_parsers() -> None:
    allowed = STDLIB | {"psutil", "tomli", "parsers", "executor"}
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in python_files("executor")
        for line, name, level in imported_roots(path)
        if level == 0 and name not in allowed
    ]
    assert not offenders, "\n".join(offenders)


def test_the_boundary_check_catches_a_comfy_import(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import folder_paths\nfrom comfy.utils import ProgressBar\n", encoding="utf-8")
    names = {name for _, name, _ in imported_roots(sample)}
    assert {"folder_paths", "comfy"} <= names & COMFY_MODULES


def test_pack_root_imports_without_comfyui() -> None:
    """ComfyUI loads the pack root by file location; without ComfyUI it must
    import cleanly and register nothing heavy."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "musubi_pack_under_test", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        # the pack-relative import path used inside ComfyUI must work too
        importlib.import_module(f"{spec.name}.executor.errors")
        importlib.import_module(f"{spec.name}.parsers.events")
    finally:
        for name in [n for n in sys.modules if n == spec.name or n.startswith(spec.name + ".")]:
            del sys.modules[name]


# ---------------------------------------------------------------- the executor's rooms

# Which rooms a room may import (besides itself). "top" is errors/problems/__main__ at the
# package root; __main__ only dispatches and may reach every room.
ROOMS = ("process", "musubi", "runs", "setup")
MAY_IMPORT = {
    "top": {"top"},
    "process": {"top"},
    "setup": {"top", "process"},
    "musubi": {"top", "setup", "process"},
    "runs": {"top", "process", "musubi", "setup"},
}
LONG_FILES_ALLOWED = {"executor/musubi/architectures.py"}  # a data table; its logic is catalogue.py
MAX_LINES = 500


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Lines inside ``if TYPE_CHECKING:`` blocks: type-only imports never run."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def executor_imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module inside the executor) for every import of a file that runs, at
    module level or in a function; ``from . import x`` counts as importing module ``x``."""
    rel = path.relative_to(ROOT).with_suffix("")
    package = list(rel.parts[:-1])
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _type_checking_lines(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.lineno in skip:
            continue
        if node.level:
            base = package[: len(package) - (node.level - 1)]
        elif (node.module or "").split(".")[0] == "executor":
            base = []
        else:
            continue
        target = base + (node.module.split(".") if node.module else [])
        if not target or target[0] != "executor":
            continue  # e.g. ...parsers
        for alias in node.names:  # ``from pkg import module`` imports the module
            sub = ROOT.joinpath(*target, alias.name).with_suffix(".py")
            found.append((node.lineno, ".".join(target + [alias.name]) if sub.exists() else ".".join(target)))
    return found


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in ROOMS else "top"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_executor_module_lives_in_a_room_or_at_the_top() -> None:
    top = {p.name for p in (ROOT / "executor").glob("*.py")}
    assert top == {"__init__.py", "__main__.py", "errors.py", "problems.py"}, \
        f"new modules go into a room ({', '.join(ROOMS)}), not the top: {sorted(top)}"
    for room in ROOMS:
        init = ROOT / "executor" / room / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "May import" in doc, f"{init.relative_to(ROOT)} must say what the room owns and may import"


def test_rooms_import_only_the_rooms_they_may() -> None:
    offenders = []
    for path in python_files("executor"):
        me = module_name(path)
        mine = room_of(me) if path.name != "__main__.py" else None
        if mine is None:
            continue
        for line, target in executor_imports(path):
            theirs = room_of(target)
            if theirs != mine and theirs not in MAY_IMPORT[mine]:
                offenders.append(f"{path.relative_to(ROOT)}:{line} ({mine}) imports {target} ({theirs})")
    assert not offenders, "\n".join(offenders)


def test_no_import_cycles_in_the_executor() -> None:
    graph: dict[str, set[str]] = {}
    for path in python_files("executor"):
        graph[module_name(path)] = {t for _, t in executor_imports(path)} - {module_name(path)}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]) if nxt in trail else nxt)
            elif nxt in graph and not state.get(nxt):
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_room_rules_catch_a_forbidden_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """process may not import runs: a file that does is found (the rule checks something)."""
    fake_root = tmp_path / "pack"
    (fake_root / "executor" / "process").mkdir(parents=True)
    (fake_root / "executor" / "runs").mkdir(parents=True)
    (fake_root / "executor" / "runs" / "plan.py").write_text("", encoding="utf-8")
    bad = fake_root / "executor" / "process" / "run.py"
    bad.write_text("def f():\n    from ..runs.plan import make_plan\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    targets = [t for _, t in executor_imports(bad)]
    assert targets == ["executor.runs.plan"]
    assert room_of(targets[0]) not in MAY_IMPORT[room_of(module_name(bad))]


@pytest.mark.parametrize("package", ["executor", "parsers", "nodes"])
def test_no_source_file_over_500_lines(package: str) -> None:
    long = [f"{path.relative_to(ROOT)}: {n} lines"
            for path in python_files(package)
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
            and path.relative_to(ROOT).as_posix() not in LONG_FILES_ALLOWED]
    assert not long, "split these by subject:\n" + "\n".join(long)


def test_the_tests_and_ci_need_nothing_beside_the_repository() -> None:
    """A clone anywhere runs the whole suite: no test or CI file names the folder some machines
    keep beside the checkout (its recorded output lives in tests/fixtures/captures)."""
    word = "sha" + "red"  # spelled apart so this file does not find itself
    found = [f"{path.relative_to(ROOT)}:{n}" for top in ("tests", ".ci") for path in sorted((ROOT / top).rglob("*"))
             if path.is_file() and path.suffix in (".py", ".md", ".sh", ".toml", ".json", "")
             and "captures" not in path.parts
             for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if re.search(rf"(\.\./|\b){word}/|{word}_dir|{word.upper()}\b", line)]
    assert not found, found

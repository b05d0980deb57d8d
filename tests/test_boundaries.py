"""The dependency direction is a rule, not a habit: nodes/ -> executor/ -> parsers/.

executor/ and parsers/ must run without ComfyUI (they back the debugging CLIs
and are tested on their own), and parsers/ must stay pure.
"""

from __future__ import annotations

import ast
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

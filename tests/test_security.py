"""The security stance, enforced on the code (the ComfyUI side is in tests/test_security_e2e.py):

- no eval/exec/compile anywhere in the pack, and the Registry's own scan (ruff S102, S307, E702)
  is clean over the whole repository;
- nothing is installed at run time and nothing runs through a shell: every process the pack
  starts is one of a reviewed list of call sites, with an argv list, no ``shell=True``, no
  pip/ensurepip/uv, no os.system/os.popen/exec*/spawn*;
- only musubi's own scripts, named by the catalogue, inside ``<root>/src/musubi_tuner``, are run,
  with the configured venv's interpreter as argv[0];
- secret values in the child's environment are replaced by ``***`` in the log, the events and
  error messages, even when split across reads.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.register_assert_rewrite("hardening")

import hardening  # noqa: E402,F401  (registers the marker before the decorators below)
from executor.musubi import catalogue as cat  # noqa: E402
from executor.process.command import Command, accelerate_command, python_command, script_path  # noqa: E402
from executor.setup.discovery import MusubiInstall  # noqa: E402
from executor.setup.settings import load_settings
from executor.errors import ConfigError, TrainerFailed, TrainerNotFound  # noqa: E402
from executor.process.run import run  # noqa: E402

pytest_plugins = ["hardening"]
pytestmark = pytest.mark.timeout(120)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ("__init__.py", "executor", "parsers", "nodes")

# Every place the pack starts a process, reviewed: (file, enclosing function).
PROCESS_CALL_SITES = {
    ("executor/setup/discovery.py", "venv_python_version"),# <venv python> -I -c "print(sys.version_info)"
    ("executor/setup/probe.py", "_run_probe"),             # <venv python> -c PROBE_SCRIPT (imports, no installs)
    ("executor/musubi/flagfacts.py", "probe"),              # developer tool: the real scripts' argparse, read only
    ("executor/musubi/flagfacts.py", "_describe_checkout"), # developer tool: git rev-parse HEAD
    ("executor/process/run.py", "_launch"),              # the supervisor, then the command
    ("executor/process/run.py", "_launch_windows"),      # the command in a Job Object
    ("executor/process/supervisor.py", "main"),              # the command (argv from process._launch)
    ("executor/process/detach.py", "launch"),                # jobwrapper.py, detached (POSIX: own session)
    ("executor/process/detach.py", "_start_windows"),        # jobwrapper.py, own group, hidden console
    ("executor/process/jobwrapper.py", "__init__"),          # the job's command (argv from detach.launch)
    ("executor/process/jobwrapper.py", "stop"),              # Windows fallback: taskkill /PID n /T /F
    ("executor/setup/gpus.py", "list_gpus"),                 # nvidia-smi --query-gpu=... (read only)
    # python -m executor install, a terminal command only (never reachable from a node or route):
    ("executor/setup/runner.py", "run_logged"),             # git / venv / pip steps, logged
    ("executor/setup/pythons.py", "inspect_python"),        # <candidate python> -I -c (version, bits, venv)
    ("executor/setup/pythons.py", "_from_uv"),              # uv python find / install
    ("executor/setup/packages.py", "ensure_torch"),         # <venv python> -c "import torch, torchvision"
    ("executor/setup/steps.py", "venv_state"),              # <venv python> -I -c (installed versions)
    ("executor/setup/torch_index.py", "query_nvidia_smi"),  # nvidia-smi (driver and CUDA version)
}
# The installer's modules may start installers; nothing a workflow can reach imports them.
INSTALLER_MODULES = {"executor/setup/install.py", "executor/setup/runner.py", "executor/setup/pythons.py",
                     "executor/setup/packages.py", "executor/setup/steps.py"}
SPAWNERS = {"run", "Popen", "call", "check_call", "check_output", "create_subprocess_exec",
            "create_subprocess_shell", "system", "popen", "startfile", "execv", "execve", "execvp", "execvpe",
            "execl", "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl",
            "spawnle", "spawnlp", "spawnlpe", "posix_spawn", "posix_spawnp"}
FORBIDDEN_SPAWNERS = SPAWNERS - {"run", "Popen"}
INSTALLERS = ("pip", "ensurepip", "install", "uv", "conda", "mamba", "easy_install", "setup.py")


def package_files() -> Iterator[Path]:
    for entry in PACKAGE:
        path = PROJECT_ROOT / entry
        if path.is_file():
            yield path
        else:
            yield from sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)


def parsed() -> Iterator[tuple[str, ast.Module]]:
    for path in package_files():
        yield path.relative_to(PROJECT_ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"), str(path))


def enclosing(tree: ast.Module) -> dict[ast.AST, str]:
    """Each node -> the name of the function it is in ('<module>' outside any)."""
    owner: dict[ast.AST, str] = {}

    def visit(node: ast.AST, name: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else name
            owner[child] = inner
            visit(child, inner)

    visit(tree, "<module>")
    return owner


def call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def strings_in(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


# ---------------------------------------------------------------------------------------- eval / exec

@pytest.mark.hardening("security", "no_eval_exec")
def test_the_pack_has_no_eval_exec_or_compile() -> None:
    found = []
    for name, tree in parsed():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("eval", "exec", "compile", "__import__", "execfile"):
                found.append(f"{name}:{node.lineno} {node.func.id}()")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for module in modules:
                    top = module.split(".")[0]
                    # argparse_probe runs a musubi script of the configured checkout, inside musubi's
                    # venv, stopped at argument parsing (flag facts; a developer tool)
                    if top in ("pickle", "marshal", "code", "codeop", "runpy") \
                            and (name, top) != ("executor/musubi/argparse_probe.py", "runpy"):
                        found.append(f"{name}:{node.lineno} imports {module}")
    assert found == []


@pytest.mark.hardening("security", "no_eval_exec")
@pytest.mark.timeout(300)
def test_the_registry_security_scan_is_clean(comfy_cli: Any) -> None:
    """What ``comfy node validate`` runs (ruff S102 exec, S307 eval, E702 one-line statements),
    over the whole repository as the Registry sees it."""
    python = comfy_cli.venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    done = subprocess.run([str(python), "-m", "ruff", "check", ".", "--select", "S102,S307,E702",
                           "--no-cache", "--output-format", "concise"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------------------------- processes

@pytest.mark.hardening("security", "no_runtime_install")
def test_every_process_the_pack_starts_is_a_reviewed_argv_list_without_installers() -> None:
    sites, problems = set(), []
    for name, tree in parsed():
        owner = enclosing(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            called = call_name(node)
            base = node.func.value.id if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
                else ""
            if called not in SPAWNERS or base not in ("subprocess", "os", "asyncio"):
                continue
            where = f"{name}:{node.lineno} {base}.{called}"
            if called in FORBIDDEN_SPAWNERS:
                problems.append(f"{where}: never a shell, os.system/popen or exec*/spawn*")
                continue
            sites.add((name, owner.get(node, "<module>")))
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and not keyword.value.value):
                    problems.append(f"{where}: shell=")
            if node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr)):
                problems.append(f"{where}: the command must be an argv list, not one string")
            for text in strings_in(node) if name not in INSTALLER_MODULES else ():
                words = text.replace("-", " ").replace("/", " ").split()
                if any(word in INSTALLERS for word in words):
                    problems.append(f"{where}: {text!r} looks like installing something")
    assert problems == []
    assert sites == PROCESS_CALL_SITES, "a new place starts processes: review it and list it here"


@pytest.mark.hardening("security", "no_runtime_install")
def test_nothing_imports_an_installer() -> None:
    found = []
    for name, tree in parsed():
        for node in ast.walk(tree):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            found += [f"{name}:{node.lineno} {m}" for m in modules
                      if m.split(".")[0] in ("pip", "ensurepip", "setuptools", "pkg_resources", "distutils", "uv")]
    assert found == []


# ---------------------------------------------------------------------------------------- which scripts run

@pytest.fixture
def install(tmp_path: Path) -> MusubiInstall:
    """A checkout holding every catalogue script (and a decoy next to it)."""
    root = tmp_path / "musubi-tuner"
    package = root / "src" / "musubi_tuner"
    for arch in cat.ARCHITECTURES.values():
        for script in arch.scripts.values():
            (package / script).parent.mkdir(parents=True, exist_ok=True)
            (package / script).write_text("", encoding="utf-8")
    (root / "decoy.py").write_text("", encoding="utf-8")
    (tmp_path / "decoy.py").write_text("", encoding="utf-8")
    python = tmp_path / "venv" / "bin" / "python"
    return MusubiInstall(root=str(root), venv=str(tmp_path / "venv"), python=str(python), accelerate=None,
                         python_version="3.11.9", chosen_by="test")


@pytest.mark.hardening("security", "only_catalogue_scripts")
def test_every_catalogue_script_resolves_inside_the_package(install: MusubiInstall) -> None:
    package = os.path.realpath(install.package_dir)
    for arch in cat.ARCHITECTURES.values():
        for step, script in arch.scripts.items():
            path = os.path.realpath(script_path(install, script))
            assert path.startswith(package + os.sep), (arch.id, step, script)


@pytest.mark.hardening("security", "only_catalogue_scripts")
@pytest.mark.parametrize("script", ["../decoy.py", "../../decoy.py", "/bin/sh", "decoy.sh", "a/b/c.py", "",
                                    "networks/../../../decoy.py", "C:\\Windows\\system32\\cmd.exe", "..\\decoy.py"])
def test_a_script_name_that_leaves_the_package_is_refused(install: MusubiInstall, script: str) -> None:
    with pytest.raises((ConfigError, TrainerNotFound)):
        script_path(install, script)


@pytest.mark.hardening("security", "only_catalogue_scripts")
def test_argv0_is_the_configured_interpreter_for_both_launch_forms(install: MusubiInstall) -> None:
    settings = load_settings(environ={})
    script = cat.get_architecture("wan").scripts[cat.TRAIN]
    hostile = ["--python", "/bin/sh", "--launcher", "x", "--config_file", "/tmp/x"]  # data after the script
    for command in (python_command(install, script, hostile, settings),
                    accelerate_command(install, script, hostile, settings)):
        assert command.argv[0] == install.python
        index = command.argv.index(script_path(install, script))
        assert command.argv[index + 1:] == tuple(hostile)
        assert command.cwd == install.root


def test_plans_take_scripts_from_the_catalogue_only() -> None:
    """make_plan builds every command from ``arch.scripts[...]`` (AST), and nodes/ never builds
    one itself."""
    for name, tree in parsed():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and call_name(node) in ("python_command", "accelerate_command"):
                assert name == "executor/runs/plan.py", f"{name}:{node.lineno} builds a command itself"
                script = ast.unparse(node.args[1])
                assert script.startswith("arch.scripts["), f"{name}:{node.lineno}: script {script}"


# ---------------------------------------------------------------------------------------- secrets

SECRET = "hf_TopSecretValue_1234567890"


def child(code: str, **env: str) -> Command:
    full = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", **env)
    return Command(argv=(sys.executable, "-c", textwrap.dedent(code)), env=full, cwd=os.getcwd())


@pytest.mark.hardening("security", "secrets_never_shown")
@pytest.mark.timeout(60)
def test_secret_values_are_masked_in_log_events_and_errors_even_split_across_reads(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    events: list[Any] = []
    command = child("""
        import os, sys, time
        v = os.environ["HF_TOKEN"]
        for cut in (3, 11, 20):
            sys.stderr.write("token " + v[:cut]); sys.stderr.flush(); time.sleep(0.15)
            sys.stderr.write(v[cut:] + "\\n"); sys.stderr.flush()
        print(f"steps: 50%|#    | 1/2 [00:01<00:01, 1.00s/it, key={v}]")
        sys.stdout.write("ends with a prefix hf_Top"); sys.stdout.flush()
        raise SystemExit("RuntimeError: bad token " + v)
    """, HF_TOKEN=SECRET, NOT_A_SECRET_NAME=SECRET + "_plain", SHORT_TOKEN="1234")
    with pytest.raises(TrainerFailed) as caught:
        run(command, on_event=events.append, log_path=str(log))
    texts = [str(caught.value), caught.value.hint, *caught.value.result.tail, repr(events)]
    assert not any(SECRET in t.replace(SECRET + "_plain", "") for t in texts)
    raw = log.read_bytes()
    assert SECRET.encode() not in raw.replace((SECRET + "_plain").encode(), b"")
    assert raw.count(b"***") >= 5, raw
    assert b"hf_Top" in raw.replace(b"***", b""), "a mere prefix of a secret is written (at the latest at the end)"


def test_short_or_ordinary_values_are_not_masked() -> None:
    """TOKENIZERS_PARALLELISM=false must not blank out the word 'false' everywhere."""
    result = run(child("print('false and 1234 stay')", TOKENIZERS_PARALLELISM="false", SHORT_KEY="1234"))
    assert result.tail == ["false and 1234 stay"]


@pytest.mark.hardening("security", "no_runtime_install")
def test_no_node_or_route_can_reach_the_installer() -> None:
    """The installer runs from a terminal only: nothing ComfyUI imports (nodes/, and what they
    import, lazily or not) leads to a module that may start pip, git or uv."""
    from test_boundaries import executor_imports, module_name

    graph = {module_name(p): {t for _, t in executor_imports(p)}
             for p in sorted(PROJECT_ROOT.joinpath("nodes").rglob("*.py"))
             + sorted(PROJECT_ROOT.joinpath("executor").rglob("*.py"))}
    installers = {m[:-3].replace("/", ".") for m in INSTALLER_MODULES}
    seen: set[str] = set()
    todo = [m for m in graph if m.startswith("nodes")]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += [t for t in graph.get(module, ()) if t not in seen]
    assert not seen & installers, f"reachable from nodes/: {sorted(seen & installers)}"
    assert "executor.setup.install_hint" in seen  # the check node shows the command as text

"""Command values: the exact argv, environment and folder a musubi-tuner child gets.

Owns the child environment (what is removed from ComfyUI's, what is added),
the ``python <script>`` and ``python -m accelerate.commands.launch`` forms, and
``format_command`` for command.txt (posix / cmd / PowerShell, secrets redacted).
Builds values only: starts nothing. Imports only the standard library and its own room.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

from ..errors import ConfigError, TrainerNotFound
from .redact import is_secret_name

if TYPE_CHECKING:  # types only: settings and installs are values the caller brings
    from ..setup.discovery import MusubiInstall
    from ..setup.settings import Settings

__all__ = [
    "Command", "AccelerateOptions", "script_path", "python_command", "accelerate_command",
    "child_environment", "format_command", "is_secret_name", "REMOVED_VARIABLES", "launchable", "script_name",
    "helper_python",
]

# Variables from ComfyUI's own interpreter that must not reach musubi's:
# PYTHONHOME/PYTHONPATH/VIRTUAL_ENV would load ComfyUI's packages into musubi's
# Python; __PYVENV_LAUNCHER__ and PYTHONEXECUTABLE make a child think it is
# ComfyUI's interpreter (Windows venv redirector, macOS framework builds);
# PYTHONSTARTUP only matters interactively. TQDM_* change the progress format the
# parsers read (TQDM_DISABLE hides progress, TQDM_ASCII=1 crashes tqdm), so only
# values the user put in settings reach the child.
REMOVED_VARIABLES = ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP",
                     "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__")
REMOVED_PREFIXES = ("TQDM_",)

IS_WINDOWS = os.name == "nt"
MIXED_PRECISIONS = ("no", "fp16", "bf16", "fp8")  # accelerate launch --mixed_precision choices

_GPU_IDS = re.compile(r"^\d+(,\d+)*$")


@dataclass(frozen=True)
class Command:
    """One child process to start: never through a shell.

    ``env`` is the full environment; ``added_env`` holds only what we set or
    changed (for display), ``removed_env`` the inherited names we dropped.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    added_env: Mapping[str, str] = field(default_factory=dict)
    removed_env: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccelerateOptions:
    """``accelerate launch`` options. None means "the settings' default" (or, with
    ``config_file``, "whatever the accelerate config file says")."""

    num_processes: Optional[int] = None
    num_machines: Optional[int] = None
    gpu_ids: Optional[str] = None
    num_cpu_threads_per_process: Optional[int] = None
    mixed_precision: Optional[str] = None
    machine_rank: Optional[int] = None
    main_process_ip: Optional[str] = None
    main_process_port: Optional[int] = None
    config_file: Optional[str] = None

    def __post_init__(self) -> None:
        for name in ("num_processes", "num_machines", "num_cpu_threads_per_process"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"accelerate option {name} must be a whole number of at least 1, "
                                  f"got {value!r}")
        if self.mixed_precision is not None and self.mixed_precision not in MIXED_PRECISIONS:
            raise ConfigError(f"accelerate option mixed_precision must be one of "
                              f"{', '.join(MIXED_PRECISIONS)}, got {self.mixed_precision!r}")
        if self.gpu_ids is not None:
            ids = str(self.gpu_ids).replace(" ", "")
            if ids != "all" and not _GPU_IDS.match(ids):
                raise ConfigError(f"accelerate option gpu_ids must be \"all\" or GPU numbers like "
                                  f"\"0\" or \"0,1\", got {self.gpu_ids!r}")
            object.__setattr__(self, "gpu_ids", ids)
        if (self.num_processes or 1) < (self.num_machines or 1):
            raise ConfigError(f"accelerate option num_processes ({self.num_processes}) counts processes on "
                              f"all machines, so it cannot be less than num_machines ({self.num_machines})")
        if self.gpu_ids not in (None, "all") and self.num_processes is not None and (self.num_machines or 1) == 1:
            if len(self.gpu_ids.split(",")) < self.num_processes:
                raise ConfigError(f"accelerate option gpu_ids {self.gpu_ids!r} lists fewer GPUs than "
                                  f"num_processes ({self.num_processes})")
        if self.machine_rank is not None:
            rank = self.machine_rank
            wrong_type = isinstance(rank, bool) or not isinstance(rank, int)
            # With a config file, num_machines may live in the file: only the sign is checkable.
            limit = (self.num_machines or 1) if self.config_file is None else None
            if wrong_type or rank < 0 or (limit is not None and rank >= limit):
                raise ConfigError(f"accelerate option machine_rank must be 0 to num_machines-1, "
                                  f"got {self.machine_rank!r}")
        if self.main_process_port is not None and (
                isinstance(self.main_process_port, bool) or not isinstance(self.main_process_port, int)
                or not 1 <= self.main_process_port <= 65535):
            raise ConfigError(f"accelerate option main_process_port must be 1-65535, "
                              f"got {self.main_process_port!r}")
        if (self.num_machines or 1) > 1 and self.config_file is None and not self.main_process_ip:
            raise ConfigError("accelerate option main_process_ip is needed when num_machines > 1",
                              hint="give the address of the machine with machine_rank 0")

    @property
    def multi_machine(self) -> bool:
        return (self.num_machines or 1) > 1


def script_path(install: MusubiInstall, script: str) -> str:
    """``<root>/src/musubi_tuner/<script>``; raises TrainerNotFound if the checkout lacks it."""
    # Scripts are named relative to src/musubi_tuner: a bare file name, or one
    # sub-folder deep for the dedicated LoRA converters (networks/convert_*.py).
    # Anything that could climb out of the package is refused.
    parts = script.replace("\\", "/").split("/") if script else []
    if (not parts or len(parts) > 2 or any(part in ("", ".", "..") for part in parts)
            or not script.endswith(".py")):
        raise ConfigError(f"musubi-tuner script name {script!r} must be a file name ending in .py inside "
                          "src/musubi_tuner (for example wan_train_network.py or networks/convert_x.py)")
    path = os.path.join(install.package_dir, *parts)
    if not os.path.isfile(path):
        raise TrainerNotFound(
            f"musubi-tuner script {script} is not in the checkout {install.root} ({path} is missing)",
            hint="update the checkout (git pull) to a musubi-tuner version that has this script, "
                 "or check root_path points at the right checkout",
            path=path)
    return path


def python_command(install: MusubiInstall, script: str, args: Sequence[str], settings: Settings, *,
                   extra_env: Optional[Mapping[str, str]] = None,
                   base_env: Optional[Mapping[str, str]] = None) -> Command:
    """``<venv python> <root>/src/musubi_tuner/<script> *args`` (caching, conversion, one GPU)."""
    env, added, removed = _environment(install, settings, base_env, extra_env, omp_threads=True)
    argv = (install.python, script_path(install, script), *_strings(args))
    return Command(argv=argv, env=env, cwd=install.root, added_env=added, removed_env=removed)


def accelerate_command(install: MusubiInstall, script: str, args: Sequence[str], settings: Settings,
                       options: Optional[AccelerateOptions] = None, *,
                       extra_env: Optional[Mapping[str, str]] = None,
                       base_env: Optional[Mapping[str, str]] = None) -> Command:
    """``<venv python> -m accelerate.commands.launch [options] <script> *args``.

    ``python -m`` rather than ``accelerate.exe``: on Windows the .exe is a
    launcher that adds process levels and mangles non-ANSI paths. Without a
    config file every value is passed, so accelerate prints no "defaults used"
    warning; with ``config_file`` only the options set explicitly are passed.
    """
    options = options or AccelerateOptions()
    launch: list[str] = [install.python, "-m", "accelerate.commands.launch"]
    if options.config_file:
        if not os.path.isfile(options.config_file):
            raise ConfigError(f"accelerate config file {options.config_file} does not exist",
                              hint="run `accelerate config --config_file <path>` with the venv's python, "
                                   "or leave config_file empty", path=options.config_file)
        launch += ["--config_file", os.path.abspath(options.config_file)]
        explicit = [("--num_cpu_threads_per_process", options.num_cpu_threads_per_process),
                    ("--mixed_precision", options.mixed_precision),
                    ("--num_processes", options.num_processes),
                    ("--num_machines", options.num_machines),
                    ("--gpu_ids", options.gpu_ids),
                    ("--machine_rank", options.machine_rank),
                    ("--main_process_ip", options.main_process_ip),
                    ("--main_process_port", options.main_process_port)]
        for flag, value in explicit:
            if value is not None:
                launch += [flag, str(value)]
    else:
        processes = options.num_processes or 1
        machines = options.num_machines or 1
        threads = options.num_cpu_threads_per_process or settings.num_cpu_threads_per_process
        launch += ["--num_cpu_threads_per_process", str(threads),
                   "--mixed_precision", options.mixed_precision or settings.mixed_precision,
                   "--num_processes", str(processes),
                   "--num_machines", str(machines)]
        if processes > 1:
            # Without a config file accelerate enables multi-GPU only when it counts >1
            # local CUDA devices; say it, so multi-machine single-GPU nodes work too.
            launch.append("--multi_gpu")
        if options.gpu_ids:
            launch += ["--gpu_ids", options.gpu_ids]
        launch += ["--dynamo_backend", "no"]
        if machines > 1:
            launch += ["--machine_rank", str(options.machine_rank or 0),
                       "--main_process_ip", str(options.main_process_ip)]
            if options.main_process_port is not None:
                launch += ["--main_process_port", str(options.main_process_port)]
        elif options.main_process_port is not None:
            # Two trainings on one machine need different ports.
            launch += ["--main_process_port", str(options.main_process_port)]
    env, added, removed = _environment(install, settings, base_env, extra_env, omp_threads=False)
    argv = (*launch, script_path(install, script), *_strings(args))
    return Command(argv=argv, env=env, cwd=install.root, added_env=added, removed_env=removed)


def _strings(args: Sequence[str]) -> tuple[str, ...]:
    if isinstance(args, str):
        raise TypeError("args must be a sequence of strings, not one string")
    out = []
    for a in args:
        if not isinstance(a, str):
            raise TypeError(f"argument {a!r} is not a string")
        out.append(a)
    return tuple(out)


# --- launching ------------------------------------------------------------------------------

_PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)?)?(\.exe)?$", re.IGNORECASE)


def launchable(command: Command) -> tuple[list[str], dict[str, str], Optional[str], str]:
    """(argv, env, cwd, executable) of a command that can start; raises ConfigError for an
    empty command or a missing folder, TrainerNotFound for a program that is not there."""
    argv = [str(a) for a in command.argv]
    env = {str(k): str(v) for k, v in command.env.items()}
    cwd = str(command.cwd) if command.cwd else None
    script = script_name(argv)
    if not argv:
        raise ConfigError("Nothing to run: the command is empty")
    if cwd is not None and not os.path.isdir(cwd):
        raise ConfigError(f"Cannot start {script}: the working folder {cwd} does not exist",
                          hint="Check the musubi-tuner root_path in the settings.")
    executable = _resolve(argv[0], env, cwd)
    if executable is None:
        raise TrainerNotFound(f"Cannot start {script}: {argv[0]} was not found",
                              hint="Check musubi_tuner.venv_path in the settings (or MUSUBI_TUNER_ENV): it must "
                                   "point to musubi-tuner's own virtual environment.")
    return argv, env, cwd, executable


def helper_python(executable: str) -> str:
    """The interpreter for our stdlib-only helpers (supervisor, job wrapper): the command's own
    when it is a Python (the venv's, the same the trainer gets), else ours."""
    import sys

    return executable if _PYTHON_NAME.match(os.path.basename(executable)) else sys.executable


def _resolve(program: str, env: dict[str, str], cwd: Optional[str]) -> Optional[str]:
    if os.path.dirname(program):
        path = program if os.path.isabs(program) else os.path.join(cwd or os.getcwd(), program)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    import shutil

    return shutil.which(program, path=env.get("PATH", os.defpath))


def script_name(argv: Sequence[str]) -> str:
    """``wan_train_network.py`` for any way of running it, else the program name."""
    for arg in list(argv)[1:]:
        if str(arg).endswith(".py"):
            return os.path.basename(str(arg))
    return os.path.basename(str(argv[0])) if argv else "?"


# --- environment ---------------------------------------------------------------------------

def child_environment(install: MusubiInstall, settings: Settings, *,
                      base: Optional[Mapping[str, str]] = None,
                      extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The full environment for a musubi child (see ``python_command``)."""
    return dict(_environment(install, settings, base, extra, omp_threads=False)[0])


def _environment(install: MusubiInstall, settings: Settings, base: Optional[Mapping[str, str]],
                 extra: Optional[Mapping[str, str]], *, omp_threads: bool
                 ) -> tuple[dict[str, str], dict[str, str], tuple[str, ...]]:
    """Returns (full env, what we set or changed, inherited names we removed).

    Order: ComfyUI's env minus its interpreter's variables; then ours; then
    ``settings.env``; then ``extra`` (a later value wins, except PYTHONPATH,
    which is appended after musubi's ``src`` so that it always comes first).
    """
    source = dict(os.environ if base is None else base)
    env: dict[str, str] = {}
    removed: list[str] = []
    for name, value in source.items():
        exact = name.upper() if IS_WINDOWS else name
        if exact in REMOVED_VARIABLES or name.upper().startswith(REMOVED_PREFIXES) \
                or (exact == "CONDA_PREFIX" and not _same_path(value, install.venv)):
            # CONDA_PREFIX names ComfyUI's conda env; tools that look for CUDA
            # libraries through it would search the wrong environment.
            removed.append(name)
            continue
        env[name] = value

    user: dict[str, str] = {}
    user_pythonpath: list[str] = []
    user_path: list[str] = []
    for layer in (settings.env, extra or {}):
        for name, value in layer.items():
            exact = name.upper() if IS_WINDOWS else name
            if exact == "PYTHONPATH":
                user_pythonpath += [value] if value else []
            elif exact == "PATH":
                user_path = [value] if value else []
            else:
                user[name] = value

    ours: dict[str, str] = {
        "PYTHONPATH": os.pathsep.join([install.src, *user_pythonpath]),
        "PYTHONUNBUFFERED": "1",  # print() goes to stdout: block-buffered in a pipe otherwise
        "PYTHONIOENCODING": "utf-8",  # musubi prints Japanese; a Windows pipe defaults to the ANSI code page
        "PYTHONUTF8": "1",
        "VIRTUAL_ENV": install.venv,
    }
    path_key = _key(env, "PATH")
    # A PATH from the settings replaces ComfyUI's, but the venv still comes first.
    rest = user_path or ([env[path_key]] if env.get(path_key) else [])
    ours[path_key] = os.pathsep.join([install.bin_dir, *rest])
    if omp_threads and _key(env, "OMP_NUM_THREADS") not in env and "OMP_NUM_THREADS" not in user:
        # accelerate launch sets OMP_NUM_THREADS from --num_cpu_threads_per_process;
        # a direct python run gets the same value.
        ours["OMP_NUM_THREADS"] = str(settings.num_cpu_threads_per_process)
    for name, value in user.items():
        ours[_key(env, name)] = value

    added: dict[str, str] = {}
    for name, value in ours.items():
        if source.get(name) != value:
            added[name] = value
        env[name] = value
    removed_names = tuple(n for n in removed if n not in ours)
    return env, added, removed_names


def _key(env: Mapping[str, str], name: str) -> str:
    """The spelling of ``name`` already in ``env`` (Windows names ignore case)."""
    if IS_WINDOWS:
        for existing in env:
            if existing.upper() == name.upper():
                return existing
    return name


def _same_path(a: str, b: str) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


# --- command.txt ---------------------------------------------------------------------------

# Flags whose value is a secret: --huggingface_token, --wandb_api_key, ... but not
# --max_new_tokens (musubi's caption script) or --metadata_author.
_SECRET_FLAG = re.compile(r"^--?[\w-]*?(token|key|secret|password|passwd)$", re.IGNORECASE)
REDACTED = "***"


def _redacted_argv(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag.startswith("-") and _SECRET_FLAG.match(flag):
            if eq:
                out.append(f"{flag}={REDACTED}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(arg)
    return out


def format_command(command: Command, shell: str = "posix") -> str:
    """The command as text a person can paste into ``shell`` to run it again.

    ``posix``: one line, ``(cd DIR && unset ... && NAME='v' ... 'exe' 'arg' ...)`` (a subshell,
    so pasting it changes nothing in the terminal). ``cmd``: ``cd``/``set`` lines then
    the command, every argument caret-escaped so ``& | < > ^ % " !`` stay literal.
    ``powershell``: ``$env:NAME = '...'`` lines then ``& 'exe' 'arg'``. Values of
    secret-looking variables and flags are shown as ``***``.
    """
    env = {name: (REDACTED if is_secret_name(name) else value)
           for name, value in command.added_env.items()}
    argv = _redacted_argv(command.argv)
    if shell == "posix":
        parts = [f"cd {shlex.quote(command.cwd)}"]
        if command.removed_env:
            parts.append("unset " + " ".join(shlex.quote(n) for n in command.removed_env))
        assignments = [f"{name}={shlex.quote(value)}" for name, value in env.items()
                       if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name)]
        parts.append(" ".join(assignments + [shlex.quote(a) for a in argv]))
        return "(" + " && ".join(parts) + ")"
    if shell == "cmd":
        # cd and set are built into cmd: they take the text between the quotes as it is.
        lines = [f"cd /d {_cmd_escape(chr(34) + command.cwd + chr(34))}"]
        lines += [f"set {_cmd_escape(chr(34) + name + '=' + chr(34))}" for name in command.removed_env]
        lines += [f"set {_cmd_escape(chr(34) + name + '=' + value + chr(34))}" for name, value in env.items()]
        # The program name stays in plain quotes: cmd finds the program before it
        # removes carets, so a caret-escaped quote would split a path with spaces.
        lines.append(" ".join([f'"{argv[0]}"'] + [_cmd_escape(_msvc_quote(a)) for a in argv[1:]]))
        return "\n".join(lines)
    if shell == "powershell":
        lines = [f"Set-Location -LiteralPath {_ps_quote(command.cwd)}"]
        lines += [f"Remove-Item -LiteralPath {_ps_quote('Env:' + name)} -ErrorAction SilentlyContinue"
                  for name in command.removed_env]
        lines += [f"{_ps_env(name)} = {_ps_quote(value)}" for name, value in env.items()]
        if any('"' in a or a == "" for a in argv[1:]):
            lines.append("# arguments with double quotes or empty arguments pass through intact "
                         "only in PowerShell 7.3+")
        lines.append("& " + " ".join(_ps_quote(a) for a in argv))
        return "\n".join(lines)
    raise ValueError(f"unknown shell {shell!r}; use posix, cmd or powershell")


def _msvc_quote(arg: str) -> str:
    """Quote one argument for the MSVC runtime's command-line parser (only when needed)."""
    if arg and not re.search(r'[\s"]', arg):
        return arg
    out = ['"']
    backslashes = 0
    for ch in arg:
        if ch == "\\":
            backslashes += 1
            continue
        if ch == '"':
            out.append("\\" * (backslashes * 2 + 1) + '"')
        else:
            out.append("\\" * backslashes + ch)
        backslashes = 0
    out.append("\\" * (backslashes * 2) + '"')
    return "".join(out)


_CMD_SPECIAL = re.compile(r'([()%!^"<>&|])')


def _cmd_escape(text: str) -> str:
    # Caret-escaping every cmd metacharacter, quotes included, leaves cmd with
    # nothing to interpret; it strips the carets and the program gets the MSVC-quoted text.
    return _CMD_SPECIAL.sub(r"^\1", text)


def _ps_quote(text: str) -> str:
    # PowerShell treats the typographic single quotes as quote characters too.
    return "'" + re.sub(r"(['\u2018\u2019\u201a\u201b])", r"\1\1", text) + "'"


def _ps_env(name: str) -> str:
    if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
        return f"$env:{name}"
    return "${env:" + re.sub(r"([{}`])", r"`\1", name) + "}"

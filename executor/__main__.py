"""``python -m executor``: run, check and plan from a terminal (run from the pack root).

    python -m executor run [--timeout S] [--stall-timeout S] [--log FILE] -- ARGV...
    python -m executor check [--json]
    python -m executor plan SPEC.json [--run] [--runs-dir DIR]
    python -m executor install [--dir DIR] [--ref REF] [--torch BUILD] [--python PATH] [--upgrade]
    python -m executor inspect FILE... [--json] [--arch ARCH --input NAME [--set NAME=VALUE]]
    python -m executor jobs list|show ID|stop ID|tail ID [-f] [--data-dir DIR]

Each subcommand's work lives beside the code it exercises (``process.run.cli_run``,
``setup.probe.cli_check``, ``runs.cli.cli_plan``, ``setup.install.cli_install``,
``musubi.modelfiles.cli.cli_inspect``, ``runs.jobcli.cli_jobs``); this module only parses arguments.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m executor", allow_abbrev=False,
                                     description="Drive musubi-tuner from the command line.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", allow_abbrev=False,
                         help="run any command through the executor and print its events as JSON lines")
    run.add_argument("--timeout", type=float, default=None, help="kill the whole tree after S seconds")
    run.add_argument("--stall-timeout", type=float, default=None,
                     help="kill the whole tree after S seconds without output")
    run.add_argument("--log", default=None, help="tee the raw output to FILE")
    run.add_argument("argv", nargs=argparse.REMAINDER, help="-- then the command and its arguments")

    check = sub.add_parser("check", allow_abbrev=False,
                           help="probe the configured musubi-tuner venv and print a report")
    check.add_argument("--json", action="store_true", help="print the report as JSON")

    install = sub.add_parser("install", allow_abbrev=False,
                             help="install musubi-tuner into its own venv and point the pack at it")
    from .setup.install import add_arguments
    add_arguments(install)

    plan = sub.add_parser("plan", allow_abbrev=False,
                          help="pre-flight a JSON spec and print the exact command")
    plan.add_argument("spec", help="path of the JSON spec")
    plan.add_argument("--run", action="store_true", help="also run the plan and print its events")
    plan.add_argument("--runs-dir", default=None, help="where run folders are created")

    inspect = sub.add_parser("inspect", allow_abbrev=False,
                             help="say what model files are, from their headers (no tensor data is read)")
    inspect.add_argument("files", nargs="+", metavar="FILE",
                         help="model files (the first part of a split model), or model folders")
    inspect.add_argument("--json", action="store_true", help="print the identification as JSON")
    inspect.add_argument("--arch", default=None, help="also check each file for this architecture (e.g. wan)")
    inspect.add_argument("--input", default=None, help="... and this model input of it (e.g. dit, vae, t5)")
    inspect.add_argument("--set", action="append", metavar="NAME=VALUE",
                         help="a selector for the check, e.g. --set task=t2v-14B (repeatable)")

    jobs = sub.add_parser("jobs", allow_abbrev=False, help="background jobs: list, show, stop, tail")
    jobs.add_argument("--data-dir", default=None,
                      help="the folder holding jobs.db (default: MUSUBI_TUNER_NODES_DATA_DIR or the per-user one)")
    actions = jobs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every job, newest first")
    listing.add_argument("--json", action="store_true", help="print the jobs as JSON")
    actions.add_parser("show", help="one job as JSON").add_argument("id", help="job id (or a unique prefix)")
    actions.add_parser("stop", help="stop a job (its whole process tree) and wait until it ended").add_argument(
        "id", help="job id (or a unique prefix)")
    tail = actions.add_parser("tail", help="the job's run.log")
    tail.add_argument("id", help="job id (or a unique prefix)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    tail.add_argument("-n", "--lines", type=int, default=40, help="lines to show first (0: all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        if args.argv and args.argv[0] == "--":
            args.argv = args.argv[1:]
        if not args.argv:
            print("python -m executor run: give the command after --", file=sys.stderr)
            return 2
        from .process.run import cli_run
        return cli_run(args)
    if args.command == "check":
        from .setup.probe import cli_check
        return cli_check(args)
    if args.command == "jobs":
        from .runs.jobcli import cli_jobs
        return cli_jobs(args)
    if args.command == "install":
        from .setup.install import cli_install
        return cli_install(args)
    if args.command == "inspect":
        from .musubi.modelfiles.cli import cli_inspect
        return cli_inspect(args)
    from .runs.cli import cli_plan
    return cli_plan(args)


if __name__ == "__main__":
    sys.exit(main())

"""Runs musubi-tuner in its own venv. Four rooms, each a subject; a change goes in one of them:

    process/   run one command and stream it: argv + child environment (command), the run
               loop (run), readers, log tee and redaction (streams), tree kill and the
               Windows Job Object (tree), the POSIX supervisor (supervisor)
    musubi/    what is true of musubi-tuner v0.3.4: the architecture table (architectures,
               shaped by schema, read by catalogue), the flag facts of every script and their
               probe (flagfacts, argparse_probe, data/), dataset TOML (dataset,
               dataset_schema), extra-argument rules (extra_args), pre-flight (preflight,
               preflight_dataset, files)
    runs/      plans and run folders: make_plan (plan), run folder names (folders), locks,
               running a plan (execute), loss records and run status (history), the
               ``plan`` command (cli)
    setup/     settings files (settings), finding the checkout and venv (discovery), the
               venv probe and ``check`` (probe)

Shared at the top: ``errors`` (the exception tree users see), ``problems`` (pre-flight
findings), ``__main__`` (``python -m executor``). Who may import whom (enforced by
tests/test_boundaries.py): the top modules import only the standard library; process the
top and ``parsers``; setup the top and process; musubi the top, setup and process; runs
every room. Nothing here imports ComfyUI: ``nodes/`` adapts this package to ComfyUI.
Import the modules directly; this file re-exports nothing so that importing one piece never
loads the rest.
"""

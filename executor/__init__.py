"""Runs musubi-tuner in its own venv: settings, commands, processes, plans.

    config     Settings (config.json < user file < env) and the musubi install
    command    argv + child environment for python / accelerate launch
    process    the run loop: stream, parse, cancel, kill the tree, decide the outcome
    catalogue  every architecture as data; build_args
    dataset    dataset TOML: build, write atomically, load with musubi's rules
    preflight  every problem before launch; plan: run folders and command.txt
    errors     the exception tree users see

No ComfyUI imports here (tests/test_boundaries.py): ``nodes/`` adapts this
package to ComfyUI. Import the submodules directly; this file re-exports
nothing so that importing one piece never loads the rest.
"""

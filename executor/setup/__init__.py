"""Settings and the musubi-tuner install: reading config.json, the user settings file and the
environment (settings), finding the checkout and its venv (discovery), probing that venv
for torch, CUDA, accelerate and attention backends (probe, ``python -m executor check``),
and installing it all (``python -m executor install``):

    install        the command: checks, clone, venv, torch, dependencies, check, settings
    steps          the checkout and the venv; packages: torch and musubi-tuner (editable)
    torch_index    which torch build the NVIDIA driver can run (nvidia-smi)
    pythons        finding a Python 3.10-3.12 (py launcher, PATH, uv)
    runner         running git/pip with a full log, progress lines and failures in words
    user_settings  writing the paths into the user settings file (atomically)

May import: the standard library, ``executor.errors`` and ``process`` (the probe runs a child
with the same sanitised environment as a training run).
"""

"""Settings and the musubi-tuner install: reading config.json, the user settings file and the
environment (settings), finding the checkout and its venv (discovery), and probing that venv
for torch, CUDA, accelerate and attention backends (probe, ``python -m executor check``).

May import: the standard library, ``executor.errors`` and ``process`` (the probe runs a child
with the same sanitised environment as a training run).
"""

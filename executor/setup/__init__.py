"""Setting up musubi-tuner: the installer (``python -m executor install``) and what it needs.

    install      the command: clone, venv, torch, musubi-tuner, settings, check
    torch_index  which torch build the NVIDIA driver can run (nvidia-smi)
    pythons      finding a Python 3.10-3.12 (py launcher, PATH, uv)

Imports only the standard library and the executor's shared modules; never ComfyUI.
Import the submodules directly: this file re-exports nothing.
"""

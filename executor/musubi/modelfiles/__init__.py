"""Model files known from their headers, never their tensor data:

    header.py, torchpickle.py   read safetensors headers (split parts merged), PyTorch zip/legacy
                                pickles (walked opcode by opcode, never run), diffusers folders
    identity.py, identify.py    the Identity of a file, cached per (path, size, mtime)
    dits.py, encoders.py        the fingerprints: keys and shapes -> component, model, variant
    expectations.py             what musubi's loader for each (architecture, input) accepts (data)
    variants.py, fit.py         checks against selectors and options; one-line verdicts
    cli.py                      ``python -m executor inspect``

Standard library only; nothing here imports torch.
"""

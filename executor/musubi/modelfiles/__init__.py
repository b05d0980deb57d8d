"""Model files known from their headers: read (header.py, torchpickle.py), identify
(identify.py with the fingerprints in dits.py and encoders.py), and check against what
musubi's loader for an architecture's input accepts (fit.py, expectations.py).
Standard library only; nothing here reads tensor data or imports torch.
"""

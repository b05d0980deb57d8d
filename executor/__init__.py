"""Runs musubi-tuner in its own venv (filled in by the executor work)."""

"""What is true of musubi-tuner v0.3.4: every architecture's scripts, inputs and recommended
settings (a data table), the recorded flags of each script, the dataset config schema, the
rules for extra arguments, model files known from their headers (``modelfiles/``), and
pre-flight: every problem with a planned step, found before anything runs.

May import: the standard library, tomllib/tomli, ``executor.errors``/``problems``, and
``setup`` (pre-flight checks the install and reads its probe). Starts no process except the
developer-only flag probe.
"""

"""Running one command safely: the exact argv and environment a child gets, launching it in
its own process group (a Job Object on Windows) under a supervisor that stops it if we die,
reading its output into parser events on the caller's thread, and stopping the whole tree.

May import: the standard library, psutil, ``parsers`` and ``executor.errors``. Knows nothing
of musubi-tuner's scripts or of run folders.
"""

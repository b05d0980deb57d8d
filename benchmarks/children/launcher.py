"""Cancel child: an ``accelerate launch``-like launcher.

Starts worker.py (with the arguments it was given) as its own child and waits
for it; it keeps the default SIGTERM action, so a signal to the launcher alone
kills the launcher and leaves the worker running as an orphan — what the real
``accelerate launch`` does. Standard library only.
"""

import os
import subprocess
import sys


def main() -> int:
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
    print(f"launcher pid {os.getpid()}", flush=True)
    child = subprocess.Popen([sys.executable, worker, *sys.argv[1:]])
    code = child.wait()
    if code:
        raise subprocess.CalledProcessError(code, child.args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

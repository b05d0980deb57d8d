"""Cancel child: a "trainer" that prints its pid, then a frame every 20 ms.

``--ignore-term`` makes it ignore SIGTERM (only SIGKILL stops it). It exits by
itself after ``--lifetime`` seconds, so a benchmark that fails to stop it
leaves no process behind for long. Standard library only.
"""

import argparse
import os
import signal
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--lifetime", type=float, default=20.0)
    args = parser.parse_args()
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"worker pid {os.getpid()}", flush=True)
    end = time.monotonic() + args.lifetime
    n = 0
    while time.monotonic() < end:
        n += 1
        sys.stderr.write(f"\rsteps: {n} [00:01, 50.00it/s, avr_loss=0.5]")
        sys.stderr.flush()
        time.sleep(0.02)
    return 0


if __name__ == "__main__":
    sys.exit(main())

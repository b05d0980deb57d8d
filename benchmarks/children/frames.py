"""Latency child: tqdm-style ``\\r`` frames on stderr, each stamped with its write time.

The stamp is ``time.monotonic_ns()`` in the postfix (``ts=...``): CLOCK_MONOTONIC
is system-wide on Linux, so the parent can subtract it from its own clock.
Writes the way tqdm does (``write('\\r' + meter)`` then ``flush()``).
Standard library only.
"""

import argparse
import sys
import time


def meter(n: int, total: int, loss: float, stamp: int) -> str:
    filled = 10 * n // total
    bar = "\u2588" * filled + " " * (10 - filled)
    return (f"steps: {100 * n // total:3d}%|{bar}| {n}/{total} [00:01<00:02,  1.29s/it, "
            f"avr_loss={loss:.4f}, ts={stamp}]")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.01)
    args = parser.parse_args()
    err = sys.stderr
    for n in range(1, args.frames + 1):
        err.write("\r" + meter(n, args.frames, 1.0 / n, time.monotonic_ns()))
        err.flush()
        time.sleep(args.interval)
    err.write("\n")
    err.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

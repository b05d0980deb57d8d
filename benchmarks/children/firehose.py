"""Throughput / memory child: writes a given number of bytes of tqdm frames to stderr.

``--mode frames`` issues one write per frame, as tqdm does (``write`` + ``flush``
of ``'\\r' + meter``); ``--mode bulk`` writes 64 KiB blocks of frames, the fastest a
producer can go (worst case for a reader that must keep memory bounded).
The frames are built before writing starts, so the timing is the writing.
Standard library only.
"""

import argparse
import os
import sys

CYCLE = 1000  # distinct frames, repeated


def frames() -> list[bytes]:
    out = []
    for n in range(1, CYCLE + 1):
        filled = 10 * n // CYCLE
        bar = "\u2588" * filled + " " * (10 - filled)
        text = (f"\rsteps: {100 * n // CYCLE:3d}%|{bar}| {n}/{CYCLE} [01:02<03:04,  1.29s/it, "
                f"avr_loss={1.0 / n:.4f}]")
        out.append(text.encode("utf-8"))
    return out


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bytes", type=int, required=True)
    parser.add_argument("--mode", choices=("frames", "bulk"), default="frames")
    args = parser.parse_args()
    cycle = frames()
    remaining = args.bytes
    fd = sys.stderr.fileno()
    if args.mode == "frames":
        while remaining > 0:
            for frame in cycle:
                write_all(fd, frame)
                remaining -= len(frame)
                if remaining <= 0:
                    break
    else:
        one = b"".join(cycle)
        block = (one * (65536 // len(one) + 1))[:65536]
        while remaining > 0:
            piece = block if remaining >= len(block) else block[:remaining]
            write_all(fd, piece)
            remaining -= len(piece)
    write_all(fd, b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

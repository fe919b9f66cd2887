"""Benchmark the kernel's PTY alone: how fast a reader that does nothing gets a command's output.

Usage: .venv/bin/python bench/pty_ceiling.py [--megabytes N]

Runs each producer of bench/streaming.py under a fresh PTY (default termios, so ONLCR
turns each newline into CRLF, as on the agent) and reads the master in 1024-byte reads,
one per frame as the agent does (docs/sandbox.md §7). No sandbox, no websocket: this is the
ceiling the streaming benchmark can reach on this machine with that producer.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import subprocess
import time

from streaming import producer_command


def pty_rate(command: str) -> tuple[float, float]:
    """(MB/s, reader CPU seconds) for reading ``command``'s output through a PTY."""
    master, slave = pty.openpty()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    proc = subprocess.Popen(
        ["sh", "-c", command], stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    )
    os.close(slave)
    size = 0
    while True:
        try:
            data = os.read(master, 1024)
        except OSError:  # EIO: the slave side is closed
            break
        if not data:
            break
        size += len(data)
    proc.wait()
    os.close(master)
    wall = time.perf_counter() - wall0
    return size / 1e6 / wall, time.process_time() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    args = parser.parse_args()
    figures = {}
    for producer in ("logs", "seq"):
        rate, cpu = pty_rate(producer_command(producer, args.megabytes))
        figures[producer] = {"mb_per_s": round(rate, 1), "reader_cpu_seconds": round(cpu, 2)}
        print(f"{producer}: {rate:.1f} MB/s through a PTY, reader CPU {cpu:.2f} s")
    print(json.dumps({"bench": "pty_ceiling", "megabytes": args.megabytes, **figures}))


if __name__ == "__main__":
    main()

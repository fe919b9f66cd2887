"""Measure what stopping a big run leaves behind: sessions and processes after signals.

Usage: .venv/bin/python bench/stop_signals.py [--nodes N]

For each way of stopping (a second Ctrl-C during cleanup, SIGHUP, SIGTERM then SIGHUP):
start `ecsexec run -- 'echo started; sleep 300'` on N sandbox containers, wait until all
started, send the signals (the later ones once the first was acknowledged), then count
the sessions still active, the PTYs still open and the `sleep 300` processes left.
Prints one line per case, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from ecsexec.sandbox import Sandbox

CASES = ((signal.SIGINT, signal.SIGINT), (signal.SIGHUP,), (signal.SIGTERM, signal.SIGHUP))


def trial(signals: tuple[int, ...], nodes: int) -> dict[str, object]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Sandbox(tasks=nodes, initial_wait=0.05, throttle="off") as sb,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
        env.update(sb.env, XDG_CACHE_HOME=f"{tmp}/cache", XDG_STATE_HOME=f"{tmp}/state")
        argv = [sys.executable, "-m", "ecsexec", "run", "-F", ".*", "--yes"]
        argv += ["--threads", str(nodes), "--rate", "1000", "--", "echo started; sleep 300"]
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert proc.stdout is not None and proc.stderr is not None
        started = 0
        while started < nodes and (line := proc.stdout.readline()):
            started += line.rstrip().endswith("started")
        at = time.monotonic()
        proc.send_signal(signals[0])
        said = ""
        while "interrupted" not in said and (line := proc.stderr.readline()):
            said += line
        for signum in signals[1:]:
            proc.send_signal(signum)
        proc.wait(timeout=120)
        took = time.monotonic() - at
        deadline = time.monotonic() + 10
        while sb.stats()["processes"].get("ptys_open", 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = subprocess.run(
            ["pgrep", "-fc", "sleep 300"], capture_output=True, text=True, check=False
        )
        return {
            "signals": "+".join(signal.Signals(s).name for s in signals),
            "started": started,
            "exit": proc.returncode,
            "seconds": round(took, 2),
            "sessions_left": len([s for s in sb.control.sessions() if s["state"] == "active"]),
            "ptys_open": sb.stats()["processes"].get("ptys_open", 0),
            "processes_left": int(left.stdout.strip() or 0),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=98)
    args = parser.parse_args()
    results = [trial(signals, args.nodes) for signals in CASES]
    for r in results:
        print(
            f"{r['signals']}: {r['started']} started, exit {r['exit']} after {r['seconds']} s; "
            f"left: {r['sessions_left']} sessions, {r['ptys_open']} PTYs, "
            f"{r['processes_left']} processes"
        )
    print(json.dumps({"bench": "stop_signals", "nodes": args.nodes, "cases": results}))


if __name__ == "__main__":
    main()

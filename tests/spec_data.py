"""Load the recorded SSM protocol data kept in ``tests/data/ssm`` (see tests/data/README.md).

The files are part of the repository, so nothing here skips: a missing or unreadable file
is an error in every test that uses it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"
SSM_DIR = DATA_DIR / "ssm"
TRACES_DIR = SSM_DIR / "traces"


def golden_frames() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((SSM_DIR / "golden-frames.json").read_text())
    return data


def trace(name: str) -> list[dict[str, Any]]:
    path = TRACES_DIR / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


TRACE_NAMES = [
    "interactive_sh_stdin.jsonl",
    "interactivecommands_real_plugin_real_agent.jsonl",
    "noninteractive_separate_handshake_exitcode.jsonl",
    "py_client_drop_retransmit.jsonl",
]

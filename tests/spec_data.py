"""Locate and load the shared spec's recorded data (golden frames, traces)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def spec_dir() -> Path:
    """The shared spec lives beside the checkout (../shared/spec)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "spec"
        if candidate.is_dir():
            return candidate
    pytest.skip("../shared/spec is not present beside this checkout", allow_module_level=True)
    raise AssertionError("unreachable")


def golden_frames() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((spec_dir() / "ssm" / "golden-frames.json").read_text())
    return data


def trace(name: str) -> list[dict[str, Any]]:
    path = spec_dir() / "ssm" / "traces" / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


TRACE_NAMES = [
    "interactive_sh_stdin.jsonl",
    "interactivecommands_real_plugin_real_agent.jsonl",
    "noninteractive_separate_handshake_exitcode.jsonl",
    "py_client_drop_retransmit.jsonl",
]

"""The README's "Using it" block, run as written in a fresh directory (a new user's path)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

README = Path(__file__).parents[1] / "README.md"


def using_it_block() -> str:
    text = README.read_text()
    section = text[text.index("## Using it") :]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, "the Using it section has no sh block"
    return found.group(1)


def test_the_using_it_section_works_as_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    # What `. .venv/bin/activate` does that matters here: ecsexec is on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(HOME=str(tmp_path), XDG_STATE_HOME=str(tmp_path / "state"))
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    script = "set -euo pipefail\n" + using_it_block()
    try:
        done = subprocess.run(
            ["bash", "-c", script],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
            check=False,
        )
    finally:  # never leave a sandbox behind, whatever failed
        subprocess.run(
            [sys.executable, "-m", "ecsexec", "sandbox", "down"],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("Full thread dump") == 2  # one per orders container
    assert "shell exited 3" in done.stdout

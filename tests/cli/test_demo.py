"""`ecsexec demo` as a new user runs it: the README's first command, end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ECSEXEC = [sys.executable, "-m", "ecsexec"]


def _demo(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_STATE_HOME=str(tmp_path / "state"))
    env.update(extra)
    return subprocess.run(
        [*ECSEXEC, "demo", "--initial-wait", "0.05"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
        check=False,
    )


def test_the_demo_ignores_the_users_own_aws_settings(tmp_path: Path) -> None:
    """After `eval "$(ecsexec sandbox env)"` (or with LocalStack) AWS_ENDPOINT_URL points
    elsewhere; the demo still uses its private sandbox."""
    done = _demo(
        tmp_path,
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_ENDPOINT_URL_ECS="http://127.0.0.1:9",
        AWS_PROFILE="no-such-profile",
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "demo finished" in done.stdout


def test_the_demo_shows_exactly_what_it_runs(tmp_path: Path) -> None:
    done = _demo(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    shown = re.findall(r"^\$ ecsexec run -F (.+?) -- (.+)$", done.stdout, re.M)
    assert len(shown) == 4
    for filter_text, _command in shown:
        # Every filter shown is a complete shell word (quoted when it has spaces).
        assert filter_text.startswith("'") == (" " in filter_text)
    assert "ECS:Container-Name: api" in done.stdout  # step 3's real filter, not a shortened one
    assert "<jcmd" not in done.stdout  # no placeholder instead of the real command
    assert not (tmp_path / "state" / "ecsexec").exists()  # the demo records no history

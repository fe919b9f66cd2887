"""A sandbox that stopped, an endpoint nobody answers: fail fast, once, and say why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecsexec.sandbox import Sandbox

pytestmark = pytest.mark.e2e

ECSEXEC = [sys.executable, "-m", "ecsexec"]


def _env(sb_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    env.update(sb_env)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return env


def _ecsexec(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ECSEXEC, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_a_stopped_sandbox_fails_fast_once_with_a_hint(tmp_path: Path) -> None:
    with Sandbox(initial_wait=0.05) as sb:
        env = _env(sb.env, tmp_path)
        # Keep the profile files the sandbox wrote, as `ecsexec sandbox env` users do.
        for variable in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            kept = tmp_path / Path(env[variable]).name
            kept.write_bytes(Path(env[variable]).read_bytes())
            env[variable] = str(kept)
        warm = _ecsexec(env, "nodes", "--format", "json")  # the node cache is now warm
        assert warm.returncode == 0, warm.stderr
    # The sandbox is gone; its port refuses connections.
    refreshed = _ecsexec(env, "nodes", "--refresh")
    assert refreshed.returncode == 3, refreshed.stdout
    assert "sandbox" in refreshed.stderr and "ecsexec sandbox up" in refreshed.stderr
    assert refreshed.stdout == ""  # --refresh never serves the cache in its place
    ran = _ecsexec(env, "run", "-F", "ECS:Service-Name: web", "--", "true")
    assert ran.returncode == 3
    # Every node failed the same way: the error is printed once, not per node.
    assert ran.stderr.count("sandbox up") == 1, ran.stderr
    rows = [line for line in ran.stderr.splitlines() if line.startswith("app-")]
    assert rows and all(row.rstrip().endswith("see [1] below") for row in rows)

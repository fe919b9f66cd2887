"""ConnectorPool: aiohttp only for runs above SMALL_RUN nodes (a fresh interpreter each)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ecsexec.exec.connect import SMALL_RUN

pytestmark = pytest.mark.e2e  # subprocesses


def _requested_after(steps: str) -> bool:
    code = (
        "import sys\n"
        "from ecsexec.aws.execute_command import requested\n"
        "from ecsexec.exec.connect import ConnectorPool\n"
        "from ecsexec.exec.runner import ContainerTarget\n"
        "pool = ConnectorPool(lambda region: None, default_region='us-east-1')\n"
        "pool.for_region = lambda region: region\n"  # no AWS session is needed here
        "target = ContainerTarget(node='n', cluster='c', task='t', container='x')\n"
        f"{steps}\n"
        "print('REQUESTED', requested())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "REQUESTED" in done.stdout, done.stderr
    return "REQUESTED True" in done.stdout


def test_a_small_run_never_asks_for_aiohttp() -> None:
    assert not _requested_after(f"pool.expect({SMALL_RUN})")
    assert not _requested_after(f"for _ in range({SMALL_RUN}): pool(target)")


def test_a_larger_run_starts_importing_aiohttp_at_once() -> None:
    assert _requested_after(f"pool.expect({SMALL_RUN + 1})")


def test_a_caller_that_did_not_say_gets_aiohttp_past_the_small_run() -> None:
    assert _requested_after(f"for _ in range({SMALL_RUN + 1}): pool(target)")

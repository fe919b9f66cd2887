"""Shared fixtures: one sandbox per session, boto3 clients from ``sb.env``, the leak check (§1).

Every test that uses the ``sandbox`` fixture is checked afterwards: no exec session may be
left active, no exec process or PTY may be left open, and no protocol warning may have been
recorded, unless the test is marked ``protocol_warnings_expected``.

Main processes (``sandbox.main``) are expected to run for the sandbox's whole life.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config

from ecsexec.sandbox import Sandbox

# How long a test's sessions may take to finish after it returns (agent drain is 2 s).
LEAK_DEADLINE = 10.0
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "protocol_warnings_expected: the test provokes sandbox protocol warnings on purpose",
    )


_SESSIONS: dict[tuple[str, str | None], boto3.Session] = {}


def boto3_session(sb: Sandbox, region: str | None = None) -> boto3.Session:
    """A boto3 session configured only from ``sb.env`` (never from the host's AWS settings).

    The profile, config and credentials files, endpoint and CA bundle are exactly what
    ``eval "$(ecsexec sandbox env)"`` would export. Sessions are cached per sandbox and
    region because loading botocore's models is the slow part of making a client.
    """
    env = sb.env
    key = (env["AWS_CONFIG_FILE"] + env["AWS_ENDPOINT_URL"], region)
    cached = _SESSIONS.get(key)
    if cached is not None:
        return cached
    core = botocore.session.Session()
    core.set_config_variable("config_file", env["AWS_CONFIG_FILE"])
    core.set_config_variable("credentials_file", env["AWS_SHARED_CREDENTIALS_FILE"])
    core.set_config_variable("profile", env["AWS_PROFILE"])
    core.set_config_variable("region", region or env["AWS_DEFAULT_REGION"])
    if "AWS_CA_BUNDLE" in env:
        core.set_config_variable("ca_bundle", env["AWS_CA_BUNDLE"])
    session = _SESSIONS[key] = boto3.Session(botocore_session=core)
    return session


def client(sb: Sandbox, service: str, region: str | None = None, retries: bool = False) -> Any:
    """A boto3 client for the sandbox; retries off unless asked, so error codes are exact."""
    config = None if retries else NO_RETRIES
    return boto3_session(sb, region).client(
        service, endpoint_url=sb.env["AWS_ENDPOINT_URL"], config=config
    )


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(process=False, initial_wait=0.05) as sb:
        yield sb


def _leaks(sb: Sandbox, stats: dict[str, Any]) -> list[str]:
    leaks = []
    # The hub's own list, not the counters: a test may reset stats mid-session.
    active = [s["sessionId"] for s in sb.control.sessions() if s["state"] == "active"]
    if active:
        leaks.append(f"sessions still active: {active}")
    # ``exec`` counts processes started; ``ptys_open`` is held until an exec'd process ends.
    if stats["processes"].get("ptys_open", 0) > 0:
        leaks.append(f"processes.ptys_open={stats['processes']['ptys_open']}")
    return leaks


@pytest.fixture(autouse=True)
def _sandbox_leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    if "sandbox" not in request.fixturenames:
        yield
        return
    sb: Sandbox = request.getfixturevalue("sandbox")
    before = len(sb.stats()["protocol_warnings"])
    yield
    deadline = time.monotonic() + LEAK_DEADLINE
    while True:
        stats = sb.stats()
        leaks = _leaks(sb, stats)
        if not leaks or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    warnings = stats["protocol_warnings"]
    new = warnings[before:] if len(warnings) >= before else warnings
    if new and not request.node.get_closest_marker("protocol_warnings_expected"):
        leaks.append(f"protocol warnings recorded: {new}")
    if leaks:
        # Leave the shared sandbox clean for the next test before failing this one.
        for s in sb.control.sessions():
            if s["state"] == "active":
                client(sb, "ssm").terminate_session(SessionId=s["sessionId"])
        pytest.fail("test left the sandbox dirty: " + "; ".join(leaks))

"""Shared fixtures: one sandbox per session, boto3 clients from ``sb.env``, the leak check (§1),
and the test tiers.

Every test that uses the ``sandbox`` fixture is checked afterwards: no exec session may be
left active, no exec process or PTY may be left open, and no protocol warning may have been
recorded, unless the test is marked ``protocol_warnings_expected``.

Main processes (``sandbox.main``) are expected to run for the sandbox's whole life.

Tiers (markers registered in pyproject.toml). Every test is exactly one of:

- ``unit``: pure and in-process. It connects or binds no socket and starts no process or
  PTY; ``_unit_tests_stay_pure`` fails a unit test that tries.
- ``e2e``: real I/O: the sandbox over HTTP and websockets, a local server, the CLI or another
  subprocess, a PTY.

``slow`` additionally marks the load tests. A test is ``e2e`` when it is marked so (preferred
for new tests: ``@pytest.mark.e2e`` or ``pytestmark = pytest.mark.e2e``), uses a fixture
that starts a sandbox, or is listed in ``E2E_MODULES`` / ``E2E_TESTS``; otherwise ``unit``.
"""

from __future__ import annotations

import _posixsubprocess
import functools
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
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


# -- Test tiers ---------------------------------------------------------------------------------

TESTS_DIR = Path(__file__).resolve().parent

# Fixtures that start a sandbox (``sandbox`` is the session one; the others are module-scoped
# sandboxes with their own settings). ``item.fixturenames`` includes indirect uses.
SANDBOX_FIXTURES = frozenset({"sandbox", "lab", "container_sb", "instance_sb"})

# Modules whose tests (all, or all but a trivial one or two) do real I/O.
E2E_MODULES = frozenset(
    {
        "cli/test_config_cli.py",
        "cli/test_history_cli.py",
        "cli/test_job_cli.py",
        "cli/test_nodes_cli.py",
        "cli/test_plugin_e2e.py",
        "cli/test_run_cli.py",
        "cli/test_shell.py",
        "exec/test_runner.py",
        "jobs/test_executor.py",
        "jobs/test_steps.py",  # runs the extracted scripts with real interpreters
        "sandbox/test_cli_sandbox.py",
        "sandbox/test_ecs_api.py",
        "sandbox/test_hub.py",  # the relay on a real port, the agent on real PTYs
        "sandbox/test_kms_sts.py",
        "sandbox/test_process.py",  # real processes on PTYs
        "sandbox/test_server.py",
        "sandbox/test_stop_task.py",
        "test_layers.py",  # runs lint-imports
    }
)

# The I/O tests of modules that are otherwise pure (tests using a sandbox fixture need no entry).
E2E_TESTS: dict[str, frozenset[str]] = {
    "aws/test_credentials.py": frozenset(
        {"test_instance_provider_unreachable", "test_assume_role_refreshes_before_expiry"}
    ),
    "aws/test_execute_command.py": frozenset({"test_an_unreachable_endpoint_names_it"}),
    "cli/test_plugin_args.py": frozenset(
        {
            "test_no_arguments_prints_installed_note_and_exits_zero",
            "test_version_prints_only_the_version",
            "test_usage_error_exits_2_without_leaking_the_token",
        }
    ),
    "exec/test_dispatcher.py": frozenset(
        {
            "test_throttled_execute_command_is_retried_and_runs_exactly_once",
            "test_two_hundred_nodes_with_fifty_threads",
        }
    ),
    "exec/test_input.py": frozenset(
        {
            "test_any_bytes_arrive_intact_through_a_canonical_mode_pty",
            "test_a_corrupted_input_is_refused_before_the_command_runs",
            "test_without_a_terminal_nothing_is_sent_and_the_reason_is_given",
            "test_posix_cksum_matches_the_real_tool",
        }
    ),
    "exec/test_wrap.py": frozenset({"test_wrapped_script_runs_in_a_real_shell"}),
    "jobs/test_expand.py": frozenset(
        {
            "test_any_option_value_reaches_a_real_shell_unchanged",
            "test_attacks_and_awkward_values_stay_one_word",
        }
    ),
    "nodes/test_ecs_source.py": frozenset(
        {"test_thousand_tasks_use_exactly_the_lower_bound_of_calls"}
    ),
    "sandbox/test_agent.py": frozenset(
        {
            "test_session_shape_and_timing",
            "test_chunks_hold_back_incomplete_utf8",
            "test_drain_timeout_then_terminating_with_resends",
            "test_output_hold_stops_pty_reads_until_released",
            "test_early_size_waits_for_the_pty_then_sets_winsize",
            "test_stop_kills_the_process_and_closes_the_pty",
            "test_kms_handshake_and_encrypted_session",
        }
    ),
    "store/test_history.py": frozenset(
        {
            "test_concurrent_writers_lose_nothing",
            "test_a_crash_leaves_an_incomplete_record_not_a_lost_one",
        }
    ),
    "test_errors.py": frozenset(
        {
            "test_run_main_prints_the_error_and_exits_with_its_code",
            "test_run_main_survives_a_closed_stdout_without_a_traceback",
        }
    ),
}

# The load tests: the slowest of the suite (several seconds each on the 2-core machine).
SLOW_TESTS = frozenset(
    {
        "cli/test_plugin_e2e.py::test_agent_giving_up_is_reported_never_silent",
        "cli/test_plugin_e2e.py::test_lossy_links_give_byte_exact_output",
        "exec/test_dispatcher.py::test_two_hundred_nodes_with_fifty_threads",
        "exec/test_dispatcher.py::test_throttled_execute_command_is_retried_and_runs_exactly_once",
        "exec/test_runner.py::test_agent_giving_up_is_truncation_with_unknown_exit_status_never_success",
        "exec/test_runner.py::test_drops_duplicates_reordering_and_disconnects_keep_output_and_exit_code_exact",
        "nodes/test_ecs_source.py::test_thousand_tasks_use_exactly_the_lower_bound_of_calls",
    }
)


def _is_e2e(item: pytest.Item, module: str, name: str) -> bool:
    return (
        not SANDBOX_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
        or module in E2E_MODULES
        or name in E2E_TESTS.get(module, ())
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.resolve().relative_to(TESTS_DIR).as_posix()
        name = getattr(item, "originalname", item.name)
        if f"{module}::{name}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("unit") or item.get_closest_marker("e2e"):
            continue  # marked in its module
        tier = pytest.mark.e2e if _is_e2e(item, module, name) else pytest.mark.unit
        item.add_marker(tier)


class ImpureUnitTestError(Exception):
    """Raised when a ``unit`` test connects or binds a socket or starts a process."""


# What a unit test may not do; each is where the standard library does it, so asyncio,
# websockets, boto3, subprocess.run, pty and multiprocessing are all covered.
_FORBIDDEN_IN_UNIT: tuple[tuple[Any, str, str], ...] = (
    (socket.socket, "connect", "connected a socket"),
    (socket.socket, "connect_ex", "connected a socket"),
    (socket.socket, "bind", "bound a socket"),
    (subprocess.Popen, "_execute_child", "started a subprocess"),
    (_posixsubprocess, "fork_exec", "started a process"),
    (os, "fork", "forked"),
    (os, "forkpty", "forked on a PTY"),
    (os, "posix_spawn", "spawned a process"),
    (os, "posix_spawnp", "spawned a process"),
    (os, "system", "ran a shell"),
)


def _aws_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "ECSEXEC_", "XDG_"))}


@pytest.fixture(autouse=True)
def _environment_is_left_as_found() -> Iterator[None]:
    """A test that sets AWS_*, ECSEXEC_* or XDG_* variables behind monkeypatch's back
    leaks them into every later test (static keys there silently beat a profile's):
    it fails here instead."""
    before = _aws_environment()
    yield
    after = _aws_environment()
    changed = sorted(k for k in after.keys() | before.keys() if after.get(k) != before.get(k))
    assert not changed, f"the test left these variables changed: {changed}"  # names only


@pytest.fixture(autouse=True)
def _unit_tests_stay_pure(request: pytest.FixtureRequest) -> Iterator[None]:
    """A ``unit`` test fails if it touches the network or starts a process.

    Threads that already ran before the test (the session sandbox's) are left alone; the
    test's own thread and any thread it starts are checked.
    """
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    exempt = set(threading.enumerate()) - {threading.current_thread()}
    done: list[str] = []

    def refusing(original: Callable[..., Any], what: str) -> Callable[..., Any]:
        @functools.wraps(original)
        def guard(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() in exempt:
                return original(*args, **kwargs)
            done.append(what)
            raise ImpureUnitTestError(f"a unit test {what}")

        return guard

    with pytest.MonkeyPatch.context() as patch:
        for owner, attribute, what in _FORBIDDEN_IN_UNIT:
            patch.setattr(owner, attribute, refusing(getattr(owner, attribute), what))
        yield
    if done:
        pytest.fail(
            f"this unit test {', '.join(dict.fromkeys(done))}: mark it "
            "@pytest.mark.e2e (or list it in E2E_TESTS in tests/conftest.py)",
            pytrace=False,
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

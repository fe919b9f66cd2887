"""The error tree's exit codes, the outcome vocabulary, and the entry-point wrapper (pure)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from ecsexec import errors
from ecsexec.errors import (
    AwsError,
    CommandFailedError,
    ConfigurationError,
    CredentialsError,
    EcsexecError,
    FilterSyntaxError,
    SessionError,
    Status,
    exit_status,
    status_for_exit,
)


def test_every_error_carries_its_exit_code() -> None:
    assert ConfigurationError.exit_code == CredentialsError.exit_code == 2
    assert FilterSyntaxError.exit_code == 2
    assert AwsError.exit_code == SessionError.exit_code == EcsexecError.exit_code == 3
    assert CommandFailedError.exit_code == 1


def test_every_exception_class_is_drawn_in_the_tree() -> None:
    doc = errors.__doc__ or ""
    classes = [
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, EcsexecError)
    ]
    assert len(classes) > 10
    for name in classes:
        assert name in doc, f"{name} is not in the tree in errors.py's docstring"


@pytest.mark.parametrize(
    ("codes", "interrupted", "expected"),
    [
        ([], False, 0),
        ([0, 0], False, 0),
        ([0, 1], False, 1),
        ([1, 3], False, 3),
        ([3, 2, 1], False, 2),
        ([0], True, 130),
    ],
)
def test_exit_status_precedence(codes: list[int], interrupted: bool, expected: int) -> None:
    assert exit_status(codes, interrupted=interrupted) == expected


def test_status_vocabulary() -> None:
    assert Status.SUCCEEDED.ok and Status.RECOVERED.ok and not Status.FAILED.ok
    assert Status.FAILED.exit_code == 1 and Status.TIMEOUT.exit_code == 3
    assert Status.NOT_STARTED.exit_code == 0
    assert str(Status.NOT_STARTED) == "not started"  # what JSON and history show
    assert status_for_exit(0) is Status.SUCCEEDED and status_for_exit(2) is Status.ERROR
    assert status_for_exit(130) is Status.INTERRUPTED


def _run_main(body: str) -> subprocess.CompletedProcess[str]:
    code = f"from ecsexec import errors\n{body}\nerrors.run_main(main, prog='prog')\n"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.e2e
def test_run_main_prints_the_error_and_exits_with_its_code() -> None:
    done = _run_main("def main():\n    raise errors.CredentialsError('no keys here')")
    assert done.returncode == 2
    assert done.stderr == "prog: error: no keys here\n"
    assert _run_main("def main():\n    return 7").returncode == 7


@pytest.mark.e2e
def test_run_main_survives_a_closed_stdout_without_a_traceback() -> None:
    code = (
        "import sys\nfrom ecsexec import errors\n"
        "def main():\n    for i in range(100000):\n        sys.stdout.write('line %d\\n' % i)\n"
        "errors.run_main(main)\n"
    )
    producer = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert producer.stdout is not None and producer.stderr is not None
    producer.stdout.readline()
    producer.stdout.close()  # the reader goes away, as `| head -1` does
    stderr = producer.stderr.read()
    producer.stderr.close()
    assert producer.wait(timeout=60) == 141
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr


def test_server_errors_name_what_was_refused() -> None:
    denied = errors.AccessDenied("run_command", "role viewer may not run commands")
    assert denied.exit_code == 3
    assert (denied.action, denied.reason) == ("run_command", "role viewer may not run commands")
    assert str(denied) == "access denied: run_command: role viewer may not run commands"
    assert errors.UserExistsError("ana").exit_code == 2
    assert "'ana'" in str(errors.UserExistsError("ana"))
    assert isinstance(errors.NoSuchUserError("bo"), errors.TeamStoreError)

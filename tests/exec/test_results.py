"""Result objects: status, check(), iteration, and the run exit-status rules (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ecsexec.errors import (
    AwsError,
    CommandFailedError,
    CredentialsError,
    SessionError,
    Status,
)
from ecsexec.exec.results import CommandResult, RunResult, command_status

T = datetime(2026, 1, 1, tzinfo=UTC)


def result(node: str, code: int | None, **kw: object) -> CommandResult:
    status = kw.pop("status", None) or command_status(code, truncated=bool(kw.get("truncated")))
    return CommandResult(node, "cmd", status, code, b"out", T, T, **kw)  # type: ignore[arg-type]


def failure(node: str, error: Exception, **kw: object) -> CommandResult:
    return CommandResult.failure(node, "cmd", error, T, T, **kw)  # type: ignore[arg-type]


def test_status_and_check() -> None:
    ok = result("a", 0)
    assert ok.status is Status.SUCCEEDED and ok.check() is ok
    assert result("a", 7).status is Status.FAILED
    assert result("a", None, reason="end marker missing").status is Status.ERROR
    assert result("a", 0, truncated=True).status is Status.ERROR
    with pytest.raises(CommandFailedError, match="exit code 7") as info:
        result("a", 7).check()
    assert info.value.result.exit_code == 7  # the partial result travels with the error
    with pytest.raises(CommandFailedError, match="exit status unknown"):
        result("a", None, reason="x").check()


def test_a_failure_keeps_its_error_output_and_session() -> None:
    error = SessionError("connection reset", session_id="s-1", output=b"ignored")
    kept = failure("n", error, output=b"partial\n")
    assert kept.status is Status.ERROR and kept.exit_code is None
    assert kept.output == b"partial\n" and kept.session_id == "s-1"
    assert kept.error is error and kept.reason == "connection reset"
    cancelled = failure("n", SessionError("interrupted"), status=Status.CANCELLED)
    assert cancelled.status is Status.CANCELLED and not cancelled.ok


@pytest.mark.parametrize(
    ("outcomes", "interrupted", "expected"),
    [
        ([result("a", 0), result("b", 0)], False, 0),
        ([result("a", 0), result("b", 3)], False, 1),
        ([result("a", 3), result("b", None, status=Status.TIMEOUT)], False, 3),
        ([result("a", 0), failure("b", AwsError("denied"))], False, 3),
        # A configuration mistake outranks a node that could not run: the user must fix it.
        ([failure("a", CredentialsError("no keys")), failure("b", AwsError("x"))], False, 2),
        ([result("a", 0)], True, 130),
        ([result("a", 1), result("b", None, status=Status.NOT_STARTED)], False, 1),
    ],
)
def test_run_exit_status(outcomes: list[CommandResult], interrupted: bool, expected: int) -> None:
    run = RunResult("cmd", {o.node: o for o in outcomes}, interrupted)
    assert run.exit_status == expected
    assert run.ok == (expected == 0 and not run.not_started)


@pytest.mark.parametrize(
    ("outcomes", "interrupted", "expected"),
    [
        ([result("a", 0)], False, 0),
        ([result("a", 3)], False, 3),
        ([result("a", 127), result("b", 0), result("c", 42)], False, 127),
        # A node with no exit code of its own: ecsexec's own status, as without the option.
        ([result("a", 0), result("b", None, status=Status.TIMEOUT)], False, 3),
        ([result("a", 5), failure("b", CredentialsError("no keys"))], False, 2),
        ([result("a", 1), result("b", None, status=Status.NOT_STARTED)], False, 1),
        ([result("a", 7)], True, 130),
    ],
)
def test_command_exit_status_passes_the_commands_own_code_on(
    outcomes: list[CommandResult], interrupted: bool, expected: int
) -> None:
    run = RunResult("cmd", {o.node: o for o in outcomes}, interrupted)
    assert run.command_exit_status == expected


def test_run_iterates_in_rank_order_and_indexes_by_node() -> None:
    outcomes = [result("b", 0), result("a", 1), result("c", None, status=Status.NOT_STARTED)]
    run = RunResult("cmd", {o.node: o for o in outcomes})
    assert [r.node for r in run] == ["b", "a", "c"] and len(run) == 3
    assert run["a"].exit_code == 1
    assert run.not_started == ("c",) and list(run.failed) == ["a", "c"]
    with pytest.raises(CommandFailedError, match="1 failed, 1 not started") as info:
        run.check()
    assert info.value.result is run


def test_a_job_step_run_once_counts_too() -> None:
    run = RunResult("job x", {"a": result("a", 0)}, workflow=(Status.FAILED,))
    assert run.exit_status == 1


def test_repr_leaves_out_the_output() -> None:
    # asyncio formats a finished task's result; a repr of all output made that slow.
    big = b"x" * 1_000_000
    done = CommandResult("n", "true", Status.SUCCEEDED, 0, big, T, T)
    failed = failure("n", AwsError("boom"), output=big)
    assert "xxxx" not in repr(done)
    assert "xxxx" not in repr(failed)
    assert "exit_code=0" in repr(done)

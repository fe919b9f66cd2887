"""Result objects: status, check(), and the run exit-status rules of issue 5 (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ecsexec.errors import AwsError, CommandFailedError
from ecsexec.exec.results import CommandResult, NodeError, RunResult

T = datetime(2026, 1, 1, tzinfo=UTC)


def result(node: str, code: int | None, **kw: object) -> CommandResult:
    return CommandResult(node, "cmd", code, b"out", T, T, **kw)  # type: ignore[arg-type]


def test_status_and_check() -> None:
    ok = result("a", 0)
    assert ok.status == "succeeded" and ok.check() is ok
    assert result("a", 7).status == "failed"
    assert result("a", None, reason="end marker missing").status == "error"
    assert result("a", 0, truncated=True).status == "error"
    assert result("a", None, timed_out=True).status == "timeout"
    with pytest.raises(CommandFailedError, match="exit code 7") as info:
        result("a", 7).check()
    assert info.value.result.exit_code == 7  # the partial result travels with the error
    with pytest.raises(CommandFailedError, match="exit status unknown"):
        result("a", None, reason="x").check()


@pytest.mark.parametrize(
    ("outcomes", "interrupted", "expected"),
    [
        ([result("a", 0), result("b", 0)], False, 0),
        ([result("a", 0), result("b", 3)], False, 1),
        ([result("a", 3), result("b", None, timed_out=True)], False, 3),
        ([result("a", 0), NodeError("b", AwsError("denied"), T, T)], False, 3),
        ([result("a", 0)], True, 130),
    ],
)
def test_run_exit_status(outcomes: list, interrupted: bool, expected: int) -> None:
    run = RunResult("cmd", {o.node: o for o in outcomes}, (), interrupted)
    assert run.exit_code() == expected
    assert run.ok == (expected == 0)


def test_repr_leaves_out_the_output() -> None:
    # asyncio formats a finished task's result; a repr of all output made that slow.
    big = b"x" * 1_000_000
    result = CommandResult("n", "true", 0, big, T, T)
    failure = NodeError("n", AwsError("boom"), T, T, output=big)
    assert "xxxx" not in repr(result)
    assert "xxxx" not in repr(failure)
    assert "exit_code=0" in repr(result)

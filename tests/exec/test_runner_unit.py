"""One command on one container against a scripted backend: every ending, no socket.

The same runner code as tests/exec/test_runner.py, which drives it end to end on the
sandbox; here each ending is produced on purpose and exactly (tests/exec/fake_backend.py).
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from ecsexec.aws.ecs import ExecSession
from ecsexec.errors import AwsError, SessionError, Status, TransportError
from ecsexec.exec.results import CommandResult
from ecsexec.exec.runner import INTERRUPT, PTY_SIZE, run_on_container
from ecsexec.exec.wrap import WrappedCommand, raw, wrap
from ecsexec.ssm.channel import ChannelClosed, HandshakeCompleted, OutputReceived, StderrReceived
from ecsexec.ssm.session import TerminationOutcome
from tests.exec.fake_backend import (
    Begin,
    End,
    Fail,
    FakeBackend,
    Out,
    Ready,
    Script,
    Step,
    Wait,
    runs,
    target,
)

NODE = "app-1"


def run(
    steps: list[Step],
    wrapped: WrappedCommand | None = None,
    *,
    timeout: float | None = 30,
    **script: object,
) -> tuple[CommandResult, FakeBackend]:
    backend = FakeBackend({NODE: Script(steps, **script)})  # type: ignore[arg-type]
    result = asyncio.run(
        run_on_container(backend, target(NODE), wrapped or wrap("cmd"), timeout=timeout)
    )
    return result, backend


@pytest.mark.parametrize(
    ("output", "exit_code", "status"),
    [
        (b"hello\nerr\n", 3, Status.FAILED),
        (b"no newline", 0, Status.SUCCEEDED),
        (b"", 0, Status.SUCCEEDED),
        (b"a\r\nb\n\n", 1, Status.FAILED),  # the PTY's \r\n becomes \n; the user's \r stays
        (b"done\n", 255, Status.FAILED),
    ],
)
def test_exit_code_and_clean_output_come_through_the_markers(
    output: bytes, exit_code: int, status: Status
) -> None:
    result, backend = run(runs(output, exit_code, noise=b"Welcome banner\r\n$ "))
    assert (result.exit_code, result.output, result.status) == (exit_code, output, status)
    assert result.reason == "" and not result.truncated and result.error is None
    session = backend.session_of(NODE)
    assert result.session_id == session.session_id
    assert session.sent[0] == ("size", PTY_SIZE)  # before any output
    assert backend.terminated == []  # it ended by itself


def test_signal_death_drops_the_shells_notice() -> None:
    result, _ = run([Begin(), Out(b"working\nKilled\n"), End(137)])
    assert (result.exit_code, result.output) == (137, b"working\n")


def test_output_split_anywhere_arrives_whole_and_live() -> None:
    wrapped = wrap("cmd")
    stream = (
        b"\r\n"
        + wrapped.begin_marker
        + b"\r\nline 1\r\nline 2\r\n\r\n"
        + wrapped.end_marker(4)
        + b"\r\n"
    )
    chunks = [OutputReceived(stream[i : i + 3]) for i in range(0, len(stream), 3)]
    live: list[bytes] = []
    backend = FakeBackend({NODE: Script(chunks)})
    result = asyncio.run(
        run_on_container(
            backend, target(NODE), wrapped, on_output=lambda _n, data, _held: live.append(data)
        )
    )
    assert (result.exit_code, result.output) == (4, b"line 1\nline 2\n")
    assert b"".join(live) == result.output


def test_no_begin_marker_means_no_shell_and_unknown_exit_status() -> None:
    result, _ = run([OutputReceived(b"exec /bin/sh: no such file or directory\r\n")])
    assert result.exit_code is None and result.status is Status.ERROR
    assert "cannot start /bin/sh" in result.reason and result.output == b""


def test_a_missing_end_marker_is_truncation_never_success() -> None:
    result, _ = run([Begin(), Out(b"partial\n")])
    assert result.exit_code is None and result.truncated and result.status is Status.ERROR
    assert result.output == b"partial\n"
    assert "end marker never arrived" in result.reason


def test_a_gap_at_close_is_truncation() -> None:
    result, _ = run([Begin(), Out(b"seq\n"), ChannelClosed("", truncated=True, missing_seq=9)])
    assert result.truncated and result.exit_code is None
    assert "frame 9 never arrived" in result.reason
    assert result.output == b"seq\n"


def test_raw_mode_keeps_everything_and_reports_no_exit_code() -> None:
    result, _ = run([OutputReceived(b"hi\r\n")], raw("echo hi"))
    assert result.output == b"hi\n" and result.exit_code is None
    assert "raw" in result.reason and not result.truncated


def test_timeout_keeps_the_output_and_terminates_the_session() -> None:
    result, backend = run([Begin(), Out(b"started\n"), Wait()], timeout=0.05)
    assert result.status is Status.TIMEOUT and result.exit_code is None
    assert result.output == b"started\n"
    assert "timed out after 0.05 s" in result.reason
    assert backend.terminated == [result.session_id]


def test_a_timeout_says_terminated_only_when_terminate_session_succeeded() -> None:
    result, _ = run([Begin(), Wait()], timeout=0.05)
    assert result.reason.endswith("; the session was terminated")
    denied = TerminationOutcome(
        confirmed=False, closed=False, error_code="AccessDeniedException", error="denied"
    )
    result, _ = run([Begin(), Wait()], timeout=0.05, terminate=denied)
    assert result.status is Status.TIMEOUT and result.exit_status == 3
    assert result.reason == (
        "timed out after 0.05 s; the session may still be running (AccessDeniedException)"
    )


def test_a_session_error_mid_stream_is_a_result_with_the_partial_output() -> None:
    error = TransportError("lost the data channel", session_id="x")
    result, backend = run([Begin(), Out(b"part"), Out(b"ial\n"), Fail(error)])
    assert result.status is Status.ERROR and result.error is error
    assert result.output == b"partial\n"
    assert result.reason == str(error)
    assert result.session_id == backend.session_of(NODE).session_id


def test_execute_command_errors_propagate_and_start_no_session() -> None:
    denied = AwsError("denied", code="AccessDeniedException", operation="ExecuteCommand")
    with pytest.raises(AwsError) as caught:
        run([], start_errors=[denied])
    assert caught.value is denied


def test_cancelling_keeps_the_output_so_far_and_terminates_the_session() -> None:
    backend = FakeBackend({NODE: Script([Begin(), Out(b"up\nmore"), Wait()])})
    output: list[bytes] = []

    async def scenario() -> None:
        task = asyncio.create_task(
            run_on_container(backend, target(NODE), wrap("cmd"), output=output)
        )
        while not output:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert b"".join(output) == b"up\nmore"
    assert backend.terminated == [backend.session_of(NODE).session_id]


def test_cancelled_during_execute_command_terminates_what_it_started() -> None:
    gate = asyncio.Event()
    backend = FakeBackend({NODE: Script(runs(b"", 0), start_gate=gate)})

    async def scenario() -> None:
        task = asyncio.create_task(run_on_container(backend, target(NODE), wrap("cmd")))
        while not backend.calls:
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        gate.set()  # ExecuteCommand returns after we gave up: it started a command
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    (session,) = backend.sessions.values()
    assert backend.terminated == [session.session_id]
    assert not session.entered  # never attached


def test_input_is_sent_after_the_ready_marker_and_the_gate_opens_on_begin() -> None:
    wrapped = wrap("cat", stdin=b"secret input")
    result, backend = run([Ready(), Begin(), Out(b"secret input"), End(0)], wrapped, timeout=5)
    assert result.ok and result.output == b"secret input"
    sent = backend.session_of(NODE).sent
    assert sent[:2] == [("size", PTY_SIZE), ("gate", "ready marker")]
    assert sent[2:] == [("input", wrapped.input_payload), ("gate", "begin marker")]


def test_nothing_is_sent_without_the_ready_marker() -> None:
    wrapped = wrap("cat", stdin=b"x")
    result, backend = run(runs(b"no stty\n", 125), wrapped)
    assert result.exit_code == 125
    assert [kind for kind, _ in backend.session_of(NODE).sent] == ["size", "gate"]


def test_stderr_payloads_and_the_handshake_message_are_notices() -> None:
    notices: list[tuple[str, bytes]] = []
    backend = FakeBackend(
        {
            NODE: Script(
                [
                    HandshakeCompleted("session encrypted", encrypted=True),
                    StderrReceived(b"agent says"),
                    *runs(b"out\n", 0),
                ]
            )
        }
    )
    result = asyncio.run(
        run_on_container(
            backend,
            target(NODE),
            wrap("cmd"),
            on_notice=lambda node, text: notices.append((node, text)),
        )
    )
    assert result.output == b"out\n"
    assert notices == [(NODE, b"session encrypted"), (NODE, b"agent says")]


def test_on_started_gets_the_session_before_attaching_and_nothing_if_start_fails() -> None:
    seen: list[tuple[str, bool]] = []
    backend = FakeBackend(
        {
            NODE: Script(runs(b"", 0)),
            "other": Script(start_errors=[AwsError("no", code="InvalidParameterException")]),
        }
    )

    def on_started(started: ExecSession) -> None:
        seen.append((started.session_id, backend.sessions[started.session_id].entered))

    result = asyncio.run(
        run_on_container(backend, target(NODE), wrap("cmd"), on_started=on_started)
    )
    assert seen == [(result.session_id, False)]
    with pytest.raises(AwsError):
        asyncio.run(run_on_container(backend, target("other"), wrap("cmd"), on_started=on_started))
    assert len(seen) == 1


# --- a result whose end marker arrived is final -------------------------------------------


@pytest.mark.parametrize(
    "after",
    [
        Fail(TransportError("lost the data channel and could not resume it", session_id="s")),
        Fail(SessionError("ResumeSession failed: AccessDeniedException", session_id="s")),
        ChannelClosed("", truncated=True, missing_seq=41),
    ],
    ids=["socket-lost", "resume-refused", "gap-after-the-marker"],
)
def test_whatever_happens_after_the_end_marker_the_result_stands(after: Step) -> None:
    result, _ = run([*runs(b"all of it\n", 7), after])
    assert (result.status, result.exit_code, result.output) == (Status.FAILED, 7, b"all of it\n")
    assert result.error is None and not result.truncated and result.reason == ""


def test_a_timeout_after_the_end_marker_keeps_the_exit_code() -> None:
    result, backend = run([*runs(b"done\n", 0), Wait()], timeout=0.05)
    assert result.ok and (result.exit_code, result.output) == (0, b"done\n")
    assert backend.terminated == [result.session_id]  # still never left running


def test_an_end_marker_cut_before_its_line_break_is_not_final() -> None:
    # "...__:7" could be the start of "...__:75": the exit code is not known yet.
    wrapped = wrap("cmd")
    steps: list[Step] = [
        Begin(),
        Out(b"out\n"),
        OutputReceived(b"\r\n" + wrapped.end_marker(7)),
        Fail(TransportError("lost", session_id="s")),
    ]
    result, _ = run(steps, wrapped)
    assert result.status is Status.ERROR and result.exit_code is None
    assert result.output.startswith(b"out\n")


def test_a_copy_times_out_only_when_its_data_stops_moving() -> None:
    """A copy's --timeout is the time it may go without moving data: output arriving
    every 0.05 s for well over the limit keeps it going; silence then ends it, and the
    wrapper is sent ^C to clean up before the session is terminated."""
    copy = dataclasses.replace(wrap("cp"), transfer=True)
    ticks = [asyncio.Event() for _ in range(12)]

    async def main() -> tuple[CommandResult, FakeBackend]:
        steps: list[Step] = [Begin()]
        for tick in ticks:
            steps += [Wait(tick), Out(b".")]
        steps.append(Wait())  # then nothing, ever
        backend = FakeBackend({NODE: Script(steps)})

        async def clock() -> None:
            for tick in ticks:
                await asyncio.sleep(0.05)
                tick.set()

        ticking = asyncio.create_task(clock())
        result = await run_on_container(backend, target(NODE), copy, timeout=0.3)
        await ticking
        return result, backend

    result, backend = asyncio.run(main())
    assert result.status is Status.TIMEOUT
    assert result.output == b"." * len(ticks)  # 0.6 s of data against a 0.3 s limit
    assert result.reason.startswith("no data moved for 0.3 s; ")
    assert ("input", INTERRUPT) in backend.session_of(NODE).sent

"""The session driver's recovery rules without sockets: resume policy (§10), the acks written
again after a reconnect, and the outcome of TerminateSession (§11).

The websocket is replaced by a recorder of writes (``FakeSocket``) and ``Session._connect``
by a function that hands one out, so the tests see exactly what would be written.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ecsexec.errors import AwsError, TransportError
from ecsexec.ssm import payloads
from ecsexec.ssm import session as session_module
from ecsexec.ssm.channel import DataChannel
from ecsexec.ssm.frames import ACKNOWLEDGE, decode_frame, encode_frame
from ecsexec.ssm.session import Session, SessionOptions, TerminationOutcome, _SentAcks

SID = "ecs-execute-command-0123456789abcdefghijklmnop"


class FakeSocket:
    """Stands in for DataChannelConnection: records each write (one list of frames)."""

    def __init__(self, url: str = "", token: str = "") -> None:
        self.url = url
        self.token = token
        self.writes: list[list[bytes]] = []
        self.open = True

    def send_frames(self, frames: list[bytes]) -> bool:
        if not self.open:
            return False
        self.writes.append(list(frames))
        return True

    async def close(self) -> None:
        self.open = False

    def frames(self) -> list[bytes]:
        return [frame for write in self.writes for frame in write]


class Control:
    """A SessionControl that answers ResumeSession from a script and counts the calls."""

    def __init__(self, *answers: tuple[str, str] | Exception) -> None:
        self.answers = list(answers)
        self.resumes = 0
        self.terminates = 0
        self.terminate_error: Exception | None = None

    def resume_session(self, session_id: str) -> tuple[str, str]:
        assert session_id == SID
        self.resumes += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def terminate_session(self, session_id: str) -> None:
        assert session_id == SID
        self.terminates += 1
        if self.terminate_error is not None:
            raise self.terminate_error


def run(
    scenario: Callable[[Session, list[FakeSocket]], Coroutine[Any, Any, None]],
    control: Any = None,
    **options: Any,
) -> None:
    """Run ``scenario`` with a started session on a FakeSocket; each connect opens another."""
    sockets: list[FakeSocket] = []

    async def connect(self: Session, url: str, token: str) -> None:
        sock = FakeSocket(url, token)
        sockets.append(sock)
        self._ws = sock  # type: ignore[assignment]
        self._received = False
        self._connected_at = self._now()
        if self._outgoing:
            frames, self._outgoing = self._outgoing, []
            sock.send_frames(frames)

    async def main() -> None:
        session = Session(
            SID,
            "ws://relay/v1/data-channel/x?cell-number=1",
            "token-1",
            control=control,
            options=SessionOptions(**options),
        )
        session._loop = asyncio.get_running_loop()
        session.channel = DataChannel(
            session_id=SID, now=session._now(), epoch_ms=1_700_000_000_000
        )
        await connect(session, session.stream_url, "token-1")
        await scenario(session, sockets)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Session, "_connect", connect)
        asyncio.run(main())


def agent_frame(seq: int, data: bytes = b"x") -> bytes:
    return encode_frame(
        "output_stream_data",
        data,
        sequence_number=seq,
        flags=1 if seq == 0 else 0,
        payload_type=1,
        message_id=uuid.uuid4(),
        created_ms=1,
    )


def deliver(session: Session, *frames: bytes) -> None:
    """One socket read: each message, then the batch hook that writes the acks."""
    for frame in frames:
        session._on_message(frame)
    session._after_read()


def acked(frames: list[bytes]) -> list[int]:
    """The sequence numbers acknowledged by ``frames``, in order (other frames skipped)."""
    out = []
    for raw in frames:
        frame = decode_frame(raw)
        if frame.message_type == ACKNOWLEDGE:
            out.append(payloads.parse_ack(frame.payload).sequence_number)
    return out


# --- resume policy (§10) ---------------------------------------------------------------------


def record_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make ``asyncio.sleep`` on the calling thread's loop return at once, noting each delay.

    Other threads' loops (the session sandbox runs one) sleep as usual.
    """
    sleeps: list[float] = []
    loop = asyncio.get_running_loop()
    real_sleep = asyncio.sleep

    async def sleep(delay: float, result: Any = None) -> Any:
        if asyncio.get_running_loop() is not loop:
            return await real_sleep(delay, result)
        sleeps.append(delay)
        return result

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return sleeps


def test_a_lost_socket_is_resumed_at_once_with_the_new_url_and_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    control = Control(("token-2", "ws://relay/v1/data-channel/x?cell-number=2"))

    async def scenario(session: Session, sockets: list[FakeSocket]) -> None:
        sleeps = record_sleeps(monkeypatch)
        await session._reconnect()
        assert sleeps == []  # no backoff before the first attempt
        assert control.resumes == 1
        assert (sockets[-1].url, sockets[-1].token) == (
            "ws://relay/v1/data-channel/x?cell-number=2",
            "token-2",
        )
        assert session.stream_url.endswith("cell-number=2")
        assert session.reconnects == 1
        assert not sockets[0].open  # the old socket is closed

    run(scenario, control)


def test_an_empty_token_means_the_session_ended_and_nothing_is_retried() -> None:
    control = Control(("", ""))

    async def scenario(session: Session, sockets: list[FakeSocket]) -> None:
        with pytest.raises(TransportError, match="ended while the data channel was disconnected"):
            await session._reconnect()
        assert control.resumes == 1
        assert len(sockets) == 1

    run(scenario, control)


def test_permanent_resume_errors_end_at_once() -> None:
    denied = AwsError("not authorized", code="AccessDeniedException", operation="ResumeSession")
    control = Control(denied)

    async def scenario(session: Session, sockets: list[FakeSocket]) -> None:
        with pytest.raises(TransportError, match="AccessDeniedException"):
            await session._reconnect()
        assert control.resumes == 1

    run(scenario, control)


def test_transient_resume_errors_are_retried_with_doubling_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    control = Control(AwsError("boom", code="ServerException", operation="ResumeSession"))

    async def scenario(session: Session, sockets: list[FakeSocket]) -> None:
        sleeps = record_sleeps(monkeypatch)
        with pytest.raises(TransportError, match=r"after 5 attempts: .*ServerException"):
            await session._reconnect()
        assert control.resumes == 5
        assert len(sleeps) == 4
        assert 0.1 <= sleeps[0] <= 0.2
        assert sleeps[1:] == [sleeps[0] * 2, sleeps[0] * 4, sleeps[0] * 8]

    run(scenario, control)


def test_a_relay_that_keeps_dropping_the_client_at_once_ends_in_an_error() -> None:
    control = Control(("token-n", "ws://relay/v1/data-channel/x?cell-number=n"))

    async def scenario(session: Session, sockets: list[FakeSocket]) -> None:
        deliver(session, agent_frame(0))  # the first socket brought something
        await session._reconnect()
        for _ in range(3):  # three new sockets die before anything arrives: tolerated
            await session._reconnect()
        with pytest.raises(TransportError, match="closed 4 times in a row"):
            await session._reconnect()
        assert control.resumes == 4

    run(scenario, control, reconnect_flaps=3)


def test_an_async_control_is_awaited_on_the_loop() -> None:
    class AsyncControl(Control):
        async def resume_session_async(self, session_id: str) -> tuple[str, str]:
            self.async_resumes = getattr(self, "async_resumes", 0) + 1
            return "token-2", "ws://relay/v1/data-channel/x?cell-number=2"

        async def terminate_session_async(self, session_id: str) -> None:
            self.async_terminates = getattr(self, "async_terminates", 0) + 1

    control = AsyncControl(AssertionError("the blocking call must not be made"))

    async def scenario(session: Session, sockets: list[FakeSocket]) -> None:
        await session._reconnect()
        outcome = await session.terminate()
        assert outcome.confirmed
        assert (control.resumes, control.terminates) == (0, 0)
        assert (control.async_resumes, control.async_terminates) == (1, 1)

    run(scenario, control, terminate_wait=0.0)


# --- acks written again after a reconnect ------------------------------------------------------


def test_after_a_reconnect_the_first_duplicate_brings_back_the_lost_acks() -> None:
    """The agent resends only its oldest unacked frame, once per 100 ms tick (§6): after a
    socket died with acks in flight it would spend a tick on every frame the client already
    has. Its first resend after the reconnect shows where the lost acks start."""
    control = Control(("token-2", "ws://relay/v1/data-channel/x?cell-number=2"))
    frames = [agent_frame(seq) for seq in range(10)]

    async def scenario(session: Session, sockets: list[FakeSocket]) -> None:
        deliver(session, *frames[:6])
        deliver(session, *frames[6:])
        first = sockets[0].frames()
        assert acked(first) == list(range(10))
        await session._reconnect()
        new = sockets[1]
        deliver(session, frames[4])  # the agent's oldest unacked frame, resent
        (write,) = new.writes
        # First the acks of 4 and everything after it, in sequence order, then the
        # channel's own ack of the duplicate.
        assert acked(write) == [4, 5, 6, 7, 8, 9, 4]
        payload = {decode_frame(raw).payload for raw in first}
        again = [decode_frame(raw) for raw in write[:6]]
        assert all(frame.payload in payload for frame in again)  # the same acks ...
        ids = {decode_frame(raw).message_id for raw in first}
        assert not ids & {frame.message_id for frame in again}  # ... as new messages
        assert session.reacks == 6
        deliver(session, frames[5])  # a later duplicate: only the channel's own re-ack
        assert acked(new.writes[-1]) == [5]

    run(scenario, control)


def test_without_a_reconnect_a_duplicate_only_gets_its_own_ack() -> None:
    frames = [agent_frame(seq) for seq in range(5)]

    async def scenario(session: Session, sockets: list[FakeSocket]) -> None:
        deliver(session, *frames)
        deliver(session, frames[1])
        assert acked(sockets[0].writes[-1]) == [1]
        assert session.reacks == 0

    run(scenario)


def test_frames_made_while_the_socket_is_closing_go_out_on_the_next_one() -> None:
    control = Control(("token-2", "ws://relay/v1/data-channel/x?cell-number=2"))

    async def scenario(session: Session, sockets: list[FakeSocket]) -> None:
        sockets[0].open = False  # closing: websockets refuses data frames
        deliver(session, agent_frame(0))
        assert sockets[0].writes == []
        await session._reconnect()
        assert acked(sockets[1].frames()) == [0]

    run(scenario, control)


def test_the_ack_log_keeps_the_last_frames_written_and_only_looks_at_acks() -> None:
    channel = DataChannel(session_id=SID, now=0.0, epoch_ms=1_700_000_000_000)
    log = _SentAcks(limit=8)
    for seq in range(12):
        channel.receive_frame(agent_frame(seq), 0.0)
        log.record(channel.data_to_send())
    channel.send_input(b"typed", 0.0)  # an input frame in the log, not an ack
    channel.open_input_gate("test", 0.0)
    log.record(channel.data_to_send())
    kept = log.payloads_from(0, 100)
    assert [seq for seq, _ in kept] == [5, 6, 7, 8, 9, 10, 11]  # 8 frames: 7 acks, 1 input
    assert all(payloads.parse_ack(p).sequence_number == seq for seq, p in kept)
    assert [seq for seq, _ in log.payloads_from(9, 2)] == [9, 10]
    frames, following = log.again(6, 3, created_ms=1)
    assert acked(frames) == [6, 7, 8] and following == 9
    frames, following = log.again(9, 3, created_ms=1)
    assert acked(frames) == [9, 10, 11] and following is None
    # The ack of 2 is no longer kept: acks far above the agent's oldest frame would only
    # be more frames to lose.
    assert log.again(2, 3, created_ms=1) == ([], 3)
    log.clear()
    assert log.payloads_from(0, 100) == []


def test_a_long_run_of_lost_acks_comes_back_a_burst_at_a_time() -> None:
    """Each burst is asked for by the agent's next resend past the previous one."""
    control = Control(("token-2", "ws://relay/v1/data-channel/x?cell-number=2"))
    frames = [agent_frame(seq) for seq in range(10)]

    async def scenario(session: Session, sockets: list[FakeSocket]) -> None:
        deliver(session, *frames)
        await session._reconnect()
        new = sockets[1]
        deliver(session, frames[2])
        assert acked(new.writes[-1]) == [2, 3, 4, 2]
        deliver(session, frames[4])  # within the burst: its ack is on its way
        assert acked(new.writes[-1]) == [4]
        deliver(session, frames[5])
        assert acked(new.writes[-1]) == [5, 6, 7, 5]
        deliver(session, frames[8])
        assert acked(new.writes[-1]) == [8, 9, 8]
        deliver(session, frames[9])  # nothing kept is left: back to single re-acks
        assert acked(new.writes[-1]) == [9]

    run(scenario, control, reack_burst=3)


# --- termination outcome (§11) -----------------------------------------------------------------


def test_a_denied_terminate_session_says_the_session_may_still_be_running() -> None:
    control = Control(("token-2", "url"))
    control.terminate_error = AwsError(
        "User is not authorized to perform ssm:TerminateSession",
        code="AccessDeniedException",
        operation="TerminateSession",
    )

    async def scenario(session: Session, sockets: list[FakeSocket]) -> None:
        outcome = await session.terminate("timed out")
        assert outcome == session.termination
        assert not outcome.confirmed and not outcome.closed
        assert outcome.error_code == "AccessDeniedException"
        assert "ssm:TerminateSession" in outcome.error
        assert outcome.describe() == "the session may still be running (AccessDeniedException)"
        assert await session.terminate() is outcome  # once
        assert control.terminates == 1
        assert session.closed is not None  # closed locally all the same

    run(scenario, control)


def test_a_confirmed_terminate_session_is_the_only_terminated() -> None:
    control = Control(("token-2", "url"))

    async def scenario(session: Session, sockets: list[FakeSocket]) -> None:
        outcome = await session.terminate("timed out")
        assert outcome.confirmed and outcome.error_code == ""
        assert outcome.describe() == "the session was terminated"

    run(scenario, control, terminate_wait=0.0)


def test_without_an_ssm_client_nothing_is_confirmed() -> None:
    async def scenario(session: Session, sockets: list[FakeSocket]) -> None:
        outcome = await session.terminate()
        assert not outcome.confirmed
        assert outcome.describe() == (
            "the session may still be running (no SSM client to call TerminateSession)"
        )

    run(scenario)


def test_outcome_wording() -> None:
    after_ctrl_c = TerminationOutcome(False, True, "AccessDeniedException", "denied")
    assert after_ctrl_c.describe() == (
        "TerminateSession failed (AccessDeniedException); the session ended after Ctrl-C"
    )
    assert session_module.TerminationOutcome is TerminationOutcome

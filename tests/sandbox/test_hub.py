"""The MGS relay over real websockets: open, tokens, relay, faults, ending.

See docs/sandbox.md §6, §12.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ecsexec.sandbox import hub as hub_mod
from ecsexec.sandbox.agent import AgentSettings
from ecsexec.sandbox.faults import Direction, FaultPlan, FrameFaultStream, parse_faults
from ecsexec.sandbox.hub import ExecTarget, SessionGrant, SessionHub
from ecsexec.sandbox.stats import Stats
from ecsexec.ssm.frames import (
    ACK_FLAGS,
    ACKNOWLEDGE,
    AGENT_SESSION_STATE,
    CHANNEL_CLOSED,
    INPUT_STREAM_DATA,
    OUTPUT_STREAM_DATA,
    Frame,
    PayloadType,
    decode_frame,
    encode_frame,
)
from ecsexec.ssm.payloads import build_ack, build_size, open_data_channel
from ecsexec.ssm.transport import encode_client_frames

FAST = AgentSettings(initial_wait=0.05, agent_start_delay=0.05, close_grace=0.2)
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
TASK = "arn:aws:ecs:us-east-1:123456789012:task/demo/0123456789abcdef0123456789abcdef"
TIMEOUT = 10.0


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


async def until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Wait for a condition the test cannot await directly (bounded, never a fixed sleep)."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


class Relay:
    """A SessionHub behind a real aiohttp listener on 127.0.0.1:0."""

    def __init__(
        self,
        settings: AgentSettings = FAST,
        *,
        faults: FaultPlan | None = None,
        kms: Callable[[bytes, dict[str, str]], bytes] | None = None,
        strict: bool = True,
    ) -> None:
        self.stats = Stats()
        self.hub = SessionHub(
            stats=self.stats, settings=settings, faults=faults, kms_decrypt=kms, strict=strict
        )
        self.base = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Relay:
        app = web.Application()
        app.router.add_get("/v1/data-channel/{sid}", self.hub.handle_data_channel)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"ws://127.0.0.1:{port}"
        self.hub.bind(self.base)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.hub.shutdown()
        assert self._runner is not None
        await self._runner.cleanup()

    @staticmethod
    def target(task: str = TASK, container: str = "app", **kw: Any) -> ExecTarget:
        task_id = task.rsplit("/", 1)[-1]
        return ExecTarget(
            target_id=f"ecs:demo_{task_id}_{task_id}-1234567890",
            task_arn=task,
            container_name=container,
            env=dict(ENV),
            cwd="/",
            **kw,
        )

    def session(self, sid: str) -> dict[str, Any]:
        return next(s for s in self.hub.list_sessions() if s["sessionId"] == sid)

    async def pid(self, sid: str) -> int:
        await until(lambda: self.session(sid)["pid"] is not None)
        pid = self.session(sid)["pid"]
        assert isinstance(pid, int)
        return pid


class Client:
    """A hand-driven data-channel client: it acks what the test tells it to."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.raw: list[bytes] = []
        self.seq = 0

    @classmethod
    async def open(cls, url: str, token: str, *, first: str | bytes | None = None) -> Client:
        ws = await connect(url, compression=None, max_size=None)
        if first is None:
            first = open_data_channel(
                token, client_id=str(uuid.uuid4()), request_id=str(uuid.uuid4())
            )
        with contextlib.suppress(ConnectionClosed):  # the relay may refuse before reading
            await ws.send(first)
        return cls(ws)

    @classmethod
    async def attach(cls, grant: SessionGrant) -> Client:
        return await cls.open(grant.stream_url, grant.token_value)

    async def recv(self, timeout: float = TIMEOUT) -> Frame:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(data, bytes), "the relay must send binary frames"
        self.raw.append(data)
        return decode_frame(data)

    async def ack(self, frame: Frame) -> None:
        await self.ws.send(
            encode_frame(
                ACKNOWLEDGE,
                build_ack(frame.message_type, frame.message_id, frame.sequence_number),
                flags=ACK_FLAGS,
                message_id=uuid.uuid4(),
                created_ms=int(time.time() * 1000),
            )
        )

    def frame(self, ptype: int, payload: bytes, seq: int | None = None) -> bytes:
        if seq is None:
            seq, self.seq = self.seq, self.seq + 1
        return encode_frame(
            INPUT_STREAM_DATA,
            payload,
            sequence_number=seq,
            payload_type=ptype,
            message_id=uuid.uuid4(),
            created_ms=int(time.time() * 1000),
        )

    async def send(self, ptype: int, payload: bytes) -> bytes:
        data = self.frame(ptype, payload)
        await self.ws.send(data)
        return data

    async def run_to_close(self, *, ack: bool = True) -> list[Frame]:
        frames = []
        while True:
            frame = await self.recv()
            frames.append(frame)
            if frame.message_type == CHANNEL_CLOSED:
                return frames
            if ack and frame.message_type == OUTPUT_STREAM_DATA:
                await self.ack(frame)

    async def closed_with(self, timeout: float = TIMEOUT) -> int | None:
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()


def output_bytes(frames: list[Frame]) -> bytes:
    by_seq = {f.sequence_number: f.payload for f in frames if f.message_type == OUTPUT_STREAM_DATA}
    assert sorted(by_seq) == list(range(len(by_seq))), f"gap in output: {sorted(by_seq)}"
    return b"".join(by_seq[i] for i in range(len(by_seq)))


# --- grant shape -------------------------------------------------------------------------


def test_grant_shape_and_no_token_leaks() -> None:
    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.start_session(relay.target(), "sleep 300")
            assert re.fullmatch(r"ecs-execute-command-[a-z0-9]{26}", grant.session_id)
            assert re.fullmatch(
                re.escape(f"{relay.base}/v1/data-channel/{grant.session_id}")
                + r"\?role=publish_subscribe&cell-number=[A-Za-z0-9_-]+",
                grant.stream_url,
            )
            assert len(grant.token_value) >= 43  # ≥ 32 random bytes, urlsafe base64
            assert grant.token_value not in repr(grant)
            listing = json.dumps(relay.hub.list_sessions())
            assert grant.token_value not in listing
            assert relay.hub.active_sessions(TASK, "app") == 1
            assert relay.stats.sessions.opened == 1

    asyncio.run(main())


# --- the normal path ---------------------------------------------------------------------


def test_session_shape_syn_output_then_channel_closed_then_close_1000() -> None:
    async def main() -> None:
        async with Relay() as relay:
            target = relay.target()
            started = time.monotonic()
            grant = relay.hub.start_session(target, "sh -c 'echo hello; echo err 1>&2'")
            client = await Client.attach(grant)
            first = await client.recv()
            first_at = time.monotonic() - started
            assert (first.message_type, first.sequence_number, first.flags) == (
                OUTPUT_STREAM_DATA,
                0,
                1,
            )
            assert first.payload_type == PayloadType.OUTPUT
            assert first_at >= FAST.agent_start_delay + FAST.initial_wait
            await client.ack(first)
            frames = [first, *await client.run_to_close()]
            closed = frames[-1]
            closed_at = time.monotonic()
            assert output_bytes(frames) == b"hello\r\nerr\r\n"
            assert not any(f.message_type == AGENT_SESSION_STATE for f in frames)
            assert (closed.sequence_number, closed.flags, closed.payload_type) == (0, 0, 0)
            body = json.loads(closed.payload)
            assert list(body) == [
                "MessageId",
                "CreatedDate",
                "DestinationId",
                "SessionId",
                "MessageType",
                "SchemaVersion",
                "Output",
            ]
            assert body["Output"] == ""
            assert body["DestinationId"] == target.target_id
            assert body["SessionId"] == grant.session_id
            assert body["MessageId"] == str(closed.message_id)
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["CreatedDate"])
            assert await client.closed_with() == 1000
            assert time.monotonic() - closed_at >= FAST.close_grace * 0.9
            assert relay.stats.sessions.by_end_reason["exited"] == 1
            assert relay.stats.sessions.client_connects == 1
            assert relay.hub.active_sessions(TASK, "app") == 0
            assert relay.stats.frames["a2c"].relayed >= 1
            assert relay.stats.frames["c2a"].relayed >= 1

    asyncio.run(main())


def test_frames_queue_while_no_client_is_attached() -> None:
    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.start_session(relay.target(), "echo queued")
            await until(lambda: relay.session(grant.session_id)["queuedFrames"] >= 1)
            client = await Client.attach(grant)
            frames = await client.run_to_close()
            assert frames[0].sequence_number == 0
            assert frames[0].flags == 1
            assert output_bytes(frames) == b"queued\r\n"
            await client.close()

    asyncio.run(main())


def test_input_reaches_the_pty_and_size_is_applied() -> None:
    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.start_session(relay.target(), "sh -c 'read x; stty size; echo $x'")
            await relay.pid(grant.session_id)  # the PTY exists: input is no longer "not ready"
            client = await Client.attach(grant)
            await client.send(PayloadType.SIZE, build_size(100, 30))
            await client.send(PayloadType.OUTPUT, b"ping\r")
            frames = await client.run_to_close()
            acks = [json.loads(f.payload) for f in frames if f.message_type == ACKNOWLEDGE]
            assert [a["AcknowledgedMessageSequenceNumber"] for a in acks] == [0, 1]
            assert output_bytes(frames) == b"ping\r\n30 100\r\nping\r\n"
            await client.close()

    asyncio.run(main())


def test_input_before_the_pty_exists_is_not_acked_until_resent() -> None:
    settings = AgentSettings(initial_wait=0.05, agent_start_delay=0.3, close_grace=0.2)

    async def main() -> None:
        async with Relay(settings) as relay:
            grant = relay.hub.start_session(relay.target(), "sh -c 'read x; echo $x'")
            client = await Client.attach(grant)
            size = await client.send(PayloadType.SIZE, build_size(80, 24))
            await until(lambda: relay.stats.agent.not_ready >= 1)
            assert relay.session(grant.session_id)["pid"] is None
            await relay.pid(grant.session_id)
            await client.ws.send(size)  # the client's resend
            ack = await client.recv()
            assert ack.message_type == ACKNOWLEDGE
            assert json.loads(ack.payload)["AcknowledgedMessageSequenceNumber"] == 0
            assert client.raw[0] == client.raw[-1]  # nothing arrived before that ack
            await client.send(PayloadType.OUTPUT, b"late\r")
            frames = await client.run_to_close()
            assert output_bytes(frames) == b"late\r\nlate\r\n"
            await client.close()

    asyncio.run(main())


def test_unacked_output_is_resent_unchanged() -> None:
    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.start_session(relay.target(), "echo again")
            client = await Client.attach(grant)
            first = await client.recv()
            at = time.monotonic()
            second = await client.recv()
            gap = time.monotonic() - at
            assert client.raw[0] == client.raw[1]  # same MessageId, seq and CreatedDate
            assert 0.15 <= gap <= 0.5  # RTO 200 ms checked on a 100 ms tick
            await client.ack(second)
            frames = await client.run_to_close()
            assert frames[-1].message_type == CHANNEL_CLOSED
            assert first.sequence_number == 0
            assert relay.stats.agent.retransmissions >= 1
            await client.close()

    asyncio.run(main())


# --- tokens and opens (§6) ---------------------------------------------------------------


def test_bad_opens_close_with_1008() -> None:
    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.start_session(relay.target(), "sleep 300")
            url, sid = grant.stream_url, grant.session_id
            other_sid = sid[:-1] + ("1" if sid[-1] == "0" else "0")
            cases: list[tuple[str, str, str | bytes | None]] = [
                ("wrong token", url, open_data_channel("nope", client_id="c", request_id="r")),
                ("binary first frame", url, b"\x00" * 130),
                ("not json", url, "{"),
                ("unknown session", url.replace(sid, other_sid), None),
                ("missing role", url.replace("role=publish_subscribe&", ""), None),
            ]
            for name, case_url, first in cases:
                client = await Client.open(case_url, grant.token_value, first=first)
                assert await client.closed_with() == 1008, name
            # the token is still unused, so it works once ...
            good = await Client.attach(grant)
            await until(lambda: relay.stats.sessions.client_connects == 1)
            # ... and never again
            again = await Client.attach(grant)
            assert await again.closed_with() == 1008
            await good.close()
            assert relay.stats.sessions.client_connects == 1

    asyncio.run(main())


def test_expired_token_closes_with_1008() -> None:
    settings = AgentSettings(initial_wait=0.05, agent_start_delay=0.05, token_ttl=0.1)

    async def main() -> None:
        async with Relay(settings) as relay:
            grant = relay.hub.start_session(relay.target(), "sleep 300")
            await asyncio.sleep(settings.token_ttl + 0.05)  # the TTL itself is under test
            late = await Client.attach(grant)
            assert await late.closed_with() == 1008
            assert relay.stats.sessions.client_connects == 0

    asyncio.run(main())


def test_resume_gives_a_new_url_and_token_and_keeps_the_channel() -> None:
    async def main() -> None:
        async with Relay() as relay:
            command = "sh -c 'read x; echo got:$x; read y; echo got:$y'"
            grant = relay.hub.start_session(relay.target(), command)
            sid = grant.session_id
            await relay.pid(sid)
            client = await Client.attach(grant)
            await client.send(PayloadType.OUTPUT, b"one\r")
            before: list[Frame] = []
            while b"got:one\r\n" not in output_bytes(before):
                frame = await client.recv()
                before.append(frame)
                if frame.message_type == OUTPUT_STREAM_DATA:
                    await client.ack(frame)
            await client.close()
            resumed = relay.hub.resume(sid)
            assert resumed is not None
            assert resumed.session_id == sid
            assert resumed.stream_url != grant.stream_url  # new cell-number
            assert resumed.stream_url.split("?")[0] == grant.stream_url.split("?")[0]
            assert resumed.token_value not in ("", grant.token_value)
            assert relay.stats.sessions.resumes == 1
            stale = await Client.attach(grant)  # the first token was used up
            assert await stale.closed_with() == 1008
            client2 = await Client.attach(resumed)
            client2.seq = client.seq  # both counters survive the reconnect
            await client2.send(PayloadType.OUTPUT, b"two\r")
            after = await client2.run_to_close()
            assert output_bytes(before + after) == b"one\r\ngot:one\r\ntwo\r\ngot:two\r\n"
            await client2.close()
            ended = relay.hub.resume(sid)
            assert ended == SessionGrant(sid, "", "")  # ended < 1 h ago: "timed out"
            assert relay.hub.resume("ecs-execute-command-unknown0000000000000000") is None

    asyncio.run(main())


def test_second_open_replaces_the_first_with_close_1000() -> None:
    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.start_session(relay.target(), "sleep 300")
            first = await Client.attach(grant)
            await until(lambda: relay.session(grant.session_id)["clientConnected"])
            resumed = relay.hub.resume(grant.session_id)
            assert resumed is not None
            second = await Client.attach(resumed)
            assert await first.closed_with() == 1000
            await until(lambda: relay.stats.sessions.client_connects == 2)
            await relay.hub.terminate(grant.session_id)
            frames = await second.run_to_close()
            assert frames[-1].message_type == CHANNEL_CLOSED
            await second.close()

    asyncio.run(main())


# --- ending (§6, §8.4) -------------------------------------------------------------------


def test_terminate_kills_the_process_group_and_closes_the_channel() -> None:
    async def main() -> None:
        async with Relay() as relay:
            # Ignoring SIGHUP means only the SIGKILL can end them, not the PTY's hangup.
            grant = relay.hub.start_session(
                relay.target(), "sh -c 'trap \"\" HUP; sleep 300 & echo bg=$!; sleep 300'"
            )
            sid = grant.session_id
            pid = await relay.pid(sid)
            client = await Client.attach(grant)
            first = await client.recv()
            await client.ack(first)
            background = int(first.payload.split(b"bg=")[1].split(b"\r")[0])
            await relay.hub.terminate(sid)
            assert _gone(pid)
            await until(lambda: _gone(background))  # same process group: killed too
            frames = [first, *await client.run_to_close()]
            assert (
                json.loads(frames[-1].payload)["Output"]
                == "Session terminated by TerminateSession."
            )
            assert relay.stats.sessions.by_end_reason["terminated"] == 1
            assert relay.hub.active_sessions(TASK, "app") == 0
            await relay.hub.terminate(sid)  # idempotent
            await relay.hub.terminate("ecs-execute-command-unknown")  # unknown is fine
            assert relay.stats.sessions.closed == 1
            assert relay.stats.processes.ptys_open == 0
            await client.close()

    asyncio.run(main())


def test_stop_task_ends_only_that_tasks_sessions() -> None:
    other_task = TASK[:-1] + "0"

    async def main() -> None:
        async with Relay() as relay:
            a = relay.hub.start_session(relay.target(), "sleep 300")
            b = relay.hub.start_session(relay.target(container="sidecar"), "sleep 300")
            c = relay.hub.start_session(relay.target(task=other_task), "sleep 300")
            pids = [await relay.pid(g.session_id) for g in (a, b, c)]
            client = await Client.attach(a)
            await relay.hub.stop_task(TASK)
            assert _gone(pids[0])
            assert _gone(pids[1])
            assert not _gone(pids[2])
            frames = await client.run_to_close()
            assert json.loads(frames[-1].payload)["Output"] != ""
            assert relay.stats.sessions.by_end_reason["task_stopped"] == 2
            assert relay.hub.active_sessions(other_task, "app") == 1
            await client.close()

    asyncio.run(main())


def test_stop_task_with_stop_timeout_sends_sigterm_first() -> None:
    async def main() -> None:
        async with Relay() as relay:
            polite = relay.hub.start_session(
                relay.target(),
                "sh -c 'trap \"echo term; exit 0\" TERM; echo ready; while :; do sleep 0.05; done'",
            )
            stubborn = relay.hub.start_session(
                relay.target(container="sidecar"), "sh -c 'trap \"\" TERM; exec sleep 300'"
            )
            stubborn_pid = await relay.pid(stubborn.session_id)
            client = await Client.attach(polite)
            frames: list[Frame] = []
            while b"ready" not in output_bytes(frames):
                frames.append(await client.recv())
                await client.ack(frames[-1])
            started = time.monotonic()
            await relay.hub.stop_task(TASK, stop_timeout=0.5)
            assert time.monotonic() - started >= 0.45  # the stubborn one used the full timeout
            await until(lambda: _gone(stubborn_pid))
            frames += await client.run_to_close()
            output = output_bytes(frames)  # sh may also report its killed sleep: "Terminated"
            assert output.startswith(b"ready\r\n")
            assert output.endswith(b"term\r\n")  # drained before the end
            assert json.loads(frames[-1].payload)["Output"] != ""
            assert relay.stats.sessions.by_end_reason["task_stopped"] == 2
            assert relay.stats.sessions.by_end_reason["exited"] == 0
            await client.close()

    asyncio.run(main())


def test_client_queue_overflow_drops_newest_and_resends_recover(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_mod, "CLIENT_QUEUE_LIMIT", 2)
    settings = AgentSettings(
        initial_wait=0.05, agent_start_delay=0.05, close_grace=0.2, drain_timeout=8.0
    )
    expected = b"".join(b"%d\r\n" % i for i in range(1, 1501))

    async def main() -> None:
        async with Relay(settings) as relay:
            grant = relay.hub.start_session(relay.target(), "seq 1 1500")
            await until(lambda: relay.stats.agent.output_bytes == len(expected))
            assert relay.session(grant.session_id)["queuedFrames"] == 2
            client = await Client.attach(grant)
            frames = await client.run_to_close()
            assert output_bytes(frames) == expected
            assert relay.stats.agent.retransmissions >= 1
            await client.close()

    asyncio.run(main())


def test_a_client_that_does_not_read_holds_the_agent_not_the_transport() -> None:
    """Flow control of the batched writer, and the agent's read hold behind it.

    The writer stops taking frames while the transport has paused writing, so the
    transport buffer stays within one batch of its high-water mark; once more than
    HOLD_HIGH frames wait, the agent stops reading the PTY instead of overflowing the
    queue. When the client reads again, every byte arrives.
    """
    size = 3_000_000
    settings = AgentSettings(
        initial_wait=0.05, agent_start_delay=0.05, close_grace=0.2, drain_timeout=30.0
    )

    async def main() -> None:
        async with Relay(settings) as relay:
            grant = relay.hub.start_session(
                relay.target(), f"sh -c 'read x; head -c {size} /dev/zero'"
            )
            await relay.pid(grant.session_id)
            ws = await connect(grant.stream_url, compression=None, max_size=None, max_queue=1)
            client = Client(ws)
            await ws.send(
                open_data_channel(
                    grant.token_value, client_id=str(uuid.uuid4()), request_id=str(uuid.uuid4())
                )
            )
            session = relay.hub._sessions[grant.session_id]
            await until(lambda: session.client is not None)
            assert session.client is not None
            request = session.client.request
            transport = request.transport
            assert transport is not None
            # A fixed send buffer keeps the kernel from absorbing the whole output while
            # the client (max_queue=1) stops reading.
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            await client.send(PayloadType.OUTPUT, b"go\r")  # now the output starts
            await until(lambda: session.held and request.protocol.writing_paused)
            high = transport.get_write_buffer_limits()[1]
            # At most one batch past the high-water mark; the rest waits in the queue.
            assert transport.get_write_buffer_size() <= high + hub_mod.WRITE_BATCH_BYTES + 2048
            assert hub_mod.HOLD_LOW < len(session.outq) <= hub_mod.HOLD_HIGH + 16
            assert relay.stats.agent.output_bytes < size  # the PTY is not read ahead
            frames = await client.run_to_close()
            assert output_bytes(frames) == b"go\r\n" + bytes(size)
            assert not session.held
            await client.close()

    asyncio.run(main())


def test_silent_agent_loss_leaves_the_client_hanging() -> None:
    settings = AgentSettings(initial_wait=0.05, agent_start_delay=0.05, agent_loss="silent")

    async def main() -> None:
        async with Relay(settings) as relay:
            grant = relay.hub.start_session(relay.target(), "sleep 300")
            pid = await relay.pid(grant.session_id)
            client = await Client.attach(grant)
            await until(lambda: relay.session(grant.session_id)["clientConnected"])
            await relay.hub.stop_task(TASK, reason="agent_lost")
            assert _gone(pid)
            with pytest.raises(TimeoutError):
                await client.recv(timeout=0.3)  # no channel_closed, socket still open
            assert client.ws.close_code is None
            assert relay.stats.sessions.by_end_reason["agent_lost"] == 1
            await client.close()

    asyncio.run(main())


def test_refused_session_gets_only_channel_closed() -> None:
    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.refuse_session(relay.target(), "session limit of 2 reached")
            assert relay.hub.active_sessions(TASK, "app") == 0
            client = await Client.attach(grant)
            frames = await client.run_to_close()
            assert len(frames) == 1
            assert json.loads(frames[0].payload)["Output"] == "session limit of 2 reached"
            assert await client.closed_with() == 1000
            assert relay.stats.sessions.by_end_reason["limit"] == 1
            assert relay.hub.resume(grant.session_id) == SessionGrant(grant.session_id, "", "")

    asyncio.run(main())


def test_idle_timeout() -> None:
    settings = AgentSettings(initial_wait=0.05, agent_start_delay=0.05, idle_timeout=0.3)

    async def main() -> None:
        async with Relay(settings) as relay:
            grant = relay.hub.start_session(relay.target(), "sleep 300")
            pid = await relay.pid(grant.session_id)
            client = await Client.attach(grant)
            frames = await client.run_to_close()
            body = json.loads(frames[-1].payload)
            assert "inactivity" in body["Output"]
            assert relay.stats.sessions.by_end_reason["idle_timeout"] == 1
            await until(lambda: _gone(pid))  # SIGKILL was sent when the session ended
            await client.close()

    asyncio.run(main())


def test_cannot_start_gives_no_output_and_a_close() -> None:
    settings = AgentSettings(
        initial_wait=0.05, agent_start_delay=0.05, close_grace=0.2, cannot_start_wait=0.3
    )

    async def main() -> None:
        async with Relay(settings) as relay:
            grant = relay.hub.start_session(relay.target(distroless=True), "/bin/sh -c 'echo x'")
            client = await Client.attach(grant)
            frames = await client.run_to_close()
            assert [f.message_type for f in frames] == [CHANNEL_CLOSED]
            assert json.loads(frames[0].payload)["Output"] == ""
            assert relay.stats.processes.exec == 0
            await client.close()

    asyncio.run(main())


def test_handshake_failure_is_reported_in_channel_closed() -> None:
    settings = AgentSettings(
        initial_wait=0.05, agent_start_delay=0.05, close_grace=0.2, handshake_timeout=0.2
    )

    async def main() -> None:
        async with Relay(settings) as relay:
            target = relay.target(kms_key_id="arn:aws:kms:us-east-1:123456789012:key/k")
            grant = relay.hub.start_session(target, "echo secret")
            client = await Client.attach(grant)
            frames = await client.run_to_close(ack=False)
            assert frames[0].payload_type == PayloadType.HANDSHAKE_REQUEST
            assert frames[0].flags == 1
            output = json.loads(frames[-1].payload)["Output"]
            assert output.startswith("Encountered error while initiating handshake. Handshake ")
            assert relay.stats.sessions.by_end_reason["handshake_failed"] == 1
            await client.close()

    asyncio.run(main())


def test_pause_publication_holds_output_until_an_ack() -> None:
    settings = AgentSettings(initial_wait=0.05, agent_start_delay=0.05, close_grace=0.2)

    async def main() -> None:
        async with Relay(settings) as relay:
            grant = relay.hub.start_session(relay.target(), "echo paused")
            await relay.hub.pause(grant.session_id)
            client = await Client.attach(grant)
            with pytest.raises(TimeoutError):
                await client.recv(timeout=0.4)  # well past start delay + initial wait
            unknown = Frame(OUTPUT_STREAM_DATA, 99, 0, uuid.uuid4().bytes, 1, b"", 1)
            await client.ack(unknown)  # any ack ends the pause (§7)
            frames = await client.run_to_close()
            assert output_bytes(frames) == b"paused\r\n"
            await client.close()

    asyncio.run(main())


def test_shutdown_leaves_nothing_running() -> None:
    async def main() -> None:
        relay = Relay()
        async with relay:
            grants = [relay.hub.start_session(relay.target(), "sleep 300") for _ in range(3)]
            pids = [await relay.pid(g.session_id) for g in grants]
            client = await Client.attach(grants[0])
            await until(lambda: relay.session(grants[0].session_id)["clientConnected"])
            await relay.hub.shutdown()
            assert all(_gone(pid) for pid in pids)
            assert await client.closed_with() == 1001
            assert relay.hub.list_sessions() == []
            assert relay.stats.processes.ptys_open == 0

    asyncio.run(main())


# --- strict-mode warnings (§6) -----------------------------------------------------------


def test_protocol_warnings() -> None:
    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.start_session(relay.target(), "sleep 300")
            await relay.pid(grant.session_id)
            first = json.dumps({"MessageSchemaVersion": 1, "TokenValue": grant.token_value})
            client = await Client.open(grant.stream_url, grant.token_value, first=first)
            bad = bytearray(client.frame(PayloadType.OUTPUT, b"abc"))
            bad[80:112] = bytes(32)
            await client.ws.send(bytes(bad))
            await client.send(PayloadType.OUTPUT, b"x" * 1500)
            await client.send(PayloadType.OUTPUT, b"")
            await client.ws.send(client.frame(PayloadType.SIZE, build_size(1, 1)).decode("latin-1"))
            await client.ws.send(
                encode_frame("interactive_shell", b"{}", message_id=uuid.uuid4(), created_ms=1)
            )
            expected = {
                "schema_version",
                "missing_client_version",
                "bad_digest",
                "oversize_input",
                "empty_payload",
                "non_binary_frame",
                "unknown_message_type",
            }
            await until(lambda: expected <= {w["code"] for w in relay.stats.protocol_warnings})
            assert all(w["session"] == grant.session_id for w in relay.stats.protocol_warnings)
            await client.close()

    asyncio.run(main())


# --- faults (§12) ------------------------------------------------------------------------


def test_without_strict_mode_nothing_is_inspected_and_everything_is_relayed() -> None:
    """§6: protocol warnings are a strict-mode feature; the relaying itself is the same."""

    async def main() -> None:
        async with Relay(strict=False) as relay:
            grant = relay.hub.start_session(relay.target(), "sleep 300")
            await relay.pid(grant.session_id)
            first = json.dumps({"MessageSchemaVersion": 1, "TokenValue": grant.token_value})
            client = await Client.open(grant.stream_url, grant.token_value, first=first)
            bad = bytearray(client.frame(PayloadType.OUTPUT, b"abc"))
            bad[80:112] = bytes(32)
            await client.ws.send(bytes(bad))
            await client.send(PayloadType.OUTPUT, b"x" * 1500)
            await client.send(PayloadType.OUTPUT, b"")
            await client.ws.send(client.frame(PayloadType.SIZE, build_size(1, 1)).decode("latin-1"))
            await client.ws.send(
                encode_frame("interactive_shell", b"{}", message_id=uuid.uuid4(), created_ms=1)
            )
            await client.send(PayloadType.SIZE, build_size(80, 24))  # seq 4, after the rest
            acked: set[int] = set()
            while 4 not in acked:
                frame = await client.recv()
                if frame.message_type == ACKNOWLEDGE:
                    acked.add(json.loads(frame.payload)["AcknowledgedMessageSequenceNumber"])
            # The agent never checks digests (§7); the TEXT frame's bytes were re-encoded.
            assert {0, 1, 2, 4} <= acked
            assert relay.stats.protocol_warnings == []
            assert relay.stats.frames["c2a"].relayed == 6
            await client.close()

    asyncio.run(main())


def test_dup_and_delay_faults_keep_control_frames_in_order() -> None:
    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.start_session(relay.target(), "echo twice")
            relay.hub.set_faults(parse_faults("a2c.dup=1,a2c.delay=150ms"), grant.session_id)
            client = await Client.attach(grant)
            frames = []
            arrival: dict[int, float] = {}
            while True:
                frame = await client.recv()
                frames.append(frame)
                arrival.setdefault(frame.sequence_number, time.time())
                if frame.message_type == CHANNEL_CLOSED:
                    break
                await client.ack(frame)
            outputs = [f for f in frames if f.message_type == OUTPUT_STREAM_DATA]
            assert len(outputs) >= 2
            assert outputs[0] == outputs[1]  # delivered twice
            assert [f.message_type for f in frames].count(CHANNEL_CLOSED) == 1
            assert arrival[0] - outputs[0].created_date / 1000 >= 0.14
            assert relay.stats.frames["a2c"].duplicated >= 1
            assert relay.stats.frames["a2c"].delayed >= 1
            assert output_bytes(frames) == b"twice\r\n"
            await client.close()

    asyncio.run(main())


def test_reorder_swaps_neighbours_but_never_passes_channel_closed() -> None:
    async def main() -> None:
        async with Relay(faults=parse_faults("a2c.reorder=1")) as relay:
            grant = relay.hub.start_session(relay.target(), "sh -c 'head -c 2500 /dev/zero'")
            client = await Client.attach(grant)
            frames = await client.run_to_close()
            seqs = [f.sequence_number for f in frames if f.message_type == OUTPUT_STREAM_DATA]
            assert seqs[:2] == [1, 0]
            assert frames[-1].message_type == CHANNEL_CLOSED
            assert relay.stats.frames["a2c"].reordered >= 1
            assert len(output_bytes(frames)) == 2500
            await client.close()

    asyncio.run(main())


def test_channel_closed_never_overtakes_a_held_frame() -> None:
    async def main() -> None:
        async with Relay(faults=parse_faults("a2c.reorder=1")) as relay:
            command = "sh -c 'stty -echo; echo ready; read x'"
            grant = relay.hub.start_session(relay.target(), command)
            client = await Client.attach(grant)
            frames: list[Frame] = []
            while b"ready" not in output_bytes(frames):
                frames.append(await client.recv())
                if frames[-1].message_type == OUTPUT_STREAM_DATA:
                    await client.ack(frames[-1])
            # The agent's ack of this input is held for reordering while the command exits
            # and the agent reports Terminating straight away (nothing left to drain).
            await client.send(PayloadType.OUTPUT, b"\r")
            frames += await client.run_to_close()
            types = [f.message_type for f in frames]
            assert ACKNOWLEDGE in types
            assert types[-1] == CHANNEL_CLOSED
            await client.close()

    asyncio.run(main())


# Drops plus 100 ms ticks can outlast the default 2 s drain; raised here as §7 asks.
LOSSY_SETTINGS = AgentSettings(
    initial_wait=0.05, agent_start_delay=0.05, close_grace=0.2, drain_timeout=8.0
)
SEQ_800 = b"".join(b"%d\r\n" % i for i in range(1, 801))  # `seq 1 800` through the PTY


def test_drops_are_recovered_by_retransmission() -> None:
    settings, expected = LOSSY_SETTINGS, SEQ_800

    async def main() -> None:
        async with Relay(settings, faults=parse_faults("drop=0.2,seed=3")) as relay:
            grant = relay.hub.start_session(relay.target(), "seq 1 800")
            client = await Client.attach(grant)
            frames = await client.run_to_close()
            assert output_bytes(frames) == expected
            assert relay.stats.frames["a2c"].dropped + relay.stats.frames["c2a"].dropped >= 1
            await client.close()

    asyncio.run(main())


def test_fault_counters_survive_a_stats_reset() -> None:
    """A session that outlives POST /_sandbox/stats/reset keeps counting its faults."""
    settings, expected = LOSSY_SETTINGS, SEQ_800

    async def main() -> None:
        async with Relay(settings, faults=parse_faults("a2c.drop=0.2,seed=3")) as relay:
            grant = relay.hub.start_session(relay.target(), "sh -c 'read x; seq 1 800'")
            await relay.pid(grant.session_id)
            client = await Client.attach(grant)
            relay.stats.reset()  # the session's pipelines already exist
            await client.send(PayloadType.OUTPUT, b"\r")
            frames = await client.run_to_close()
            assert output_bytes(frames) == b"\r\n" + expected
            assert relay.stats.frames["a2c"].dropped >= 1
            await client.close()

    asyncio.run(main())


def test_disconnect_fault_aborts_the_socket_and_the_session_lives_on() -> None:
    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.start_session(relay.target(), "sh -c 'read x; echo got:$x'")
            sid = grant.session_id
            await relay.pid(sid)
            relay.hub.set_faults(parse_faults("c2a.disconnect=1"), sid)
            client = await Client.attach(grant)
            await client.send(PayloadType.OUTPUT, b"lost\r")
            assert await client.closed_with() == 1006  # aborted, no close frame
            assert relay.session(sid)["state"] == "active"
            assert relay.stats.frames["c2a"].disconnects == 1
            relay.hub.set_faults(None, sid)  # back to the global plan (none)
            resumed = relay.hub.resume(sid)
            assert resumed is not None
            client2 = await Client.attach(resumed)
            client2.seq = 0  # the lost frame is resent with its seq
            await client2.send(PayloadType.OUTPUT, b"kept\r")
            frames = await client2.run_to_close()
            assert output_bytes(frames) == b"kept\r\ngot:kept\r\n"
            await client2.close()

    asyncio.run(main())


def test_a_disconnect_drawn_while_no_client_is_attached_loses_no_frame() -> None:
    """With no client attached there is no socket to abort: agent frames queue as usual."""

    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.start_session(relay.target(), "printf one-two")
            sid = grant.session_id
            relay.hub.set_faults(parse_faults("a2c.disconnect=1"), sid)  # every agent frame
            await until(lambda: relay.stats.agent.output_bytes == len(b"one-two"))
            assert relay.stats.frames["a2c"].disconnects == 0
            assert relay.session(sid)["queuedFrames"] >= 1  # kept for the client
            relay.hub.set_faults(None, sid)
            client = await Client.attach(grant)
            frames = await client.run_to_close()
            assert output_bytes(frames) == b"one-two"
            await client.close()

    asyncio.run(main())


def _first_of_three_disconnects(direction: Direction) -> FaultPlan:
    """A seeded plan whose first decision for the Relay's first session is a disconnect
    and whose next two are not."""
    for seed in range(1000):
        plan = parse_faults(f"{direction}.disconnect=0.5,seed={seed}")
        stream = FrameFaultStream(
            plan, task_arn=TASK, container_name="app", ordinal=0, direction=direction
        )
        if [stream.next().disconnect for _ in range(3)] == [True, False, False]:
            return plan
    raise AssertionError("no such seed")


def test_frames_still_in_flight_from_an_aborted_socket_are_not_relayed() -> None:
    async def main() -> None:
        async with Relay(faults=_first_of_three_disconnects("c2a")) as relay:
            grant = relay.hub.start_session(relay.target(), "sh -c 'read x; echo got:$x'")
            sid = grant.session_id
            await relay.pid(sid)
            client = await Client.attach(grant)
            await until(lambda: relay.session(sid)["clientConnected"])
            # Three frames in one write: the relay aborts the socket on the first; the
            # other two arrived with it but died with the connection.
            frames = [client.frame(PayloadType.OUTPUT, data) for data in (b"a", b"b", b"c\r")]
            client.ws.transport.write(encode_client_frames(frames))
            assert await client.closed_with() == 1006
            assert relay.stats.frames["c2a"].disconnects == 1
            assert relay.stats.frames["c2a"].relayed == 0
            relay.hub.set_faults(None)
            resumed = relay.hub.resume(sid)
            assert resumed is not None
            client2 = await Client.attach(resumed)
            for frame in frames:  # the client resends what was never acked
                await client2.ws.send(frame)
            output = output_bytes(await client2.run_to_close())
            assert output.endswith(b"got:abc\r\n")
            await client2.close()

    asyncio.run(main())


def test_disconnect_client_control() -> None:
    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.start_session(relay.target(), "sleep 300")
            client = await Client.attach(grant)
            await until(lambda: relay.session(grant.session_id)["clientConnected"])
            await relay.hub.disconnect_client(grant.session_id)
            assert await client.closed_with() == 1006
            assert relay.session(grant.session_id)["state"] == "active"
            with pytest.raises(KeyError):
                relay.hub.set_faults(FaultPlan(), "ecs-execute-command-unknown")

    asyncio.run(main())


# --- fidelity: the real 1 s wait ---------------------------------------------------------


@pytest.mark.fidelity
def test_fidelity_real_initial_wait_single_frame_like_the_trace() -> None:
    # docs/ssm-protocol.md §17 interactivecommands trace: one frame `hello\r\nerr\r\na\r\nb`,
    # seq 0 flags 1 type 1, about 1 s after the agent attached; no exit code payload.
    settings = AgentSettings(close_grace=0.2)

    async def main() -> None:
        async with Relay(settings) as relay:
            started = time.monotonic()
            grant = relay.hub.start_session(
                relay.target(), "sh -c 'echo hello; echo err 1>&2; printf \"a\\nb\"; exit 3'"
            )
            client = await Client.attach(grant)
            first = await client.recv()
            elapsed = time.monotonic() - started
            assert settings.initial_wait <= elapsed <= settings.initial_wait + 0.2 + 0.4
            assert (first.sequence_number, first.flags, first.payload_type) == (0, 1, 1)
            assert first.payload == b"hello\r\nerr\r\na\r\nb"
            await client.ack(first)
            frames = await client.run_to_close()
            assert [f.message_type for f in frames] == [CHANNEL_CLOSED]
            await client.close()

    asyncio.run(main())


def test_session_id_suffix_is_26_lowercase_alphanumerics() -> None:
    # docs/sandbox.md §4.2: "ecs-execute-command-" + 26 [a-z0-9].
    seen = {hub_mod._random_sid_suffix() for _ in range(200)}
    assert len(seen) == 200
    assert all(re.fullmatch(r"[a-z0-9]{26}", s) for s in seen)
    assert set("".join(seen)) == set(hub_mod._SID_ALPHABET)  # every character occurs

"""The simulated agent: pure state machine (§7) and its asyncio driver (§7.1, §8).

§N refers to docs/sandbox.md.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecsexec.sandbox import agent as agent_mod
from ecsexec.sandbox.agent import (
    HANDSHAKE_FAILED_PREFIX,
    KMS_CUSTOMER_MESSAGE,
    AgentChannel,
    AgentSettings,
    SimulatedAgent,
    split_utf8_tail,
)
from ecsexec.sandbox.stats import Stats
from ecsexec.ssm.crypto import SessionCipher
from ecsexec.ssm.frames import (
    ACK_FLAGS,
    ACKNOWLEDGE,
    AGENT_SESSION_STATE,
    INPUT_STREAM_DATA,
    OUTPUT_STREAM_DATA,
    PAUSE_PUBLICATION,
    START_PUBLICATION,
    Frame,
    PayloadType,
    decode_frame,
    encode_frame,
)
from ecsexec.ssm.payloads import (
    ProcessedAction,
    build_ack,
    build_challenge,
    build_handshake_response,
    build_size,
    parse_agent_session_state,
    parse_challenge,
    parse_handshake_complete,
    parse_handshake_request,
)

SID = "ecs-execute-command-0123456789abcdefghijklmnop"
TARGET = "ecs:demo_0123456789abcdef0123456789abcdef_0123456789abcdef0123456789abcdef-1"
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
FAST = AgentSettings(initial_wait=0.05, agent_start_delay=0.05, drain_timeout=0.5)
TIMEOUT = 10.0


def client_frame(seq: int, ptype: int, payload: bytes, *, mtype: str = INPUT_STREAM_DATA) -> bytes:
    return encode_frame(
        mtype,
        payload,
        sequence_number=seq,
        payload_type=ptype,
        message_id=uuid.uuid4(),
        created_ms=int(time.time() * 1000),
    )


def ack_for(frame: Frame) -> bytes:
    return encode_frame(
        ACKNOWLEDGE,
        build_ack(frame.message_type, frame.message_id, frame.sequence_number),
        flags=ACK_FLAGS,
        message_id=uuid.uuid4(),
        created_ms=int(time.time() * 1000),
    )


def control(mtype: str) -> bytes:
    return encode_frame(mtype, b"", message_id=uuid.uuid4(), created_ms=1)


# --- the pure channel --------------------------------------------------------------------


class Wire:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        self.sent.append(data)

    def frames(self) -> list[Frame]:
        return [decode_frame(d) for d in self.sent]

    def take(self) -> list[Frame]:
        out = self.frames()
        self.sent.clear()
        return out


def make_channel(*, ready: bool = True) -> tuple[AgentChannel, Wire, Stats]:
    wire, stats = Wire(), Stats()
    channel = AgentChannel(session_id=SID, stats=stats, transmit=wire, created_ms=lambda: 1234)
    channel.ready = ready
    return channel, wire, stats


def test_output_frames_syn_on_seq0_only() -> None:
    channel, wire, _ = make_channel()
    for i, payload in enumerate([b"a", b"b", b"c"]):
        assert channel.send_stream(PayloadType.OUTPUT, payload, now=float(i))
    frames = wire.frames()
    assert [f.message_type for f in frames] == [OUTPUT_STREAM_DATA] * 3
    assert [(f.sequence_number, f.flags, f.payload_type) for f in frames] == [
        (0, 1, 1),
        (1, 0, 1),
        (2, 0, 1),
    ]
    assert len({f.message_id for f in frames}) == 3
    assert not channel.send_stream(PayloadType.OUTPUT, b"", now=3.0)  # never empty


def test_retransmits_oldest_only_after_rto_with_identical_bytes() -> None:
    channel, wire, stats = make_channel()
    channel.send_stream(1, b"zero", now=0.0)
    channel.send_stream(1, b"one", now=0.05)
    original = list(wire.sent)
    wire.sent.clear()
    assert not channel.on_tick(0.1)
    assert not channel.on_tick(0.2)  # not older than RTO (200 ms) yet
    assert channel.on_tick(0.3)
    assert wire.sent == [original[0]]  # oldest only, byte for byte
    assert not channel.on_tick(0.4)  # LastSentTime was updated
    assert channel.on_tick(0.6)
    assert wire.sent == [original[0], original[0]]
    assert stats.agent.retransmissions == 2
    # ack seq 0 at 0.65: RTT sample from the last transmission (0.6) → 50 ms
    channel.receive(ack_for(decode_frame(original[0])), now=0.65)
    assert channel.rttvar == pytest.approx(0.25 * 0.05)
    assert channel.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.05)
    assert channel.rto == pytest.approx(channel.srtt + 4 * channel.rttvar)
    wire.sent.clear()
    assert channel.on_tick(0.7)  # seq 1 is now the oldest and long overdue
    assert wire.sent == [original[1]]


def test_rto_is_capped_and_falls_under_steady_traffic() -> None:
    channel, wire, _ = make_channel()
    channel.send_stream(1, b"x", now=0.0)
    channel.receive(ack_for(wire.take()[0]), now=5.0)
    assert channel.rto == 1.0
    channel, wire, _ = make_channel()
    now = 0.0
    for _ in range(60):
        channel.send_stream(1, b"x", now=now)
        now += 0.002
        channel.receive(ack_for(wire.take()[0]), now=now)
    assert 0.010 <= channel.rto <= 0.020  # docs/ssm-protocol.md §17: 10–20 ms under steady traffic


def test_pause_stops_sends_and_resends_until_an_ack() -> None:
    channel, wire, _ = make_channel()
    channel.receive(control(PAUSE_PUBLICATION), now=0.0)
    assert channel.paused
    channel.send_stream(1, b"held", now=0.0)
    assert wire.sent == []
    assert not channel.on_tick(5.0)
    channel.receive(ack_for(decode_frame(client_frame(99, 1, b"?"))), now=5.0)  # unknown seq
    assert not channel.paused
    assert channel.on_tick(5.1)
    assert [f.payload for f in wire.take()] == [b"held"]
    channel.receive(control(PAUSE_PUBLICATION), now=6.0)
    channel.receive(control(START_PUBLICATION), now=6.0)
    assert not channel.paused


def test_in_order_input_is_acked_exactly_and_delivered() -> None:
    channel, wire, _ = make_channel()
    data = client_frame(0, PayloadType.OUTPUT, b"ls -la\r")
    sent = decode_frame(data)
    out = channel.receive(data, now=0.0)
    assert [(i.sequence_number, i.payload_type, i.payload) for i in out] == [(0, 1, b"ls -la\r")]
    (ack,) = wire.frames()
    assert (ack.message_type, ack.sequence_number, ack.flags, ack.payload_type) == (
        ACKNOWLEDGE,
        0,
        3,
        0,
    )
    assert ack.payload == (
        b'{"AcknowledgedMessageType":"input_stream_data","AcknowledgedMessageId":"'
        + str(sent.message_id).encode()
        + b'","AcknowledgedMessageSequenceNumber":0,"IsSequentialMessage":true}'
    )
    assert channel.expected == 1


def test_out_of_order_is_acked_buffered_then_delivered_in_order() -> None:
    channel, wire, _ = make_channel()
    assert channel.receive(client_frame(2, 1, b"c"), now=0.0) == []
    assert channel.receive(client_frame(1, 1, b"b"), now=0.0) == []
    assert [f.sequence_number for f in wire.take()] == [0, 0]  # acks carry seq 0 in header
    out = channel.receive(client_frame(0, 1, b"a"), now=0.0)
    assert [i.payload for i in out] == [b"a", b"b", b"c"]
    assert len(wire.take()) == 1  # only seq 0 needed a new ack
    assert channel.expected == 3


def test_duplicates_are_reacked_not_redelivered() -> None:
    channel, wire, stats = make_channel()
    data = client_frame(0, 1, b"once")
    assert len(channel.receive(data, now=0.0)) == 1
    wire.sent.clear()
    assert channel.receive(data, now=0.1) == []
    (ack,) = wire.frames()
    assert json.loads(ack.payload)["AcknowledgedMessageSequenceNumber"] == 0
    assert stats.agent.dup_reacks == 1


def test_handler_not_ready_neither_acks_nor_advances() -> None:
    channel, wire, stats = make_channel(ready=False)
    size = client_frame(0, PayloadType.SIZE, build_size(80, 24))
    assert channel.receive(size, now=0.0) == []
    assert wire.sent == []
    assert channel.expected == 0
    assert stats.agent.not_ready == 1
    channel.ready = True
    out = channel.receive(size, now=0.2)  # the client's resend
    assert [i.payload_type for i in out] == [PayloadType.SIZE]
    assert len(wire.sent) == 1
    assert channel.expected == 1


def test_handshake_acks_and_discards_other_input() -> None:
    channel, wire, stats = make_channel(ready=False)
    channel.handshaking = True
    assert channel.receive(client_frame(0, PayloadType.SIZE, build_size(80, 24)), now=0.0) == []
    assert len(wire.take()) == 1  # acked …
    assert channel.expected == 1  # … and consumed
    assert stats.agent.discarded_during_handshake == 1
    assert stats.protocol_warnings[0]["code"] == "discarded_during_handshake"
    out = channel.receive(client_frame(1, PayloadType.HANDSHAKE_RESPONSE, b"{}"), now=0.0)
    assert [i.payload_type for i in out] == [PayloadType.HANDSHAKE_RESPONSE]


def test_discarding_during_a_handshake_warns_only_in_strict_mode() -> None:
    wire, stats = Wire(), Stats()
    channel = AgentChannel(session_id=SID, stats=stats, transmit=wire, strict=False)
    channel.handshaking = True
    assert channel.receive(client_frame(0, PayloadType.SIZE, build_size(80, 24)), now=0.0) == []
    assert len(wire.take()) == 1  # still acked and discarded …
    assert stats.agent.discarded_during_handshake == 1  # … and counted
    assert stats.protocol_warnings == []


def test_flag_unknown_and_empty_payloads_are_acked_and_ignored() -> None:
    channel, wire, _ = make_channel()
    assert channel.receive(client_frame(0, PayloadType.FLAG, b"\0\0\0\2"), now=0.0) == []
    assert channel.receive(client_frame(1, 42, b"?"), now=0.0) == []
    assert channel.receive(client_frame(2, 1, b""), now=0.0) == []
    assert len(wire.take()) == 3
    assert channel.expected == 3
    assert channel.receive(client_frame(0, 1, b"x", mtype="interactive_shell"), now=0.0) == []
    assert channel.receive(b"short", now=0.0) == []
    assert wire.sent == []


def test_agent_never_checks_digests() -> None:
    channel, _, _ = make_channel()
    data = bytearray(client_frame(0, 1, b"abc"))
    data[80:112] = bytes(32)  # wrong digest
    assert [i.payload for i in channel.receive(bytes(data), now=0.0)] == [b"abc"]


def test_acks_match_on_sequence_number_only() -> None:
    channel, wire, _ = make_channel()
    channel.send_stream(1, b"x", now=0.0)
    drained: list[bool] = []
    channel.on_drained = lambda: drained.append(True)
    frame = wire.take()[0]
    bogus = encode_frame(
        ACKNOWLEDGE,
        build_ack("whatever", uuid.uuid4(), frame.sequence_number),
        flags=ACK_FLAGS,
        message_id=uuid.uuid4(),
        created_ms=1,
    )
    channel.receive(bogus, now=0.01)
    assert channel.unacked == {}
    assert drained == [True]


@given(
    mtype=st.sampled_from([OUTPUT_STREAM_DATA, "acknowledge", "x", "whatever_type_name"]),
    seq=st.integers(min_value=0, max_value=2**62),
    spaced=st.booleans(),
)
def test_the_acked_sequence_number_is_read_from_any_ack_layout(
    mtype: str, seq: int, spaced: bool
) -> None:
    """The in-place read of AcknowledgedMessageSequenceNumber (fixed offset first, then a
    search, then JSON) finds the number whatever the type name, its size or the spacing."""
    channel, _wire, _ = make_channel()
    channel.next_seq = seq
    channel.send_stream(1, b"x", now=0.0)
    channel.send_stream(1, b"y", now=0.0)
    payload = build_ack(mtype, uuid.uuid4(), seq)
    if spaced:
        payload = json.dumps(json.loads(payload), indent=1).encode()
    ack = encode_frame(ACKNOWLEDGE, payload, flags=ACK_FLAGS, message_id=uuid.uuid4(), created_ms=1)
    channel.receive(ack, now=0.01)
    assert list(channel.unacked) == [seq + 1]


def test_full_outgoing_buffer_drops_new_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_mod, "OUTGOING_LIMIT", 2)
    channel, wire, _ = make_channel()
    assert channel.send_stream(1, b"a", now=0.0)
    assert channel.send_stream(1, b"b", now=0.0)
    assert not channel.send_stream(1, b"c", now=0.0)
    assert len(wire.sent) == 2
    assert channel.next_seq == 2


@pytest.mark.parametrize(
    ("data", "body", "tail"),
    [
        (b"", b"", b""),
        (b"abc", b"abc", b""),
        ("x€".encode(), "x€".encode(), b""),
        (b"x\xe2\x82", b"x", b"\xe2\x82"),
        (b"x\xe2", b"x", b"\xe2"),
        (b"a\xf0\x9f\x98", b"a", b"\xf0\x9f\x98"),
        (b"\xf0\x9f", b"", b"\xf0\x9f"),
        (b"x\xff", b"x\xff", b""),  # invalid bytes pass through raw
        (b"x\xe0\x80", b"x\xe0\x80", b""),  # not a valid prefix: not held
        (b"x\xed\xa0", b"x\xed\xa0", b""),  # surrogate range: invalid (CPython would hold it)
        (b"x\xed\x9f", b"x", b"\xed\x9f"),
        (b"x\xf4\x90", b"x\xf4\x90", b""),  # beyond U+10FFFF
        (b"\xe2\x82\xe2", b"\xe2\x82", b"\xe2"),
        (b"\x82\xac", b"\x82\xac", b""),
    ],
)
def test_split_utf8_tail(data: bytes, body: bytes, tail: bytes) -> None:
    assert split_utf8_tail(data) == (body, tail)


@given(st.text(), st.lists(st.integers(min_value=1, max_value=1024), min_size=1))
def test_utf8_carry_over_keeps_every_byte_and_splits_only_on_boundaries(
    text: str, sizes: list[int]
) -> None:
    data = text.encode()
    carry, bodies, pos, i = b"", [], 0, 0
    while pos < len(data):
        chunk = carry + data[pos : pos + sizes[i % len(sizes)]]
        pos += sizes[i % len(sizes)]
        i += 1
        body, carry = split_utf8_tail(chunk)
        assert len(body) <= 1024 + 3
        if body:
            body.decode()  # valid input is only ever split on character boundaries
            bodies.append(body)
    assert b"".join(bodies) + carry == data
    assert carry == b""


def _go_writepump_split(data: bytes) -> tuple[bytes, bytes]:
    """Reference: the agent's loop, rune by rune over the whole buffer (Go semantics)."""
    sizes = {range(0xC2, 0xE0): 2, range(0xE0, 0xF0): 3, range(0xF0, 0xF5): 4}
    pos = 0
    while pos < len(data):
        lead = data[pos]
        size = next((n for r, n in sizes.items() if lead in r), 1)
        rune = data[pos : pos + size]
        try:
            valid = size > 1 and len(rune) == size and len(rune.decode("utf-8")) == 1
        except UnicodeDecodeError:
            valid = False
        if not valid and len(data) - pos < 4 and len(rune) < size:
            # utf8.FullRune is false when every present byte could still start a valid rune
            try:
                rune.decode("utf-8")
            except UnicodeDecodeError as exc:
                if exc.reason == "unexpected end of data" and not (
                    lead == 0xED and len(rune) > 1 and rune[1] > 0x9F
                ):
                    return data[:pos], data[pos:]
        pos += size if valid else 1
    return data, b""


@given(st.binary(max_size=12), st.sampled_from([b"", "€".encode(), "😀".encode(), "é".encode()]))
def test_split_utf8_tail_matches_the_agent_loop(prefix: bytes, char: bytes) -> None:
    for cut in range(len(char) + 1):
        data = prefix + char[:cut]
        assert split_utf8_tail(data) == _go_writepump_split(data)


# --- the driver, with real processes and no sockets ------------------------------------


class Harness:
    """A hand-driven client on the agent's in-process interface."""

    def __init__(
        self,
        command: str,
        *,
        settings: AgentSettings = FAST,
        auto_ack: bool = True,
        kms_key_id: str | None = None,
        kms_decrypt: Callable[[bytes, dict[str, str]], bytes] | None = None,
    ) -> None:
        self.stats = Stats()
        self.frames: list[Frame] = []
        self.raw: list[bytes] = []
        self.times: list[float] = []
        self.auto_ack = auto_ack
        self.changed = asyncio.Event()
        self.agent = SimulatedAgent(
            session_id=SID,
            target_id=TARGET,
            command=command,
            env=ENV,
            cwd="/",
            settings=settings,
            stats=self.stats,
            send=self._send,
            kms_key_id=kms_key_id,
            kms_decrypt=kms_decrypt,
        )
        self.started = 0.0

    def _send(self, data: bytes) -> None:
        frame = decode_frame(data)  # the agent's frames must pass full validation
        self.raw.append(data)
        self.frames.append(frame)
        self.times.append(time.monotonic())
        self.changed.set()
        if self.auto_ack and frame.message_type == OUTPUT_STREAM_DATA:
            asyncio.get_running_loop().call_soon(self.agent.deliver, ack_for(frame))

    async def wait_for(self, predicate: Callable[[Frame], bool], start: int = 0) -> int:
        async def scan() -> int:
            index = start
            while True:
                while index < len(self.frames):
                    if predicate(self.frames[index]):
                        return index
                    index += 1
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(scan(), TIMEOUT)

    async def deliver_until_acked(self, data: bytes) -> None:
        """Send a client frame and resend it until acked, as a real client does (§6): input
        that arrives before the PTY exists is left unacked ("handler not ready")."""
        seq = decode_frame(data).sequence_number

        def acked(frame: Frame) -> bool:
            return (
                frame.message_type == ACKNOWLEDGE
                and json.loads(frame.payload)["AcknowledgedMessageSequenceNumber"] == seq
            )

        for _ in range(int(TIMEOUT / 0.2)):
            start = len(self.frames)
            self.agent.deliver(data)
            try:
                await asyncio.wait_for(self.wait_for(acked, start), 0.2)
                return
            except TimeoutError:
                continue
        raise AssertionError(f"input seq {seq} was never acked")

    async def wait_state(self, state: str) -> int:
        return await self.wait_for(
            lambda f: (
                f.message_type == AGENT_SESSION_STATE
                and parse_agent_session_state(f.payload) == state
            )
        )

    def outputs(self) -> list[Frame]:
        return [f for f in self.frames if f.message_type == OUTPUT_STREAM_DATA]

    async def __aenter__(self) -> Harness:
        self.started = time.monotonic()
        self.agent.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.agent.stop()
        assert await self.agent.wait_reaped(TIMEOUT)
        await self.agent.join()


def unique_outputs(frames: list[Frame]) -> dict[int, Frame]:
    return {f.sequence_number: f for f in frames if f.message_type == OUTPUT_STREAM_DATA}


def test_session_shape_and_timing() -> None:
    settings = AgentSettings(initial_wait=0.3, agent_start_delay=0.1, drain_timeout=0.5)

    async def main() -> Harness:
        async with Harness("sh -c 'echo hello; echo err 1>&2'", settings=settings) as h:
            await h.wait_state("Terminating")
            return h

    h = asyncio.run(main())
    first = h.frames[0]
    assert first.message_type == AGENT_SESSION_STATE
    assert (first.sequence_number, first.flags) == (0, 3)
    assert parse_agent_session_state(first.payload) == "Connected"
    outs = h.outputs()
    assert outs[0].sequence_number == 0
    assert outs[0].flags == 1
    assert b"".join(f.payload for f in outs) == b"hello\r\nerr\r\n"
    elapsed = h.times[h.frames.index(outs[0])] - h.started
    assert 0.4 <= elapsed < 0.4 + 0.5  # agent_start_delay + initial_wait before the first read
    assert h.stats.processes.exec == 1
    assert h.agent.end_reason == "exited"
    assert h.agent.end_output == ""


def test_chunks_hold_back_incomplete_utf8(tmp_path: Path) -> None:
    text = "€" * 3000 + "é" * 700
    path = tmp_path / "euros.txt"
    path.write_text(text, encoding="utf-8")

    async def main() -> Harness:
        async with Harness(f"cat {path}") as h:
            await h.wait_state("Terminating")
            return h

    outs = list(unique_outputs(asyncio.run(main()).frames).values())
    payloads = [f.payload for f in outs]
    assert b"".join(payloads) == text.encode()
    assert all(len(p) <= 1027 for p in payloads)
    assert any(len(p) > 1024 for p in payloads)  # a carried tail was prepended
    for p in payloads:
        p.decode("utf-8")


def test_drain_timeout_then_terminating_with_resends() -> None:
    settings = AgentSettings(initial_wait=0.02, agent_start_delay=0.02, drain_timeout=0.45)

    async def main() -> Harness:
        async with Harness("echo unacked", settings=settings, auto_ack=False) as h:
            first = await h.wait_for(lambda f: f.message_type == OUTPUT_STREAM_DATA)
            end = await h.wait_state("Terminating")
            h.frames = h.frames[first : end + 1]
            h.raw = h.raw[first : end + 1]
            return h

    h = asyncio.run(main())
    resends = [r for r in h.raw[1:-1] if r == h.raw[0]]
    assert resends, "the unacked frame must be resent unchanged"
    assert len(resends) == h.stats.agent.retransmissions
    assert h.agent.end_reason == "exited"


def test_output_hold_stops_pty_reads_until_released() -> None:
    """The relay's back-pressure: held, the agent reads nothing; released, all arrives."""
    settings = AgentSettings(initial_wait=0.02, agent_start_delay=0.02)

    async def main() -> tuple[list[Frame], bytes]:
        async with Harness("echo held", settings=settings) as h:
            h.agent.hold_output(True)  # before the PTY exists: reading starts held

            async def exited_unread() -> None:
                agent = h.agent
                while not (
                    agent.process is not None
                    and agent.process.reading_started
                    and agent.returncode is not None
                ):
                    await asyncio.sleep(0.005)

            await asyncio.wait_for(exited_unread(), TIMEOUT)
            before = h.outputs()
            h.agent.hold_output(False)
            await h.wait_state("Terminating")
            return before, b"".join(f.payload for f in unique_outputs(h.frames).values())

    before, output = asyncio.run(main())
    assert before == []
    assert output == b"held\r\n"


def test_cannot_start_sends_nothing_and_ends() -> None:
    settings = AgentSettings(initial_wait=0.01, agent_start_delay=0.01, cannot_start_wait=0.2)

    async def main(command: str) -> Harness:
        async with Harness(command, settings=settings) as h:
            await h.wait_state("Terminating")
            return h

    for command in ("no-such-command-xyz --flag", "echo 'unterminated"):
        h = asyncio.run(main(command))
        assert h.outputs() == []
        assert h.times[-1] - h.times[0] >= 0.2
        assert h.agent.pid is None
        assert h.stats.processes.exec == 0


def test_early_size_waits_for_the_pty_then_sets_winsize() -> None:
    settings = AgentSettings(initial_wait=0.02, agent_start_delay=0.2)

    async def main() -> bytes:
        async with Harness("sh -c 'read x; stty size'", settings=settings) as h:
            size = client_frame(0, PayloadType.SIZE, build_size(132, 43))
            h.agent.deliver(size)
            assert not any(f.message_type == ACKNOWLEDGE for f in h.frames)
            assert h.stats.agent.not_ready == 1

            async def until_pty() -> None:
                while h.agent.pid is None:
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(until_pty(), TIMEOUT)
            h.agent.deliver(size)  # the client's resend
            await h.wait_for(lambda f: f.message_type == ACKNOWLEDGE)
            h.agent.deliver(client_frame(1, PayloadType.OUTPUT, b"\r"))
            await h.wait_state("Terminating")
            return b"".join(f.payload for f in unique_outputs(h.frames).values())

    assert asyncio.run(main()).endswith(b"43 132\r\n")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_stop_kills_the_process_and_closes_the_pty() -> None:
    async def main() -> tuple[int, Stats]:
        # Ignores SIGHUP, so closing the PTY alone would not end it: only SIGKILL does.
        async with Harness("sh -c 'trap \"\" HUP; exec sleep 300'") as h:
            while h.agent.pid is None:
                await asyncio.sleep(0.01)
            pid = h.agent.pid
            assert h.stats.processes.ptys_open == 1
            h.agent.stop()
            assert await h.agent.wait_reaped(TIMEOUT)
            return pid, h.stats

    pid, stats = asyncio.run(main())
    assert _gone(pid)
    assert stats.processes.ptys_open == 0


# --- KMS handshake (§7.1) ----------------------------------------------------------------


class FakeKms:
    def __init__(self) -> None:
        self.data_key = os.urandom(64)
        self.contexts: list[dict[str, str]] = []
        self.fail: str | None = None

    def __call__(self, blob: bytes, context: dict[str, str]) -> bytes:
        self.contexts.append(dict(context))
        if self.fail:
            raise RuntimeError(self.fail)
        assert blob == b"sandbox-blob"
        return self.data_key


def handshake_response(*, acknowledged: bool, kms_status: int = 1) -> bytes:
    return build_handshake_response(
        [
            ProcessedAction("SessionType", 1),
            ProcessedAction(
                "KMSEncryption",
                kms_status,
                {
                    "KMSCipherTextKey": base64.b64encode(b"sandbox-blob").decode(),
                    "KMSCipherTextHash": None,
                    "ChallengeAcknowledgement": acknowledged,
                },
                "" if kms_status == 1 else "no key for you",
            ),
        ]
    )


def test_kms_handshake_and_encrypted_session() -> None:
    kms = FakeKms()
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-0000-4000-8000-000000000000"

    async def main() -> tuple[Harness, dict[str, Any], bytes]:
        async with Harness("sh -c 'read x; echo got:$x'", kms_key_id=key_arn, kms_decrypt=kms) as h:
            request_at = await h.wait_for(lambda f: f.message_type == OUTPUT_STREAM_DATA)
            request = h.frames[request_at]
            assert (request.sequence_number, request.flags, request.payload_type) == (0, 1, 5)
            # A naive client sends Size at once: acked and discarded (§7 quirk).
            h.agent.deliver(client_frame(0, PayloadType.SIZE, build_size(80, 24)))
            h.agent.deliver(
                client_frame(
                    1, PayloadType.HANDSHAKE_RESPONSE, handshake_response(acknowledged=True)
                )
            )
            challenge_at = await h.wait_for(lambda f: f.payload_type == 8, request_at + 1)
            challenge = h.frames[challenge_at]
            client = SessionCipher(kms.data_key, role="client")
            secret = client.decrypt(base64.b64decode(parse_challenge(challenge.payload)))
            reply = build_challenge(base64.b64encode(client.encrypt(secret)).decode())
            h.agent.deliver(client_frame(2, PayloadType.ENC_CHALLENGE_RESPONSE, reply))
            complete_at = await h.wait_for(lambda f: f.payload_type == 7, challenge_at + 1)
            complete = json.loads(h.frames[complete_at].payload)
            await h.deliver_until_acked(
                client_frame(3, PayloadType.OUTPUT, client.encrypt(b"hi\r"))
            )
            await h.wait_state("Terminating")
            plain = b"".join(
                client.decrypt(f.payload)
                for f in unique_outputs(h.frames).values()
                if f.payload_type == PayloadType.OUTPUT
            )
            return h, {"request": request, "complete": complete}, plain

    h, seen, plain = asyncio.run(main())
    request = parse_handshake_request(seen["request"].payload)
    assert request.agent_version == "3.3.0.0"
    assert request.session_type == "InteractiveCommands"
    kms_action = request.kms
    assert kms_action is not None
    assert kms_action.parameters["KMSKeyId"] == key_arn
    assert len(base64.b64decode(kms_action.parameters["Challenge"])) == 16
    assert seen["request"].payload.startswith(
        b'{"AgentVersion":"3.3.0.0","RequestedClientActions":[{"ActionType":"SessionType",'
        b'"ActionParameters":{"SessionType":"InteractiveCommands","Properties":null}},'
    )
    assert kms.contexts == [
        {
            "aws:ssm:SessionId": SID,
            "aws:ssm:TargetId": TARGET,
            "aws:ssm:RandomChallenge": kms_action.parameters["Challenge"],
        }
    ]
    assert seen["complete"]["CustomerMessage"] == KMS_CUSTOMER_MESSAGE
    assert isinstance(seen["complete"]["HandshakeTimeToComplete"], int)
    assert parse_handshake_complete(json.dumps(seen["complete"]).encode()) == KMS_CUSTOMER_MESSAGE
    assert plain == b"hi\r\ngot:hi\r\n"
    assert h.stats.agent.discarded_during_handshake == 1
    assert h.stats.agent.kms_decrypts == 1
    # Outputs after the handshake continue the same sequence: 0 request, 1 challenge,
    # 2 complete, then data; only seq 0 carries SYN.
    seqs = sorted(unique_outputs(h.frames))
    assert seqs[:3] == [0, 1, 2]
    assert all(f.flags == 0 for f in h.outputs() if f.sequence_number > 0)


def _failed_handshake(
    respond: bytes | None, *, settings: AgentSettings = FAST, kms: FakeKms | None = None
) -> Harness:
    async def main() -> Harness:
        async with Harness(
            "echo never", settings=settings, kms_key_id="alias/ecs-exec", kms_decrypt=kms
        ) as h:
            await h.wait_for(lambda f: f.message_type == OUTPUT_STREAM_DATA)
            if respond is not None:
                h.agent.deliver(client_frame(0, PayloadType.HANDSHAKE_RESPONSE, respond))
            await h.wait_state("Terminating")
            return h

    return asyncio.run(main())


def test_handshake_timeout() -> None:
    settings = AgentSettings(initial_wait=0.01, agent_start_delay=0.01, handshake_timeout=0.2)
    h = _failed_handshake(None, settings=settings, kms=FakeKms())
    assert h.agent.end_reason == "handshake_failed"
    assert h.agent.end_output == (
        HANDSHAKE_FAILED_PREFIX + "Handshake timed out. Please ensure that you have the latest "
        "version of the session manager plugin."
    )
    assert h.agent.pid is None


def test_kms_decrypt_failure_ends_the_session() -> None:
    kms = FakeKms()
    kms.fail = "InvalidCiphertextException: context mismatch"
    h = _failed_handshake(handshake_response(acknowledged=False), kms=kms)
    assert h.agent.end_reason == "handshake_failed"
    assert h.agent.end_output.startswith(HANDSHAKE_FAILED_PREFIX)
    assert "InvalidCiphertextException" in h.agent.end_output
    assert "aws:ssm:RandomChallenge" not in kms.contexts[0]  # not acknowledged → not in context


def test_failed_client_action_cancels() -> None:
    h = _failed_handshake(handshake_response(acknowledged=True, kms_status=2), kms=FakeKms())
    assert h.agent.end_reason == "handshake_failed"
    assert "KMSEncryption failed on client with status 2" in h.agent.end_output


def test_require_challenge_ack() -> None:
    settings = AgentSettings(initial_wait=0.01, agent_start_delay=0.01, require_challenge_ack=True)
    kms = FakeKms()
    h = _failed_handshake(handshake_response(acknowledged=False), settings=settings, kms=kms)
    assert h.agent.end_reason == "handshake_failed"
    assert kms.contexts == []


@pytest.mark.e2e  # it tries to start a process
def test_a_nul_byte_in_the_command_cannot_start_and_ends() -> None:
    """No process argument can hold a NUL: the agent ends the session as for any command
    that cannot start, instead of failing its task and leaving the client waiting."""
    settings = AgentSettings(initial_wait=0.01, agent_start_delay=0.01, cannot_start_wait=0.05)

    async def main() -> Harness:
        async with Harness("echo a\x00b", settings=settings) as h:
            await h.wait_state("Terminating")
            return h

    h = asyncio.run(main())
    assert h.outputs() == []
    assert h.agent.pid is None
    assert h.stats.processes.exec == 0

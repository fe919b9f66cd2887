"""What the gateway sends cannot make the client hold unbounded memory or crash: frame size,
out-of-order bytes and JSON depth are limited, each failure naming its limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import tracemalloc
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from ecsexec.errors import FrameError, ProtocolError, SessionError
from ecsexec.ssm import payloads
from ecsexec.ssm.channel import (
    DEFAULT_REORDER_BYTES,
    ChannelClosed,
    DataChannel,
    OutputReceived,
    ProtocolWarning,
)
from ecsexec.ssm.frames import MAX_FRAME_BYTES, decode_frame, encode_frame
from ecsexec.ssm.payloads import MAX_JSON_DEPTH, json_depth
from ecsexec.ssm.session import Session
from ecsexec.ssm.transport import (
    MAX_MESSAGE_BYTES,
    DataChannelConnection,
    oversized_frame,
    split_server_frames,
)

FAST = settings(max_examples=200, deadline=None)


def out_frame(seq: int, data: bytes) -> bytes:
    return encode_frame(
        "output_stream_data",
        data,
        sequence_number=seq,
        payload_type=1,
        message_id=uuid.uuid4(),
        created_ms=1,
    )


def channel(**kwargs: int) -> DataChannel:
    return DataChannel(session_id="s", now=0.0, epoch_ms=1, **kwargs)  # type: ignore[arg-type]


def acked_seqs(ch: DataChannel) -> list[int]:
    seqs = []
    for raw in ch.data_to_send():
        frame = decode_frame(raw)
        if frame.message_type == "acknowledge":
            seqs.append(json.loads(frame.payload)["AcknowledgedMessageSequenceNumber"])
    return seqs


# --- frame size --------------------------------------------------------------------------------


def test_a_frame_above_the_limit_is_refused_naming_it() -> None:
    big = out_frame(0, b"x" * MAX_FRAME_BYTES)
    with pytest.raises(FrameError, match=f"limit of {MAX_FRAME_BYTES:,} bytes per frame"):
        decode_frame(big)
    # The largest frame that fits is accepted.
    fits = out_frame(0, b"x" * (MAX_FRAME_BYTES - 120))
    assert len(decode_frame(fits).payload) == MAX_FRAME_BYTES - 120


def test_a_declared_payload_length_above_the_limit_is_refused() -> None:
    frame = bytearray(out_frame(0, b"abc"))
    frame[116:120] = struct.pack(">I", 2**32 - 1)
    with pytest.raises(FrameError, match="declares a payload of 4,294,967,295 bytes"):
        decode_frame(bytes(frame), verify=False)


def test_the_channel_fails_on_an_oversized_frame_keeping_what_it_delivered() -> None:
    ch = channel()
    ch.receive_frame(out_frame(0, b"before"), 0.0)
    ch.receive_frame(out_frame(1, b"x" * MAX_FRAME_BYTES), 0.0)
    events = ch.events_received()
    assert [e for e in events if isinstance(e, OutputReceived)] == [OutputReceived(b"before")]
    closed = events[-1]
    assert isinstance(closed, ChannelClosed)
    assert closed.truncated and closed.missing_seq == 1
    assert isinstance(closed.failure, ProtocolError)
    assert f"limit is {MAX_FRAME_BYTES:,} bytes per frame" in str(closed.failure)
    assert ch.failure is closed.failure
    assert ch.closed
    ch.receive_frame(out_frame(1, b"late"), 0.0)  # nothing after the failure
    assert ch.events_received() == []


def test_a_declared_2_40_byte_websocket_frame_is_refused_at_its_header() -> None:
    header = bytes([0x82, 127]) + (2**40).to_bytes(8, "big")
    tracemalloc.start()
    try:
        with pytest.raises(FrameError, match="1,099,511,627,776 bytes; the limit is 1,048,576"):
            split_server_frames(header + b"x" * 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    # Frames before it are intact, and its header is located for the websocket parser.
    before = bytes([0x82, 3]) + b"abc"
    assert oversized_frame(before + header + b"x") == (len(before), len(before) + len(header))
    # Frames within the limit are cut as before; an incomplete one waits for more bytes.
    ok = bytes([0x82, 127]) + (70_000).to_bytes(8, "big") + b"y" * 70_000
    assert split_server_frames(ok) == ([(True, b"y" * 70_000)], len(ok))
    assert split_server_frames(ok[:-1]) == ([], 0)


@given(st.integers(min_value=MAX_MESSAGE_BYTES + 1, max_value=2**63 - 1), st.binary(max_size=64))
def test_every_oversized_header_is_refused_whatever_follows(length: int, rest: bytes) -> None:
    header = bytes([0x82, 127]) + length.to_bytes(8, "big")
    with pytest.raises(FrameError, match="per message"):
        split_server_frames(header + rest)


async def _serve(script: object, client: object) -> None:
    async with serve(script, "127.0.0.1", 0, compression=None) as srv:  # type: ignore[arg-type]
        port = next(iter(srv.sockets)).getsockname()[1]
        await asyncio.wait_for(client(port), 30)  # type: ignore[operator]


@pytest.mark.e2e
def test_the_connection_fails_with_1009_before_buffering_an_oversized_frame() -> None:
    got: list[bytes] = []
    sent = 0

    async def script(conn: ServerConnection) -> None:
        nonlocal sent
        await conn.recv()
        await conn.send(b"first")
        await conn.send(b"second")
        await conn.recv()  # the client has both
        # A header declaring 2^40 bytes, then junk for as long as the client reads.
        conn.transport.write(bytes([0x82, 127]) + (2**40).to_bytes(8, "big"))
        chunk = b"z" * 65536
        try:
            for _ in range(64):  # 4 MiB, four times the limit
                conn.transport.write(chunk)
                sent += len(chunk)
                await asyncio.sleep(0)
        except (ConnectionError, RuntimeError):  # the client hung up, as it should
            pass
        await conn.wait_closed()

    async def client(port: int) -> None:
        ws = await connect(
            f"ws://127.0.0.1:{port}/", create_connection=DataChannelConnection, max_size=None
        )
        assert isinstance(ws, DataChannelConnection)
        both = asyncio.Event()

        def sink(data: bytes) -> None:
            got.append(data)
            if len(got) == 2:
                both.set()

        ws.on_message = sink
        await ws.send("go")
        await both.wait()
        await ws.send("ready")
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.protocol_error is not None
        assert "1,099,511,627,776 bytes" in str(ws.protocol_error)
        assert ws.protocol.close_sent is not None
        assert ws.protocol.close_sent.code == CloseCode.MESSAGE_TOO_BIG
        assert len(ws._partial) == 0  # nothing of its payload was kept

    asyncio.run(_serve(script, client))
    assert got == [b"first", b"second"]


@pytest.mark.e2e
def test_a_fragmented_message_above_the_limit_fails_the_connection() -> None:
    async def script(conn: ServerConnection) -> None:
        await conn.recv()
        fragment = b"f" * (256 * 1024)
        with contextlib.suppress(ConnectionClosed):
            await conn.send([fragment] * 8)  # 2 MiB in fragments of 256 KiB
        await conn.wait_closed()

    async def client(port: int) -> None:
        ws = await connect(f"ws://127.0.0.1:{port}/", create_connection=DataChannelConnection)
        assert isinstance(ws, DataChannelConnection)
        got: list[bytes] = []
        ws.on_message = got.append
        await ws.send("go")
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.protocol.close_sent is not None
        assert ws.protocol.close_sent.code == CloseCode.MESSAGE_TOO_BIG
        assert got == []

    asyncio.run(_serve(script, client))


# --- out-of-order bytes ---------------------------------------------------------------------------


def test_out_of_order_bytes_are_bounded_and_the_rest_is_resent() -> None:
    ch = channel(max_reorder_bytes=4 * 65536)
    chunk = 65536
    for seq in range(1, 11):  # 10 frames ahead of the missing seq 0
        ch.receive_frame(out_frame(seq, bytes([seq]) * chunk), 0.0)
    assert acked_seqs(ch) == [1, 2, 3, 4]  # the rest is dropped unacknowledged
    assert ch.reorder_bytes == 4 * chunk
    assert ch.stats.dropped_buffer_full == 6
    (warning,) = [e for e in ch.events_received() if isinstance(e, ProtocolWarning)]
    assert warning.code == "reorder_buffer_full"
    assert "262,144 bytes" in warning.detail  # names the limit
    # The missing frame arrives: the held ones follow it; the dropped ones are resent.
    ch.receive_frame(out_frame(0, b"\0"), 0.0)
    for seq in range(5, 11):
        ch.receive_frame(out_frame(seq, bytes([seq]) * chunk), 0.0)
    data = b"".join(e.data for e in ch.events_received() if isinstance(e, OutputReceived))
    assert data == b"\0" + b"".join(bytes([s]) * chunk for s in range(1, 11))
    assert ch.reorder_bytes == 0


def test_ten_thousand_64k_frames_out_of_order_hold_at_most_the_default_limit() -> None:
    ch = channel()
    assert DEFAULT_REORDER_BYTES == 64 * 1024 * 1024
    payload = b"p" * 65536
    for seq in range(1, 1101):  # 72 MB offered; generated one at a time
        ch.receive_frame(out_frame(seq, payload), 0.0)
        ch.data_to_send()
    assert ch.reorder_bytes <= DEFAULT_REORDER_BYTES
    assert ch.stats.reorder_bytes_peak <= DEFAULT_REORDER_BYTES
    assert ch.stats.dropped_buffer_full == 1100 - DEFAULT_REORDER_BYTES // 65536


# --- JSON depth ---------------------------------------------------------------------------------


def test_a_deeply_nested_ack_is_a_warning_not_a_crash() -> None:
    ch = channel()
    ch.open_input_gate("test", 0.0)
    ch.send_input(b"hi", 0.0)
    ch.data_to_send()
    ch.events_received()
    deep = b'{"AcknowledgedMessageSequenceNumber":0,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    ch.receive_frame(
        encode_frame("acknowledge", deep, flags=3, message_id=uuid.uuid4(), created_ms=1), 0.0
    )
    (warning,) = ch.events_received()
    assert isinstance(warning, ProtocolWarning)
    assert warning.code == "bad_ack"
    assert f"deeper than the limit of {MAX_JSON_DEPTH} levels" in warning.detail
    assert ch.unacked_count == 1  # not taken as an ack


@pytest.mark.parametrize(
    "parse",
    [
        payloads.parse_ack,
        payloads.parse_size,
        payloads.parse_handshake_request,
        payloads.parse_handshake_response,
        payloads.parse_handshake_complete,
        payloads.parse_challenge,
        payloads.parse_agent_session_state,
    ],
)
def test_every_parser_refuses_deep_json_naming_the_limit(parse: object) -> None:
    with pytest.raises(ProtocolError, match=f"limit of {MAX_JSON_DEPTH} levels"):
        parse(b"[" * 5000 + b"]" * 5000)  # type: ignore[operator]
    # Up to the limit it is merely the wrong shape.
    within = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    with pytest.raises(ProtocolError, match=r"not a JSON object|not JSON"):
        parse(within)  # type: ignore[operator]


def test_channel_closed_stays_lenient_about_deep_json() -> None:
    info = payloads.parse_channel_closed(b"[" * 5000)
    assert info.output.startswith("[[[")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=6),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=4), children, max_size=3)
    ),
    max_leaves=30,
)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@FAST
@given(JSON_VALUES)
def test_json_depth_equals_the_parsed_depth(value: object) -> None:
    for text in (json.dumps(value), json.dumps(value, indent=1)):
        assert json_depth(text.encode()) == _depth(value)


@FAST
@given(st.binary(max_size=300) | st.text(alphabet='[]{}"\\:,0a ', max_size=300).map(str.encode))
def test_payload_parsers_raise_only_protocol_errors(data: bytes) -> None:
    for parse in (payloads.parse_ack, payloads.parse_handshake_request, payloads.parse_size):
        with contextlib.suppress(ProtocolError):
            parse(data)
    payloads.parse_channel_closed(data)


@FAST
@given(st.binary(min_size=0, max_size=400), st.sampled_from(["acknowledge", "output_stream_data"]))
def test_the_channel_never_raises_on_what_it_receives(payload: bytes, mtype: str) -> None:
    ch = channel()
    for data in (
        encode_frame(mtype, payload, payload_type=5, message_id=uuid.uuid4(), created_ms=1),
        payload,
    ):
        ch.receive_frame(data, 0.0)
        ch.events_received()


class _Control:
    """A SessionControl that records what the session asked of SSM."""

    def __init__(self) -> None:
        self.resumed: list[str] = []
        self.terminated: list[str] = []

    def resume_session(self, session_id: str) -> tuple[str, str]:
        self.resumed.append(session_id)
        return "", ""

    def terminate_session(self, session_id: str) -> None:
        self.terminated.append(session_id)


@pytest.mark.e2e
def test_a_session_fed_an_oversized_frame_fails_with_the_cause_and_is_terminated() -> None:
    """No resume (it would only fetch the same frame again), the real cause in the error,
    and TerminateSession, since the agent may still be running the command."""
    control = _Control()
    failure: list[BaseException] = []

    async def script(conn: ServerConnection) -> None:
        await conn.recv()  # the open frame
        conn.transport.write(bytes([0x82, 127]) + (2**40).to_bytes(8, "big"))
        with contextlib.suppress(Exception):
            await conn.wait_closed()

    async def client(port: int) -> None:
        session = Session("sid-1", f"ws://127.0.0.1:{port}/", "token", control=control)
        try:
            async with session:
                async for _event in session:
                    pass
                await session.wait_closed()
        except SessionError as exc:
            failure.append(exc)

    asyncio.run(_serve(script, client))
    assert failure and "broke the data-channel protocol" in str(failure[0])
    assert "1,099,511,627,776 bytes" in str(failure[0])
    assert control.resumed == []
    assert control.terminated == ["sid-1"]

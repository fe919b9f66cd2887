"""The relay's own websocket framing (RFC 6455 §5.2), checked against two independent stacks.

The hub joins several server→client binary frames into one transport write, so it builds
their headers itself; they must be exactly what aiohttp would write and parse cleanly with
the client's ``websockets`` library.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp._websocket.writer import WebSocketWriter
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from ecsexec.ssm.transport import binary_frame_header


def ws_binary_header(length: int) -> bytes:
    """What the relay writes before each agent frame: a server header, never masked."""
    return binary_frame_header(length, masked=False)


BOUNDARIES = [0, 1, 125, 126, 127, 1144, 65535, 65536, 65537, 1 << 20]


class _Transport:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False


class _Protocol:
    _paused = False


def _aiohttp_frame(payload: bytes) -> bytes:
    """What aiohttp's server-side writer puts on the wire for one binary message."""
    transport = _Transport()
    proto: Any = _Protocol()
    writer = WebSocketWriter(proto, transport, use_mask=False, limit=1 << 40)  # type: ignore[arg-type]
    asyncio.run(writer.send_frame(payload, WSMsgType.BINARY))
    return bytes(transport.data)


def _parse_all(wire: bytes, count: int) -> list[Frame]:
    """Parse ``count`` frames from ``wire`` as the client library does (sans I/O, unmasked)."""
    reader = StreamReader()
    reader.feed_data(wire)
    reader.feed_eof()
    frames = []
    for _ in range(count):
        parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
        try:
            next(parser)
        except StopIteration as stop:
            frames.append(stop.value)
        else:  # pragma: no cover - the parser wanted more bytes than were fed
            raise AssertionError("truncated frame")
    assert not reader.buffer, "bytes left over after the last frame"
    return frames


@pytest.mark.parametrize("length", BOUNDARIES)
def test_header_is_byte_exact_with_aiohttp(length: int) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    assert ws_binary_header(length) + payload == _aiohttp_frame(payload)


@pytest.mark.parametrize("length", BOUNDARIES)
def test_header_uses_the_shortest_length_encoding(length: int) -> None:
    header = ws_binary_header(length)
    assert header[0] == 0x82  # FIN, no RSV bits (no compression), binary
    assert not header[1] & 0x80  # server frames are never masked
    expected_size = 2 if length <= 125 else 4 if length <= 65535 else 10
    assert len(header) == expected_size


@given(st.lists(st.binary(max_size=70_000), min_size=1, max_size=6))
def test_joined_frames_parse_back_one_message_each(payloads: list[bytes]) -> None:
    wire = b"".join(ws_binary_header(len(p)) + p for p in payloads)
    frames = _parse_all(wire, len(payloads))
    assert [f.data for f in frames] == payloads
    assert all(f.opcode is Opcode.BINARY and f.fin for f in frames)
    assert not any(f.rsv1 or f.rsv2 or f.rsv3 for f in frames)


@given(st.integers(min_value=0, max_value=(1 << 63) - 1))
def test_length_field_round_trips(length: int) -> None:
    header = ws_binary_header(length)
    code = header[1] & 0x7F
    if code < 126:
        assert code == length
    elif code == 126:
        assert int.from_bytes(header[2:4], "big") == length
    else:
        assert int.from_bytes(header[2:10], "big") == length

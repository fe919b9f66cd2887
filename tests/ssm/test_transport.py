"""DataChannelConnection against a real websockets server on localhost."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from ecsexec.ssm.transport import (
    DataChannelConnection,
    encode_client_frames,
    proxy_for,
    split_server_frames,
)


class _CountingTransport:
    """Delegates to the real transport and counts ``write`` calls."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self._inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def _open(port: int) -> DataChannelConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/", create_connection=DataChannelConnection)
    assert isinstance(ws, DataChannelConnection)
    return ws


Script = Callable[[ServerConnection], Awaitable[None]]


def with_server(script: Script, client: Callable[[int], Awaitable[None]]) -> None:
    """Serve ``script`` on a free port and run ``client(port)`` against it."""

    async def main() -> None:
        async with serve(script, "127.0.0.1", 0, compression=None) as srv:
            port = next(iter(srv.sockets)).getsockname()[1]
            await asyncio.wait_for(client(port), 30)

    asyncio.run(main())


@pytest.mark.e2e
def test_messages_reach_the_sink_in_order_with_fragments_joined() -> None:
    got: list[bytes] = []
    all_arrived = asyncio.Event()
    batches = 0

    async def script(conn: ServerConnection) -> None:
        await conn.recv()  # the client's go-ahead
        await conn.send(b"first")
        await conn.send([b"frag-1|", b"frag-2|", b"frag-3"])  # one fragmented message
        await conn.ping()
        await conn.send("text message")
        await conn.wait_closed()

    def sink(data: bytes) -> None:
        got.append(data)
        if len(got) == 3:
            all_arrived.set()

    def on_batch() -> None:
        nonlocal batches
        batches += 1

    async def client(port: int) -> None:
        ws = await _open(port)
        ws.on_message = sink
        ws.on_batch = on_batch
        await ws.send("go")
        await all_arrived.wait()
        await ws.close()

    with_server(script, client)
    assert got == [b"first", b"frag-1|frag-2|frag-3", b"text message"]
    assert all(isinstance(message, bytes) for message in got)
    assert batches >= 1


@pytest.mark.e2e
def test_on_messages_gets_lists_in_order_with_fragments_and_control_frames_between() -> None:
    batches: list[list[bytes]] = []
    singles: list[bytes] = []
    all_arrived = asyncio.Event()
    expected = [b"a", b"b", b"frag-1|frag-2", b"c", b"d", b"text"]

    async def script(conn: ServerConnection) -> None:
        await conn.recv()  # the client's go-ahead
        await conn.send(b"a")
        await conn.send(b"b")
        await conn.send([b"frag-1|", b"frag-2"])  # one fragmented message
        await conn.ping()
        await conn.send(b"c")
        await conn.send(b"d")
        await conn.send("text")
        await conn.wait_closed()

    def batch_sink(messages: list[bytes]) -> None:
        assert messages  # never an empty list
        batches.append(list(messages))
        if sum(map(len, batches)) == len(expected):
            all_arrived.set()

    async def client(port: int) -> None:
        ws = await _open(port)
        ws.on_message = singles.append  # on_messages takes precedence
        ws.on_messages = batch_sink
        await ws.send("go")
        await all_arrived.wait()
        await ws.close()

    with_server(script, client)
    assert [message for batch in batches for message in batch] == expected
    assert singles == []


@pytest.mark.e2e
def test_send_frames_puts_many_messages_in_one_write() -> None:
    received: list[bytes] = []
    messages = [f"frame {i}".encode() * (i + 1) for i in range(50)]
    writes = 0

    async def script(conn: ServerConnection) -> None:
        async for message in conn:
            assert isinstance(message, bytes)
            received.append(message)
            if len(received) == len(messages):
                await conn.send(b"all here")

    async def client(port: int) -> None:
        nonlocal writes
        ws = await _open(port)
        counting = _CountingTransport(ws.transport)
        ws.transport = counting  # type: ignore[assignment]
        assert ws.send_frames(messages) is True
        writes = counting.writes
        assert await ws.recv() == b"all here"
        await ws.close()

    with_server(script, client)
    assert writes == 1
    assert received == messages


@pytest.mark.e2e
def test_send_frames_refuses_once_closed() -> None:
    async def script(conn: ServerConnection) -> None:
        await conn.wait_closed()

    async def client(port: int) -> None:
        ws = await _open(port)
        await ws.close()
        assert ws.send_frames([b"late"]) is False

    with_server(script, client)


@pytest.mark.e2e
def test_without_a_sink_messages_queue_for_recv() -> None:
    async def script(conn: ServerConnection) -> None:
        await conn.send(b"queued")
        await conn.wait_closed()

    async def client(port: int) -> None:
        ws = await _open(port)
        assert await ws.recv() == b"queued"
        await ws.close()

    with_server(script, client)


def test_proxy_for_follows_the_environment_per_host(monkeypatch: Any) -> None:
    from ecsexec.ssm import transport

    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    transport._proxy_for_host.cache_clear()
    try:
        url = "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s-1?role=x"
        assert proxy_for(url) == "http://proxy.example:3128"
        assert proxy_for("wss://internal.example/v1/data-channel/s-2") is None
        # Looked up once per host: a later change of the environment is not seen.
        monkeypatch.delenv("HTTPS_PROXY")
        assert proxy_for(url.replace("s-1", "s-3")) == "http://proxy.example:3128"
    finally:
        transport._proxy_for_host.cache_clear()


def _server_parse(wire: bytes) -> list[Frame]:
    """What websockets' own server-side parser makes of client bytes."""
    server = Protocol(Side.SERVER, state=State.OPEN, max_size=None)
    server.receive_data(wire)
    return [event for event in server.events_received() if isinstance(event, Frame)]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_client_frames_at_every_length_encoding_parse_back(size: int) -> None:
    message = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frames = _server_parse(encode_client_frames([message]))
    assert [(f.opcode, f.fin, bytes(f.data)) for f in frames] == [(Opcode.BINARY, True, message)]


@given(st.lists(st.binary(max_size=2000), max_size=20))
def test_client_frame_batches_parse_back_in_order(messages: list[bytes]) -> None:
    frames = _server_parse(encode_client_frames(messages))
    assert [bytes(f.data) for f in frames] == messages
    assert all(f.opcode is Opcode.BINARY and f.fin for f in frames)


def test_masking_keys_differ_between_frames() -> None:
    wire = encode_client_frames([b"a" * 10] * 50)
    keys = {wire[i * 16 + 2 : i * 16 + 6] for i in range(50)}  # 2-byte head, key, 10 bytes
    assert len(keys) > 45


_KINDS = {
    "plain": (Opcode.BINARY, True),
    "first-fragment": (Opcode.BINARY, False),
    "text": (Opcode.TEXT, True),
    "ping": (Opcode.PING, True),
    "pong": (Opcode.PONG, True),
}
_frame = st.tuples(
    st.sampled_from(sorted(_KINDS)),
    st.one_of(st.binary(max_size=300), st.sampled_from([b"x" * 125, b"y" * 126, b"z" * 65536])),
)


@given(st.lists(_frame, max_size=12), st.lists(st.integers(min_value=1, max_value=70_000)))
def test_split_server_frames_cuts_any_chunking_of_the_stream(
    frames: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    originals = []
    for kind, data in frames:
        opcode, fin = _KINDS[kind]
        control = opcode in (Opcode.PING, Opcode.PONG)
        originals.append(Frame(opcode, data[:125] if control else data, fin))  # ≤ 125 bytes
    stream = b"".join(f.serialize(mask=False) for f in originals)
    got: list[tuple[bool, bytes]] = []
    partial, pos = b"", 0
    for cut in [*cuts, len(stream)]:
        chunk, pos = stream[pos : pos + cut], pos + cut
        data = partial + chunk
        split, consumed = split_server_frames(data)
        got.extend(split)
        partial = data[consumed:]
        if pos >= len(stream):
            break
    assert partial == b""
    assert len(got) == len(originals)
    for (plain, chunk), original in zip(got, originals, strict=True):
        if original.opcode is Opcode.BINARY and original.fin:
            assert (plain, chunk) == (True, original.data)
        else:
            assert plain is False
            assert _client_parse(chunk) == [original]


def _client_parse(wire: bytes) -> list[Frame]:
    client = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
    client.receive_data(wire)
    return [event for event in client.events_received() if isinstance(event, Frame)]


@pytest.mark.e2e
def test_many_messages_of_mixed_sizes_arrive_whole_and_in_order() -> None:
    sizes = [0, 1, 125, 126, 1024, 1027, 65535, 65536, 70_000] * 30
    messages = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    got: list[bytes] = []
    done = asyncio.Event()

    async def script(conn: ServerConnection) -> None:
        await conn.recv()
        for index, message in enumerate(messages):
            await conn.send(message)
            if index % 50 == 0:
                await conn.ping()
        await conn.wait_closed()

    def sink(data: bytes) -> None:
        got.append(data)
        if len(got) == len(messages):
            done.set()

    async def client(port: int) -> None:
        ws = await _open(port)
        ws.on_message = sink
        await ws.send("go")
        await done.wait()
        await ws.close()

    with_server(script, client)
    assert got == messages

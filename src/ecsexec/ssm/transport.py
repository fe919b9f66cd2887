"""The websocket under a data channel: messages handed straight to a sink, batched writes.

A streaming session receives one 1 KiB frame per agent PTY read and answers each with an
ack (docs/ssm-protocol.md §6), tens of thousands of each per second. Through websockets' own
``recv()`` and ``send()`` every message costs a queue hop, a task wake-up and a ``send``
syscall. :class:`DataChannelConnection` keeps websockets' handshake, proxy, TLS,
keepalive and closing handshake, and changes only the data path:

- complete data messages go from ``data_received`` straight to ``on_message``, or, when
  ``on_messages`` is set, to it as one list per socket read (a call per read, not per
  message); plain binary frames (unfragmented, unmasked, no extension bits: all the
  agent sends) are cut out of the byte stream here, and every other frame goes to
  websockets' own parser;
- ``on_batch`` runs once per socket read, after all of that read's messages;
- :meth:`DataChannelConnection.send_frames` puts a batch of data frames into one
  ``transport.write``, masked with keys drawn from the OS once per batch (websockets
  draws them per frame: a syscall per ack).

No message may exceed :data:`MAX_MESSAGE_BYTES` (a data-channel frame's limit): a frame
header declaring more fails the connection at once (close code 1009), before any of its
payload is buffered, and :attr:`DataChannelConnection.protocol_error` says why. The
session must treat that as the session's failure, not as a drop to resume from.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Callable, Sequence
from typing import Any, Final

from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import Event, State
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

from ecsexec.errors import FrameError
from ecsexec.ssm.frames import MAX_FRAME_BYTES
from ecsexec.ssm.wsframe import binary_frame_header

try:  # websockets' C speedup, as websockets itself imports it
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a build without the extension
    from websockets.utils import apply_mask

__all__ = [
    "MAX_MESSAGE_BYTES",
    "DataChannelConnection",
    "binary_frame_header",
    "encode_client_frames",
    "proxy_for",
]

#: The largest websocket message accepted: one data-channel frame.
MAX_MESSAGE_BYTES: Final = MAX_FRAME_BYTES


def encode_client_frames(messages: Sequence[bytes]) -> bytes:
    """Unfragmented, masked binary websocket frames for ``messages`` (RFC 6455 §5.2, §5.3).

    The masking keys come from ``os.urandom`` as the RFC requires (unpredictable), one
    call for the whole batch.
    """
    keys = os.urandom(4 * len(messages))
    out: list[bytes] = []
    extend = out.extend
    pos = 0
    for message in messages:
        size = len(message)
        key = keys[pos : pos + 4]
        pos += 4
        if 125 < size < 65536:  # an ack: 16-bit length, built here (a call less per frame)
            header = _MASKED_16.pack(_PLAIN_BINARY, _MASK_BIT | 126, size)
        else:
            header = binary_frame_header(size, masked=True)
        extend((header, key, apply_mask(message, key)))
    return b"".join(out)


def proxy_for(url: str) -> str | None:
    """The proxy websockets would pick for ``url`` from the environment, found once per host.

    websockets looks it up on every connect, and ``urllib.request.getproxies()`` decodes
    the whole environment: 0.75 ms of client CPU per session in a 300-node fan-out.
    """
    uri = parse_uri(url)
    return _proxy_for_host(uri.secure, uri.host, uri.port)


@functools.lru_cache(maxsize=256)
def _proxy_for_host(secure: bool, host: str, port: int) -> str | None:
    scheme = "wss" if secure else "ws"
    return get_proxy(parse_uri(f"{scheme}://{host}:{port}/"))


MessageSink = Callable[[bytes], None]
BatchSink = Callable[[list[bytes]], None]

_PLAIN_BINARY: Final = 0x82  # FIN, no RSV bits, opcode 2
_MASK_BIT: Final = 0x80
_MASKED_16: Final = struct.Struct("!BBH")


def split_server_frames(
    buffer: bytes, max_size: int = MAX_MESSAGE_BYTES
) -> tuple[list[tuple[bool, bytes]], int]:
    """Cut the complete websocket frames off the start of ``buffer`` (RFC 6455 §5.2).

    Returns ``(frames, consumed)``. Each frame is ``(True, payload)`` for a plain binary
    frame (FIN, no RSV bits, opcode 2, unmasked) or ``(False, raw)`` with the whole frame
    for any other kind, which the caller hands to websockets. websockets' generator-based
    parser cost 3.5 us per frame; this costs about 1.

    Raises :class:`FrameError` as soon as a header declares more than ``max_size`` bytes;
    :func:`oversized_frame` then says where that header is.
    """
    frames: list[tuple[bool, bytes]] = []
    size = len(buffer)
    pos = 0
    append = frames.append
    short_fit = max_size >= 65535  # any 16-bit length is within the limit
    while size - pos >= 2:
        first = buffer[pos]
        second = buffer[pos + 1]
        if first == _PLAIN_BINARY and second == 126 and short_fit and size - pos >= 4:
            # The agent's 1 KiB frames: plain binary with a 16-bit length.
            end = pos + 4 + ((buffer[pos + 2] << 8) | buffer[pos + 3])
            if end > size:
                break
            append((True, buffer[pos + 4 : end]))
            pos = end
            continue
        length = second & 0x7F
        head = 2
        if length == 126:
            head = 4
            if size - pos < head:
                break
            length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
        elif length == 127:
            head = 10
            if size - pos < head:
                break
            length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
        if length > max_size:
            raise FrameError(
                f"the gateway sent a websocket frame of {length:,} bytes; the limit is "
                f"{max_size:,} bytes per message"
            )
        if second & _MASK_BIT:
            head += 4  # a masked frame from a server is an error websockets will report
        end = pos + head + length
        if end > size:
            break
        if first == _PLAIN_BINARY and not second & _MASK_BIT:
            frames.append((True, buffer[pos + head : end]))
        else:
            frames.append((False, buffer[pos:end]))
        pos = end
    return frames, pos


def oversized_frame(buffer: bytes, max_size: int = MAX_MESSAGE_BYTES) -> tuple[int, int]:
    """Where the header of the first frame above ``max_size`` starts and ends in ``buffer``
    (after :func:`split_server_frames` refused it; its payload is not needed)."""
    pos = 0
    while True:
        second = buffer[pos + 1]
        length = second & 0x7F
        head = 2 + {126: 2, 127: 8}.get(length, 0)
        if length == 126:
            length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
        elif length == 127:
            length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
        if length > max_size:
            return pos, pos + head
        pos += head + (4 if second & _MASK_BIT else 0) + length


class DataChannelConnection(ClientConnection):
    """websockets' client connection with a direct message sink (pass as ``create_connection``).

    Until ``on_message`` or ``on_messages`` is set, messages queue for ``recv()`` as
    usual. ``on_messages``, when set, gets the messages instead of ``on_message``: in
    order, a list per socket read (and a list of one for a message websockets' own parser
    assembled: a fragmented one, or one after a control frame in the same read).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # websockets' own parser (handshake, fragments, control frames) gets the same
        # limit, whatever ``max_size`` the caller passed to connect().
        protocol = self.protocol
        protocol.max_message_size = MAX_MESSAGE_BYTES
        protocol.max_size = MAX_MESSAGE_BYTES  # type: ignore[attr-defined]  # websockets < 15
        self.on_message: MessageSink | None = None
        self.on_messages: BatchSink | None = None
        self.on_batch: Callable[[], None] | None = None
        #: Why the connection failed on what the gateway sent (a size limit), or None.
        self.protocol_error: FrameError | None = None
        self._fragments: list[bytes] = []
        self._partial = b""  # the start of a frame whose end has not arrived yet

    def data_received(self, data: bytes) -> None:
        if self._partial:
            data, self._partial = self._partial + data, b""
        sink = self._sink()
        if sink is None or self.protocol.state is not State.OPEN:
            super().data_received(data)  # the handshake, no sink yet, or closing
        else:
            refused: tuple[FrameError, bytes] | None = None
            try:
                frames, consumed = split_server_frames(data)
            except FrameError as exc:
                start, end = oversized_frame(data)
                frames, consumed = split_server_frames(data[:start])
                refused = (exc, data[start:end])
            self._partial = data[consumed:] if refused is None else b""
            batch_sink = self.on_messages
            if batch_sink is None:
                for plain, chunk in frames:
                    if plain:
                        sink(chunk)
                    else:
                        super().data_received(chunk)  # whole frames: its parser stays aligned
            else:
                batch: list[bytes] = []
                for plain, chunk in frames:
                    if plain:
                        batch.append(chunk)
                        continue
                    if batch:  # what came before goes first
                        batch_sink(batch)
                        batch = []
                    super().data_received(chunk)
                if batch:
                    batch_sink(batch)
            if refused is not None:
                self._refuse(*refused)
        on_batch = self.on_batch
        if on_batch is not None:
            on_batch()

    def _sink(self) -> MessageSink | None:
        """Where one message goes: ``on_message``, or ``on_messages`` as a list of one."""
        if self.on_messages is not None:
            return self._to_batch_sink
        return self.on_message

    def _to_batch_sink(self, message: bytes) -> None:
        batch_sink = self.on_messages
        if batch_sink is not None:
            batch_sink([message])

    def _refuse(self, error: FrameError, header: bytes) -> None:
        """Fail the connection on an oversized frame's header, before its payload arrives.

        websockets' parser, given the header with the same limit, fails the connection
        with close code 1009 (message too big); nothing after it reaches the sink.
        """
        self.protocol_error = error
        self.on_message = None
        self.on_messages = None
        super().data_received(header)
        if self.protocol.state is State.OPEN:  # pragma: no cover - its parser disagreed
            self.transport.abort()

    def eof_received(self) -> None:
        if self._partial:  # let websockets see the cut-off frame and report it
            partial, self._partial = self._partial, b""
            super().data_received(partial)
        super().eof_received()

    def process_event(self, event: Event) -> None:
        sink = self._sink()
        if sink is None or self.response is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake response, or no sink yet
            return
        opcode = event.opcode
        if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
            if event.fin:
                sink(bytes(event.data))
            else:
                self._fragments = [bytes(event.data)]
        elif opcode is Opcode.CONT:
            # The protocol object has already rejected a CONT without a message start.
            self._fragments.append(bytes(event.data))
            if event.fin:
                message, self._fragments = b"".join(self._fragments), []
                sink(message)
        else:
            super().process_event(event)  # ping, pong, close: websockets' own handling

    def send_frames(self, messages: Sequence[bytes]) -> bool:
        """Send each message as one binary frame, all in one write; False if not open.

        Does not wait for the socket to drain: callers bound what they send (acks answer
        received frames; data frames are limited by the channel's unacked window, §6).
        The frames bypass the protocol object, which keeps no state for unfragmented data
        frames.
        """
        if self.protocol.state is not State.OPEN:
            return False
        self.send_data()  # anything websockets has queued first, in order
        self.transport.write(encode_client_frames(messages))
        return True

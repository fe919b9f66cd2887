"""Encode and decode data-channel frames, byte-exact with AWS's serializer.

See docs/ssm-protocol.md §3.

Pure: no sockets, no clock. The caller passes ``created_ms``. A frame larger than
:data:`MAX_FRAME_BYTES`, or one declaring a larger payload, is refused: the agent's
frames carry at most a few KiB, and nothing the peer sends may make us hold more.
"""

from __future__ import annotations

import random
import struct
import uuid
from binascii import hexlify
from collections.abc import Sequence
from enum import IntEnum
from hashlib import sha256
from typing import Final, NamedTuple

from ecsexec.errors import FrameError

HEADER_LENGTH: Final = 116  # §3: HeaderLength is written as the offset of PayloadLength
FRAME_OVERHEAD: Final = 120
MAX_PAYLOAD: Final = 1024  # §6: what we send; received payloads may be larger
#: The largest frame accepted (1 MiB, header included): the agent sends 1 KiB payloads, a
#: handshake a few KiB. The websocket transport refuses larger messages before reading them.
MAX_FRAME_BYTES: Final = 1024 * 1024

# MessageType values (§4).
INPUT_STREAM_DATA: Final = "input_stream_data"
OUTPUT_STREAM_DATA: Final = "output_stream_data"
ACKNOWLEDGE: Final = "acknowledge"
CHANNEL_CLOSED: Final = "channel_closed"
START_PUBLICATION: Final = "start_publication"
PAUSE_PUBLICATION: Final = "pause_publication"
AGENT_SESSION_STATE: Final = "agent_session_state"
STREAM_TYPES: Final = frozenset({INPUT_STREAM_DATA, OUTPUT_STREAM_DATA})

FLAG_SYN: Final = 1
FLAG_FIN: Final = 2
ACK_FLAGS: Final = FLAG_SYN | FLAG_FIN  # §6: acknowledge frames carry flags 3


class PayloadType(IntEnum):
    """PayloadType values (§5)."""

    OUTPUT = 1
    ERROR = 2
    SIZE = 3
    PARAMETER = 4
    HANDSHAKE_REQUEST = 5
    HANDSHAKE_RESPONSE = 6
    HANDSHAKE_COMPLETE = 7
    ENC_CHALLENGE_REQUEST = 8
    ENC_CHALLENGE_RESPONSE = 9
    FLAG = 10
    STDERR = 11
    EXIT_CODE = 12


# The whole 120-byte header in one struct: HL, MessageType, SchemaVersion, CreatedDate,
# Seq, Flags, MessageId's two halves (swapped on the wire), PayloadDigest, PayloadType,
# PayloadLength. One pack or unpack per frame instead of three, and no join.
_HEADER = struct.Struct(">I32sIQqQ8s8s32sII")
_TYPE_NAMES: dict[bytes, str] = {}  # raw 32-byte MessageType field -> its name
_TYPE_NAMES_MAX: Final = 64  # a peer sending made-up types cannot grow it further
_EMPTY_DIGEST: Final = sha256(b"").digest()
_PADDED_TYPES: dict[str, bytes] = {}
# §3: start/pause_publication are exempt from the HL / type / CreatedDate checks.
_PUBLICATION_TYPES: Final = frozenset({START_PUBLICATION, PAUSE_PUBLICATION})


_getrandbits = random.getrandbits
_V4_CLEAR: Final = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET: Final = (0x4000 << 64) | (0x8000 << 48)


def random_message_id() -> bytes:
    """The 16 bytes of a fresh version-4 UUID, for a frame's MessageId.

    MessageIds must be unique, not secret, so a fast PRNG serves (``random`` reseeds in a
    forked child). ``uuid.uuid4()`` costs a getrandom syscall per frame, about a tenth of
    the client's per-frame budget when streaming.
    """
    return ((_getrandbits(128) & _V4_CLEAR) | _V4_SET).to_bytes(16, "big")


# The same bits in a MessageId as it lies on the wire (halves swapped, §3): UUID byte 8
# (variant) is wire byte 0, UUID byte 6 (version) is wire byte 14.
_WIRE_V4_CLEAR: Final = bytes([0x3F, *[0xFF] * 13, 0x0F, 0xFF])
_WIRE_V4_SET: Final = bytes([0x80, *[0x00] * 13, 0x40, 0x00])


def random_wire_ids(count: int) -> bytes:
    """``count`` fresh version-4 MessageIds as they lie on the wire, 16 bytes each.

    One draw and three big-integer operations for the lot: an ack per received frame
    made :func:`random_message_id`'s per-call cost show up when streaming.
    """
    if count <= 0:
        return b""
    clear = int.from_bytes(_WIRE_V4_CLEAR * count, "big")
    set_bits = int.from_bytes(_WIRE_V4_SET * count, "big")
    return ((_getrandbits(128 * count) & clear) | set_bits).to_bytes(16 * count, "big")


def uuid_text(raw: bytes) -> str:
    """Canonical text form of 16 UUID bytes, without building a ``uuid.UUID``."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Frame(NamedTuple):
    """One decoded frame. ``payload`` is exactly what was on the wire (ciphertext if encrypted).

    ``message_id_bytes`` is the MessageId in UUID byte order (halves already swapped back);
    the ``message_id`` and ``message_id_text`` views are built only when asked for. A named
    tuple, not a frozen dataclass: one is built per received frame, and a frozen
    dataclass's ``__init__`` cost three times as much.
    """

    message_type: str
    sequence_number: int
    flags: int
    message_id_bytes: bytes
    payload_type: int
    payload: bytes
    created_date: int
    schema_version: int = 1
    header_length: int = HEADER_LENGTH
    payload_length: int = -1  # as declared; -1 when built locally

    @property
    def message_id(self) -> uuid.UUID:
        return uuid.UUID(bytes=self.message_id_bytes)

    @property
    def message_id_text(self) -> str:
        return uuid_text(self.message_id_bytes)

    @property
    def is_stream(self) -> bool:
        return self.message_type in STREAM_TYPES


def _padded(message_type: str) -> bytes:
    padded = _PADDED_TYPES.get(message_type)
    if padded is None:
        raw = message_type.encode("ascii")
        if len(raw) > 32:
            raise ValueError(f"message type longer than 32 bytes: {message_type!r}")
        padded = raw.ljust(32, b" ")  # §3: padded with spaces, not NULs
        _PADDED_TYPES[message_type] = padded
    return padded


def encode_frame(
    message_type: str,
    payload: bytes,
    *,
    sequence_number: int = 0,
    flags: int = 0,
    payload_type: int = 0,
    message_id: uuid.UUID | bytes,
    created_ms: int,
    schema_version: int = 1,
) -> bytes:
    """Serialize one frame exactly as the Go serializer does.

    ``message_id`` is a UUID or its 16 bytes (as from :func:`random_message_id`).
    """
    mid = message_id if isinstance(message_id, bytes) else message_id.bytes
    return (
        _HEADER.pack(
            HEADER_LENGTH,
            _padded(message_type),
            schema_version,
            created_ms,
            sequence_number,
            flags,
            mid[8:],  # §3: MessageId halves are swapped on the wire
            mid[:8],
            sha256(payload).digest() if payload else _EMPTY_DIGEST,
            payload_type,
            len(payload),
        )
        + payload
    )


# An acknowledge frame's header with the MessageId as one wire-order field.
_ACK_HEADER = struct.Struct(">I32sIQqQ16s32sII")
# payloads.build_ack's JSON (§6: compact, keys in this order) with the acked MessageId
# filled from its hex digits; the %s/%d holes are filled per frame.
_ACK_PAYLOAD: Final = (
    b'{"AcknowledgedMessageType":"%s","AcknowledgedMessageId":"%s-%s-%s-%s-%s",'
    b'"AcknowledgedMessageSequenceNumber":%d,"IsSequentialMessage":true}'
)


def encode_acks(
    message_type: str,
    acked: Sequence[tuple[bytes, int]],
    *,
    created_ms: int,
    message_ids: Sequence[bytes] | None = None,
) -> list[bytes]:
    """Acknowledge frames (§6) for frames of ``message_type``, one per ``acked`` entry.

    Each entry is ``(wire_id, sequence_number)`` of a received frame, ``wire_id`` being the
    16 bytes of its MessageId field as they lie on the wire (frame bytes 64-80). The result
    is byte for byte what :func:`encode_frame` makes of ``payloads.build_ack`` with the
    same MessageIds: ``message_ids`` in UUID byte order, or fresh random ones. Building a
    socket read's acks in one call saves a third of the per-ack cost.
    """
    count = len(acked)
    if message_ids is None:
        wire_ids = random_wire_ids(count)
    else:
        if len(message_ids) != count:
            raise ValueError(f"{count} acks need {count} message ids, got {len(message_ids)}")
        wire_ids = b"".join(mid[8:] + mid[:8] for mid in message_ids)
    # The acked type goes into the template once (a literal % doubled), not per frame.
    mtype = message_type.encode("ascii").replace(b"%", b"%%")
    template = _ACK_PAYLOAD.replace(b'"%s"', b'"' + mtype + b'"', 1)
    pack = _ACK_HEADER.pack
    digest_of = sha256
    hex_of = hexlify
    ack_type = _padded(ACKNOWLEDGE)
    frames: list[bytes] = []
    append = frames.append
    pos = 0
    for wire_id, seq in acked:
        # Wire order is low half then high half: the text starts at hex digit 16.
        hx = hex_of(wire_id)
        payload = template % (hx[16:24], hx[24:28], hx[28:], hx[:4], hx[4:16], seq)
        append(
            pack(
                HEADER_LENGTH,
                ack_type,
                1,
                created_ms,
                0,
                ACK_FLAGS,
                wire_ids[pos : pos + 16],
                digest_of(payload).digest(),
                0,
                len(payload),
            )
            + payload
        )
        pos += 16
    return frames


def _message_type_name(raw: bytes, verify: bool) -> str:
    """The MessageType field's text: trailing spaces or NULs dropped (§3)."""
    name = _TYPE_NAMES.get(raw)
    if name is not None:
        return name
    try:
        name = raw.strip(b"\0").strip().decode("ascii")
    except UnicodeDecodeError as exc:
        if verify:
            raise FrameError("MessageType is not ASCII") from exc
        return raw.strip(b"\0").strip().decode("ascii", "replace")
    if len(_TYPE_NAMES) < _TYPE_NAMES_MAX:
        _TYPE_NAMES[raw] = name
    return name


def decode_frame(data: bytes, *, verify: bool = True) -> Frame:
    """Parse and validate one frame; raise :class:`FrameError` if §3 says to drop it.

    ``verify=False`` checks only the structure, as the SSM agent does: it never checks
    digests, header length, type or date (§3), and the sandbox's agent must not either.
    """
    size = len(data)
    if size < FRAME_OVERHEAD:
        raise FrameError(f"frame too short: {size} bytes, need at least {FRAME_OVERHEAD}")
    if size > MAX_FRAME_BYTES:
        raise FrameError(
            f"frame of {size:,} bytes exceeds the limit of {MAX_FRAME_BYTES:,} bytes per frame"
        )
    (
        header_length,
        raw_type,
        schema_version,
        created,
        seq,
        flags,
        mid_low,
        mid_high,
        digest,
        payload_type,
        payload_length,
    ) = _HEADER.unpack_from(data)
    if header_length + 4 > size:
        raise FrameError(f"HeaderLength {header_length} points past the end of a {size}-byte frame")
    message_type = _message_type_name(raw_type, verify)
    if verify and message_type not in _PUBLICATION_TYPES:
        if header_length == 0:
            raise FrameError("HeaderLength is 0")
        if not message_type:
            raise FrameError("MessageType is empty")
        if created == 0:
            raise FrameError(f"{message_type} frame has CreatedDate 0")
    if payload_length > MAX_FRAME_BYTES:
        raise FrameError(
            f"{message_type} frame declares a payload of {payload_length:,} bytes; the limit "
            f"is {MAX_FRAME_BYTES:,} bytes per frame"
        )
    payload = data[header_length + 4 :]
    # §3 digest rule: checked only when PayloadLength is non-zero.
    if verify and payload_length and sha256(payload).digest() != digest:
        raise FrameError(f"{message_type} seq {seq}: payload digest mismatch")
    return Frame(
        message_type,
        seq,
        flags,
        mid_high + mid_low,  # message_id_bytes
        payload_type,
        bytes(payload),
        created,
        schema_version,
        header_length,
        payload_length,
    )

"""Frame codec: golden vectors, trace frames, round trips and fuzzed garbage."""

from __future__ import annotations

import contextlib
import json
import uuid
from hashlib import sha256

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecsexec.errors import FrameError
from ecsexec.ssm import payloads
from ecsexec.ssm.frames import (
    FRAME_OVERHEAD,
    PAUSE_PUBLICATION,
    decode_frame,
    encode_acks,
    encode_frame,
    random_message_id,
    random_wire_ids,
    uuid_text,
)
from tests.spec_data import TRACE_NAMES, TRACES_DIR, golden_frames, trace


def test_recorded_data_is_all_there() -> None:
    """tests/data/ssm holds the five golden frames and exactly the traces the tests name."""
    assert [e["name"] for e in golden_frames()] == [
        "input_output_payload",
        "input_size",
        "output_seq0_syn",
        "acknowledge",
        "flag_terminate_session",
    ]
    assert sorted(p.name for p in TRACES_DIR.iterdir()) == sorted(TRACE_NAMES)


@pytest.mark.parametrize("entry", golden_frames(), ids=lambda e: e["name"])
def test_golden_frame_encodes_byte_exact(entry: dict) -> None:
    frame = encode_frame(
        entry["message_type"],
        bytes.fromhex(entry["payload_hex"]),
        sequence_number=entry["sequence_number"],
        flags=entry["flags"],
        payload_type=entry["payload_type"],
        message_id=uuid.UUID(entry["message_id"]),
        created_ms=entry["created_date"],
        schema_version=entry["schema_version"],
    )
    assert frame.hex() == entry["frame_hex"]


@pytest.mark.parametrize("entry", golden_frames(), ids=lambda e: e["name"])
def test_golden_frame_decodes_every_field(entry: dict) -> None:
    raw = bytes.fromhex(entry["frame_hex"])
    frame = decode_frame(raw)
    assert frame.message_type == entry["message_type"]
    assert frame.schema_version == entry["schema_version"]
    assert frame.created_date == entry["created_date"]
    assert frame.sequence_number == entry["sequence_number"]
    assert frame.flags == entry["flags"]
    assert frame.message_id == uuid.UUID(entry["message_id"])
    assert frame.payload_type == entry["payload_type"]
    assert frame.payload.hex() == entry["payload_hex"]
    assert len(raw) == FRAME_OVERHEAD + frame.payload_length
    assert raw[80:112] == sha256(frame.payload).digest()


def test_message_id_halves_are_swapped_on_the_wire() -> None:
    mid = uuid.UUID("dd01e56b-ff48-483e-a508-b5f073f31b16")
    raw = encode_frame("input_stream_data", b"x", message_id=mid, created_ms=1)
    assert raw[64:80].hex() == "a508b5f073f31b16dd01e56bff48483e"


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_every_trace_frame_decodes_with_valid_digest(name: str) -> None:
    frames = [e for e in trace(name) if "hex" in e]
    assert frames
    for event in frames:
        raw = bytes.fromhex(event["hex"])
        frame = decode_frame(raw)
        assert frame.header_length == 116
        assert len(raw) == FRAME_OVERHEAD + frame.payload_length
        if "seq" in event:
            assert frame.sequence_number == event["seq"]
            assert str(frame.message_id) == event["mid"]


@settings(max_examples=200, deadline=None)
@given(
    mtype=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=32
    ),
    payload=st.binary(max_size=2048),
    seq=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    flags=st.integers(min_value=0, max_value=2**64 - 1),
    ptype=st.integers(min_value=0, max_value=2**32 - 1),
    created=st.integers(min_value=1, max_value=2**64 - 1),
    mid=st.uuids(),
)
def test_round_trip(
    mtype: str, payload: bytes, seq: int, flags: int, ptype: int, created: int, mid: uuid.UUID
) -> None:
    raw = encode_frame(
        mtype,
        payload,
        sequence_number=seq,
        flags=flags,
        payload_type=ptype,
        message_id=mid,
        created_ms=created,
    )
    frame = decode_frame(raw)
    assert (frame.message_type, frame.payload, frame.sequence_number, frame.flags) == (
        mtype,
        payload,
        seq,
        flags,
    )
    assert (frame.payload_type, frame.created_date, frame.message_id) == (ptype, created, mid)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_raises_only_frame_error(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        decode_frame(data)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_corrupted_frames_raise_only_frame_error(position: int, flip: int) -> None:
    raw = bytearray(
        encode_frame(
            "output_stream_data",
            b"hello world",
            sequence_number=3,
            payload_type=1,
            message_id=uuid.uuid4(),
            created_ms=5,
        )
    )
    raw[position % len(raw)] ^= flip
    try:
        frame = decode_frame(bytes(raw))
    except FrameError:
        return
    # If it still decodes, the payload it yields is exactly what the digest covers.
    assert sha256(frame.payload).digest() == bytes(raw)[80:112] or frame.payload_length == 0


def test_bad_digest_is_rejected() -> None:
    raw = bytearray(
        encode_frame("output_stream_data", b"abc", message_id=uuid.uuid4(), created_ms=1)
    )
    raw[-1] ^= 1
    with pytest.raises(FrameError, match="digest"):
        decode_frame(bytes(raw))


def test_short_and_inconsistent_frames_are_rejected() -> None:
    with pytest.raises(FrameError, match="too short"):
        decode_frame(b"\0" * 119)
    raw = bytearray(encode_frame("acknowledge", b"{}", message_id=uuid.uuid4(), created_ms=1))
    raw[0:4] = (500).to_bytes(4, "big")
    with pytest.raises(FrameError, match="HeaderLength"):
        decode_frame(bytes(raw))


def test_zero_created_date_rejected_except_for_publication_frames() -> None:
    with pytest.raises(FrameError, match="CreatedDate"):
        decode_frame(encode_frame("acknowledge", b"{}", message_id=uuid.uuid4(), created_ms=0))
    frame = decode_frame(
        encode_frame(PAUSE_PUBLICATION, b"", message_id=uuid.uuid4(), created_ms=0)
    )
    assert frame.message_type == PAUSE_PUBLICATION


def test_empty_payload_uses_digest_of_empty_bytes() -> None:
    raw = encode_frame("acknowledge", b"", message_id=uuid.uuid4(), created_ms=1)
    assert raw[80:112] == sha256(b"").digest()


def test_oversized_received_payload_is_accepted() -> None:
    payload = b"x" * 1026  # the real agent was measured sending 1026 bytes
    frame = decode_frame(
        encode_frame("output_stream_data", payload, message_id=uuid.uuid4(), created_ms=1)
    )
    assert frame.payload == payload


def test_structure_only_decoding_skips_digest_and_header_checks() -> None:
    """The agent never checks digests (§3); the sandbox's agent decodes with verify=False."""
    raw = bytearray(
        encode_frame("input_stream_data", b"abc", message_id=uuid.uuid4(), created_ms=0)
    )
    raw[-1] ^= 1
    with pytest.raises(FrameError):
        decode_frame(bytes(raw))
    frame = decode_frame(bytes(raw), verify=False)
    assert frame.payload == b"abb" and frame.created_date == 0
    with pytest.raises(FrameError, match="too short"):
        decode_frame(b"\0" * 10, verify=False)


def test_random_message_ids_are_distinct_version_4_uuids() -> None:
    ids = [random_message_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for raw in ids[:100]:
        parsed = uuid.UUID(bytes=raw)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)


@given(st.binary(min_size=16, max_size=16))
def test_uuid_text_matches_the_uuid_module(raw: bytes) -> None:
    assert uuid_text(raw) == str(uuid.UUID(bytes=raw))


@given(st.binary(min_size=16, max_size=16))
def test_raw_and_uuid_message_ids_encode_the_same(raw: bytes) -> None:
    as_uuid = encode_frame("acknowledge", b"{}", message_id=uuid.UUID(bytes=raw), created_ms=1)
    as_bytes = encode_frame("acknowledge", b"{}", message_id=raw, created_ms=1)
    assert as_uuid == as_bytes
    frame = decode_frame(as_bytes)
    assert frame.message_id == uuid.UUID(bytes=raw)
    assert frame.message_id_text == str(uuid.UUID(bytes=raw))


def _acked_of(ack_payload: bytes) -> tuple[str, bytes, int]:
    """(acked type, acked MessageId as it lies on the wire, acked seq) of an ack payload."""
    obj = json.loads(ack_payload)
    acked = uuid.UUID(obj["AcknowledgedMessageId"]).bytes
    return (
        obj["AcknowledgedMessageType"],
        acked[8:] + acked[:8],
        obj["AcknowledgedMessageSequenceNumber"],
    )


def test_encode_acks_rebuilds_the_golden_acknowledge_byte_exact() -> None:
    entry = next(e for e in golden_frames() if e["name"] == "acknowledge")
    acked_type, wire_id, seq = _acked_of(bytes.fromhex(entry["payload_hex"]))
    [frame] = encode_acks(
        acked_type,
        [(wire_id, seq)],
        created_ms=entry["created_date"],
        message_ids=[uuid.UUID(entry["message_id"]).bytes],
    )
    assert frame.hex() == entry["frame_hex"]


@settings(max_examples=50, deadline=None)
@given(
    acked=st.lists(
        st.tuples(st.binary(min_size=16, max_size=16), st.integers(0, 2**63 - 1)), max_size=20
    ),
    created=st.integers(1, 2**63 - 1),
    message_type=st.sampled_from(["output_stream_data", "input_stream_data", "odd%s_%d_type"]),
)
def test_encode_acks_equals_encode_frame_of_build_ack(
    acked: list[tuple[bytes, int]], created: int, message_type: str
) -> None:
    ids = [uuid.uuid4().bytes for _ in acked]
    expected = [
        encode_frame(
            "acknowledge",
            payloads.build_ack(message_type, uuid_text(wire[8:] + wire[:8]), seq),
            flags=3,
            message_id=mid,
            created_ms=created,
        )
        for (wire, seq), mid in zip(acked, ids, strict=True)
    ]
    assert encode_acks(message_type, acked, created_ms=created, message_ids=ids) == expected


def test_encode_acks_draws_fresh_version_4_ids_when_none_are_given() -> None:
    acked = [(bytes(range(16)), seq) for seq in range(300)]
    frames = encode_acks("output_stream_data", acked, created_ms=5)
    ids = {decode_frame(frame).message_id for frame in frames}
    assert len(ids) == 300
    assert all(mid.version == 4 and mid.variant == uuid.RFC_4122 for mid in ids)
    for frame, (_, seq) in zip(frames, acked, strict=True):
        assert _acked_of(decode_frame(frame).payload)[2] == seq


def test_encode_acks_refuses_a_wrong_number_of_ids() -> None:
    with pytest.raises(ValueError, match="2 acks need 2 message ids, got 1"):
        encode_acks(
            "output_stream_data",
            [(bytes(16), 0), (bytes(16), 1)],
            created_ms=1,
            message_ids=[bytes(16)],
        )


@pytest.mark.parametrize("count", [0, 1, 7, 256])
def test_random_wire_ids_are_version_4_uuids_with_halves_swapped(count: int) -> None:
    raw = random_wire_ids(count)
    assert len(raw) == 16 * count
    ids = [uuid.UUID(bytes=raw[i + 8 : i + 16] + raw[i : i + 8]) for i in range(0, len(raw), 16)]
    assert all(mid.version == 4 and mid.variant == uuid.RFC_4122 for mid in ids)
    assert len(set(ids)) == count

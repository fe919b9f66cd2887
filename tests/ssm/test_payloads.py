"""Payload builders and parsers, checked against every recorded payload."""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecsexec.errors import ProtocolError
from ecsexec.ssm import payloads
from ecsexec.ssm.frames import decode_frame
from tests.spec_data import TRACE_NAMES, trace


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_every_recorded_ack_is_regenerated_byte_for_byte(name: str) -> None:
    """tests/data/README.md: every acknowledge payload, both sides, from the acked frame."""
    frames = [decode_frame(bytes.fromhex(e["hex"])) for e in trace(name) if "hex" in e]
    by_seq: dict[tuple[str, int], list] = {}
    for f in frames:
        if f.message_type in ("input_stream_data", "output_stream_data"):
            by_seq.setdefault((f.message_type, f.sequence_number), []).append(f)
    acks = [f for f in frames if f.message_type == "acknowledge"]
    assert acks
    for ack in acks:
        parsed = payloads.parse_ack(ack.payload)
        acked = by_seq[(parsed.message_type, parsed.sequence_number)][0]
        assert ack.flags == 3
        assert ack.sequence_number == 0
        assert ack.payload_type == 0
        assert (
            payloads.build_ack(acked.message_type, acked.message_id, acked.sequence_number)
            == ack.payload
        )


def test_open_frame_has_exact_keys_in_order() -> None:
    text = payloads.open_data_channel("tok", client_id="c", request_id="r")
    assert text == (
        '{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"tok",'
        '"ClientId":"c","ClientVersion":"1.2.677.0"}'
    )


def test_size_payload_is_compact_cols_first() -> None:
    assert payloads.build_size(80, 24) == b'{"cols":80,"rows":24}'
    assert payloads.parse_size(b'{"cols": 300, "rows": 100}') == (300, 100)


def test_handshake_response_matches_go_plugin_bytes() -> None:
    recorded = next(
        e for e in trace("noninteractive_separate_handshake_exitcode.jsonl") if e.get("ptype") == 6
    )
    built = payloads.build_handshake_response(
        [payloads.ProcessedAction("SessionType", payloads.ACTION_SUCCESS)],
        client_version="1.2.0.0",
    )
    assert built == decode_frame(bytes.fromhex(recorded["hex"])).payload


def test_handshake_request_parses_kms_action() -> None:
    raw = payloads.build_handshake_request(
        "3.3.0.0",
        [
            payloads.ClientAction(
                "SessionType", {"SessionType": "InteractiveCommands", "Properties": None}
            ),
            payloads.ClientAction("KMSEncryption", {"KMSKeyId": "k", "Challenge": "Y2g="}),
        ],
    )
    req = payloads.parse_handshake_request(raw)
    assert req.session_type == "InteractiveCommands"
    assert req.kms is not None
    assert req.kms.parameters["KMSKeyId"] == "k"


def test_channel_closed_parsing_is_lenient() -> None:
    info = payloads.parse_channel_closed(b'{"SessionId": "s", "Output": "idle timeout"}')
    assert (info.session_id, info.output) == ("s", "idle timeout")
    assert payloads.parse_channel_closed(b"not json").output == "not json"
    assert payloads.parse_channel_closed(b"").output == ""


def test_exit_code_payload() -> None:
    assert payloads.parse_exit_code(b"EXIT_CODE: 7") == 7
    assert payloads.parse_exit_code(b"garbage") is None


def test_bad_ack_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        payloads.parse_ack(b'{"AcknowledgedMessageSequenceNumber": "x"}')


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_raise_only_protocol_error(data: bytes) -> None:
    for parse in (
        payloads.parse_ack,
        payloads.parse_size,
        payloads.parse_handshake_request,
        payloads.parse_handshake_complete,
        payloads.parse_challenge,
        payloads.parse_handshake_response,
        payloads.parse_agent_session_state,
    ):
        with contextlib.suppress(ProtocolError):
            parse(data)
    payloads.parse_channel_closed(data)
    payloads.parse_exit_code(data)


@settings(max_examples=100, deadline=None)
@given(mid=st.uuids(), seq=st.integers(min_value=0, max_value=2**63 - 1))
def test_ack_round_trip(mid: uuid.UUID, seq: int) -> None:
    raw = payloads.build_ack("output_stream_data", mid, seq)
    assert json.loads(raw)["AcknowledgedMessageSequenceNumber"] == seq
    assert payloads.parse_ack(raw) == payloads.Ack("output_stream_data", mid, seq)

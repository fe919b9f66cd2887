"""Replay the recorded sessions through the client state machine (tests/data/README.md)."""

from __future__ import annotations

import pytest

from ecsexec.ssm.channel import (
    ChannelClosed,
    DataChannel,
    ExitCodeReceived,
    HandshakeCompleted,
    OutputReceived,
    StderrReceived,
)
from ecsexec.ssm.frames import decode_frame
from tests.spec_data import TRACE_NAMES, trace


def received_by_client(events: list[dict]) -> list[bytes]:
    """Frames that actually reached the client: agent frames not DROPPED, plus MGS frames."""
    out: list[bytes] = []
    for i, event in enumerate(events):
        if event["ev"] == "mgs->client":
            out.append(bytes.fromhex(event["hex"]))
        elif event["ev"] == "agent->" and event.get("mt") != "agent_session_state":
            nxt = events[i + 1] if i + 1 < len(events) else {}
            if nxt.get("ev") == "DROPPED":
                continue
            out.append(bytes.fromhex(event["hex"]))
    return out


def recorded_client_acks(events: list[dict]) -> list[bytes]:
    return [
        decode_frame(bytes.fromhex(e["hex"])).payload
        for e in events
        if e["ev"] == "client->" and e.get("mt") == "acknowledge"
    ]


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_replay_reproduces_acks_and_output(name: str) -> None:
    events = trace(name)
    channel = DataChannel(
        session_id=events[0]["sid"], now=0.0, epoch_ms=1, client_version="1.2.0.0"
    )
    our_acks: list[bytes] = []
    output = bytearray()
    closed: list[ChannelClosed] = []
    for raw in received_by_client(events):
        channel.receive_frame(raw, now=0.5)
        for sent in channel.data_to_send():
            frame = decode_frame(sent)
            if frame.message_type == "acknowledge":
                our_acks.append(frame.payload)
        for event in channel.events_received():
            if isinstance(event, OutputReceived):
                output += event.data
            elif isinstance(event, ChannelClosed):
                closed.append(event)
    assert our_acks == recorded_client_acks(events)
    # Each seq's payload once, in seq order.
    by_seq: dict[int, bytes] = {}
    for e in events:
        if e["ev"] == "agent->" and e.get("mt") == "output_stream_data" and e["ptype"] == 1:
            by_seq.setdefault(e["seq"], decode_frame(bytes.fromhex(e["hex"])).payload)
    expected = b"".join(by_seq[s] for s in sorted(by_seq))
    assert bytes(output) == expected
    assert len(closed) == 1
    assert not closed[0].truncated
    assert channel.closed


def test_drop_retransmit_trace_output_is_exact() -> None:
    channel = DataChannel(session_id="s", now=0.0, epoch_ms=1)
    output = bytearray()
    for raw in received_by_client(trace("py_client_drop_retransmit.jsonl")):
        channel.receive_frame(raw, now=0.0)
        output += b"".join(
            e.data for e in channel.events_received() if isinstance(e, OutputReceived)
        )
    assert bytes(output) == "".join(f"{i}\r\n" for i in range(1, 3001)).encode()
    assert channel.stats.duplicates == 1  # the resent seq 0 was re-acked, not redelivered


def test_handshake_trace_answers_and_surfaces_stderr_and_exit_code() -> None:
    events = trace("noninteractive_separate_handshake_exitcode.jsonl")
    channel = DataChannel(session_id="s", now=0.0, epoch_ms=1, client_version="1.2.0.0")
    seen = []
    sent_payloads = []
    for raw in received_by_client(events):
        channel.receive_frame(raw, now=0.0)
        seen += channel.events_received()
        sent_payloads += [decode_frame(f) for f in channel.data_to_send()]
    response = [f for f in sent_payloads if f.message_type == "input_stream_data"]
    recorded = next(e for e in events if e["ev"] == "client->" and e.get("ptype") == 6)
    assert response[0].payload == decode_frame(bytes.fromhex(recorded["hex"])).payload
    assert response[0].sequence_number == 0
    assert response[0].payload_type == 6
    complete = [e for e in seen if isinstance(e, HandshakeCompleted)]
    assert complete
    assert "update" in complete[0].customer_message.lower()
    assert [e.data for e in seen if isinstance(e, StderrReceived)] == [b"err1\n"]
    assert [e.exit_code for e in seen if isinstance(e, ExitCodeReceived)] == [7]

"""DataChannel state machine: ordering, acks, retransmission, gate, handshake, close."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecsexec.errors import ProtocolError
from ecsexec.ssm import payloads
from ecsexec.ssm.channel import (
    AckStalled,
    ChannelClosed,
    DataChannel,
    HandshakeCompleted,
    HandshakeRequested,
    InputGateOpened,
    OutputReceived,
    ProtocolWarning,
)
from ecsexec.ssm.crypto import DataKey
from ecsexec.ssm.frames import decode_frame, encode_frame
from tests.ssm.scripted_agent import LossyLink, ScriptedAgent


def out_frame(seq: int, data: bytes, ptype: int = 1) -> bytes:
    return encode_frame(
        "output_stream_data",
        data,
        sequence_number=seq,
        flags=1 if seq == 0 else 0,
        payload_type=ptype,
        message_id=uuid.uuid4(),
        created_ms=1,
    )


def closed_frame(output: str = "") -> bytes:
    return encode_frame(
        "channel_closed",
        payloads.build_channel_closed(
            message_id="m", created_date="d", destination_id="t", session_id="s", output=output
        ),
        message_id=uuid.uuid4(),
        created_ms=1,
    )


def ack_for(raw: bytes) -> bytes:
    f = decode_frame(raw)
    return encode_frame(
        "acknowledge",
        payloads.build_ack(f.message_type, f.message_id, f.sequence_number),
        flags=3,
        message_id=uuid.uuid4(),
        created_ms=1,
    )


def sent(channel: DataChannel) -> list:
    return [decode_frame(raw) for raw in channel.data_to_send()]


def new_channel(**kw: object) -> DataChannel:
    return DataChannel(session_id="s", now=0.0, epoch_ms=1_700_000_000_000, **kw)  # type: ignore[arg-type]


def output_of(events: list) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, OutputReceived))


def test_out_of_order_frames_are_buffered_acked_and_delivered_in_order() -> None:
    ch = new_channel()
    ch.receive_frame(out_frame(1, b"b"), 0.0)
    ch.receive_frame(out_frame(2, b"c"), 0.0)
    assert [f.message_type for f in sent(ch)] == ["acknowledge", "acknowledge"]
    assert output_of(ch.events_received()) == b""
    assert ch.has_gap
    ch.receive_frame(out_frame(0, b"a"), 0.0)
    assert output_of(ch.events_received()) == b"abc"
    assert not ch.has_gap
    assert ch.expected_sequence == 3


def test_duplicates_are_reacked_and_not_redelivered() -> None:
    ch = new_channel()
    first = out_frame(0, b"a")
    ch.receive_frame(first, 0.0)
    ch.receive_frame(first, 0.1)
    acks = [payloads.parse_ack(f.payload) for f in sent(ch)]
    assert [a.sequence_number for a in acks] == [0, 0]
    assert output_of(ch.events_received()) == b"a"


def test_full_reorder_buffer_drops_without_ack() -> None:
    ch = new_channel(reorder_capacity=1)
    ch.receive_frame(out_frame(1, b"b"), 0.0)
    ch.receive_frame(out_frame(2, b"c"), 0.0)
    assert len(sent(ch)) == 1


def test_invalid_frame_is_dropped_without_ack_and_warned() -> None:
    ch = new_channel()
    raw = bytearray(out_frame(0, b"a"))
    raw[-1] ^= 0xFF
    ch.receive_frame(bytes(raw), 0.0)
    assert sent(ch) == []
    assert any(isinstance(e, ProtocolWarning) for e in ch.events_received())


def test_input_waits_for_gate_then_goes_out_in_chunks_of_1024() -> None:
    ch = new_channel()
    ch.send_size(80, 24, 0.0)
    ch.send_input(b"x" * 2500, 0.0)
    assert sent(ch) == []  # gate closed: queued, not dropped (§7)
    ch.tick(1.0)
    assert sent(ch) == []
    ch.tick(2.0)  # §7 rule 4: 2 s of silence means no handshake
    frames = sent(ch)
    assert [(f.sequence_number, f.payload_type, len(f.payload)) for f in frames] == [
        (0, 3, 21),
        (1, 1, 1024),
        (2, 1, 1024),
        (3, 1, 452),
    ]
    assert any(isinstance(e, InputGateOpened) for e in ch.events_received())


def test_first_output_opens_the_gate_immediately() -> None:
    ch = new_channel()
    ch.send_input(b"hello\n", 0.0)
    ch.receive_frame(out_frame(0, b"$ "), 0.3)
    frames = sent(ch)
    assert [f.message_type for f in frames] == ["acknowledge", "input_stream_data"]
    assert frames[1].payload == b"hello\n"


def test_open_input_gate_from_outside() -> None:
    ch = new_channel()
    ch.send_input(b"y", 0.0)
    ch.open_input_gate("begin marker", 0.1)
    assert [f.payload for f in sent(ch)] == [b"y"]


def test_retransmits_only_the_oldest_after_rto_on_the_tick() -> None:
    ch = new_channel()
    ch.open_input_gate("test", 0.0)
    ch.send_input(b"a", 0.0)
    ch.send_input(b"b", 0.0)
    original = ch.data_to_send()
    ch.tick(0.1)
    assert ch.data_to_send() == []  # 100 ms < RTO 200 ms
    ch.tick(0.2)
    assert ch.data_to_send() == []  # not strictly greater than RTO yet
    ch.tick(0.3)
    assert ch.data_to_send() == [original[0]]  # identical bytes, oldest only
    ch.receive_frame(ack_for(original[0]), 0.35)
    ch.tick(0.4)
    assert ch.data_to_send() == [original[1]]
    assert ch.stats.retransmissions == 2


def test_rtt_samples_follow_rfc6298_and_karn_skips_resent_frames() -> None:
    ch = new_channel()
    ch.open_input_gate("test", 0.0)
    srtt, rttvar, now = 0.1, 0.0, 0.0
    for _ in range(20):
        ch.send_input(b"k", now)
        raw = ch.data_to_send()[0]
        ch.receive_frame(ack_for(raw), now + 0.005)
        rttvar = 0.75 * rttvar + 0.25 * abs(srtt - 0.005)
        srtt = 0.875 * srtt + 0.125 * 0.005
        now += 0.01
    expected = min(1.0, srtt + max(0.010, 4 * rttvar))
    assert ch._rtt.rto == pytest.approx(expected)
    assert ch.next_timer() is None  # nothing unacked: no timer work
    # A frame that was resent gives no RTT sample when its ack arrives (Karn).
    ch.send_input(b"slow", now)
    raw = ch.data_to_send()[0]
    ch.tick(now + 0.5)
    assert ch.data_to_send() == [raw]
    ch.receive_frame(ack_for(raw), now + 0.9)
    assert ch._rtt.rto == pytest.approx(expected)


def test_ack_for_unknown_sequence_is_ignored() -> None:
    ch = new_channel()
    bogus = encode_frame(
        "acknowledge",
        payloads.build_ack("input_stream_data", uuid.uuid4(), 99),
        flags=3,
        message_id=uuid.uuid4(),
        created_ms=1,
    )
    ch.receive_frame(bogus, 0.0)
    assert ch.events_received() == []
    assert sent(ch) == []


def test_backpressure_when_unacked_buffer_is_full() -> None:
    ch = new_channel(max_unacked=2)
    ch.open_input_gate("test", 0.0)
    ch.send_input(b"a", 0.0)
    ch.send_input(b"b", 0.0)
    assert not ch.writable
    ch.send_input(b"c", 0.0)
    frames = ch.data_to_send()
    assert len(frames) == 2  # never evicts, never exceeds
    ch.receive_frame(ack_for(frames[0]), 0.01)
    assert [decode_frame(f).payload for f in ch.data_to_send()] == [b"c"]


def test_pause_publication_holds_data_but_not_acks() -> None:
    ch = new_channel()
    ch.open_input_gate("test", 0.0)
    pause = encode_frame("pause_publication", b"", message_id=uuid.uuid4(), created_ms=0)
    start = encode_frame("start_publication", b"", message_id=uuid.uuid4(), created_ms=0)
    ch.receive_frame(pause, 0.0)
    ch.send_input(b"held", 0.0)
    ch.receive_frame(out_frame(0, b"x"), 0.0)
    assert [f.message_type for f in sent(ch)] == ["acknowledge"]
    ch.receive_frame(start, 0.1)
    assert [f.payload for f in sent(ch)] == [b"held"]


def test_channel_closed_with_no_gap_closes_once() -> None:
    ch = new_channel()
    ch.receive_frame(out_frame(0, b"done"), 0.0)
    ch.receive_frame(closed_frame(), 0.1)
    ch.receive_frame(closed_frame(), 0.1)
    closes = [e for e in ch.events_received() if isinstance(e, ChannelClosed)]
    assert closes == [ChannelClosed("", truncated=False, missing_seq=None)]
    assert ch.closed


def test_gap_at_close_is_filled_within_grace() -> None:
    ch = new_channel()
    ch.receive_frame(out_frame(0, b"a"), 0.0)
    ch.receive_frame(out_frame(2, b"c"), 0.0)
    ch.receive_frame(closed_frame(), 0.1)
    assert not ch.closed
    ch.receive_frame(out_frame(1, b"b"), 0.5)
    events = ch.events_received()
    assert output_of(events) == b"abc"
    assert next(e for e in events if isinstance(e, ChannelClosed)).truncated is False


def test_gap_not_filled_reports_truncation_with_missing_seq() -> None:
    ch = new_channel()
    ch.receive_frame(out_frame(0, b"a"), 0.0)
    ch.receive_frame(out_frame(2, b"c"), 0.0)
    ch.receive_frame(closed_frame("bye"), 0.1)
    ch.tick(0.5)
    assert not ch.closed
    ch.tick(1.2)
    closes = [e for e in ch.events_received() if isinstance(e, ChannelClosed)]
    assert closes == [ChannelClosed("bye", truncated=True, missing_seq=1)]


def kms_handshake_request(challenge: str = "Y2g=") -> bytes:
    return out_frame(
        0,
        payloads.build_handshake_request(
            "3.3.0.0",
            [
                payloads.ClientAction(
                    "SessionType", {"SessionType": "InteractiveCommands", "Properties": None}
                ),
                payloads.ClientAction(
                    "KMSEncryption", {"KMSKeyId": "arn:key", "Challenge": challenge}
                ),
                payloads.ClientAction("Teleport", {}),
            ],
        ),
        ptype=5,
    )


def test_kms_handshake_request_asks_for_a_data_key_with_full_context() -> None:
    ch = DataChannel(session_id="sid", target="ecs:c_t_r", now=0.0, epoch_ms=1)
    ch.send_input(b"early", 0.0)
    ch.receive_frame(kms_handshake_request(), 0.0)
    assert [f.message_type for f in sent(ch)] == ["acknowledge"]  # acked before slow KMS work
    (req,) = [e for e in ch.events_received() if isinstance(e, HandshakeRequested)]
    assert req.data_key_request.key_id == "arn:key"
    assert req.data_key_request.encryption_context == {
        "aws:ssm:SessionId": "sid",
        "aws:ssm:TargetId": "ecs:c_t_r",
        "aws:ssm:RandomChallenge": "Y2g=",
    }
    ch.complete_handshake(DataKey(os.urandom(64), b"blob"), 0.1)
    (response,) = sent(ch)
    parsed = payloads.parse_handshake_response(response.payload)
    assert [a.status for a in parsed.actions] == [1, 1, 3]  # unknown action: Unsupported
    assert parsed.actions[1].result["ChallengeAcknowledgement"] is True
    assert parsed.client_version == "1.2.677.0"
    ch.tick(5.0)  # the gate stays closed during the handshake, whatever the time
    assert not ch.input_gate_open
    with pytest.raises(ProtocolError):
        ch.complete_handshake(DataKey(os.urandom(64), b"blob"), 0.2)


def test_kms_failure_answers_failed_status() -> None:
    ch = new_channel()
    ch.receive_frame(kms_handshake_request(challenge=""), 0.0)
    ch.events_received()
    ch.complete_handshake(None, 0.1, error="AccessDeniedException on kms:GenerateDataKey")
    frames = sent(ch)
    parsed = payloads.parse_handshake_response(frames[-1].payload)
    assert parsed.actions[1].status == 2
    assert "AccessDenied" in parsed.actions[1].error


def simulate(
    agent: ScriptedAgent,
    client_input: bytes,
    *,
    seed: int,
    drop: float = 0.0,
    dup: float = 0.0,
    jitter: float = 0.0,
    limit: float = 120.0,
    batched: bool = False,
) -> tuple[bytes, list]:
    """Run client and agent over lossy links on a virtual clock until both are done."""
    ch = DataChannel(session_id="sid", target="ecs:c_t_r", now=0.0, epoch_ms=1)
    c2a = LossyLink(seed, drop, dup, jitter)
    a2c = LossyLink(seed + 1, drop, dup, jitter)
    output = bytearray()
    events: list = []
    agent.start(0.0)
    ch.send_size(80, 24, 0.0)
    ch.send_input(client_input, 0.0)
    now = 0.0
    while now < limit:
        now = round(now + 0.005, 3)
        if batched:
            ch.receive_frames(list(a2c.due(now)), now)
        else:
            for raw in a2c.due(now):
                ch.receive_frame(raw, now)
        for raw in c2a.due(now):
            agent.receive(raw, now)
        ch.tick(now)
        agent.tick(now)
        for event in ch.events_received():
            events.append(event)
            if isinstance(event, OutputReceived):
                output += event.data
            elif isinstance(event, HandshakeRequested):
                assert agent.kms_key is not None
                ch.complete_handshake(DataKey(agent.kms_key, b"blob"), now)
        for raw in ch.data_to_send():
            c2a.send(raw, now)
        for raw in agent.outgoing:
            a2c.send(raw, now)
        agent.outgoing.clear()
        if agent.done and ch.unacked_count == 0 and bytes(agent.received_input) == client_input:
            break
    return bytes(output), events


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    drop=st.sampled_from([0.0, 0.05, 0.2]),
    dup=st.sampled_from([0.0, 0.1]),
    jitter=st.sampled_from([0.0, 0.02]),
)
def test_lossy_link_delivers_both_directions_byte_exact(
    seed: int, drop: float, dup: float, jitter: float
) -> None:
    body = os.urandom(20_000)
    text = b"".join(b"%d\n" % i for i in range(600))
    agent = ScriptedAgent(output=body)
    output, _ = simulate(agent, text, seed=seed, drop=drop, dup=dup, jitter=jitter)
    assert output == body
    assert bytes(agent.received_input) == text
    assert agent.sizes
    assert agent.sizes[0] == (80, 24)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), drop=st.sampled_from([0.0, 0.1]))
def test_kms_session_over_lossy_link(seed: int, drop: float) -> None:
    key = os.urandom(64)
    agent = ScriptedAgent(output=b"secret output " * 300, kms_key=key)
    output, events = simulate(
        agent, b"typed while handshaking\n", seed=seed, drop=drop, jitter=0.01
    )
    assert output == b"secret output " * 300
    assert bytes(agent.received_input) == b"typed while handshaking\n"
    assert any(isinstance(e, HandshakeCompleted) and e.encrypted for e in events)


def test_encrypted_input_chunks_stay_within_1024_bytes() -> None:
    key = os.urandom(64)
    agent = ScriptedAgent(output=b"ok", kms_key=key)
    simulate(agent, b"z" * 5000, seed=1)
    assert bytes(agent.received_input) == b"z" * 5000


def test_watchdog_reports_stalled_acks() -> None:
    ch = new_channel(ack_watchdog=3.0)
    ch.open_input_gate("test", 0.0)
    ch.send_input(b"never acked", 0.0)
    now, stalled = 0.0, []
    while now < 3.5:
        now = round(now + 0.1, 1)
        ch.tick(now)
        stalled += [e for e in ch.events_received() if isinstance(e, AckStalled)]
    assert len(stalled) == 1
    assert stalled[0].seconds > 3.0


# --- receive_frames: a batch is the same as one frame at a time -------------------------


def counting_ids() -> Callable[[], bytes]:
    counter = itertools.count(1)
    return lambda: next(counter).to_bytes(16, "big")


def merged(events: list) -> list:
    """Events with consecutive OutputReceived joined (receive_frames delivers a run as one)."""
    out: list = []
    for event in events:
        if isinstance(event, OutputReceived) and out and isinstance(out[-1], OutputReceived):
            out[-1] = OutputReceived(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def corrupt(raw: bytes) -> bytes:
    flipped = bytearray(raw)
    flipped[-1] ^= 0xFF  # the payload no longer matches its digest
    return bytes(flipped)


def agent_stream(draw: st.DrawFn) -> list[bytes]:
    """Output frames as a relay may deliver them: reordered, repeated, some corrupted, some
    other kinds (agent acks, pause/start, a non-output payload), maybe channel_closed."""
    count = draw(st.integers(1, 40))
    frames = [
        out_frame(
            seq, draw(st.binary(min_size=0, max_size=40)), draw(st.sampled_from([1, 1, 1, 10]))
        )
        for seq in range(count)
    ]
    order = list(range(count))
    for _ in range(draw(st.integers(0, 6))):  # swaps of near neighbours
        i = draw(st.integers(0, count - 1))
        j = min(count - 1, i + draw(st.integers(1, 4)))
        order[i], order[j] = order[j], order[i]
    stream: list[bytes] = []
    for index in order:
        kind = draw(st.sampled_from(["plain"] * 8 + ["dup", "corrupt", "other"]))
        if kind == "corrupt":
            stream.append(corrupt(frames[index]))
        elif kind == "other":
            stream.append(
                draw(
                    st.sampled_from(
                        [
                            encode_frame(
                                "pause_publication", b"", message_id=uuid.uuid4(), created_ms=0
                            ),
                            encode_frame(
                                "start_publication", b"", message_id=uuid.uuid4(), created_ms=0
                            ),
                            ack_for(frames[0]),
                            b"short",
                        ]
                    )
                )
            )
        stream.append(frames[index])
        if kind == "dup":
            stream.append(frames[draw(st.integers(0, count - 1))])
    if draw(st.booleans()):
        stream.append(closed_frame("done"))
        stream.extend(frames[-2:])  # a gap filled after channel_closed, or frames too late
    return stream


@st.composite
def stream_in_batches(draw: st.DrawFn) -> list[list[bytes]]:
    stream = agent_stream(draw)
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=8)))
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def run_both(
    batches: list[list[bytes]], *, counted_ids: bool = False
) -> tuple[DataChannel, DataChannel, list, list, list, list]:
    one = new_channel(**({"id_factory": counting_ids()} if counted_ids else {}))
    many = new_channel(**({"id_factory": counting_ids()} if counted_ids else {}))
    sent_one: list[bytes] = []
    sent_many: list[bytes] = []
    events_one: list = []
    events_many: list = []
    for step, batch in enumerate(batches):
        now = 0.01 * step
        for raw in batch:
            one.receive_frame(raw, now)
        many.receive_frames(batch, now)
        sent_one += one.data_to_send()
        sent_many += many.data_to_send()
        events_one += one.events_received()
        events_many += many.events_received()
    return one, many, sent_one, sent_many, events_one, events_many


@settings(max_examples=200, deadline=None)
@given(batches=stream_in_batches())
def test_receive_frames_equals_one_by_one(batches: list[list[bytes]]) -> None:
    one, many, sent_one, sent_many, events_one, events_many = run_both(batches, counted_ids=True)
    assert sent_many == sent_one  # the same acks (and frames), byte for byte, in order
    assert merged(events_many) == merged(events_one)
    assert many.stats == one.stats
    assert many.expected_sequence == one.expected_sequence
    assert many.state is one.state
    assert many.reorder_bytes == one.reorder_bytes
    assert many.has_gap == one.has_gap


@settings(max_examples=50, deadline=None)
@given(batches=stream_in_batches())
def test_receive_frames_with_random_ids_differs_only_in_ack_message_ids(
    batches: list[list[bytes]],
) -> None:
    _, _, sent_one, sent_many, events_one, events_many = run_both(batches)
    assert [raw[:64] + raw[80:] for raw in sent_many] == [raw[:64] + raw[80:] for raw in sent_one]
    ids = [decode_frame(raw).message_id for raw in sent_many]
    assert len(set(ids)) == len(ids)
    assert all(mid.version == 4 for mid in ids)
    assert merged(events_many) == merged(events_one)


def test_receive_frames_delivers_an_in_order_run_as_one_event_with_one_ack_each() -> None:
    ch = new_channel()
    frames = [out_frame(seq, b"line %d\n" % seq) for seq in range(5)]
    ch.receive_frames(frames, 0.0)
    events = ch.events_received()
    outputs = [e for e in events if isinstance(e, OutputReceived)]
    # The first frame opens the input gate (one by one); the other four are one run.
    assert [e.data for e in outputs] == [b"line 0\n", b"line 1\nline 2\nline 3\nline 4\n"]
    acks = [payloads.parse_ack(f.payload) for f in sent(ch)]
    assert [a.sequence_number for a in acks] == [0, 1, 2, 3, 4]
    assert [a.message_id for a in acks] == [decode_frame(f).message_id for f in frames]


def test_receive_frames_refuses_a_corrupted_frame_inside_a_run_without_an_ack() -> None:
    ch = new_channel()
    frames = [out_frame(seq, b"%d" % seq) for seq in range(4)]
    ch.receive_frames([frames[0], frames[1], corrupt(frames[2]), frames[3]], 0.0)
    assert output_of(ch.events_received()) == b"01"
    assert [payloads.parse_ack(f.payload).sequence_number for f in sent(ch)] == [0, 1, 3]
    assert ch.stats.dropped_invalid == 1
    assert ch.has_gap


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), drop=st.sampled_from([0.0, 0.1]))
def test_kms_session_over_lossy_link_in_batches(seed: int, drop: float) -> None:
    key = os.urandom(64)
    agent = ScriptedAgent(output=b"secret output " * 300, kms_key=key)
    output, events = simulate(
        agent, b"typed\n", seed=seed, drop=drop, dup=0.1, jitter=0.01, batched=True
    )
    assert output == b"secret output " * 300
    assert any(isinstance(e, HandshakeCompleted) and e.encrypted for e in events)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), drop=st.sampled_from([0.0, 0.05, 0.2]))
def test_lossy_link_in_batches_delivers_byte_exact(seed: int, drop: float) -> None:
    body = os.urandom(20_000)
    agent = ScriptedAgent(output=body)
    output, _ = simulate(agent, b"in\n", seed=seed, drop=drop, dup=0.1, jitter=0.02, batched=True)
    assert output == body

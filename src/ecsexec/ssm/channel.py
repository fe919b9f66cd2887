"""The client side of an SSM data channel as a sans-I/O state machine.

Feed it what the websocket received (:meth:`DataChannel.receive_frame`), what the user
typed (:meth:`send_input`, :meth:`send_size`) and the passing of time (:meth:`tick`);
collect what to put on the wire (:meth:`data_to_send`) and what happened
(:meth:`events_received`). It never touches a socket or reads a clock: every method that
depends on time takes ``now`` (seconds, any monotonic clock).

Spec: docs/ssm-protocol.md. Section numbers in comments refer to it.

Nothing the peer sends can make it hold unbounded memory: a frame above
:data:`~ecsexec.ssm.frames.MAX_FRAME_BYTES` fails the channel (a :class:`ChannelClosed`
with ``failure`` set, output marked truncated), out-of-order frames are held up to
``reorder_capacity`` frames and ``max_reorder_bytes`` bytes (beyond either, a frame is
dropped unacknowledged and the agent resends it, as §6 prescribes for a full buffer),
and JSON payloads nest at most :data:`~ecsexec.ssm.payloads.MAX_JSON_DEPTH` levels.
"""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from hashlib import sha256
from typing import Final

from ecsexec.errors import FrameError, ProtocolError
from ecsexec.ssm import payloads
from ecsexec.ssm.crypto import NONCE_BYTES, TAG_BYTES, DataKey, SessionCipher
from ecsexec.ssm.frames import (
    ACK_FLAGS,
    ACKNOWLEDGE,
    CHANNEL_CLOSED,
    FRAME_OVERHEAD,
    HEADER_LENGTH,
    INPUT_STREAM_DATA,
    MAX_FRAME_BYTES,
    MAX_PAYLOAD,
    OUTPUT_STREAM_DATA,
    PAUSE_PUBLICATION,
    START_PUBLICATION,
    Frame,
    PayloadType,
    decode_frame,
    encode_acks,
    encode_frame,
    random_message_id,
)

# §6 retransmission constants (identical in the Go plugin and the agent).
INITIAL_SRTT: Final = 0.1
INITIAL_RTO: Final = 0.2
RESEND_TICK: Final = 0.1
MAX_RTO: Final = 1.0
CLOCK_GRANULARITY: Final = 0.010

DEFAULT_BUFFER: Final = 10_000  # §6: at least 10 000 for both the reorder and unacked buffers
#: Bytes of out-of-order frames held at most (10 000 of the agent's 1 KiB frames need 11 MB).
DEFAULT_REORDER_BYTES: Final = 64 * 1024 * 1024
DEFAULT_GATE_TIMEOUT: Final = 2.0  # §7 input gate rule 4
DEFAULT_CLOSE_GRACE: Final = 1.0  # §11: keep reading up to 1 s after channel_closed to fill a gap
DEFAULT_ACK_WATCHDOG: Final = 60.0  # §6 watchdog

# §8.7: the cipher adds a nonce and a tag; chunk plaintext so the sent payload stays <= 1024.
_ENCRYPTED_CHUNK: Final = MAX_PAYLOAD - NONCE_BYTES - TAG_BYTES
_EPSILON: Final = 1e-9  # timer comparisons tolerate float rounding of the caller's clock

# receive_frames' fast path reads a frame's header in one unpack: its first 36 bytes,
# which are the same in every output frame (§3: HeaderLength 116, MessageType padded with
# spaces), then CreatedDate, Seq, MessageId (wire order), digest, PayloadType and length.
_OUTPUT_HEAD: Final = struct.pack(">I", HEADER_LENGTH) + OUTPUT_STREAM_DATA.encode().ljust(32)
_OUTPUT_HEADER: Final = struct.Struct(">36s4xQq8x16s32sII")


def _id_bytes(message_id: uuid.UUID | bytes) -> bytes:
    return message_id if isinstance(message_id, bytes) else message_id.bytes


# --- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputReceived:
    """Remote terminal output (type 1), in sequence order, decrypted."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StderrReceived:
    """A type-11 payload (never sent by ECS Exec's pty plugin, §5)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ExitCodeReceived:
    """A type-12 payload (never sent under ECS Exec, §12)."""

    exit_code: int


@dataclass(frozen=True, slots=True)
class DataKeyRequest:
    """What to pass to kms:GenerateDataKey (§8.2)."""

    key_id: str
    encryption_context: dict[str, str]


@dataclass(frozen=True, slots=True)
class HandshakeRequested:
    """The agent asked for a handshake that needs a KMS data key.

    The caller obtains the key and answers with :meth:`DataChannel.complete_handshake`.
    """

    request: payloads.HandshakeRequest
    data_key_request: DataKeyRequest


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    customer_message: str
    encrypted: bool


@dataclass(frozen=True, slots=True)
class InputGateOpened:
    reason: str


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    """The session ended. ``truncated`` means output is known to be missing (§11).

    ``failure`` is set when the channel failed on what the peer sent (a frame above the
    size limit): the output after ``missing_seq`` was not delivered, and the remote
    command may still be running.
    """

    output: str
    truncated: bool = False
    missing_seq: int | None = None
    failure: ProtocolError | None = None


@dataclass(frozen=True, slots=True)
class ProtocolWarning:
    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class AckStalled:
    """The oldest sent frame has been unacked for the watchdog period (§6): reconnect."""

    seconds: float


Event = (
    OutputReceived
    | StderrReceived
    | ExitCodeReceived
    | HandshakeRequested
    | HandshakeCompleted
    | InputGateOpened
    | ChannelClosed
    | ProtocolWarning
    | AckStalled
)


class State(Enum):
    OPEN = "open"
    CLOSING = "closing"  # channel_closed received, waiting up to close_grace for a gap to fill
    CLOSED = "closed"


@dataclass(slots=True)
class _Unacked:
    frame: bytes
    first_sent: float
    last_sent: float
    retransmitted: bool = False


@dataclass(slots=True)
class _Pending:
    payload_type: int
    payload: bytes


@dataclass(slots=True)
class _Rtt:
    """RFC 6298 estimator with the agent's constants (§6)."""

    srtt: float = INITIAL_SRTT
    rttvar: float = 0.0
    rto: float = INITIAL_RTO

    def sample(self, r: float) -> None:
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
        self.srtt = 0.875 * self.srtt + 0.125 * r
        self.rto = min(MAX_RTO, self.srtt + max(CLOCK_GRANULARITY, 4 * self.rttvar))


@dataclass(slots=True)
class _Handshake:
    request: payloads.HandshakeRequest
    kms_key_id: str = ""
    challenge_acknowledged: bool = False
    answered: bool = False


@dataclass
class ChannelStats:
    frames_received: int = 0
    frames_sent: int = 0
    retransmissions: int = 0
    duplicates: int = 0
    dropped_invalid: int = 0
    dropped_buffer_full: int = 0
    out_of_order: int = 0
    bytes_received: int = 0
    reorder_bytes_peak: int = 0


class DataChannel:
    """One session's data channel, client side."""

    def __init__(
        self,
        *,
        session_id: str,
        now: float,
        epoch_ms: int,
        target: str = "",
        client_version: str = payloads.CLIENT_VERSION,
        acknowledge_challenge: bool = True,
        gate_timeout: float = DEFAULT_GATE_TIMEOUT,
        close_grace: float = DEFAULT_CLOSE_GRACE,
        ack_watchdog: float = DEFAULT_ACK_WATCHDOG,
        max_unacked: int = DEFAULT_BUFFER,
        reorder_capacity: int = DEFAULT_BUFFER,
        max_reorder_bytes: int = DEFAULT_REORDER_BYTES,
        id_factory: Callable[[], uuid.UUID | bytes] = random_message_id,
    ) -> None:
        self.session_id = session_id
        self.target = target
        self.client_version = client_version
        self.acknowledge_challenge = acknowledge_challenge
        self.gate_timeout = gate_timeout
        self.close_grace = close_grace
        self.ack_watchdog = ack_watchdog
        self.max_unacked = max_unacked
        self.reorder_capacity = reorder_capacity
        self.max_reorder_bytes = max_reorder_bytes
        self.stats = ChannelStats()
        self._new_id = id_factory
        self._t0 = now
        self._epoch_ms = epoch_ms

        self.state = State.OPEN
        self.close_output = ""
        self._close_deadline = 0.0
        self.failure: ProtocolError | None = None

        # Sending side (client -> agent).
        self._out_seq = 0
        self._unacked: dict[int, _Unacked] = {}  # insertion order == seq order: oldest first
        self._pending: list[_Pending] = []
        self._rtt = _Rtt()
        self._next_tick: float | None = None
        self._paused = False

        # Receiving side (agent -> client).
        self._expected = 0
        self._reorder: dict[int, Frame] = {}
        self._reorder_bytes = 0
        self._reorder_warned = False
        self._seen_stream = False

        # §7 input gate and handshake.
        self._gate_open = False
        self._gate_deadline: float | None = now + gate_timeout
        self._handshake: _Handshake | None = None
        self._cipher: SessionCipher | None = None
        self._encrypting = False

        self._outgoing: list[bytes] = []
        self._events: list[Event] = []

    # --- public state ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def input_gate_open(self) -> bool:
        return self._gate_open

    @property
    def writable(self) -> bool:
        """False while the unacked buffer is full: stop reading local input (§6 backpressure)."""
        return len(self._unacked) + len(self._pending) < self.max_unacked

    @property
    def unacked_count(self) -> int:
        return len(self._unacked)

    @property
    def expected_sequence(self) -> int:
        return self._expected

    @property
    def reorder_bytes(self) -> int:
        """Payload bytes of the out-of-order frames held now."""
        return self._reorder_bytes

    @property
    def has_gap(self) -> bool:
        """Frames above a missing one are buffered: output is incomplete so far."""
        return bool(self._reorder)

    def data_to_send(self) -> list[bytes]:
        out, self._outgoing = self._outgoing, []
        return out

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def next_timer(self) -> float | None:
        """Absolute time at which :meth:`tick` next has work to do, or None."""
        deadlines = [
            t
            for t in (
                self._gate_deadline if not self._gate_open else None,
                self._next_tick if self._unacked and self.state is State.OPEN else None,
                self._close_deadline if self.state is State.CLOSING else None,
            )
            if t is not None
        ]
        return min(deadlines) if deadlines else None

    # --- sending -----------------------------------------------------------------------

    def send_input(self, data: bytes, now: float) -> None:
        """Queue terminal input; it goes out in chunks once the input gate is open."""
        if self.state is not State.OPEN or not data:
            return  # §3: never send an empty stream payload
        chunk = _ENCRYPTED_CHUNK if self._cipher is not None else MAX_PAYLOAD
        for start in range(0, len(data), chunk):
            self._pending.append(_Pending(PayloadType.OUTPUT, data[start : start + chunk]))
        self._flush(now)

    def send_size(self, cols: int, rows: int, now: float) -> None:
        if self.state is not State.OPEN:
            return
        self._pending.append(_Pending(PayloadType.SIZE, payloads.build_size(cols, rows)))
        self._flush(now)

    def open_input_gate(self, reason: str, now: float) -> None:
        """Open the gate from outside, e.g. on the exec layer's begin marker (§7 rule 3)."""
        if not self._gate_open and self._handshake is None:
            self._set_gate_open(reason)
            self._flush(now)

    def _set_gate_open(self, reason: str) -> None:
        self._gate_open = True
        self._gate_deadline = None
        self._events.append(InputGateOpened(reason))

    def _created_ms(self, now: float) -> int:
        return self._epoch_ms + int((now - self._t0) * 1000)

    def _send_stream(self, payload_type: int, payload: bytes, now: float) -> None:
        seq = self._out_seq
        self._out_seq += 1
        frame = encode_frame(
            INPUT_STREAM_DATA,
            payload,
            sequence_number=seq,
            flags=0,
            payload_type=payload_type,
            message_id=self._new_id(),
            created_ms=self._created_ms(now),
        )
        self._unacked[seq] = _Unacked(frame, now, now)
        if self._next_tick is None:
            self._next_tick = now + RESEND_TICK
        self._outgoing.append(frame)
        self.stats.frames_sent += 1

    def _flush(self, now: float) -> None:
        if not self._gate_open or self._paused or self.state is not State.OPEN:
            return
        sent = 0
        for item in self._pending:
            if len(self._unacked) >= self.max_unacked:
                break
            payload = item.payload
            if item.payload_type == PayloadType.OUTPUT and self._cipher is not None:
                payload = self._cipher.encrypt(payload)  # §8.8: client encrypts type 1 only
            self._send_stream(item.payload_type, payload, now)
            sent += 1
        if sent:
            del self._pending[:sent]

    def _send_ack(self, frame: Frame, now: float) -> None:
        self._outgoing.append(
            encode_frame(
                ACKNOWLEDGE,
                payloads.build_ack(
                    frame.message_type, frame.message_id_text, frame.sequence_number
                ),
                sequence_number=0,
                flags=ACK_FLAGS,
                payload_type=0,
                message_id=self._new_id(),
                created_ms=self._created_ms(now),
            )
        )

    # --- receiving ---------------------------------------------------------------------

    def receive_frame(self, data: bytes, now: float) -> None:
        """Process one websocket message (a binary frame)."""
        if self.state is State.CLOSED:
            return
        if len(data) > MAX_FRAME_BYTES:
            # Not an invalid frame to drop and have resent: the peer breaks the protocol.
            self._fail(
                ProtocolError(
                    f"received a frame of {len(data):,} bytes; the limit is "
                    f"{MAX_FRAME_BYTES:,} bytes per frame"
                )
            )
            return
        try:
            frame = decode_frame(data)
        except FrameError as exc:
            # §3: drop, log, and do not ack; the sender will resend.
            self.stats.dropped_invalid += 1
            self._events.append(ProtocolWarning("invalid_frame", str(exc)))
            return
        self.stats.frames_received += 1
        mtype = frame.message_type
        if mtype == ACKNOWLEDGE:
            self._on_ack(frame, now)
        elif mtype == OUTPUT_STREAM_DATA:
            self._on_stream(frame, now)
        elif mtype == CHANNEL_CLOSED:
            self._on_channel_closed(frame, now)
        elif mtype == PAUSE_PUBLICATION:
            self._paused = True  # §9: hold new data, keep acking
        elif mtype == START_PUBLICATION:
            self._paused = False
            self._flush(now)
        # §4: ignore agent_session_state, control-channel types and anything unknown.

    def receive_frames(self, messages: Sequence[bytes], now: float) -> None:
        """Process several websocket messages in order, as :meth:`receive_frame` would one by
        one: the same state, statistics, acks (in the same order) and delivered bytes.

        The stream's common case (valid ``output_stream_data`` frames, unencrypted, each the
        next in sequence, nothing buffered out of order) takes a fast path: such a run of
        frames is decoded in one loop, acked in one :func:`encode_acks` call and delivered
        as ONE :class:`OutputReceived` holding their payloads joined. Anything else
        (handshakes, acks, duplicates, gaps, invalid frames, the first stream frame) goes
        through :meth:`receive_frame` in its place in the order.
        """
        run_ids: list[tuple[bytes, int]] = []
        run_payloads: list[bytes] = []
        add_id = run_ids.append
        add_payload = run_payloads.append
        unpack = _OUTPUT_HEADER.unpack_from
        head = _OUTPUT_HEAD
        output = int(PayloadType.OUTPUT)
        digest_of = sha256
        fast = self._fast_path_open()
        expected = self._expected
        for data in messages:
            size = len(data)
            if fast and FRAME_OVERHEAD < size <= MAX_FRAME_BYTES:
                start, created, seq, wire_id, digest, payload_type, payload_length = unpack(data)
                if (
                    start == head
                    and seq == expected
                    and payload_type == output
                    and created
                    and payload_length == size - FRAME_OVERHEAD
                ):
                    payload = data[FRAME_OVERHEAD:]
                    if digest_of(payload).digest() == digest:  # §3 digest rule
                        add_id((wire_id, seq))
                        add_payload(payload)
                        expected += 1
                        continue
            if run_ids:
                self._deliver_run(run_ids, run_payloads, now)
                run_ids, run_payloads = [], []
                add_id = run_ids.append
                add_payload = run_payloads.append
            self.receive_frame(data, now)
            fast = self._fast_path_open()
            expected = self._expected
        if run_ids:
            self._deliver_run(run_ids, run_payloads, now)

    def _fast_path_open(self) -> bool:
        """Whether the next in-order output frame needs nothing but an ack and delivery."""
        return (
            self.state is State.OPEN
            and self._seen_stream
            and not self._reorder
            and not self._encrypting
        )

    def _deliver_run(self, acked: list[tuple[bytes, int]], chunks: list[bytes], now: float) -> None:
        """Ack and deliver in-order output frames checked by :meth:`receive_frames`."""
        count = len(acked)
        ids = None
        if self._new_id is not random_message_id:  # the caller's ids (tests), in order
            ids = [_id_bytes(self._new_id()) for _ in range(count)]
        self._outgoing.extend(
            encode_acks(
                OUTPUT_STREAM_DATA, acked, created_ms=self._created_ms(now), message_ids=ids
            )
        )
        data = chunks[0] if count == 1 else b"".join(chunks)
        stats = self.stats
        stats.frames_received += count
        stats.bytes_received += len(data)
        self._expected += count
        self._reorder_warned = False
        self._events.append(OutputReceived(data))

    def _on_ack(self, frame: Frame, now: float) -> None:
        try:
            ack = payloads.parse_ack(frame.payload)
        except ProtocolError as exc:
            self._events.append(ProtocolWarning("bad_ack", str(exc)))
            return
        entry = self._unacked.pop(ack.sequence_number, None)  # §6: match on seq only
        if entry is None:
            return
        if not entry.retransmitted:  # Karn's rule
            self._rtt.sample(now - entry.last_sent)
        if not self._unacked:
            self._next_tick = None
        self._flush(now)

    def _on_stream(self, frame: Frame, now: float) -> None:
        seq = frame.sequence_number
        if seq == self._expected:
            self._send_ack(frame, now)
            self._deliver(frame, now)
            self._expected += 1
            while self._reorder and self._expected in self._reorder:
                held = self._reorder.pop(self._expected)
                self._reorder_bytes -= len(held.payload)
                self._deliver(held, now)
                self._expected += 1
            if not self._reorder:
                self._reorder_warned = False
            if self.state is State.CLOSING and not self._reorder:
                self._finish(truncated=False)
        elif seq > self._expected:
            if seq in self._reorder:
                self._send_ack(frame, now)  # a duplicate of a buffered frame: re-ack
                self.stats.duplicates += 1
            elif (
                len(self._reorder) < self.reorder_capacity
                and self._reorder_bytes + len(frame.payload) <= self.max_reorder_bytes
            ):
                self._send_ack(frame, now)
                self._reorder[seq] = frame
                self._reorder_bytes += len(frame.payload)
                self.stats.reorder_bytes_peak = max(
                    self.stats.reorder_bytes_peak, self._reorder_bytes
                )
                self.stats.out_of_order += 1
            else:
                self.stats.dropped_buffer_full += 1  # §6: no room, no ack; it will be resent
                if not self._reorder_warned:
                    self._reorder_warned = True
                    self._events.append(
                        ProtocolWarning(
                            "reorder_buffer_full",
                            f"out-of-order frames dropped unacknowledged (to be resent): "
                            f"{len(self._reorder):,} frames of {self._reorder_bytes:,} bytes "
                            f"are held, the limits are {self.reorder_capacity:,} frames and "
                            f"{self.max_reorder_bytes:,} bytes",
                        )
                    )
        else:
            self._send_ack(frame, now)  # §6: re-ack duplicates so a lost ack stops resends
            self.stats.duplicates += 1

    def _deliver(self, frame: Frame, now: float) -> None:
        ptype = frame.payload_type
        payload = frame.payload
        first_stream = not self._seen_stream
        self._seen_stream = True
        if ptype == PayloadType.OUTPUT:
            if first_stream and not self._gate_open and self._handshake is None:
                self._set_gate_open("handshake skipped")  # §7 gate rule 2
                self._flush(now)
            data = self._decrypt(payload, "output")
            if data is not None:
                self.stats.bytes_received += len(data)
                if data:
                    self._events.append(OutputReceived(data))
        elif ptype == PayloadType.STDERR:
            data = self._decrypt(payload, "stderr")
            if data:
                self._events.append(StderrReceived(data))
        elif ptype == PayloadType.EXIT_CODE:
            data = self._decrypt(payload, "exit code")
            code = payloads.parse_exit_code(data) if data is not None else None
            if code is not None:
                self._events.append(ExitCodeReceived(code))
        elif ptype == PayloadType.HANDSHAKE_REQUEST:
            self._on_handshake_request(payload, now)
        elif ptype == PayloadType.ENC_CHALLENGE_REQUEST:
            self._on_challenge(payload, now)
        elif ptype == PayloadType.HANDSHAKE_COMPLETE:
            self._on_handshake_complete(payload, now)
        # §5: any other type is acked (already) and ignored.

    def _decrypt(self, payload: bytes, what: str) -> bytes | None:
        if not self._encrypting or self._cipher is None:
            return payload
        try:
            return self._cipher.decrypt(payload)  # §8.8: agent encrypts types 1, 11, 12
        except ProtocolError as exc:
            self._events.append(ProtocolWarning("decrypt_failed", f"{what}: {exc}"))
            return None

    # --- handshake (§7, §8) --------------------------------------------------------------

    def _on_handshake_request(self, payload: bytes, now: float) -> None:
        try:
            request = payloads.parse_handshake_request(payload)
        except ProtocolError as exc:
            self._events.append(ProtocolWarning("bad_handshake_request", str(exc)))
            return
        if self._gate_open:
            # §7: a late handshake; input already sent may have been discarded by the agent.
            self._gate_open = False
            self._events.append(
                ProtocolWarning(
                    "late_handshake", "handshake after input was sent; earlier input may be lost"
                )
            )
        self._gate_deadline = None
        state = _Handshake(request)
        self._handshake = state
        kms = request.kms
        if kms is None:
            self._answer_handshake(state, None, "", now)
            return
        state.kms_key_id = str(kms.parameters.get("KMSKeyId", ""))
        context = {"aws:ssm:SessionId": self.session_id, "aws:ssm:TargetId": self.target}
        challenge = kms.parameters.get("Challenge")
        if isinstance(challenge, str) and challenge and self.acknowledge_challenge:
            context["aws:ssm:RandomChallenge"] = challenge  # §8.2, as received
            state.challenge_acknowledged = True
        self._events.append(HandshakeRequested(request, DataKeyRequest(state.kms_key_id, context)))

    def complete_handshake(self, data_key: DataKey | None, now: float, *, error: str = "") -> None:
        """Answer a pending KMS handshake with the data key, or with ``error`` if none was had."""
        state = self._handshake
        if state is None or state.answered:
            raise ProtocolError("no KMS handshake is waiting for a data key")
        self._answer_handshake(state, data_key, error, now)

    def _answer_handshake(
        self, state: _Handshake, data_key: DataKey | None, error: str, now: float
    ) -> None:
        state.answered = True
        processed: list[payloads.ProcessedAction] = []
        for action in state.request.actions:
            if action.action_type == payloads.SESSION_TYPE_ACTION:
                processed.append(
                    payloads.ProcessedAction(action.action_type, payloads.ACTION_SUCCESS)
                )
            elif action.action_type == payloads.KMS_ACTION:
                if data_key is None:
                    processed.append(
                        payloads.ProcessedAction(
                            action.action_type,
                            payloads.ACTION_FAILED,
                            None,
                            error or "no data key",
                        )
                    )
                    continue
                try:
                    self._cipher = SessionCipher(data_key.plaintext, role="client")
                except ProtocolError as exc:
                    processed.append(
                        payloads.ProcessedAction(
                            action.action_type, payloads.ACTION_FAILED, None, str(exc)
                        )
                    )
                    continue
                processed.append(
                    payloads.ProcessedAction(
                        action.action_type,
                        payloads.ACTION_SUCCESS,
                        {
                            "KMSCipherTextKey": base64.b64encode(data_key.ciphertext_blob).decode(),
                            "KMSCipherTextHash": None,
                            # §8.4: true exactly when RandomChallenge is in the context.
                            "ChallengeAcknowledgement": state.challenge_acknowledged,
                        },
                    )
                )
            else:
                # §15.7: answer unknown actions with Unsupported (3), not 0.
                processed.append(
                    payloads.ProcessedAction(
                        action.action_type,
                        payloads.ACTION_UNSUPPORTED,
                        None,
                        f"{action.action_type} is not supported by this client",
                    )
                )
        response = payloads.build_handshake_response(processed, client_version=self.client_version)
        self._send_stream(PayloadType.HANDSHAKE_RESPONSE, response, now)

    def _on_challenge(self, payload: bytes, now: float) -> None:
        if self._cipher is None:
            self._events.append(
                ProtocolWarning("unexpected_challenge", "EncChallengeRequest without a data key")
            )
            return
        try:
            secret = self._cipher.decrypt(base64.b64decode(payloads.parse_challenge(payload)))
        except (ProtocolError, ValueError) as exc:
            self._events.append(ProtocolWarning("bad_challenge", str(exc)))
            return
        answer = base64.b64encode(self._cipher.encrypt(secret)).decode()  # §8.5
        self._send_stream(PayloadType.ENC_CHALLENGE_RESPONSE, payloads.build_challenge(answer), now)

    def _on_handshake_complete(self, payload: bytes, now: float) -> None:
        try:
            message = payloads.parse_handshake_complete(payload)
        except ProtocolError as exc:
            self._events.append(ProtocolWarning("bad_handshake_complete", str(exc)))
            message = ""
        self._handshake = None
        self._encrypting = self._cipher is not None
        self._events.append(HandshakeCompleted(message, self._encrypting))
        if not self._gate_open:
            self._set_gate_open("handshake complete")  # §7 gate rule 1
        self._flush(now)

    # --- closing (§11) ---------------------------------------------------------------------

    def _on_channel_closed(self, frame: Frame, now: float) -> None:
        if self.state is not State.OPEN:
            return  # §11: some relays send it twice
        info = payloads.parse_channel_closed(frame.payload)
        self.close_output = info.output
        if self._reorder:
            self.state = State.CLOSING
            self._close_deadline = now + self.close_grace
        else:
            self._finish(truncated=False)

    def _fail(self, error: ProtocolError) -> None:
        """Close on a protocol violation: what was delivered stays, the rest is missing."""
        self.failure = error
        self.close_output = str(error)
        self._events.append(ProtocolWarning("protocol_error", str(error)))
        self._finish(truncated=True)

    def _finish(self, *, truncated: bool) -> None:
        self.state = State.CLOSED
        self._pending.clear()
        self._reorder.clear()  # never delivered now; do not hold them
        self._reorder_bytes = 0
        self._next_tick = None
        self._events.append(
            ChannelClosed(
                self.close_output,
                truncated=truncated,
                missing_seq=self._expected if truncated else None,
                failure=self.failure,
            )
        )

    def abort(self, reason: str) -> None:
        """Close locally (the caller gave up); no further frames are processed."""
        if self.state is State.CLOSED:
            return
        self.close_output = self.close_output or reason
        self._finish(truncated=bool(self._reorder))

    # --- time ------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Advance timers: input gate, retransmission, watchdog, close grace."""
        if self.state is State.CLOSED:
            return
        if (
            not self._gate_open
            and self._gate_deadline is not None
            and now >= self._gate_deadline
            and not self._seen_stream
        ):
            self._set_gate_open(f"no handshake within {self.gate_timeout:g} s")  # §7 rule 4
            self._flush(now)
        if self.state is State.CLOSING:
            if now >= self._close_deadline:
                self._finish(truncated=True)
            return
        if self._next_tick is not None and now >= self._next_tick - _EPSILON:
            self._next_tick = now + RESEND_TICK
            self._resend_oldest(now)

    def _resend_oldest(self, now: float) -> None:
        if not self._unacked or self._paused:
            return
        entry = next(iter(self._unacked.values()))  # §6: only the OLDEST, at most once a tick
        if now - entry.last_sent > self._rtt.rto:
            self._outgoing.append(entry.frame)  # identical bytes
            entry.last_sent = now
            entry.retransmitted = True
            self.stats.retransmissions += 1
        if now - entry.first_sent > self.ack_watchdog:
            self._events.append(AckStalled(now - entry.first_sent))
            entry.first_sent = now  # fire again only after another full period

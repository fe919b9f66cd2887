"""A small scripted agent peer and a lossy in-memory link, for socket-free channel tests.

It is deliberately independent of ``ecsexec.ssm.channel`` (it shares only the frame codec
and payload builders) so the two cannot agree on a mistake.
"""

from __future__ import annotations

import base64
import heapq
import os
import random
import uuid
from dataclasses import dataclass, field

from ecsexec.ssm import payloads
from ecsexec.ssm.crypto import SessionCipher
from ecsexec.ssm.frames import decode_frame, encode_frame


@dataclass
class ScriptedAgent:
    """Sends ``output`` in ≤1024-byte frames with RFC 6298 resends; acks and collects input."""

    output: bytes
    kms_key: bytes | None = None  # with a key, run the §7/§8 handshake first
    rto: float = 0.2
    outgoing: list[bytes] = field(default_factory=list)
    received_input: bytearray = field(default_factory=bytearray)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    _seq: int = 0
    _expected: int = 0
    _buffer: dict[int, object] = field(default_factory=dict)
    _unacked: dict[int, list] = field(default_factory=dict)
    _next_tick: float = 0.1
    _queue: list[tuple[int, bytes]] = field(default_factory=list)
    _cipher: SessionCipher | None = None
    _challenge: bytes = b""
    handshake_done: bool = False

    def start(self, now: float) -> None:
        if self.kms_key is None:
            self.handshake_done = True
            self._queue_output()
        else:
            self._send(
                5,
                payloads.build_handshake_request(
                    "3.3.0.0",
                    [
                        payloads.ClientAction(
                            "SessionType",
                            {"SessionType": "InteractiveCommands", "Properties": None},
                        ),
                        payloads.ClientAction(
                            "KMSEncryption", {"KMSKeyId": "alias/test", "Challenge": "Y2hhbGxlbmdl"}
                        ),
                    ],
                ),
                now,
            )

    def _queue_output(self) -> None:
        for i in range(0, len(self.output), 1024):
            chunk = self.output[i : i + 1024]
            self._queue.append((1, self._cipher.encrypt(chunk) if self._cipher else chunk))

    def _send(self, ptype: int, payload: bytes, now: float) -> None:
        frame = encode_frame(
            "output_stream_data",
            payload,
            sequence_number=self._seq,
            flags=1 if self._seq == 0 else 0,
            payload_type=ptype,
            message_id=uuid.uuid4(),
            created_ms=1,
        )
        self._unacked[self._seq] = [frame, now]
        self._seq += 1
        self.outgoing.append(frame)

    @property
    def done(self) -> bool:
        return self.handshake_done and not self._queue and not self._unacked

    def tick(self, now: float) -> None:
        while self._queue and len(self._unacked) < 50:
            ptype, payload = self._queue.pop(0)
            self._send(ptype, payload, now)
        if now >= self._next_tick:
            self._next_tick = now + 0.1
            if self._unacked:
                entry = self._unacked[min(self._unacked)]
                if now - entry[1] > self.rto:
                    self.outgoing.append(entry[0])
                    entry[1] = now

    def receive(self, raw: bytes, now: float) -> None:
        frame = decode_frame(raw)
        if frame.message_type == "acknowledge":
            self._unacked.pop(payloads.parse_ack(frame.payload).sequence_number, None)
            return
        ack = encode_frame(
            "acknowledge",
            payloads.build_ack(frame.message_type, frame.message_id, frame.sequence_number),
            flags=3,
            message_id=uuid.uuid4(),
            created_ms=1,
        )
        self.outgoing.append(ack)
        if frame.sequence_number < self._expected:
            return
        self._buffer[frame.sequence_number] = frame
        while self._expected in self._buffer:
            self._process(self._buffer.pop(self._expected), now)
            self._expected += 1

    def _process(self, frame, now: float) -> None:  # type: ignore[no-untyped-def]
        if frame.payload_type == 6:
            response = payloads.parse_handshake_response(frame.payload)
            assert [a.status for a in response.actions] == [1, 1]
            assert response.actions[1].result["ChallengeAcknowledgement"] is True
            assert self.kms_key is not None
            self._cipher = SessionCipher(self.kms_key, role="agent")
            self._challenge = os.urandom(64)
            blob = base64.b64encode(self._cipher.encrypt(self._challenge)).decode()
            self._send(8, payloads.build_challenge(blob), now)
        elif frame.payload_type == 9:
            assert self._cipher is not None
            got = self._cipher.decrypt(base64.b64decode(payloads.parse_challenge(frame.payload)))
            assert got == self._challenge
            self._send(7, payloads.build_handshake_complete(1, "encrypted"), now)
            self.handshake_done = True
            self._queue_output()
        elif frame.payload_type == 1:
            assert self.handshake_done, "input before the handshake completed"
            data = frame.payload
            self.received_input += self._cipher.decrypt(data) if self._cipher else data
        elif frame.payload_type == 3:
            self.sizes.append(payloads.parse_size(frame.payload))


class LossyLink:
    """One direction of a relay: seeded drop, duplicate and random delay (which reorders)."""

    def __init__(self, seed: int, drop: float = 0.0, dup: float = 0.0, jitter: float = 0.0):
        self.rng = random.Random(seed)
        self.drop, self.dup, self.jitter = drop, dup, jitter
        self._heap: list[tuple[float, int, bytes]] = []
        self._n = 0

    def send(self, raw: bytes, now: float) -> None:
        r_drop, r_dup, r_delay = self.rng.random(), self.rng.random(), self.rng.random()
        if r_drop < self.drop:
            return
        copies = 2 if r_dup < self.dup else 1
        for _ in range(copies):
            self._n += 1
            heapq.heappush(self._heap, (now + 0.001 + r_delay * self.jitter, self._n, raw))

    def due(self, now: float) -> list[bytes]:
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

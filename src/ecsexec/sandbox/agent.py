"""The simulated SSM agent: the agent side of one ECS Exec data channel.

See docs/sandbox.md §7, §7.1, §8.

It does what amazon-ssm-agent's InteractiveCommands plugin does in container mode: it
reports Connected, runs the KMS handshake only when the cluster has a key, splits the
command with google/shlex rules, runs it under a real PTY, sends output in frames of at
most 1024 bytes (plus a held-back UTF-8 tail), retransmits unacked frames, drains for
up to 2 s after exit and reports Terminating. It shares nothing with the client's
``ssm/channel.py`` except the frame codec and payload builders.

Two layers:

- :class:`AgentChannel` is the pure reliability state machine (sequence numbers, the
  outgoing buffer, RTO, receive rules). Every clock-dependent method takes ``now``.
- :class:`SimulatedAgent` drives it from asyncio: timers, the PTY, the handshake.

The relay talks to the agent in-process: frames in through :meth:`SimulatedAgent.deliver`,
frames out through the ``send`` callable, so no socket is needed per session.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import re
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from ecsexec.errors import FrameError, ProtocolError
from ecsexec.sandbox.process import CannotStart, PtyProcess
from ecsexec.sandbox.shlex_go import ShlexError
from ecsexec.sandbox.shlex_go import split as shlex_split
from ecsexec.sandbox.stats import Stats
from ecsexec.ssm.crypto import NONCE_BYTES, SessionCipher
from ecsexec.ssm.frames import (
    ACK_FLAGS,
    ACKNOWLEDGE,
    AGENT_SESSION_STATE,
    FLAG_SYN,
    FRAME_OVERHEAD,
    INPUT_STREAM_DATA,
    OUTPUT_STREAM_DATA,
    PAUSE_PUBLICATION,
    START_PUBLICATION,
    Frame,
    PayloadType,
    decode_frame,
    encode_frame,
    random_message_id,
)
from ecsexec.ssm.payloads import (
    ACTION_SUCCESS,
    KMS_ACTION,
    SESSION_TYPE_ACTION,
    ClientAction,
    build_ack,
    build_agent_session_state,
    build_challenge,
    build_handshake_complete,
    build_handshake_request,
    parse_ack,
    parse_challenge,
    parse_handshake_response,
    parse_size,
)

__all__ = [
    "AGENT_VERSION",
    "KMS_CUSTOMER_MESSAGE",
    "AgentChannel",
    "AgentSettings",
    "Inbound",
    "SimulatedAgent",
    "parse_frame_lenient",
    "split_utf8_tail",
]

AGENT_VERSION: Final = "3.3.0.0"
KMS_CUSTOMER_MESSAGE: Final = "This session is encrypted using AWS KMS."
HANDSHAKE_TIMEOUT_TEXT: Final = (
    "Handshake timed out. Please ensure that you have the latest version of the session "
    "manager plugin."
)
HANDSHAKE_FAILED_PREFIX: Final = "Encountered error while initiating handshake. "

# §7 retransmission constants (identical in the agent and the Go plugin, docs/ssm-protocol.md §6).
SRTT_INITIAL: Final = 0.1
RTTVAR_INITIAL: Final = 0.0
RTO_INITIAL: Final = 0.2
RTO_MAX: Final = 1.0
CLOCK_GRANULARITY: Final = 0.010
RESEND_TICK: Final = 0.1
OUTGOING_LIMIT: Final = 100_000  # §7: outgoing buffer entries; new output dropped when full
INCOMING_LIMIT: Final = 100_000  # §7: out-of-order buffer of the agent
PTY_READ_SIZE: Final = 1024
_OUTPUT: Final = int(PayloadType.OUTPUT)


@dataclass
class AgentSettings:
    """Timing knobs of the agent and relay. Every delay the sandbox adds is named here (§16)."""

    initial_wait: float = 1.0  # §7: sleep after the PTY starts, before the first read
    agent_start_delay: float = 0.2  # §7: attach → PTY start (no handshake)
    drain_timeout: float = 2.0  # §7: wait for acks after exit before Terminating
    handshake_timeout: float = 15.0  # §7.1: per handshake reply
    idle_timeout: float = 1200.0  # §6: no input or output for this long ends the session
    token_ttl: float = 60.0  # §6: a stream token expires this long after it is issued
    open_timeout: float = 5.0  # §6: a socket without a valid open frame is closed after this
    close_grace: float = 1.0  # §6: channel_closed → close 1000
    require_challenge_ack: bool = False  # §7.1: Kms.RequireKMSChallengeResponse
    agent_loss: str = "close"  # §6: "close" or "silent"
    cannot_start_wait: float = 2.0  # §7: a command that cannot start ends ~2 s later


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- pure helpers ----------------------------------------------------------------------


def _lead(byte: int) -> tuple[int, int, int]:
    """Go's ``utf8.first``/``acceptRanges``: (size, lo, hi) for a lead byte; size 1 if invalid."""
    if byte < 0xC2 or byte > 0xF4:
        return 1, 0x80, 0xBF  # ASCII, a continuation byte, or never valid
    if byte < 0xE0:
        return 2, 0x80, 0xBF
    if byte == 0xE0:
        return 3, 0xA0, 0xBF
    if byte == 0xED:
        return 3, 0x80, 0x9F  # no surrogates
    if byte < 0xF0:
        return 3, 0x80, 0xBF
    if byte == 0xF0:
        return 4, 0x90, 0xBF
    if byte == 0xF4:
        return 4, 0x80, 0x8F
    return 4, 0x80, 0xBF


def _full_rune(p: bytes) -> bool:
    """Go's ``utf8.FullRune``: does ``p`` begin with a whole (or definitely invalid) rune?"""
    n = len(p)
    size, lo, hi = _lead(p[0])
    if n >= size:
        return True
    if n > 1 and not lo <= p[1] <= hi:
        return True
    return n > 2 and not 0x80 <= p[2] <= 0xBF


def split_utf8_tail(data: bytes) -> tuple[bytes, bytes]:
    """Split off an incomplete trailing UTF-8 sequence (§7); invalid bytes stay in the body.

    The agent's writePump decodes rune by rune and stops at the first position whose
    remaining bytes (fewer than 4) are not ``utf8.FullRune``; those are carried over to
    the next read. Such a position is always a lead byte, and Go visits every lead byte,
    so the leftmost non-full position among the last three bytes is where it stops.
    """
    n = len(data)
    if not n or data[-1] < 0x80:
        return data, b""  # ends in ASCII: nothing can be incomplete
    for k in range(max(0, n - 3), n):
        if not _full_rune(data[k:]):
            return data[:k], data[k:]
    return data, b""


_FIELDS = struct.Struct(">IQqQ")
_ACK_TYPE: Final = ACKNOWLEDGE.encode()
_ACK_FIELD: Final = _ACK_TYPE.ljust(32, b" ")  # as the Go serializer pads it
_U32 = struct.Struct(">I")
_ACK_SEQ: Final = re.compile(rb'"AcknowledgedMessageSequenceNumber":(-?\d+)[,}]')
# Where that key starts in a payload built as build_ack does for an output_stream_data
# ack (fixed key order, 36-character MessageId): tried first, as an anchored match.
_ACK_SEQ_AT: Final = len(
    b'{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"'
    b'00000000-0000-0000-0000-000000000000",'
)
_TAIL = struct.Struct(">II")


def parse_frame_lenient(data: bytes) -> Frame | None:
    """Parse a frame the way the agent does: structure only, **no digest check** (§7)."""
    try:
        return decode_frame(data, verify=False)
    except FrameError:
        return None


class Inbound(NamedTuple):
    """An in-order client stream payload the driver must act on."""

    sequence_number: int
    payload_type: int
    payload: bytes


@dataclass(slots=True)
class _Outgoing:
    frame: bytes
    last_sent: float
    resends: int = 0


_HANDSHAKE_REPLIES: Final = frozenset(
    {PayloadType.HANDSHAKE_RESPONSE, PayloadType.ENC_CHALLENGE_RESPONSE}
)
_ACTED_ON: Final = frozenset({PayloadType.OUTPUT, PayloadType.SIZE})


class AgentChannel:
    """The agent's reliability layer, with no I/O and no clock of its own.

    ``transmit`` receives each frame to put on the wire (first sends, resends and acks).
    The driver sets ``ready`` once the PTY exists and ``handshaking`` while a handshake
    runs; both change how in-order input is treated (§7 Receiving).
    """

    def __init__(
        self,
        *,
        session_id: str,
        stats: Stats,
        transmit: Callable[[bytes], None],
        created_ms: Callable[[], int] = _now_ms,
        strict: bool = True,
    ) -> None:
        self.session_id = session_id
        self.stats = stats
        self.strict = strict  # §7: strict mode warns when input is discarded in a handshake
        self._transmit = transmit
        self._created_ms = created_ms
        # sending
        self.next_seq = 0
        self.unacked: dict[int, _Outgoing] = {}  # insertion order is seq order: first = oldest
        self.srtt = SRTT_INITIAL
        self.rttvar = RTTVAR_INITIAL
        self.rto = RTO_INITIAL
        self.paused = False
        self.on_drained: Callable[[], None] | None = None
        # receiving
        self.expected = 0
        self.incoming: dict[int, Frame] = {}
        self.ready = False
        self.handshaking = False

    # --- sending ----------------------------------------------------------------------

    def send_stream(self, payload_type: int, payload: bytes, now: float) -> bool:
        """Queue and send one ``output_stream_data`` frame; False if the buffer is full."""
        if not payload:
            return False  # §7: payloads are never empty
        if len(self.unacked) >= OUTGOING_LIMIT:
            return False  # §7: buffer full → new output is dropped, as in the real agent
        seq = self.next_seq
        self.next_seq = seq + 1
        frame = encode_frame(
            OUTPUT_STREAM_DATA,
            payload,
            sequence_number=seq,
            flags=FLAG_SYN if seq == 0 else 0,  # §7: SYN on seq 0 only
            payload_type=payload_type,
            message_id=random_message_id(),  # unique, not secret: no getrandom per frame
            created_ms=self._created_ms(),
        )
        self.unacked[seq] = _Outgoing(frame, now)
        if not self.paused:  # §7: nothing is sent while paused; the resend tick catches up
            self._transmit(frame)
        return True

    def oldest(self) -> _Outgoing | None:
        for entry in self.unacked.values():
            return entry
        return None

    def on_tick(self, now: float) -> bool:
        """§7: every 100 ms resend only the oldest unacked frame if it is older than RTO."""
        if self.paused:
            return False
        entry = self.oldest()
        if entry is None or now - entry.last_sent <= self.rto:
            return False
        self._transmit(entry.frame)  # unchanged: same MessageId, seq and CreatedDate
        entry.last_sent = now
        entry.resends += 1
        self.stats.agent.retransmissions += 1
        return True

    def _on_ack(self, data: bytes, start: int, now: float) -> None:
        """Apply the ack whose payload is ``data[start:]`` (read in place, not copied)."""
        match = _ACK_SEQ.match(data, start + _ACK_SEQ_AT) or _ACK_SEQ.search(data, start)
        if match is not None:
            seq = int(match.group(1))
        else:
            try:
                seq = parse_ack(data[start:]).sequence_number  # unusual spacing or layout
            except ProtocolError:
                return
        entry = self.unacked.pop(seq, None)
        if entry is None:
            return  # unknown or already acked: ignored
        # §7: RFC 6298 update from the acked message's LastSentTime (no Karn filter, like
        # the real agent).
        r = now - entry.last_sent
        err = self.srtt - r
        rttvar = self.rttvar = 0.75 * self.rttvar + 0.25 * (err if err >= 0 else -err)
        srtt = self.srtt = 0.875 * self.srtt + 0.125 * r
        var = 4 * rttvar
        rto = srtt + (var if var > CLOCK_GRANULARITY else CLOCK_GRANULARITY)
        self.rto = rto if rto < RTO_MAX else RTO_MAX
        if not self.unacked and self.on_drained is not None:
            self.on_drained()

    # --- receiving --------------------------------------------------------------------

    def _ack(self, frame: Frame) -> None:
        payload = build_ack(frame.message_type, frame.message_id_text, frame.sequence_number)
        self._transmit(
            encode_frame(
                ACKNOWLEDGE,
                payload,
                flags=ACK_FLAGS,
                message_id=random_message_id(),
                created_ms=self._created_ms(),
            )
        )

    def receive(self, data: bytes, now: float) -> list[Inbound]:
        """Apply one frame from the relay; return in-order payloads to act on."""
        size = len(data)
        if size >= FRAME_OVERHEAD and (
            data[4:36] == _ACK_FIELD or data[4:36].rstrip(b" \0") == _ACK_TYPE
        ):
            # Fast path for the most common frame: no Frame object, no UUID parsing.
            (header_length,) = _U32.unpack_from(data)
            if header_length + 4 > size:
                return []
            self.paused = False  # §7: any received ack or stream data ends the pause
            self._on_ack(data, header_length + 4, now)
            return []
        frame = parse_frame_lenient(data)
        if frame is None:
            return []  # docs/ssm-protocol.md §3: dropped without an ack; the sender resends
        mtype = frame.message_type
        if mtype == PAUSE_PUBLICATION:
            self.paused = True
            return []
        if mtype == START_PUBLICATION:
            self.paused = False
            return []
        if mtype != INPUT_STREAM_DATA:
            return []  # unknown types are ignored
        self.paused = False
        seq = frame.sequence_number
        if seq == self.expected:
            if not self.handshaking and not self.ready:
                # §7: handler not ready: no ack, expected unchanged; the client resends.
                self.stats.agent.not_ready += 1
                return []
            out: list[Inbound] = []
            self._ack(frame)
            self._accept(frame, out)
            self.expected += 1
            while self.expected in self.incoming:  # drain buffered successors (already acked)
                self._accept(self.incoming.pop(self.expected), out)
                self.expected += 1
            return out
        if seq > self.expected:
            if seq not in self.incoming:
                if len(self.incoming) >= INCOMING_LIMIT:
                    return []  # no room: dropped without an ack
                self.incoming[seq] = frame
            self._ack(frame)
            return []
        self._ack(frame)  # §7: duplicates are re-acked and not redelivered
        self.stats.agent.dup_reacks += 1
        return []

    def _accept(self, frame: Frame, out: list[Inbound]) -> None:
        ptype = frame.payload_type
        if self.handshaking:
            if ptype in _HANDSHAKE_REPLIES:
                out.append(Inbound(frame.sequence_number, ptype, frame.payload))
                return
            # §7: while a handshake runs, other input is acked and discarded (data loss).
            self.stats.agent.discarded_during_handshake += 1
            if self.strict:
                self.stats.warn(
                    self.session_id,
                    "discarded_during_handshake",
                    f"input seq {frame.sequence_number} (payload type {ptype}) arrived before "
                    "HandshakeComplete and was acked and discarded",
                )
            return
        if not frame.payload:
            return  # §7: empty payloads are ignored
        if ptype in _ACTED_ON:
            out.append(Inbound(frame.sequence_number, ptype, frame.payload))
        # Flag (10), late handshake replies and unknown types: acked and ignored.


# --- the asyncio driver ----------------------------------------------------------------


KmsDecrypt = Callable[[bytes, dict[str, str]], bytes]


def _spawn(
    argv: list[str],
    env: Mapping[str, str],
    cwd: str,
    distroless: bool,
    scratch_dir: str | None,
    namespace: Any = None,
) -> PtyProcess:
    """Create the container's scratch dir (§8.3: it is HOME), then start the process.

    Runs in a worker thread, so neither syscall holds up the event loop.
    """
    if scratch_dir is not None:
        try:
            os.makedirs(scratch_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise CannotStart(f"mkdir {scratch_dir}: {exc.strerror or exc}") from exc
    return PtyProcess.spawn(argv, env=env, cwd=cwd, distroless=distroless, namespace=namespace)


class _HandshakeFailed(Exception):
    pass


class SimulatedAgent:
    """One session's agent: Connected → [handshake] → PTY → output → drain → Terminating.

    ``send`` receives every frame for the relay: stream data, acks and, unless
    ``send_state`` is given, ``agent_session_state``. When the agent reports Terminating,
    ``end_reason`` and ``end_output`` say why, for the relay's ``channel_closed``.
    """

    def __init__(
        self,
        *,
        session_id: str,
        target_id: str,
        command: str,
        env: Mapping[str, str],
        cwd: str,
        settings: AgentSettings,
        stats: Stats,
        send: Callable[[bytes], None],
        send_state: Callable[[bytes], None] | None = None,
        distroless: bool = False,
        kms_key_id: str | None = None,
        kms_decrypt: KmsDecrypt | None = None,
        strict: bool = True,
        log: logging.Logger | None = None,
        scratch_dir: str | None = None,
        namespace: Any = None,
    ) -> None:
        self.session_id = session_id
        self.target_id = target_id
        self.command = command
        self.env = dict(env)
        self.cwd = cwd
        self.scratch_dir = scratch_dir
        self.namespace = namespace  # the container's namespaces (process.PtyProcess.spawn)
        self.distroless = distroless
        self.kms_key_id = kms_key_id
        self.settings = settings
        self.stats = stats
        self._send_state_frame = send_state or send
        self._kms_decrypt = kms_decrypt
        self.log = log or logging.getLogger("ecsexec.sandbox.agent")
        self.channel = AgentChannel(
            session_id=session_id, stats=stats, transmit=send, strict=strict
        )
        self.channel.on_drained = self._on_drained
        self.end_reason = "exited"
        self.end_output = ""
        self.process: PtyProcess | None = None
        self.returncode: int | None = None
        self.stopped = False
        self.terminating_sent = False
        self.last_output_at = 0.0
        self.on_reaped: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._carry = b""
        self._cipher: SessionCipher | None = None
        self._nonce = 0
        self._hs_reply: asyncio.Future[bytes] | None = None
        self._challenge_reply: asyncio.Future[bytes] | None = None
        self._wakeup: asyncio.Event | None = None
        self._pty_eof = False
        self._output_held = False
        self._exited = False
        self._reaped: asyncio.Event | None = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Attach now (§7 Start); must be called from inside the running loop."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._reaped = asyncio.Event()
        self.last_output_at = self._loop.time()
        self._task = self._loop.create_task(self._run(), name=f"agent {self.session_id}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        """Detach: kill the process group (SIGKILL), close the PTY, stop every timer.

        Idempotent. The exit watch stays until the kernel reports the exit, so the child is
        always reaped; :meth:`wait_reaped` waits for that.
        """
        if self.stopped:
            return
        self.stopped = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._cancel_tick()
        for fut in (self._hs_reply, self._challenge_reply):
            if fut is not None and not fut.done():
                fut.cancel()
        process = self.process
        if process is not None:
            process.kill()  # §8.4: SIGKILL to the session's process group
            if not process.closed:
                process.close(in_background=True)
                self.stats.processes.ptys_open -= 1
        elif self._reaped is not None:
            self._reaped.set()  # nothing was ever started

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the command's process group (StopTask's SIGTERM, §8.4)."""
        if self.process is not None and not self.stopped and self.returncode is None:
            self.process.kill(sig)

    async def wait_reaped(self, timeout: float) -> bool:
        """Wait until the exec'd process (if any) has been reaped."""
        if self._reaped is None:
            return True
        if self.process is None and self.stopped:
            return True
        try:
            await asyncio.wait_for(self._reaped.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def join(self) -> None:
        """Wait for the driver task to finish (after :meth:`stop` it is cancelled)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- relay → agent ----------------------------------------------------------------

    def deliver(self, data: bytes) -> None:
        """One frame from the relay (client input, acks, pause/start_publication)."""
        if self.stopped or self._loop is None:
            return
        channel = self.channel
        was_paused = channel.paused
        for item in channel.receive(data, self._loop.time()):
            if self.stopped:
                return
            self._act(item)
        if channel.paused is not was_paused:
            # Reading follows the pause state (§7); an ack that changes nothing (the
            # common case) leaves it alone.
            self._sync_reading()

    def _act(self, item: Inbound) -> None:
        ptype = item.payload_type
        if ptype == PayloadType.OUTPUT:
            payload = item.payload
            if self._cipher is not None:
                try:
                    payload = self._cipher.decrypt(payload)  # §7.1: inbound type 1 only
                except ProtocolError as exc:
                    self._fail("handshake_failed", f"Failed to decrypt input: {exc}")
                    return
            if self.process is not None:
                self.process.write(payload)
        elif ptype == PayloadType.SIZE:
            try:
                cols, rows = parse_size(item.payload)
            except ProtocolError:
                return
            if self.process is not None:
                self.process.set_winsize(cols, rows)
        elif ptype == PayloadType.HANDSHAKE_RESPONSE:
            if self._hs_reply is not None and not self._hs_reply.done():
                self._hs_reply.set_result(item.payload)
        elif (
            ptype == PayloadType.ENC_CHALLENGE_RESPONSE
            and self._challenge_reply is not None
            and not self._challenge_reply.done()
        ):
            self._challenge_reply.set_result(item.payload)

    # --- the session script -----------------------------------------------------------

    async def _run(self) -> None:
        assert self._loop is not None
        self._send_state("Connected")  # §7 Start
        if self.kms_key_id:
            try:
                await self._handshake()  # §7.1; PTY starts right after HandshakeComplete
            except _HandshakeFailed as exc:
                self.end_reason = "handshake_failed"
                self.end_output = HANDSHAKE_FAILED_PREFIX + str(exc)
                self.log.info("session %s: handshake failed: %s", self.session_id, exc)
                self._send_terminating()
                return
        else:
            await asyncio.sleep(self.settings.agent_start_delay)
        try:
            argv = self._argv()
            self.process = await self._spawn(argv)
        except (ShlexError, CannotStart) as exc:
            # §7 End: the real agent logs, waits ~2 s and ends with no output.
            self.log.warning("session %s: Unable to start command: %s", self.session_id, exc)
            await asyncio.sleep(self.settings.cannot_start_wait)
            self._send_terminating()
            return
        self.stats.processes.exec += 1
        self.stats.processes.ptys_open += 1
        self.process.watch_exit(self._loop, self._on_exit)
        self.channel.ready = True
        await asyncio.sleep(self.settings.initial_wait)  # §7: before the first PTY read
        self.process.start_reading(self._loop, self._on_pty_data, self._on_pty_eof)
        self._sync_reading()
        await self._until(lambda: self._pty_eof and self._exited)
        # §7 End: wait up to drain_timeout for every output frame to be acked.
        if self.channel.unacked:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._until(lambda: not self.channel.unacked), self.settings.drain_timeout
                )
        self._send_terminating()

    async def _spawn(self, argv: list[str]) -> PtyProcess:
        """Fork/exec in a worker thread: a burst of sessions must not stall the event loop
        (the fan-out benchmark showed loop lag p99 of 50-250 ms while spawning on it)."""
        spawn = asyncio.ensure_future(
            asyncio.to_thread(
                _spawn, argv, self.env, self.cwd, self.distroless, self.scratch_dir, self.namespace
            )
        )
        try:
            return await asyncio.shield(spawn)
        except asyncio.CancelledError:
            # The session ended while the child was starting: never leave it behind.
            with contextlib.suppress(Exception):
                orphan = await spawn
                orphan.kill()
                orphan.close()
                # Reap it here, off the loop: SIGKILL ends it at once, while a child dropped
                # unreaped stays a zombie (the session, already forgotten, would not wait
                # for it at shutdown).
                await asyncio.to_thread(orphan.wait, 5.0)
            raise

    def _argv(self) -> list[str]:
        if not self.command.strip():
            return ["sh"]  # docs/ssm-protocol.md §13: a blank command runs a bare sh
        argv = shlex_split(self.command)
        if not argv:
            raise CannotStart("exec: no command")
        return argv

    async def _until(self, condition: Callable[[], bool]) -> None:
        assert self._wakeup is not None
        while not condition():
            self._wakeup.clear()
            await self._wakeup.wait()

    def _poke(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _send_state(self, state: str) -> None:
        self._send_state_frame(
            encode_frame(
                AGENT_SESSION_STATE,
                build_agent_session_state(self.session_id, state),
                flags=ACK_FLAGS,  # trace: agent_session_state carries seq 0, flags 3
                message_id=random_message_id(),
                created_ms=_now_ms(),
            )
        )

    def _send_terminating(self) -> None:
        if self.terminating_sent:
            return
        self.terminating_sent = True
        self._cancel_tick()
        self._send_state("Terminating")

    def _fail(self, reason: str, detail: str) -> None:
        """End the session now (no drain), e.g. on an inbound decrypt failure (§7.1)."""
        self.end_reason = reason
        self.end_output = detail
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._send_terminating()

    # --- output -----------------------------------------------------------------------

    def _on_pty_data(self, data: bytes) -> None:
        if self._carry:
            data = self._carry + data  # §7: payload may reach 1024 + 3 bytes
        elif data[-1] < 0x80:
            self._emit(data)  # ends in ASCII: no incomplete UTF-8 tail to hold back
            return
        body, self._carry = split_utf8_tail(data)
        if body:
            self._emit(body)

    def _on_pty_eof(self) -> None:
        if self._carry:  # nothing more will complete it: send it raw
            carry, self._carry = self._carry, b""
            self._emit(carry)
        self._pty_eof = True
        self._poke()

    def _emit(self, payload: bytes) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        wire = self._encrypt(payload) if self._cipher is not None else payload
        if self.channel.send_stream(_OUTPUT, wire, now):
            self.stats.agent.output_bytes += len(payload)
            self.last_output_at = now
            if self._tick is None:  # §7: one resend timer per session, not one per frame
                self._ensure_tick()

    def _send_stream(self, payload_type: int, payload: bytes) -> None:
        assert self._loop is not None
        self.channel.send_stream(payload_type, payload, self._loop.time())
        self._ensure_tick()

    def hold_output(self, held: bool) -> None:
        """Stop (or resume) reading the PTY because the relay cannot pass frames on yet.

        This is what a blocking websocket write does to the real agent's read loop. It
        changes nothing else: acks, resends and the pause state go on as before.
        """
        self._output_held = held
        self._sync_reading()

    def _sync_reading(self) -> None:
        # §7: nothing is sent while paused, so stop reading the PTY until unpaused.
        process = self.process
        if process is None or process.closed or process.at_eof:
            return
        if self.channel.paused or self._output_held:
            process.pause_reading()
        elif process.reading_started:
            process.resume_reading()

    def _on_exit(self, returncode: int) -> None:
        self.returncode = returncode
        self._exited = True
        if self._reaped is not None:
            self._reaped.set()
        self._poke()
        if self.on_reaped is not None:
            self.on_reaped()

    def _on_drained(self) -> None:
        # Only the §7 End drain waits for "everything acked"; while output still flows the
        # buffer empties after most ack batches, and waking the session task each time
        # would be a task step per batch for nothing.
        if self._pty_eof and self._exited:
            self._poke()

    # --- retransmission timer ---------------------------------------------------------

    def _ensure_tick(self) -> None:
        if self._tick is None and self.channel.unacked and not self.stopped and self._loop:
            self._tick = self._loop.call_later(RESEND_TICK, self._on_tick)

    def _cancel_tick(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def _on_tick(self) -> None:
        self._tick = None
        if self.stopped or self.terminating_sent or self._loop is None:
            return
        self.channel.on_tick(self._loop.time())
        if self.channel.unacked:
            self._tick = self._loop.call_later(RESEND_TICK, self._on_tick)

    # --- KMS handshake (§7.1) ---------------------------------------------------------

    def _encrypt(self, plaintext: bytes, cipher: SessionCipher | None = None) -> bytes:
        use = cipher or self._cipher
        assert use is not None
        # §7.1: agent nonces come from a counter starting at a random value.
        nonce = (self._nonce % (1 << 96)).to_bytes(NONCE_BYTES, "big")
        self._nonce += 1
        return use.encrypt(plaintext, nonce=nonce)

    async def _reply(self, which: str) -> bytes:
        assert self._loop is not None
        fut: asyncio.Future[bytes] = self._loop.create_future()
        if which == "response":
            self._hs_reply = fut
        else:
            self._challenge_reply = fut
        try:
            return await asyncio.wait_for(fut, self.settings.handshake_timeout)
        except TimeoutError:
            if which == "response":
                raise _HandshakeFailed(HANDSHAKE_TIMEOUT_TEXT) from None
            raise _HandshakeFailed(
                "Timed out waiting for the encryption challenge response."
            ) from None

    async def _handshake(self) -> None:
        started = time.monotonic_ns()
        challenge = base64.b64encode(os.urandom(16)).decode()
        actions = [
            ClientAction(
                SESSION_TYPE_ACTION, {"SessionType": "InteractiveCommands", "Properties": None}
            ),
            ClientAction(KMS_ACTION, {"KMSKeyId": self.kms_key_id, "Challenge": challenge}),
        ]
        self.channel.handshaking = True
        self.channel.ready = False
        self._send_stream(
            PayloadType.HANDSHAKE_REQUEST, build_handshake_request(AGENT_VERSION, actions)
        )
        raw = await self._reply("response")
        try:
            response = parse_handshake_response(raw)
        except ProtocolError as exc:
            raise _HandshakeFailed(f"Invalid HandshakeResponse: {exc}") from None
        processed = {a.action_type: a for a in response.actions}
        for name in (SESSION_TYPE_ACTION, KMS_ACTION):
            action = processed.get(name)
            if action is None:
                raise _HandshakeFailed(f"{name} was not processed by the client.")
            if action.status != ACTION_SUCCESS:
                raise _HandshakeFailed(
                    f"{name} failed on client with status {action.status} error: {action.error}"
                )
        blob, acknowledged = self._kms_result(processed[KMS_ACTION].result)
        if self.settings.require_challenge_ack and not acknowledged:
            raise _HandshakeFailed("The client did not acknowledge the KMS challenge.")
        context = {"aws:ssm:SessionId": self.session_id, "aws:ssm:TargetId": self.target_id}
        if acknowledged:
            context["aws:ssm:RandomChallenge"] = challenge
        if self._kms_decrypt is None:
            raise _HandshakeFailed("KMS is not available to the agent.")
        self.stats.agent.kms_decrypts += 1
        try:
            data_key = self._kms_decrypt(blob, context)
            cipher = SessionCipher(data_key, role="agent")
        except Exception as exc:  # the KMS error text names the problem; never the key
            raise _HandshakeFailed(f"Fetching data key failed: {exc}") from None
        self._nonce = int.from_bytes(os.urandom(NONCE_BYTES), "big")
        secret = os.urandom(64)
        encrypted = base64.b64encode(self._encrypt(secret, cipher)).decode()
        self._send_stream(PayloadType.ENC_CHALLENGE_REQUEST, build_challenge(encrypted))
        reply = await self._reply("challenge")
        try:
            returned = cipher.decrypt(base64.b64decode(parse_challenge(reply), validate=True))
        except (ProtocolError, binascii.Error, ValueError) as exc:
            raise _HandshakeFailed(f"Invalid encryption challenge response: {exc}") from None
        if returned != secret:
            raise _HandshakeFailed("Encryption challenge does not match.")
        elapsed = time.monotonic_ns() - started
        self._send_stream(
            PayloadType.HANDSHAKE_COMPLETE, build_handshake_complete(elapsed, KMS_CUSTOMER_MESSAGE)
        )
        self._cipher = cipher
        self.channel.handshaking = False

    @staticmethod
    def _kms_result(result: Any) -> tuple[bytes, bool]:
        if isinstance(result, str):  # tolerate an ActionResult sent as a JSON string
            try:
                result = json.loads(result)
            except ValueError:
                result = None
        if not isinstance(result, dict):
            raise _HandshakeFailed("KMSEncryption ActionResult is missing.")
        key_b64 = result.get("KMSCipherTextKey")
        if not isinstance(key_b64, str) or not key_b64:
            raise _HandshakeFailed("KMSEncryption ActionResult has no KMSCipherTextKey.")
        try:
            blob = base64.b64decode(key_b64, validate=True)
        except (binascii.Error, ValueError):
            raise _HandshakeFailed("KMSCipherTextKey is not base64.") from None
        return blob, result.get("ChallengeAcknowledgement") is True

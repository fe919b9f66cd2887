"""The message-gateway (MGS) relay and session registry of the sandbox.

See docs/sandbox.md §6, §11, §12.

``SessionHub`` owns every exec session: it starts the simulated agent at ExecuteCommand
time, validates the client's open frame and single-use token, relays binary frames byte
for byte between the client's websocket and the in-process agent, queues agent frames
while no client is attached, applies fault injection, and sends ``channel_closed`` when a
session ends. The control plane calls it; it never calls the control plane.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import signal
import string
import struct
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any, Final

from aiohttp import WSMsgType, web

from ecsexec.errors import ProtocolError
from ecsexec.sandbox.agent import AgentSettings, KmsDecrypt, SimulatedAgent
from ecsexec.sandbox.faults import (
    REORDER_HOLD_MAX,
    Direction,
    FaultPlan,
    FrameDecision,
    FrameFaultStream,
)
from ecsexec.sandbox.stats import FrameCounter, Stats
from ecsexec.ssm.frames import (
    ACKNOWLEDGE,
    AGENT_SESSION_STATE,
    CHANNEL_CLOSED,
    FRAME_OVERHEAD,
    INPUT_STREAM_DATA,
    MAX_FRAME_BYTES,
    MAX_PAYLOAD,
    OUTPUT_STREAM_DATA,
    PAUSE_PUBLICATION,
    START_PUBLICATION,
    decode_frame,
    encode_frame,
)
from ecsexec.ssm.payloads import build_channel_closed, parse_agent_session_state
from ecsexec.ssm.wsframe import binary_frame_header

__all__ = ["AgentSettings", "ExecTarget", "SessionGrant", "SessionHub"]

SESSION_PREFIX: Final = "ecs-execute-command-"
_SID_ALPHABET: Final = string.ascii_lowercase + string.digits
CLIENT_QUEUE_LIMIT: Final = 10_000  # §6: agent→client frames kept while no client is attached
RESUME_WINDOW: Final = 3600.0  # §5: ResumeSession on a session ended < 1 h ago → no token
CLOSE_TIMEOUT: Final = 2.0  # how long ws.close() waits for the peer's close frame
WS_POLICY_VIOLATION: Final = 1008
WS_TOO_BIG: Final = 1009
#: The open frame is ~300 bytes plus the token; anything above this before authentication
#: is refused (1009) without being parsed.
OPEN_FRAME_LIMIT: Final = 16 * 1024
#: Every client message, as the client's own limit: aiohttp refuses a larger one (1009)
#: before buffering it, so an unauthenticated peer can make the relay hold at most this.
MESSAGE_LIMIT: Final = MAX_FRAME_BYTES
WS_NORMAL: Final = 1000
WS_GOING_AWAY: Final = 1001
# One transport write carries at most this many bytes of queued agent frames; the writer
# then honours the transport's flow control before taking more from the queue.
WRITE_BATCH_BYTES: Final = 256 * 1024
# Back-pressure while a client is attached (sandbox): the real agent's websocket write
# blocks when MGS cannot pass its frames on, which stops its PTY reads. Here the agent
# stops reading its PTY while more than HOLD_HIGH frames wait for the client's socket,
# and reads again once the writer has brought the queue down to HOLD_LOW. Without it a
# client slower than the PTY would overflow the queue and lose output to the drain
# timeout. Nothing on the wire changes (no pause_publication).
HOLD_HIGH: Final = 512
HOLD_LOW: Final = 128

_KNOWN_TYPES: Final = frozenset(
    {
        INPUT_STREAM_DATA,
        OUTPUT_STREAM_DATA,
        ACKNOWLEDGE,
        CHANNEL_CLOSED,
        START_PUBLICATION,
        PAUSE_PUBLICATION,
        AGENT_SESSION_STATE,
    }
)
# MessageType fields as the Go serializer pads them (spaces), for a lookup without decoding.
_KNOWN_FIELDS: Final = {t.encode().ljust(32, b" "): t for t in _KNOWN_TYPES}
_STATE_TYPE_FIELD: Final = AGENT_SESSION_STATE.encode().ljust(32, b" ")
_HL_AND_PL: Final = struct.Struct(">I112xI")  # HeaderLength (offset 0), PayloadLength (116)
_BINARY: Final = WSMsgType.BINARY
_TEXT: Final = WSMsgType.TEXT
_END_TYPES: Final = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
_INPUT_TYPE_FIELD: Final = INPUT_STREAM_DATA.encode().ljust(32, b" ")

# channel_closed Output texts (sandbox text: clients display them, never parse them, §6).
END_OUTPUT: Final = {
    "terminated": "Session terminated by TerminateSession.",
    "task_stopped": "The task stopped; the session has ended.",
    "agent_lost": "The SSM agent in the container was lost.",
    "idle_timeout": "Your session timed out due to inactivity and has been terminated.",
    "shutdown": "The sandbox is shutting down.",
}


@dataclass(frozen=True)
class ExecTarget:
    """Where a session runs; composed by the control plane from the topology (§8.3)."""

    target_id: str  # "ecs:<clusterName>_<taskId>_<runtimeId>"
    task_arn: str
    container_name: str
    env: dict[str, str]  # complete env for exec'd processes
    cwd: str
    distroless: bool = False
    kms_key_id: str | None = None  # key ARN when the cluster has a kmsKeyId
    scratch_dir: str | None = None  # created (0700) before the process starts (§8.3 HOME)
    namespace: Any = None  # the container's namespaces.ContainerNamespace, if isolated


@dataclass(frozen=True)
class SessionGrant:
    """What ExecuteCommand / ResumeSession return. ``token_value`` is a secret."""

    session_id: str
    stream_url: str
    token_value: str

    def __repr__(self) -> str:  # never print the token
        return f"SessionGrant(session_id={self.session_id!r}, stream_url={self.stream_url!r})"


@dataclass(eq=False)
class _Client:
    ws: web.WebSocketResponse
    request: web.Request
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    writer: asyncio.Task[None] | None = None
    closer: asyncio.Task[None] | None = None


@dataclass(eq=False)
class _Session:
    sid: str
    target: ExecTarget
    command: str
    ordinal: int
    started_at: float  # wall clock, for listings
    started_mono: float
    tokens: dict[str, float] = field(default_factory=dict)  # token → expiry (loop time)
    agent: SimulatedAgent | None = None
    client: _Client | None = None
    outq: deque[bytes] = field(default_factory=deque)
    held: bool = False  # the agent is holding PTY reads for the attached client's queue
    ended: bool = False
    end_reason: str = ""
    ended_at: float = 0.0
    closed_frame: bytes | None = None
    closed_queued: bool = False
    closed_delivered: bool = False
    silent: bool = False
    has_override: bool = False
    override: FaultPlan | None = None
    pipes: dict[str, _Pipeline] = field(default_factory=dict)
    last_input_at: float = 0.0
    idle_handle: asyncio.TimerHandle | None = None
    agent_state: str = ""
    refused: bool = False
    stopping_reason: str = ""  # set while StopTask waits for SIGTERM to take effect
    ended_event: asyncio.Event = field(default_factory=asyncio.Event)


class _Pipeline:
    """One direction of one session: fault decisions, FIFO delay and reorder (§12).

    Binary data frames get a :class:`FrameDecision`; control items (``channel_closed``,
    ``agent_session_state``) are only delayed in FIFO order, so they never overtake data.
    With no faults in effect and nothing queued, items pass straight through. Data leaves
    through ``emit`` and control items through ``emit_control``.
    """

    __slots__ = (
        "_emit",
        "_emit_control",
        "_fifo",
        "_held",
        "_held_timer",
        "_hub",
        "_last_release",
        "_session",
        "_stream",
        "_stream_plan",
        "_timer",
        "direction",
    )

    def __init__(
        self,
        hub: SessionHub,
        session: _Session,
        direction: Direction,
        emit: Callable[[_Session, bytes], None],
        emit_control: Callable[[_Session, bytes], None] | None = None,
    ) -> None:
        self._hub = hub
        self._session = session
        self.direction: Direction = direction
        self._emit = emit
        self._emit_control = emit_control or emit
        self._fifo: deque[tuple[float, bytes, bool, bool]] = deque()
        self._held: bytes | None = None
        self._held_timer: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_release = 0.0
        self._stream: FrameFaultStream | None = None
        self._stream_plan: FaultPlan | None = None

    @property
    def _counter(self) -> FrameCounter:
        return self._hub.stats.frames[self.direction]  # looked up: a stats reset replaces it

    def _decide(self, plan: FaultPlan) -> FrameDecision | None:
        if not plan.direction(self.direction).active:
            return None
        if self._stream is None or self._stream_plan is not plan:
            target = self._session.target
            self._stream = FrameFaultStream(
                plan,
                task_arn=target.task_arn,
                container_name=target.container_name,
                ordinal=self._session.ordinal,
                direction=self.direction,
            )
            self._stream_plan = plan
        return self._stream.next()

    def push(self, item: bytes, *, control: bool = False) -> None:
        session = self._session
        plan = session.override if session.has_override else self._hub.faults
        decision = None if control or plan is None else self._decide(plan)
        if decision is None and not self._fifo and self._held is None:
            # Fast path: no faults, no backlog (what _out would do with nothing held).
            (self._emit_control if control else self._emit)(session, item)
            return
        copies = 1
        delay = 0.0
        reorder = False
        if decision is not None:
            if decision.disconnect and session.client is not None:
                self._counter.disconnects += 1
                self._hub._abort_client(session)
                return  # the frame dies with the connection
            # With no client attached there is no socket to abort: an agent frame queues
            # for the resumed client like any other (§6).
            if decision.drop:
                self._counter.dropped += 1
                return
            if decision.dup:
                self._counter.duplicated += 1
                copies = 2
            if decision.delay > 0:
                self._counter.delayed += 1
                delay = decision.delay
            reorder = decision.reorder
        loop = self._hub._loop_or_raise()
        now = loop.time()
        release = max(now + delay, self._last_release)  # FIFO: never overtake earlier items
        self._last_release = release
        if release <= now and not self._fifo:
            for _ in range(copies):
                self._out(item, control=control, reorder=reorder)
            return
        for _ in range(copies):
            self._fifo.append((release, item, control, reorder))
        if self._timer is None:
            self._timer = loop.call_at(self._fifo[0][0], self._release_due)

    def _release_due(self) -> None:
        self._timer = None
        loop = self._hub._loop_or_raise()
        now = loop.time()
        while self._fifo and self._fifo[0][0] <= now:
            _, item, control, reorder = self._fifo.popleft()
            self._out(item, control=control, reorder=reorder)
        if self._fifo and self._timer is None:  # a re-entrant push may have scheduled it
            self._timer = loop.call_at(self._fifo[0][0], self._release_due)

    def _out(self, item: bytes, *, control: bool, reorder: bool) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if self._held_timer is not None:
                self._held_timer.cancel()
                self._held_timer = None
            if control:
                self._emit(self._session, held)  # control never overtakes held data
                self._emit_control(self._session, item)
            else:
                self._counter.reordered += 1
                self._emit(self._session, item)  # §12: released after the next frame
                self._emit(self._session, held)
            return
        if reorder and not control:
            self._held = item
            loop = self._hub._loop_or_raise()
            self._held_timer = loop.call_later(REORDER_HOLD_MAX, self._release_held)
            return
        (self._emit_control if control else self._emit)(self._session, item)

    def _release_held(self) -> None:
        self._held_timer = None
        held, self._held = self._held, None
        if held is not None:
            self._emit(self._session, held)

    def close(self) -> None:
        for timer in (self._timer, self._held_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._held_timer = None
        self._fifo.clear()
        self._held = None


_HEADER_CACHE: dict[int, bytes] = {}  # lengths of agent frames repeat: ≤ 1024 + 3 + 120 + 28


def _cached_header(length: int) -> bytes:
    """Header of one server→client binary frame: unmasked (RFC 6455 §5.1), and RSV1 clear
    because this relay never negotiates permessage-deflate (docs/sandbox.md §6)."""
    header = _HEADER_CACHE.get(length)
    if header is None:
        header = binary_frame_header(length, masked=False)
        if length <= 4096:
            _HEADER_CACHE[length] = header
    return header


def _random_sid_suffix() -> str:
    """26 uniform ``[a-z0-9]`` characters (§4.2) from one ``urandom`` call.

    ``secrets.choice`` costs one syscall per character; rejection sampling over bytes
    below 252 (7 × 36) keeps every character uniform.
    """
    chars: list[str] = []
    while True:
        for byte in secrets.token_bytes(40):
            if byte < 252:
                chars.append(_SID_ALPHABET[byte % 36])
                if len(chars) == 26:
                    return "".join(chars)


def _iso_ms(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(ts * 1000) % 1000:03d}Z"
    )


def _size(data: str | bytes) -> int:
    """A websocket message's size in bytes (a TEXT message arrives decoded)."""
    return len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))


class SessionHub:
    """The MGS relay plus the registry of exec sessions (see module docstring)."""

    def __init__(
        self,
        *,
        stats: Stats,
        settings: AgentSettings,
        kms_decrypt: KmsDecrypt | None = None,
        faults: FaultPlan | None = None,
        strict: bool = True,
        log: logging.Logger | None = None,
    ) -> None:
        self.stats = stats
        self.settings = settings
        self.faults = faults
        # §6: strict mode records protocol warnings. Without it the relay does not inspect
        # client frames at all (a header parse and a SHA-256 per frame, acks included).
        self.strict = strict
        self.log = log or logging.getLogger("ecsexec.sandbox.hub")
        self._kms_decrypt = kms_decrypt
        self._base_ws_url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sessions: dict[str, _Session] = {}
        self._ended: dict[str, _Session] = {}  # ended sessions still in _sessions
        self._tombstones: dict[str, float] = {}  # sid → ended_at (loop time), oldest first
        self._active: dict[tuple[str, str], int] = {}
        self._ordinals: dict[tuple[str, str], int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._shutting_down = False

    # --- setup ------------------------------------------------------------------------

    def bind(self, base_ws_url: str) -> None:
        """Record the listener's base URL (``ws://127.0.0.1:PORT`` or ``wss://…``)."""
        self._base_ws_url = base_ws_url.rstrip("/")

    def _loop_or_raise(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _url(self, sid: str) -> str:
        if self._base_ws_url is None:
            raise RuntimeError("SessionHub.bind() must be called before sessions start")
        cell = base64.urlsafe_b64encode(secrets.token_bytes(12)).decode().rstrip("=")
        return (
            f"{self._base_ws_url}/v1/data-channel/{sid}?role=publish_subscribe&cell-number={cell}"
        )

    def _new_token(self, session: _Session) -> str:
        loop = self._loop_or_raise()
        now = loop.time()
        for token, expiry in list(session.tokens.items()):
            if expiry <= now:
                del session.tokens[token]
        token = secrets.token_urlsafe(32)  # §4.2: ≥ 32 random bytes, never from the seed
        session.tokens[token] = now + self.settings.token_ttl
        return token

    def _new_session(self, target: ExecTarget, command: str) -> _Session:
        loop = self._loop_or_raise()
        if self._shutting_down:
            raise RuntimeError("the session hub is shut down")
        if self._base_ws_url is None:
            raise RuntimeError("SessionHub.bind() must be called before sessions start")
        self._prune()
        sid = SESSION_PREFIX + _random_sid_suffix()
        key = (target.task_arn, target.container_name)
        ordinal = self._ordinals.get(key, 0)
        self._ordinals[key] = ordinal + 1
        now = loop.time()
        session = _Session(
            sid=sid,
            target=target,
            command=command,
            ordinal=ordinal,
            started_at=time.time(),
            started_mono=now,
            last_input_at=now,
        )
        session.pipes["a2c"] = _Pipeline(
            self, session, "a2c", self._deliver_a2c, self._deliver_a2c_control
        )
        session.pipes["c2a"] = _Pipeline(self, session, "c2a", self._deliver_c2a)
        self._sessions[sid] = session
        self.stats.sessions.opened += 1
        return session

    # --- sessions ---------------------------------------------------------------------

    def start_session(self, target: ExecTarget, command: str) -> SessionGrant:
        """Create a session and start its agent now (§4.2: before any client connects)."""
        session = self._new_session(target, command)
        url = self._url(session.sid)
        token = self._new_token(session)
        key = (target.task_arn, target.container_name)
        self._active[key] = self._active.get(key, 0) + 1
        agent = SimulatedAgent(
            session_id=session.sid,
            target_id=target.target_id,
            command=command,
            env=target.env,
            cwd=target.cwd,
            scratch_dir=target.scratch_dir,
            namespace=target.namespace,
            distroless=target.distroless,
            kms_key_id=target.kms_key_id,
            kms_decrypt=self._kms_decrypt,
            settings=self.settings,
            strict=self.strict,
            stats=self.stats,
            send=session.pipes["a2c"].push,  # stream data and acks
            send_state=lambda frame: session.pipes["a2c"].push(frame, control=True),
            log=self.log,
        )
        session.agent = agent
        agent.on_reaped = lambda: self._maybe_forget(session)
        agent.start()
        self._arm_idle(session)
        self.log.info(
            "session %s started on %s/%s", session.sid, target.task_arn, target.container_name
        )
        return SessionGrant(session.sid, url, token)

    def refuse_session(self, target: ExecTarget, reason: str) -> SessionGrant:
        """§11 channel mode: the session's first and only frame is channel_closed(reason)."""
        session = self._new_session(target, "")
        url = self._url(session.sid)
        token = self._new_token(session)
        session.refused = True
        session.ended = True
        self._ended[session.sid] = session
        session.end_reason = "limit"
        session.ended_at = self._loop_or_raise().time()
        self.stats.session_ended("limit")
        self._queue_channel_closed(session, reason)
        return SessionGrant(session.sid, url, token)

    def active_sessions(self, task_arn: str, container_name: str) -> int:
        return self._active.get((task_arn, container_name), 0)

    def resume(self, session_id: str) -> SessionGrant | None:
        loop = self._loop_or_raise()
        session = self._sessions.get(session_id)
        ended_at = self._tombstones.get(session_id)
        if session is not None and not session.ended:
            self.stats.sessions.resumes += 1
            return SessionGrant(session_id, self._url(session_id), self._new_token(session))
        if session is not None:
            ended_at = session.ended_at
        if ended_at is not None and loop.time() - ended_at < RESUME_WINDOW:
            return SessionGrant(session_id, "", "")  # §5: the plugin reads this as timed out
        return None

    async def terminate(self, session_id: str) -> None:
        """TerminateSession: kill the process group, then channel_closed. Idempotent."""
        session = self._sessions.get(session_id)
        if session is None or session.ended:
            return
        self._end(session, "terminated", END_OUTPUT["terminated"])
        if session.agent is not None:
            await session.agent.wait_reaped(2.0)

    async def stop_task(
        self, task_arn: str, reason: str = "task_stopped", *, stop_timeout: float = 0.0
    ) -> None:
        """End every live session of a task (StopTask, essential exit, or agent loss).

        §8.4: with ``stop_timeout`` > 0 each session's process group first gets SIGTERM,
        and a session whose command exits in time ends through the agent's normal drain;
        whatever is left is killed (SIGKILL) when the timeout passes. With 0 (the default)
        every session is killed at once.
        """
        sessions = [
            s for s in self._sessions.values() if not s.ended and s.target.task_arn == task_arn
        ]
        silent = reason == "agent_lost" and self.settings.agent_loss == "silent"
        if stop_timeout > 0 and not silent:
            waits = []
            for session in sessions:
                session.stopping_reason = reason
                if session.agent is not None:
                    session.agent.signal(signal.SIGTERM)
                waits.append(asyncio.ensure_future(session.ended_event.wait()))
            if waits:
                _, pending = await asyncio.wait(waits, timeout=stop_timeout)
                for waiter in pending:
                    waiter.cancel()
        output = END_OUTPUT.get(reason, "The session has ended.")
        for session in sessions:
            self._end(session, reason, output, silent=silent)
        for session in sessions:
            if session.agent is not None:
                await session.agent.wait_reaped(2.0)

    def set_faults(self, plan: FaultPlan | None, session_id: str | None = None) -> None:
        """Set the global plan, or one session's override (``None`` removes the override)."""
        if session_id is None:
            self.faults = plan
            return
        session = self._sessions.get(session_id)
        if session is None:
            raise KeyError(session_id)
        session.has_override = plan is not None
        session.override = plan

    def list_sessions(self) -> list[dict[str, Any]]:
        """Sessions that are live or still closing; no tokens."""
        out = []
        for s in self._sessions.values():
            agent = s.agent
            out.append(
                {
                    "sessionId": s.sid,
                    "targetId": s.target.target_id,
                    "taskArn": s.target.task_arn,
                    "containerName": s.target.container_name,
                    "command": s.command,
                    "state": "ended" if s.ended else "active",
                    "endReason": s.end_reason or None,
                    "startedAt": s.started_at,
                    "ordinal": s.ordinal,
                    "clientConnected": s.client is not None,
                    "pid": agent.pid if agent is not None else None,
                    "agentState": s.agent_state or None,
                    "queuedFrames": len(s.outq),
                    "faults": (
                        s.override.to_spec() if s.has_override and s.override is not None else None
                    ),
                }
            )
        return out

    async def disconnect_client(self, session_id: str) -> None:
        """Abort the client's socket; the session lives on (the client must resume)."""
        session = self._sessions.get(session_id)
        if session is not None:
            self._abort_client(session)

    async def pause(self, session_id: str) -> None:
        """Send ``pause_publication`` to the agent (§12 control)."""
        session = self._sessions.get(session_id)
        if session is None or session.ended or session.agent is None:
            return
        session.agent.deliver(
            encode_frame(
                PAUSE_PUBLICATION,
                b"",
                message_id=uuid.uuid4(),
                created_ms=time.time_ns() // 1_000_000,
            )
        )

    # --- ending -----------------------------------------------------------------------

    def _end(self, session: _Session, reason: str, output: str, *, silent: bool = False) -> None:
        if session.ended:
            return
        loop = self._loop_or_raise()
        session.ended = True
        self._ended[session.sid] = session
        session.end_reason = reason
        session.ended_at = loop.time()
        session.ended_event.set()
        self.stats.session_ended(reason)
        key = (session.target.task_arn, session.target.container_name)
        self._active[key] = self._active.get(key, 1) - 1
        if self._active[key] <= 0:
            del self._active[key]
        if session.idle_handle is not None:
            session.idle_handle.cancel()
            session.idle_handle = None
        if session.agent is not None:
            session.agent.stop()  # §8.4: kill the process group and close the PTY
        session.pipes["c2a"].close()
        self.log.info("session %s ended: %s", session.sid, reason)
        if silent:
            session.silent = True  # §6 agent loss "silent": the client hears nothing more
        else:
            self._queue_channel_closed(session, output)
        self._maybe_forget(session)

    def _queue_channel_closed(self, session: _Session, output: str) -> None:
        now = time.time()
        mid = uuid.uuid4()
        payload = build_channel_closed(
            message_id=str(mid),
            created_date=_iso_ms(now),
            destination_id=session.target.target_id,
            session_id=session.sid,
            output=output,
        )
        # §6: message type channel_closed, seq 0, flags 0, payload type 0 (model).
        frame = encode_frame(CHANNEL_CLOSED, payload, message_id=mid, created_ms=int(now * 1000))
        session.closed_frame = frame
        session.pipes["a2c"].push(frame, control=True)  # after all earlier agent frames

    def _maybe_forget(self, session: _Session) -> None:
        """Drop an ended session's state once nothing more can reach its client."""
        if not session.ended or session.client is not None:
            return
        if session.agent is not None and session.agent.returncode is None and session.agent.pid:
            return  # still waiting for the reap
        if not (session.closed_delivered or session.silent) and session.tokens:
            now = self._loop_or_raise().time()
            if any(expiry > now for expiry in session.tokens.values()):
                return  # a client may still connect and collect channel_closed
        if self._sessions.get(session.sid) is session:
            del self._sessions[session.sid]
            self._ended.pop(session.sid, None)
            self._tombstones[session.sid] = session.ended_at
            for pipe in session.pipes.values():
                pipe.close()
            session.outq.clear()

    def _prune(self) -> None:
        loop = self._loop_or_raise()
        now = loop.time()
        for sid in list(self._tombstones):
            if now - self._tombstones[sid] < RESUME_WINDOW:
                break
            del self._tombstones[sid]
        # Only ended sessions can be forgotten: walk those, not every live session.
        for session in list(self._ended.values()):
            self._maybe_forget(session)

    # --- idle timeout -----------------------------------------------------------------

    def _arm_idle(self, session: _Session) -> None:
        loop = self._loop_or_raise()
        session.idle_handle = loop.call_later(self.settings.idle_timeout, self._idle_check, session)

    def _idle_check(self, session: _Session) -> None:
        session.idle_handle = None
        if session.ended:
            return
        loop = self._loop_or_raise()
        last = session.last_input_at
        if session.agent is not None:
            last = max(last, session.agent.last_output_at)
        due = last + self.settings.idle_timeout
        if loop.time() >= due:
            self._end(session, "idle_timeout", END_OUTPUT["idle_timeout"])
        else:
            session.idle_handle = loop.call_at(due, self._idle_check, session)

    # --- agent → client ---------------------------------------------------------------

    def _deliver_a2c(self, session: _Session, frame: bytes) -> None:
        """An agent data frame (stream data or ack) leaves the a2c pipeline."""
        if session.silent or session.closed_queued:
            return  # nothing follows channel_closed
        outq = session.outq
        if len(outq) >= CLIENT_QUEUE_LIMIT:
            return  # §6: overflow drops the newest frame; the agent's resend recovers it
        outq.append(frame)
        counter = self.stats.frames["a2c"]
        counter.relayed += 1
        counter.bytes += len(frame)
        client = session.client
        if client is not None:
            client.wake.set()
            if len(outq) > HOLD_HIGH and not session.held:
                self._update_hold(session)

    def _deliver_a2c_control(self, session: _Session, frame: bytes) -> None:
        """``agent_session_state`` or ``channel_closed`` leaves the a2c pipeline."""
        if frame[4:36] == _STATE_TYPE_FIELD:
            self._on_agent_state(session, frame)  # §6: consumed, never relayed
            return
        if session.silent:
            return
        if frame is session.closed_frame:
            session.outq.append(frame)
            session.closed_queued = True
        else:
            self._deliver_a2c(session, frame)
            return
        client = session.client
        if client is not None:
            client.wake.set()

    def _update_hold(self, session: _Session) -> None:
        """Start or end the agent's read hold from the client queue's length (HOLD_HIGH)."""
        limit = HOLD_LOW if session.held else HOLD_HIGH
        held = session.client is not None and len(session.outq) > limit
        if held is not session.held:
            session.held = held
            if session.agent is not None:
                session.agent.hold_output(held)

    def _on_agent_state(self, session: _Session, frame: bytes) -> None:
        try:
            state = parse_agent_session_state(decode_frame(frame).payload)
        except ProtocolError:
            return
        session.agent_state = state
        if state == "Terminating" and not session.ended:
            agent = session.agent
            reason = agent.end_reason if agent is not None else "exited"
            output = agent.end_output if agent is not None else ""
            if session.stopping_reason and reason == "exited":
                # The command exited on StopTask's SIGTERM: the task stop is why it ended.
                reason = session.stopping_reason
                output = END_OUTPUT.get(reason, "The session has ended.")
            self._end(session, reason, output)

    # --- client → agent ---------------------------------------------------------------

    def _from_client(self, session: _Session, data: bytes) -> None:
        if self.strict:
            self._inspect(session, data)
        if data[4:36] == _INPUT_TYPE_FIELD:
            session.last_input_at = self._loop_or_raise().time()
        if session.ended:
            return
        session.pipes["c2a"].push(data)

    def _deliver_c2a(self, session: _Session, frame: bytes) -> None:
        counter = self.stats.frames["c2a"]
        counter.relayed += 1
        counter.bytes += len(frame)
        agent = session.agent
        if agent is not None and not session.ended:
            agent.deliver(frame)  # byte for byte

    def _inspect(self, session: _Session, data: bytes) -> None:
        """Strict-mode protocol warnings for a client frame (§6); never alters it.

        Reads the header in place (no Frame or UUID objects): this runs for every client
        frame, acks included.
        """
        size = len(data)
        if size < FRAME_OVERHEAD:
            self.stats.warn(session.sid, "invalid_frame", f"malformed {size}-byte frame")
            return
        header_length, declared = _HL_AND_PL.unpack_from(data)
        if header_length + 4 > size or header_length == 0:
            self.stats.warn(session.sid, "invalid_frame", f"malformed {size}-byte frame")
            return
        field = data[4:36]
        mtype = _KNOWN_FIELDS.get(field)
        if mtype is None:
            mtype = field.rstrip(b" \0").decode("ascii", "replace")
            if mtype not in _KNOWN_TYPES:
                self.stats.warn(
                    session.sid, "unknown_message_type", f"client sent message type {mtype!r}"
                )
                return
        payload = data[header_length + 4 :]
        # docs/ssm-protocol.md §3: the digest is checked only when PayloadLength is non-zero.
        if declared and sha256(payload).digest() != data[80:112]:
            seq = int.from_bytes(data[48:56], "big", signed=True)
            self.stats.warn(
                session.sid, "bad_digest", f"{mtype} seq {seq}: payload digest mismatch"
            )
            return
        if mtype != INPUT_STREAM_DATA:
            return
        sid = session.sid
        if not payload:
            seq = int.from_bytes(data[48:56], "big", signed=True)
            self.stats.warn(sid, "empty_payload", f"input_stream_data seq {seq} is empty")
        elif len(payload) > MAX_PAYLOAD and int.from_bytes(data[112:116], "big") == 1:
            seq = int.from_bytes(data[48:56], "big", signed=True)
            self.stats.warn(
                sid,
                "oversize_input",
                f"input seq {seq} carries {len(payload)} bytes (limit {MAX_PAYLOAD})",
            )

    # --- websocket side ---------------------------------------------------------------

    async def handle_data_channel(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/data-channel/{sid}``: one client connection (§6)."""
        loop = self._loop_or_raise()
        ws = web.WebSocketResponse(
            compress=False,  # §6: never negotiate permessage-deflate
            max_msg_size=MESSAGE_LIMIT,
            autoping=True,  # §6: answer pings
            timeout=CLOSE_TIMEOUT,
        )
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="websocket upgrade required\n")
        await ws.prepare(request)
        sid = request.match_info.get("sid") or request.path.rstrip("/").rsplit("/", 1)[-1]
        session = self._sessions.get(sid)
        if request.query.get("role") != "publish_subscribe" or session is None:
            await ws.close(code=WS_POLICY_VIOLATION, message=b"unknown session or role")
            return ws
        # Unauthenticated until the open frame: a few seconds and OPEN_FRAME_LIMIT bytes.
        wait = min(self.settings.open_timeout, self.settings.token_ttl)
        try:
            first = await ws.receive(timeout=wait)
        except TimeoutError:
            await ws.close(
                code=WS_POLICY_VIOLATION, message=f"no open frame within {wait:g} s".encode()
            )
            return ws
        if (
            first.type in (WSMsgType.TEXT, WSMsgType.BINARY)
            and _size(first.data) > OPEN_FRAME_LIMIT
        ):
            await ws.close(code=WS_TOO_BIG, message=b"open frame too large")
            return ws
        if first.type != WSMsgType.TEXT or not self._open_ok(session, first.data):
            if first.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await ws.close(code=WS_POLICY_VIOLATION, message=b"invalid open frame or token")
            return ws
        self.stats.sessions.client_connects += 1
        client = _Client(ws=ws, request=request)
        old = session.client
        session.client = client
        self._update_hold(session)
        if old is not None:
            self._close_client(old, WS_NORMAL)  # §6: a second open replaces the first
        client.writer = loop.create_task(self._write_loop(session, client))
        if session.outq:
            client.wake.set()
        receive = ws.receive  # what ``async for msg in ws`` does, one coroutine less per frame
        from_client = self._from_client
        try:
            while True:
                msg = await receive()
                if session.client is not client:
                    break  # aborted or replaced: what it still had in flight is lost (§12)
                mtype = msg.type
                if mtype == _BINARY:
                    from_client(session, msg.data)
                elif mtype == _TEXT:
                    if self.strict:
                        self.stats.warn(
                            sid, "non_binary_frame", "TEXT message after the open frame"
                        )
                    from_client(session, msg.data.encode())
                elif mtype in _END_TYPES:
                    break
        finally:
            client.gone.set()
            if session.client is client:
                session.client = None
                self._update_hold(session)  # §6: detached, frames queue (and drop) again
            client.wake.set()  # the writer sees it is no longer attached and returns
            await self._finish_task(client.writer)
            await self._finish_task(client.closer)
            self._maybe_forget(session)
        return ws

    @staticmethod
    async def _finish_task(task: asyncio.Task[None] | None) -> None:
        if task is None:
            return
        if not task.done():
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _open_ok(self, session: _Session, text: str) -> bool:
        """Validate the open frame and consume its single-use token (§6)."""
        try:
            obj = json.loads(text)
        except ValueError:
            return False
        if not isinstance(obj, dict):
            return False
        version = obj.get("MessageSchemaVersion")
        if version != "1.0" and self.strict:
            self.stats.warn(
                session.sid, "schema_version", f"MessageSchemaVersion is {version!r}, not '1.0'"
            )
        if "ClientVersion" not in obj and self.strict:
            self.stats.warn(
                session.sid, "missing_client_version", "open frame has no ClientVersion"
            )
        token = obj.get("TokenValue")
        if not isinstance(token, str):
            return False
        expiry = session.tokens.pop(token, None)  # single use, valid or not
        return expiry is not None and expiry > self._loop_or_raise().time()

    async def _write_loop(self, session: _Session, client: _Client) -> None:
        """Send queued agent frames to the client, several per transport write.

        aiohttp sends one ``transport.write`` (one send syscall) per ``send_bytes``, so the
        queued frames are framed here (:func:`_cached_header`) and joined into one write,
        byte for byte as aiohttp would frame them. aiohttp's own writes (pongs, close) are
        whole frames written synchronously too, so the two never interleave inside a frame.
        After each write the writer waits while the transport is paused (flow control).
        """
        ws = client.ws
        request = client.request
        outq = session.outq
        try:
            while session.client is client:
                while outq and session.client is client:
                    transport = request.transport
                    if ws.closed or transport is None or transport.is_closing():
                        # Closing: aiohttp has written (or is writing) its close frame, and
                        # nothing may follow it. The frames stay queued for a resumed client.
                        self.log.debug("session %s: socket is closing", session.sid)
                        return
                    parts: list[bytes] = []
                    append = parts.append
                    headers = _HEADER_CACHE
                    size = 0
                    closed = False
                    while outq and size < WRITE_BATCH_BYTES:
                        frame = outq.popleft()
                        length = len(frame)
                        append(headers.get(length) or _cached_header(length))
                        append(frame)  # byte for byte (§6)
                        size += length
                        if frame is session.closed_frame:
                            closed = True
                            break  # nothing follows channel_closed
                    transport.write(b"".join(parts))
                    if session.held:
                        self._update_hold(session)
                    if closed:
                        session.closed_delivered = True
                        await self._close_after_grace(client)
                        return
                    await request.writer.drain()  # suspends only while writing is paused
                client.wake.clear()
                await client.wake.wait()
        except (ConnectionError, RuntimeError) as exc:
            self.log.debug("session %s: send failed: %s", session.sid, exc)

    async def _close_after_grace(self, client: _Client) -> None:
        # §6: close with 1000 close_grace after channel_closed unless the client closed first.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.gone.wait(), self.settings.close_grace)
            return
        self._close_client(client, WS_NORMAL)

    def _close_client(self, client: _Client, code: int) -> None:
        if client.closer is not None or client.ws.closed:
            return
        loop = self._loop_or_raise()
        client.closer = loop.create_task(self._close_ws(client.ws, code))
        self._tasks.add(client.closer)
        client.closer.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _close_ws(ws: web.WebSocketResponse, code: int) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close(code=code)

    def _abort_client(self, session: _Session) -> None:
        client = session.client
        if client is None:
            return
        session.client = None
        self._update_hold(session)
        client.wake.set()
        transport = client.request.transport
        if transport is not None:
            transport.abort()

    # --- shutdown ---------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Kill every process, close every socket, cancel every timer. Idempotent."""
        self._shutting_down = True
        sessions = list(self._sessions.values())
        for session in sessions:
            if not session.ended:
                self._end(session, "terminated", END_OUTPUT["shutdown"], silent=True)
            for pipe in session.pipes.values():
                pipe.close()
        clients = [s.client for s in sessions if s.client is not None]
        for client in clients:
            self._close_client(client, WS_GOING_AWAY)
        waits = [c.closer for c in clients if c.closer is not None]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=CLOSE_TIMEOUT)
            for client in clients:
                transport = client.request.transport
                if transport is not None and client.closer in pending:
                    transport.abort()
        for session in sessions:
            if session.agent is not None:
                await session.agent.wait_reaped(2.0)
                await session.agent.join()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_TIMEOUT)
        self._sessions.clear()
        self._ended.clear()

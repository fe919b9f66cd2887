"""The web terminal's websocket: one browser tab attached to an interactive session in one node.

Wire format on ``/nodes/{name}/terminal/ws``: binary frames carry raw terminal bytes both
ways (keystrokes in, PTY output out, Ctrl-C is just 0x03); text frames carry JSON control
messages. From the browser: ``{"type": "resize", "cols": C, "rows": R}``; the first one
must come before the session starts, so the remote terminal has the right size before it
prints anything (Teleport #1087). To the browser: ``{"type": "exit", "exit_code": N}``
once the session ended, or ``{"type": "error", "message": "..."}`` when it could not
start. The socket closes when the session ends, on sign-out (through the server's live
connection registry) and when the sign-in session expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Final

from aiohttp import WSCloseCode, WSMsgType, web

from ecsexec.app.interactive import InteractiveSession
from ecsexec.errors import EcsexecError
from ecsexec.nodes.node import Node
from ecsexec.web.acl import Action
from ecsexec.web.auth import audit, check_origin, credential, require, watch_credential
from ecsexec.web.keys import ENGINE, LIVE, POLICY, RUNS

log = logging.getLogger(__name__)

DEFAULT_SIZE: Final = (80, 24)  # when the browser sends no size in time
FIRST_SIZE_TIMEOUT_S: Final = 5.0
HEARTBEAT_S: Final = 25.0  # websocket pings, under the usual proxy idle limits (Portainer #3506)
MAX_COLS: Final = 1000
MAX_ROWS: Final = 1000
MAX_FRAME: Final = 64 * 1024  # one message from the browser: keystrokes or a paste


def setup_terminal(app: web.Application) -> None:
    """Add the terminal websocket route."""
    app.router.add_get("/nodes/{name}/terminal/ws", terminal_socket, name="terminal-ws")


def parse_resize(text: str) -> tuple[int, int] | None:
    """``(cols, rows)`` from a resize control message; None for anything else."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") != "resize":
        return None
    cols, rows = message.get("cols"), message.get("rows")
    if not isinstance(cols, int) or not isinstance(rows, int) or isinstance(cols, bool):
        return None
    if not (1 <= cols <= MAX_COLS and 1 <= rows <= MAX_ROWS):
        return None
    return cols, rows


async def _allowed_node(request: web.Request, role: str) -> Node | None:
    name = request.match_info["name"]
    selection = await request.app[RUNS].nodes(None)
    found = [node for node in selection.inventory if node.name == name]
    visible = request.app[POLICY].visible_nodes(role, found)
    return visible[0] if visible else None


async def terminal_socket(request: web.Request) -> web.StreamResponse:
    """GET /nodes/{name}/terminal/ws: check, upgrade, then relay until either side ends."""
    check_origin(request)
    user = require(request, Action.OPEN_TERMINAL)
    node = await _allowed_node(request, user.role)
    if node is None:
        # Same answer for a node that does not exist and one outside the role's filter.
        await audit(request, "terminal-open", request.match_info["name"], "denied")
        raise web.HTTPForbidden(text="no such node, or your role may not open a terminal on it")

    socket = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_FRAME)
    await socket.prepare(request)

    async def close_on_sign_out() -> None:
        await socket.close(code=WSCloseCode.POLICY_VIOLATION, message=b"signed out")

    live = request.app[LIVE]
    handle = live.add(user.name, close_on_sign_out, credential=credential(request))
    try:
        size = await _first_size(socket)
        if size is None:
            return socket  # the browser left before it said anything
        try:
            session = await request.app[ENGINE].open_session(node)
        except EcsexecError as exc:
            await audit(request, "terminal-open", node.name, "failed", {"error": str(exc)[:200]})
            await _send_control(socket, {"type": "error", "message": str(exc)})
            return socket
        await audit(request, "terminal-open", node.name, "ok", {"session": session.session_id})
        try:
            await _relay(request, socket, session, size)
        except EcsexecError as exc:  # the socket is open: say it there, not as an error page
            await _send_control(socket, {"type": "error", "message": str(exc)})
    finally:
        live.discard(user.name, handle)
        if not socket.closed:
            await socket.close()
    return socket


async def _first_size(socket: web.WebSocketResponse) -> tuple[int, int] | None:
    """Wait for the browser's first resize; default size if it sends something else first
    or nothing in time. None if the socket closed."""
    try:
        message = await socket.receive(timeout=FIRST_SIZE_TIMEOUT_S)
    except TimeoutError:
        return DEFAULT_SIZE
    if message.type == WSMsgType.TEXT:
        return parse_resize(message.data) or DEFAULT_SIZE
    if message.type == WSMsgType.BINARY:
        return DEFAULT_SIZE  # keystrokes before a size: rare; they are dropped with it
    return None


async def _send_control(socket: web.WebSocketResponse, message: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await socket.send_str(json.dumps(message))


async def _relay(
    request: web.Request,
    socket: web.WebSocketResponse,
    session: InteractiveSession,
    size: tuple[int, int],
) -> None:
    async with session:
        session.send_size(*size)
        to_browser = asyncio.create_task(_pump_output(socket, session))
        from_browser = asyncio.create_task(_pump_input(socket, session))
        watch = asyncio.create_task(_watch_sign_in(request, socket))
        try:
            done, _ = await asyncio.wait(
                {to_browser, from_browser, watch}, return_when=asyncio.FIRST_COMPLETED
            )
            if to_browser in done:
                await _send_control(socket, {"type": "exit", "exit_code": session.exit_code})
        finally:
            for task in (to_browser, from_browser, watch):
                task.cancel()
            await asyncio.gather(to_browser, from_browser, watch, return_exceptions=True)
    # Leaving ``async with`` before the remote side closed ends the session: nothing is
    # left running in the container once the browser is gone.


async def _pump_output(socket: web.WebSocketResponse, session: InteractiveSession) -> None:
    """Terminal bytes to the browser until the channel closes (the events end with it).

    The web layer may not import the protocol package (see the import contracts), so the
    events are read by their fields: output and stderr carry ``data`` (bytes), the
    handshake may carry a ``customer_message`` for the user.
    """
    async for event in session:
        data = getattr(event, "data", None)
        if isinstance(data, bytes) and data:
            await socket.send_bytes(data)
        message = getattr(event, "customer_message", None)
        if isinstance(message, str) and message:
            await socket.send_bytes(message.encode() + b"\r\n")


async def _pump_input(socket: web.WebSocketResponse, session: InteractiveSession) -> None:
    async for message in socket:
        if message.type == WSMsgType.BINARY:
            await session.send_input(message.data)
        elif message.type == WSMsgType.TEXT:
            size = parse_resize(message.data)
            if size is not None:
                session.send_size(*size)
        elif message.type == WSMsgType.ERROR:
            return


async def _watch_sign_in(request: web.Request, socket: web.WebSocketResponse) -> None:
    """Return once the token or session behind this socket no longer allows a terminal:
    signed out, expired, revoked, the user disabled or their role changed (sign-out also
    closes the socket directly)."""
    await watch_credential(request, Action.OPEN_TERMINAL)
    await _send_control(
        socket, {"type": "error", "message": "your sign-in ended or no longer allows a terminal"}
    )

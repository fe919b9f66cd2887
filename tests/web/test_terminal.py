"""The web terminal: control-message parsing (unit), and a real session over the websocket."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import aiohttp
import pytest

from ecsexec.store.team import database_path, open_team_store
from ecsexec.web.passwords import hash_password, new_api_token
from ecsexec.web.terminal import parse_resize
from tests.web.conftest import WebServer
from tests.web.web_client import Caller, run

READ_TIMEOUT = 30.0  # a safety net for a hung session; the reads end on their marker


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type": "resize", "cols": 120, "rows": 40}', (120, 40)),
        ('{"type": "resize", "cols": 0, "rows": 40}', None),
        ('{"type": "resize", "cols": 120, "rows": 100000}', None),
        ('{"type": "resize", "cols": "120", "rows": 40}', None),
        ('{"type": "resize", "cols": true, "rows": 40}', None),
        ('{"type": "input", "data": "ls"}', None),
        ("[1, 2]", None),
        ("not json", None),
    ],
)
def test_only_well_formed_resize_messages_resize(
    text: str, expected: tuple[int, int] | None
) -> None:
    assert parse_resize(text) == expected


async def read_until(socket: aiohttp.ClientWebSocketResponse, marker: bytes) -> bytes:
    """Terminal output up to and including ``marker``; fails if the socket ends first."""
    seen = b""
    while marker not in seen:
        message = await socket.receive(timeout=READ_TIMEOUT)
        if message.type == aiohttp.WSMsgType.BINARY:
            seen += message.data
        elif message.type == aiohttp.WSMsgType.TEXT:
            control = json.loads(message.data)
            assert control["type"] != "error", control
        else:
            raise AssertionError(f"socket ended ({message.type}) before {marker!r}: {seen!r}")
    return seen


def web_node(server: WebServer) -> str:
    async def find() -> str:
        async with Caller(server, server.users["admin"]) as api:
            listed = await api.get_json("/api/v1/nodes?filter=" + quote("ECS:Service-Name: web"))
        return str(listed["nodes"][0]["name"])

    return run(find())


@pytest.mark.e2e
def test_typed_commands_echo_resize_reaches_the_pty_and_ctrl_c_interrupts(
    web_server: WebServer,
) -> None:
    node = web_node(web_server)

    async def scenario() -> None:
        async with Caller(web_server, web_server.users["operator"], via="cookie") as browser:
            socket = await browser.session.ws_connect(
                web_server.url(f"/nodes/{node}/terminal/ws"),
                headers={"Origin": web_server.base_url},
            )
            async with socket:
                await socket.send_str(json.dumps({"type": "resize", "cols": 101, "rows": 33}))
                await socket.send_bytes(b"echo typed-$((6*7))\n")
                await read_until(socket, b"typed-42")
                await socket.send_bytes(b"stty size\n")
                await read_until(socket, b"33 101")
                await socket.send_str(json.dumps({"type": "resize", "cols": 90, "rows": 20}))
                await socket.send_bytes(b"stty size\n")
                await read_until(socket, b"20 90")
                # The foreground job itself says it is ready, so Ctrl-C cannot come before
                # the shell handed it the terminal (it would then reach nothing).
                await socket.send_bytes(
                    b"sh -c 'echo sleeping-$((1+1)); exec sleep 600'; echo slept\n"
                )
                await read_until(socket, b"sleeping-2")  # the output, not the typed line
                await socket.send_bytes(b"\x03")  # Ctrl-C, as xterm.js sends it
                await socket.send_bytes(b"echo after-$?\n")
                output = await read_until(socket, b"after-130")
                assert not re.search(rb"(^|\n)slept\r?\n", output), output
                await socket.send_bytes(b"exit 7\n")
                while True:
                    message = await socket.receive(timeout=READ_TIMEOUT)
                    if message.type == aiohttp.WSMsgType.TEXT:
                        assert json.loads(message.data) == {"type": "exit", "exit_code": 7}
                        break
                    assert message.type == aiohttp.WSMsgType.BINARY, message
        async with Caller(web_server, web_server.users["admin"]) as api:
            audit = await api.get_json("/api/v1/audit?action=terminal-open")
        entries = audit["entries"] if isinstance(audit, dict) else audit
        assert any(e["user"] == "operator" and e["target"] == node for e in entries), entries

    run(scenario())


@pytest.mark.e2e
def test_the_terminal_refuses_other_origins_viewers_and_nodes_outside_the_role(
    web_server: WebServer,
) -> None:
    node = web_node(web_server)

    async def scenario() -> None:
        async with Caller(web_server, web_server.users["operator"], via="cookie") as browser:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await browser.session.ws_connect(
                    web_server.url(f"/nodes/{node}/terminal/ws"),
                    headers={"Origin": "https://evil.example"},
                )
            assert refused.value.status == 403
            with pytest.raises(aiohttp.WSServerHandshakeError) as missing:
                await browser.session.ws_connect(
                    web_server.url("/nodes/no-such-node/terminal/ws"),
                    headers={"Origin": web_server.base_url},
                )
            assert missing.value.status == 403
        async with Caller(web_server, web_server.users["viewer"], via="cookie") as viewer:
            with pytest.raises(aiohttp.WSServerHandshakeError) as denied:
                await viewer.session.ws_connect(
                    web_server.url(f"/nodes/{node}/terminal/ws"),
                    headers={"Origin": web_server.base_url},
                )
            assert denied.value.status == 403

    run(scenario())


@pytest.mark.e2e
def test_signing_out_closes_the_terminal(web_server: WebServer) -> None:
    node = web_node(web_server)

    async def scenario() -> None:
        async with Caller(web_server, web_server.users["operator"], via="cookie") as browser:
            socket = await browser.session.ws_connect(
                web_server.url(f"/nodes/{node}/terminal/ws"),
                headers={"Origin": web_server.base_url},
            )
            async with socket:
                await socket.send_str(json.dumps({"type": "resize", "cols": 80, "rows": 24}))
                await socket.send_bytes(b"echo ready-$((1+1))\n")
                await read_until(socket, b"ready-2")
                async with browser.request("POST", "/logout") as response:
                    assert response.status == 302
                while True:
                    message = await socket.receive(timeout=READ_TIMEOUT)
                    if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
                    assert message.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT)

    run(scenario())


@pytest.mark.e2e
def test_disabling_a_user_closes_their_token_terminal(web_server: WebServer) -> None:
    node = web_node(web_server)
    store = open_team_store(database_path(web_server.state_dir))
    store.add_user("terminal-leaver", "operator", hash_password("terminal-leaver-pw"))
    token, digest = new_api_token()
    store.add_token("terminal-leaver", "ci", digest, None)
    store.close()

    async def scenario() -> None:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as client:
            socket = await client.ws_connect(web_server.url(f"/nodes/{node}/terminal/ws"))
            async with socket:
                await socket.send_str(json.dumps({"type": "resize", "cols": 80, "rows": 24}))
                await socket.send_bytes(b"echo ready-$((2+2))\n")
                await read_until(socket, b"ready-4")
                disabling = open_team_store(database_path(web_server.state_dir))
                disabling.set_disabled("terminal-leaver", True)  # as `server users disable`
                disabling.close()
                while True:  # ends well before READ_TIMEOUT: the server closes it
                    message = await socket.receive(timeout=READ_TIMEOUT)
                    if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
                    assert message.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT)

    run(scenario())

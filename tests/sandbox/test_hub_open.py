"""The relay's unauthenticated phase is bounded: the open frame's size and how long a socket
may stay without one (docs/sandbox.md §6)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from tests.sandbox.test_hub import FAST, Client, Relay, until
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ecsexec.sandbox import hub as hub_mod
from ecsexec.sandbox.agent import AgentSettings
from ecsexec.ssm.payloads import open_data_channel

pytestmark = pytest.mark.e2e


def test_an_oversized_open_frame_is_refused_with_1009_and_the_token_survives() -> None:
    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.start_session(relay.target(), "sleep 300")
            padding = "x" * (hub_mod.OPEN_FRAME_LIMIT + 1)
            first = json.dumps({"TokenValue": grant.token_value, "Padding": padding})
            big = await Client.open(grant.stream_url, grant.token_value, first=first)
            assert await big.closed_with() == 1009
            # Refused before it was read as an open frame: the token is still unused.
            good = await Client.attach(grant)
            await until(lambda: relay.stats.sessions.client_connects == 1)
            await good.close()

    asyncio.run(main())


def test_a_message_above_the_relays_limit_is_refused_before_it_is_buffered() -> None:
    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.start_session(relay.target(), "sleep 300")
            ws = await connect(grant.stream_url, compression=None, max_size=None)
            with contextlib.suppress(ConnectionClosed):
                await ws.send("x" * (hub_mod.MESSAGE_LIMIT + 1))
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1009
            assert relay.stats.sessions.client_connects == 0

    asyncio.run(main())


def test_a_socket_without_an_open_frame_is_closed_after_the_open_timeout() -> None:
    settings = AgentSettings(
        initial_wait=FAST.initial_wait,
        agent_start_delay=FAST.agent_start_delay,
        close_grace=FAST.close_grace,
        open_timeout=0.2,
    )
    assert AgentSettings().open_timeout <= 10  # a few seconds, not the 60 s token lifetime

    async def main() -> None:
        async with Relay(settings) as relay:
            grant = relay.hub.start_session(relay.target(), "sleep 300")
            idle = await connect(grant.stream_url, compression=None)
            await asyncio.wait_for(idle.wait_closed(), 10)
            assert idle.close_code == 1008
            assert idle.close_reason == "no open frame within 0.2 s"
            # The token was never presented, so it still works.
            good = await Client.attach(grant)
            await until(lambda: relay.stats.sessions.client_connects == 1)
            await good.close()

    asyncio.run(main())


def test_an_open_frame_at_the_limit_is_accepted() -> None:
    async def main() -> None:
        async with Relay() as relay:
            grant = relay.hub.start_session(relay.target(), "sleep 300")
            first = open_data_channel(grant.token_value, client_id="c", request_id="r")
            obj = json.loads(first)
            obj["Padding"] = ""
            room = hub_mod.OPEN_FRAME_LIMIT - len(json.dumps(obj).encode())
            obj["Padding"] = "p" * room
            first = json.dumps(obj)
            assert len(first.encode()) == hub_mod.OPEN_FRAME_LIMIT
            client = await Client.open(grant.stream_url, grant.token_value, first=first)
            await until(lambda: relay.stats.sessions.client_connects == 1)
            await client.close()

    asyncio.run(main())

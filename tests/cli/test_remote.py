"""``--server``'s API client when the server goes away or ends a stream early: it says so
and stops, instead of retrying for ever or reporting nodes as not started."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from ecsexec.cli.remote import RemoteServer
from ecsexec.errors import ConfigurationError, EcsexecError

pytestmark = pytest.mark.e2e

STARTED = {"type": "run_started", "run_id": 7, "nodes": ["web-1"], "command": "sleep 60"}


def sse(number: int, event: dict[str, Any]) -> bytes:
    return f"id: {number}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> tuple[web.AppRunner, str]:
    """A stand-in for an ecsexec server's events route on 127.0.0.1:<free port>."""
    app = web.Application()
    app.router.add_get("/api/v1/runs/{run_id}/events", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def read_all(server: RemoteServer, run_id: int, seen: list[str] | None = None) -> list[str]:
    """The event types of a run's stream, each also added to ``seen`` as it comes."""
    seen = [] if seen is None else seen
    async for kind, _ in server.events(run_id):
        seen.append(kind)
    return seen


def test_a_server_gone_for_good_mid_run_is_an_error_after_a_few_reconnects() -> None:
    requests = 0

    async def main() -> None:
        runner: web.AppRunner | None = None

        async def events(request: web.Request) -> web.StreamResponse:
            nonlocal requests
            requests += 1
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(sse(1, STARTED))
            assert request.transport is not None
            request.transport.close()  # the server dies mid-stream ...
            assert runner is not None
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(runner.cleanup()))
            return response  # ... and never comes back

        runner, url = await serve(events)
        async with RemoteServer(url, "ecx_test-token") as server:
            with pytest.raises(ConfigurationError) as lost:
                await asyncio.wait_for(read_all(server, 7), timeout=60)
        message = str(lost.value)
        assert "run 7" in message and "cannot reach" in message
        assert "ecx_test-token" not in message

    asyncio.run(main())
    assert requests == 1


def test_a_stream_the_server_ends_before_the_run_finished_is_an_error_naming_the_run() -> None:
    async def main() -> None:
        async def events(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(sse(1, STARTED))
            await response.write_eof()  # token revoked or user disabled: the stream just ends
            return response

        runner, url = await serve(events)
        try:
            async with RemoteServer(url, "ecx_test-token") as server:
                seen: list[str] = []
                with pytest.raises(EcsexecError) as ended:
                    await read_all(server, 7, seen)
        finally:
            await runner.cleanup()
        assert seen == ["run_started"]
        assert "run 7" in str(ended.value) and "before the run finished" in str(ended.value)

    asyncio.run(main())

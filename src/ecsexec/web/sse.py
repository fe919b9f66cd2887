"""Server-sent events: a run's numbered events as ``text/event-stream``, resumable.

Each event is written as ``id: <number>``, ``event: <type>`` and ``data: <JSON>``; a
browser's EventSource reconnects by itself and sends the last number it saw in
``Last-Event-ID``, and the stream resumes after it. A comment line every
:data:`KEEPALIVE_S` seconds keeps proxies from cutting an idle stream. The stream ends
after ``run_finished``, or when the user signs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any, Final

from aiohttp import web

KEEPALIVE_S: Final = 15.0
RETRY_MS: Final = 2000  # how soon a browser reconnects after the connection drops


def format_event(number: int, event: dict[str, Any]) -> bytes:
    """One event in the wire format (JSON never holds a raw newline, so one data line)."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"id: {number}\nevent: {event['type']}\ndata: {data}\n\n".encode()


async def stream(
    request: web.Request,
    events: AsyncIterator[tuple[int, dict[str, Any]]],
    closed: asyncio.Event,
) -> web.StreamResponse:
    """Send ``events`` until they end, the client goes, or ``closed`` is set."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    await response.prepare(request)
    await response.write(f"retry: {RETRY_MS}\n\n".encode())
    iterator = aiter(events)
    closing = asyncio.ensure_future(closed.wait())
    try:
        while True:
            following = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait(
                {following, closing}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED
            )
            while not done:  # idle: a comment keeps the connection open
                await response.write(b": keepalive\n\n")
                done, _ = await asyncio.wait(
                    {following, closing}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED
                )
            if following not in done:  # signed out
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await following
                break
            try:
                number, event = following.result()
            except StopAsyncIteration:
                break
            await response.write(format_event(number, event))
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away
    finally:
        closing.cancel()
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
    return response

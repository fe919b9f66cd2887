"""Runs across a server restart: in-flight runs end incomplete, their sessions terminated,
and the restarted server still serves them (from history) to the API and event streams."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ecsexec.sandbox import Sandbox
from ecsexec.store.history import History
from ecsexec.store.team import database_path
from ecsexec.web.sse import format_event
from tests.web.conftest import make_users, start_server
from tests.web.web_client import Caller, run


@pytest.mark.e2e
def test_a_restart_marks_in_flight_runs_incomplete_and_loses_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    users = make_users(tmp_path)
    first = start_server(sandbox, tmp_path)
    first.users = users

    async def start() -> int:
        async with Caller(first, users["operator"]) as caller:
            status, started = await caller.send(
                "POST",
                "/api/v1/runs",
                {"filter": "ECS:Service-Name: web", "command": "echo started; sleep 60"},
            )
            assert status == 202, started
            async with caller.request("GET", f"/api/v1/runs/{started['id']}/events") as stream:
                await asyncio.wait_for(stream.content.readuntil(b"event: output"), timeout=30)
                # Stop the server with this stream still open: shutting down closes it.
                stopped = asyncio.get_running_loop().run_in_executor(None, first.stop)
                rest = await asyncio.wait_for(stream.content.read(), timeout=30)
                await stopped
            assert b"event: run_finished" in rest and b'"status":"incomplete"' in rest
            run_id: int = started["id"]
            return run_id

    try:
        run_id = run(start())
    finally:
        first.stop()  # as on SIGTERM: graceful (a no-op when the scenario stopped it)

    with History(database_path(tmp_path)) as history:
        record = history.run(run_id)
    assert record is not None and record.status == "incomplete"
    assert record.user == "operator"
    assert record.nodes and all(n.status not in ("succeeded", "running") for n in record.nodes)

    second = start_server(sandbox, tmp_path)
    second.users = users

    async def after_restart() -> None:
        async with Caller(second, users["viewer"]) as caller:
            answer = await caller.get_json(f"/api/v1/runs/{run_id}")
            assert answer["status"] == "incomplete" and not answer["live"]
            async with caller.request("GET", f"/api/v1/runs/{run_id}/events") as stream:
                body = (await asyncio.wait_for(stream.content.read(), timeout=30)).decode()
            assert "started" in body  # the output so far survived
            last = body.strip().split("\n\n")[-1].splitlines()
            assert last[1] == "event: run_finished"
            assert json.loads(last[2].removeprefix("data: "))["status"] == "incomplete"

    try:
        run(after_restart())
    finally:
        second.stop()


def test_an_event_is_one_sse_block_whatever_its_text_holds() -> None:
    block = format_event(7, {"type": "output", "node": "web-1", "text": "a\nb\r\n\n"})
    lines = block.decode().split("\n")
    assert lines[:2] == ["id: 7", "event: output"]
    assert lines[2].startswith("data: ") and lines[3:] == ["", ""]
    assert json.loads(lines[2][6:])["text"] == "a\nb\r\n\n"

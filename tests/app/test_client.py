"""The engine end to end: ``ecsexec.Client`` against the sandbox over real HTTP and websockets."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ecsexec
from ecsexec.app import Client, Selection, SourceOverrides
from ecsexec.app.events import NodeOutput, RunFinished, RunStarted
from ecsexec.aws.clients import session_from_env
from ecsexec.cli.render import result_record
from ecsexec.config import load_config
from ecsexec.errors import ConfigurationError, FilterSyntaxError, Status
from ecsexec.sandbox import Sandbox
from ecsexec.ssm.channel import ChannelClosed, OutputReceived
from ecsexec.store.history import History

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).parents[2] / "examples" / "library" / "run_web.py"


def client_for(sb: Sandbox, history: Path | bool = False) -> Client:
    """A client that reaches only ``sb``, whatever the host's AWS settings are."""
    return Client(
        load_config(search=False, environ={}),
        sources=SourceOverrides(regions=("us-east-1",)),
        history=history,
        session_factory=lambda region: session_from_env(sb.env, region),
    )


def test_the_library_example_runs_as_written(sandbox: Sandbox, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    env.update(sandbox.env)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["ECSEXEC_HISTORY"] = str(tmp_path / "history.sqlite3")
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # no ecsexec.toml here or above
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    *rows, last = done.stdout.splitlines()
    assert last == "1"
    for row in rows:
        _, status, exit_code, output = row.split(" ", 3)
        assert (status, exit_code, output) == ("failed", "3", "b'hi\\n'")
    expected = asyncio.run(_names(client_for(sandbox), "ECS:Service-Name: web"))
    assert [row.split(" ", 1)[0] for row in rows] == expected  # every web node, rank order
    with History(tmp_path / "history.sqlite3") as history:
        (run,) = history.runs()
        assert run.command == "echo hi; exit 3" and run.exit_code == 1


def test_nodes_returns_the_selection_and_its_warnings_as_data(sandbox: Sandbox) -> None:
    async def scenario() -> tuple[Selection, Selection]:
        async with client_for(sandbox) as client:
            web = await client.nodes("ECS:Service-Name: web", rank_order="descending")
            nobody = await client.nodes("ECS:Servic-Name: web")
            return web, nobody

    web, nobody = asyncio.run(scenario())
    assert len(web) >= 3 and web.names == sorted(web.names, reverse=True)
    assert all(node.get("ECS:Service-Name") == "web" for node in web)
    assert web.warnings == () and len(web.inventory) > len(web)
    assert not nobody and nobody.warnings
    assert "ECS:Servic-Name" in nobody.warnings[0]


def test_a_bad_filter_is_an_error_with_its_column(sandbox: Sandbox) -> None:
    async def scenario() -> None:
        async with client_for(sandbox) as client:
            await client.run("name: /(unclosed/", "true")

    with pytest.raises(FilterSyntaxError) as info:
        asyncio.run(scenario())
    assert info.value.column > 0 and info.value.exit_code == 2


def test_events_arrive_by_callback_and_by_iteration(sandbox: Sandbox) -> None:
    seen: list[object] = []

    async def scenario() -> list[object]:
        async with client_for(sandbox) as client:
            names = (await client.nodes("ECS:Service-Name: api ECS:Container-Name: api")).names
            iterated = [
                event async for event in client.run(names, "printf 'x\\n'", on_event=seen.append)
            ]
            return iterated

    iterated = asyncio.run(scenario())
    assert iterated == seen
    assert isinstance(iterated[0], RunStarted) and len(iterated[0].nodes) == 2
    assert isinstance(iterated[-1], RunFinished)
    result = iterated[-1].result
    assert result.exit_status == 0 and [r.output for r in result] == [b"x\n", b"x\n"]
    assert any(isinstance(e, NodeOutput) for e in iterated)


def test_a_warmed_up_client_runs_as_any_other(sandbox: Sandbox) -> None:
    # warm_up builds the default region's ExecuteCommand client in a thread while nodes
    # are selected; the run must find and use it, whichever finishes first.
    async def scenario() -> list[bytes]:
        async with client_for(sandbox) as client:
            client.warm_up()
            client.warm_up()  # a second call starts nothing more
            selection = await client.nodes("ECS:Service-Name: api ECS:Container-Name: api")
            result = await client.run(selection, "printf 'x\\n'")
            assert result.exit_status == 0
            return [r.output for r in result]

    assert asyncio.run(scenario()) == [b"x\n", b"x\n"]


def test_node_names_that_do_not_exist_are_refused_before_anything_runs(sandbox: Sandbox) -> None:
    async def scenario() -> None:
        async with client_for(sandbox) as client:
            await client.run(["no-such-node"], "true")

    with pytest.raises(ConfigurationError, match="no-such-node"):
        asyncio.run(scenario())


def test_a_session_that_dies_mid_stream_keeps_what_arrived(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Resume refused after a dropped socket: the bytes already received survive in the
    result, its JSON record and the history log, beside the error."""
    history_path = tmp_path / "history.sqlite3"

    async def scenario() -> ecsexec.RunResult:
        async with client_for(sandbox, history=history_path) as client:
            node = (await client.nodes("ECS:Service-Name: api ECS:Container-Name: api")).nodes[0]
            loop = asyncio.get_running_loop()
            cut: list[asyncio.Future[None]] = []

            def on_event(event: object) -> None:
                if isinstance(event, NodeOutput) and b"before" in event.data and not cut:
                    cut.append(loop.run_in_executor(None, drop_the_socket))

            def drop_the_socket() -> None:
                sandbox.set_faults("error=ResumeSession:1.0:AccessDeniedException")
                for session in sandbox.control.sessions():
                    if session["state"] == "active":
                        sandbox.control.disconnect(session["sessionId"])

            try:
                result = await client.run(
                    [node], "echo before; sleep 30; echo after", on_event=on_event
                )
            finally:
                sandbox.set_faults("")
            return result

    result = asyncio.run(scenario())
    (node,) = list(result)
    assert node.status is Status.ERROR and node.error is not None
    # The channel ended here only; the command was still running on the agent, so the
    # session was ended through TerminateSession rather than left to its `sleep`.
    active = [s["sessionId"] for s in sandbox.control.sessions() if s["state"] == "active"]
    assert node.session_id not in active
    assert node.output.startswith(b"before") and b"after" not in node.output
    assert result.exit_status == 3
    record = result_record(node)
    assert record["output"].startswith("before") and record["error"]
    assert result.run_id is not None
    with History(history_path) as history:
        ((name, log),) = history.logs(result.run_id)
        assert name == node.node and log.startswith(b"before")
        (stored,) = history.run(result.run_id).nodes  # type: ignore[union-attr]
        assert stored.status == "error" and stored.detail


def test_open_session_is_interactive_and_leaves_nothing_running(sandbox: Sandbox) -> None:
    async def scenario() -> bytes:
        async with client_for(sandbox) as client:
            node = (await client.nodes("ECS:Service-Name: api ECS:Container-Name: api")).nodes[0]
            session = await client.open_session(node.name[:12], "cat")
            received = b""
            async with session:
                session.resize(120, 40)
                await session.send_input(b"ping\n")
                async for event in session:
                    if isinstance(event, OutputReceived):
                        received += event.data
                        if received.count(b"ping") >= 2:  # the echo and cat's copy
                            await session.send_eof()
                    elif isinstance(event, ChannelClosed):
                        break
            return received

    received = asyncio.run(scenario())
    assert received.count(b"ping") == 2


def test_leaving_the_client_interrupts_what_still_runs(sandbox: Sandbox) -> None:
    async def scenario() -> ecsexec.RunResult:
        async with client_for(sandbox) as client:
            names = (await client.nodes("ECS:Service-Name: web ECS:Region: us-east-1")).names
            started = asyncio.Event()

            def on_event(event: object) -> None:
                if isinstance(event, NodeOutput):
                    started.set()

            run = client.run(names, "echo up; sleep 60", on_event=on_event)
            task = asyncio.ensure_future(_await(run))
            await asyncio.wait_for(started.wait(), 30)
        return await task

    result = asyncio.run(scenario())
    assert result.interrupted and result.exit_status == 130
    assert {r.status for r in result} <= {Status.CANCELLED, Status.NOT_STARTED}


async def _await(run: ecsexec.app.Run) -> ecsexec.RunResult:
    return await run


async def _names(client: Client, filter_text: str) -> list[str]:
    async with client:
        return (await client.nodes(filter_text)).names


def test_a_nul_byte_in_a_command_is_refused_before_anything_runs(sandbox: Sandbox) -> None:
    before = sandbox.stats()["sessions"]["opened"]

    async def scenario() -> None:
        async with client_for(sandbox) as client:
            await client.run("ECS:Service-Name: web", "echo a\0b")

    with pytest.raises(ConfigurationError, match="NUL byte at position 7"):
        asyncio.run(scenario())
    assert sandbox.stats()["sessions"]["opened"] == before


def test_a_copy_is_a_run_events_history_and_all(sandbox: Sandbox, tmp_path: Path) -> None:
    source = tmp_path / "payload.bin"
    source.write_bytes(bytes(range(256)) * 10)
    database = tmp_path / "history.sqlite3"

    async def scenario() -> list[object]:
        async with client_for(sandbox, history=database) as client:
            run = client.copy("ECS:Service-Name: web ECS:Cluster-Name: demo", source, "/tmp/")
            events = [event async for event in run]
            await client.run(
                "ECS:Service-Name: web ECS:Cluster-Name: demo", "rm -f /tmp/payload.bin"
            )
            return events

    events = asyncio.run(scenario())
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    result = events[-1].result
    assert result.ok and len(result) >= 3 and result.run_id is not None
    assert result.command == f"cp {source} :/tmp/"
    with History(database) as history:
        copy_run = history.run(result.run_id)
        assert copy_run is not None
        assert copy_run.command == f"cp {source} :/tmp/" and copy_run.exit_code == 0
        assert {node.status for node in copy_run.nodes} == {Status.SUCCEEDED}

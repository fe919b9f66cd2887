"""``--server URL``: ``ecsexec nodes`` and ``ecsexec run`` through a team's ecsexec server.

The server's REST API does the work with its own AWS credentials and the caller's role;
the caller needs only an API token, read from ``--token-file`` or ``$ECSEXEC_SERVER_TOKEN``
(never from the command line, where other users could read it). A run's events stream
back over SSE and are rendered as a local run's are, with the same exit statuses; Ctrl-C
stops the run on the server (every session is terminated) and exits 130.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import quote, urlsplit

import click

from ecsexec.app.events import EventCallback, NodeFinished, NodeNotice, NodeOutput, NodeStarted
from ecsexec.errors import AccessDenied, ConfigurationError, EcsexecError, Status
from ecsexec.exec.results import CommandResult, RunResult
from ecsexec.nodes.node import Node

if TYPE_CHECKING:
    import aiohttp

TOKEN_ENV: Final = "ECSEXEC_SERVER_TOKEN"
SERVER_ENV: Final = "ECSEXEC_SERVER"
# aiohttp.ClientTimeout's arguments. aiohttp is imported only with --server: its import
# costs ~0.1 s of CPU, which a local `ecsexec run` should not pay before its first call.
CONNECT_TIMEOUT: Final = 30.0  # seconds to connect; no limit on a whole (streamed) run
RECONNECTS: Final = 5  # tries in a row to resume a run's dropped event stream
RECONNECT_DELAY_S: Final = 0.5  # times the try's number: 0.5 s, 1 s, ... (7.5 s in all)

F = TypeVar("F", bound=Callable[..., Any])


def server_options(func: F) -> F:
    """``--server URL`` and ``--token-file PATH``."""
    func = click.option(
        "--token-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"File holding the API token for --server (default: ${TOKEN_ENV}).",
    )(func)
    return click.option(
        "--server",
        "server_url",
        envvar=SERVER_ENV,
        default=None,
        metavar="URL",
        help="Use this ecsexec server (its REST API) instead of AWS credentials "
        f"(default: ${SERVER_ENV}).",
    )(func)


def refuse_local_options(given: dict[str, object]) -> None:
    """Options that only mean something locally are an error with --server."""
    used = [name for name, value in given.items() if value not in (None, False, (), "")]
    if used:
        raise click.UsageError(
            f"{', '.join(used)} cannot be used with --server: the server decides where its "
            "nodes come from and how commands are sent"
        )


def read_token(token_file: Path | None) -> str:
    """The API token: the file's first line, else the environment variable."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"--token-file {token_file}: cannot read it: {exc}") from None
        if not token:
            raise ConfigurationError(f"--token-file {token_file}: the file is empty")
        return token.splitlines()[0].strip()
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigurationError(
            f"--server needs an API token: --token-file FILE or ${TOKEN_ENV} "
            "(create one on the console, or POST /api/v1/tokens)"
        )
    return token


def base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"--server {url!r}: expected http(s)://HOST[:PORT]")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class RemoteServer:
    """An API client for one server and token: ``async with RemoteServer(url, token)``."""

    def __init__(self, url: str, token: str) -> None:
        self.url = base_url(url)
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RemoteServer:
        import aiohttp

        self._session = aiohttp.ClientSession(
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=CONNECT_TIMEOUT, sock_connect=CONNECT_TIMEOUT
            ),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use `async with RemoteServer(...)`"
        return self._session

    @contextlib.asynccontextmanager
    async def _request(
        self, method: str, path: str, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        import aiohttp  # imported by __aenter__ already

        try:
            async with self._answer(method, path, **kwargs) as response:
                yield response
        except aiohttp.ClientError as exc:
            raise self._unreachable(exc) from None

    @contextlib.asynccontextmanager
    async def _answer(
        self, method: str, path: str, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response to a request; an HTTP error is raised as the server's error,
        connection trouble as aiohttp's (the caller decides whether to try again)."""
        async with self.session.request(method, self.url + path, **kwargs) as response:
            if response.status >= 400:
                raise await _error(response)
            yield response

    def _unreachable(self, exc: Exception) -> ConfigurationError:
        return ConfigurationError(f"--server {self.url}: cannot reach it: {exc}")

    async def json(self, method: str, path: str, body: Any = None) -> Any:
        async with self._request(method, path, json=body) as response:
            return await response.json()

    async def nodes(
        self, node_filter: str | None, *, refresh: bool = False
    ) -> tuple[list[Node], list[str]]:
        query = f"?filter={quote(node_filter)}" if node_filter else "?"
        if refresh:
            query += "&refresh=1"
        answer = await self.json("GET", f"/api/v1/nodes{query.rstrip('?')}")
        nodes = [Node(item["name"], dict(item["attributes"])) for item in answer["nodes"]]
        return nodes, list(answer.get("warnings", []))

    async def start(
        self, node_filter: str, command: str, threads: int | None, keepgoing: bool | None
    ) -> int:
        body: dict[str, Any] = {"filter": node_filter, "command": command}
        if threads is not None:
            body["threads"] = threads
        if keepgoing is not None:
            body["keepgoing"] = keepgoing
        started = await self.json("POST", "/api/v1/runs", body)
        run_id: int = started["id"]
        return run_id

    async def events(self, run_id: int) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The run's events to ``run_finished``. A dropped connection is resumed after the
        last event (up to :data:`RECONNECTS` tries in a row); a server that stays away, or
        that ends the stream before the run finished (token revoked, user disabled), is an
        error naming the run, which may still be going on the server."""
        import aiohttp  # imported by __aenter__ already

        last = 0
        failures = 0
        while True:
            try:
                async with self._answer(
                    "GET",
                    f"/api/v1/runs/{run_id}/events",
                    headers={"Accept": "text/event-stream", "Last-Event-ID": str(last)},
                ) as response:
                    event_type, data, number = "", "", 0
                    async for raw in response.content:
                        line = raw.decode("utf-8").rstrip("\r\n")
                        if line.startswith("id: "):
                            number = int(line[4:])
                        elif line.startswith("event: "):
                            event_type = line[7:]
                        elif line.startswith("data: "):
                            data = line[6:]
                        elif not line and event_type:
                            last, failures = number, 0
                            yield event_type, json.loads(data)
                            if event_type == "run_finished":
                                return
                            event_type, data = "", ""
            except aiohttp.ClientError as exc:
                failures += 1
                if last == 0 or failures > RECONNECTS:
                    raise ConfigurationError(
                        f"{self._unreachable(exc)}; run {run_id} may still be running there "
                        f"({self.url}/activity/{run_id})"
                    ) from None
                await asyncio.sleep(RECONNECT_DELAY_S * failures)  # resume after `last`
                continue
            raise EcsexecError(
                f"the server ended run {run_id}'s event stream before the run finished "
                "(the token was revoked, the user disabled, or the server is stopping); "
                f"see {self.url}/activity/{run_id}"
            )

    async def stop(self, run_id: int) -> None:
        with contextlib.suppress(EcsexecError):
            await self.json("POST", f"/api/v1/runs/{run_id}/stop")


async def _error(response: aiohttp.ClientResponse) -> EcsexecError:
    """The server's error as the exception a local run would raise (same exit status)."""
    import aiohttp  # imported by RemoteServer.__aenter__ already

    try:
        message = (await response.json())["error"]["message"]
    except (ValueError, KeyError, TypeError, aiohttp.ContentTypeError):
        message = f"HTTP {response.status} {response.reason}"
    if response.status == 401:
        return ConfigurationError(f"the server refused the API token: {message}")
    if response.status == 403:
        return AccessDenied("server", message)
    if response.status in (400, 404, 409):
        return ConfigurationError(f"the server says: {message}")
    return EcsexecError(f"the server says: {message}")


def run_remote(main: Callable[[], Any]) -> Any:
    """Run ``main()`` (a coroutine function) on a loop; SIGTERM and SIGHUP cancel it as
    Ctrl-C does."""

    async def wrapper() -> Any:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, task.cancel)
        try:
            return await main()
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None  # before a run started: nothing to stop
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(signum)

    return asyncio.run(wrapper())


async def follow_run(
    server: RemoteServer, run_id: int, command: str, on_event: EventCallback | None
) -> RunResult:
    """Follow a remote run to its end as engine events; a cancel (Ctrl-C) stops it on the
    server first. The result has each node's status, exit code and (UTF-8) output."""
    nodes: list[str] = []
    output: dict[str, bytearray] = {}
    results: dict[str, CommandResult] = {}
    interrupted = False
    status = ""
    try:
        async for kind, event in server.events(run_id):
            if kind == "run_started":
                nodes = list(event["nodes"])
            elif kind == "node_started":
                _emit(on_event, NodeStarted(event["node"]))
            elif kind == "output":
                data = event["text"].encode("utf-8")
                output.setdefault(event["node"], bytearray()).extend(data)
                _emit(on_event, NodeOutput(event["node"], data))
            elif kind == "notice":
                node = event.get("node") or "server"
                _emit(on_event, NodeNotice(node, str(event["text"]).encode("utf-8")))
            elif kind == "node_finished":
                result = _node_result(event, command, bytes(output.get(event["node"], b"")))
                results[result.node] = result
                _emit(on_event, NodeFinished(result.node, result))
            elif kind == "run_finished":
                status = event["status"]
    except asyncio.CancelledError:
        click.echo("interrupted: stopping the run on the server", err=True)
        await asyncio.shield(server.stop(run_id))
        interrupted = True
    now = datetime.now(UTC)
    for node in nodes:
        if node not in results:
            results[node] = CommandResult(
                node, command, Status.NOT_STARTED, None, bytes(output.get(node, b"")), now, now
            )
    ordered = {node: results[node] for node in nodes} | results
    return RunResult(
        command,
        ordered,
        interrupted=interrupted or status in ("interrupted", "incomplete"),
    )


def _emit(on_event: EventCallback | None, event: Any) -> None:
    if on_event is not None:
        on_event(event)


def _node_result(event: dict[str, Any], command: str, output: bytes) -> CommandResult:
    finished = datetime.now(UTC)
    duration = float(event.get("duration_s") or 0.0)
    try:
        status = Status(event["status"])
    except ValueError:
        status = Status.ERROR
    return CommandResult(
        node=event["node"],
        command=command,
        status=status,
        exit_code=event.get("exit_code"),
        output=output,
        started_at=finished - timedelta(seconds=duration),
        finished_at=finished,
        reason=event.get("error") or "",
    )

"""Web console fixtures: the real app on an ephemeral loopback port, over the sandbox.

``web_server`` (module-scoped) serves ``ecsexec.web.app.open_server_app`` from a thread of
its own (its own event loop, as ``ecsexec server`` runs it), on the session's sandbox,
with one user per role and an API token each. It yields a :class:`WebServer`: its
``base_url``, its ``users`` (name, password, role, token) and helpers. Browser tests
use the same fixture: ``web_server.base_url`` and ``web_server.users["operator"]``.

Roles: the built-in ``admin``, ``operator`` and ``viewer``, plus ``webops`` from the
test's ecsexec.toml (run commands, but only on the web service's nodes) and ``greeter``
(run and see only the job test/greet; tests add its users).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from aiohttp import web

from ecsexec.app import Client, SourceOverrides
from ecsexec.aws.clients import session_from_env
from ecsexec.config import load_config
from ecsexec.sandbox import Sandbox
from ecsexec.store.keys import KeyStore
from ecsexec.store.team import database_path, open_team_store
from ecsexec.web.app import open_server_app
from ecsexec.web.keys import ServerSettings
from ecsexec.web.passwords import hash_password, new_api_token

T = TypeVar("T")
EXAMPLE_JOBS = Path(__file__).resolve().parents[2] / "examples" / "jobs"
CONFIG = """\
[server.roles.webops]
actions = ["view_nodes", "run_command", "view_activity"]
nodes = "ECS:Service-Name: web"

[server.roles.greeter]
actions = ["run_job", "view_activity"]
jobs = "test/greet"
"""
TEST_JOB = """\
- name: greet
  group: test
  description: says hello with a secret it never shows
  options:
    - name: who
      required: true
      regex: '[a-z]+'
    - name: colour
      values: [red, green]
      enforced: true
      value: red
    - name: secret
      secure: true
      value: hunter2
  nodefilters:
    filter: 'ECS:Service-Name: web'
    dispatch:
      threadcount: 4
  sequence:
    commands:
      - exec: echo "hello ${option.who} in ${option.colour}"
- name: nightly
  group: test
  description: a scheduled job (03:00 UTC); its fires never come during a test
  schedule:
    crontab: '0 0 3 * * ? *'
  nodefilters:
    filter: 'ECS:Service-Name: web'
  sequence:
    commands:
      - exec: echo nightly
- name: 'restart web? #1 (100%)'
  group: test
  description: a name with the characters a URL gives meaning to
  nodefilters:
    filter: 'ECS:Service-Name: web'
  sequence:
    commands:
      - exec: echo restarted
"""
ROLES = ("admin", "operator", "viewer", "webops")


@dataclass(frozen=True)
class WebUser:
    name: str
    password: str
    role: str
    token: str


@dataclass
class WebServer:
    """A running console: where it is, who may sign in, and its state directory."""

    base_url: str
    state_dir: Path
    users: dict[str, WebUser]
    loop: asyncio.AbstractEventLoop
    app: web.Application
    runner: web.AppRunner
    thread: threading.Thread
    stopped: bool = field(default=False)

    def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine on the server's own loop (to reach the app's objects)."""

        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=60)

    def stop(self) -> None:
        """Shut down as ``ecsexec server`` does on SIGTERM: graceful, runs recorded."""
        if self.stopped:
            return
        self.stopped = True
        try:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


def make_users(state_dir: Path) -> dict[str, WebUser]:
    """One user per role (named after it), with a password and an API token."""
    store = open_team_store(database_path(state_dir))
    users = {}
    try:
        for role in ROLES:
            password = f"{role}-password-1"
            store.add_user(role, role, hash_password(password))
            token, digest = new_api_token()
            store.add_token(role, "tests", digest, None)
            users[role] = WebUser(role, password, role, token)
    finally:
        store.close()
    return users


def start_server(sb: Sandbox, state_dir: Path, *, job_dirs: tuple[Path, ...] = ()) -> WebServer:
    """The app of ``ecsexec server`` on 127.0.0.1:<free port>, in a thread of its own."""
    state_dir.mkdir(parents=True, exist_ok=True)
    config_file = state_dir / "ecsexec.toml"
    config_file.write_text(CONFIG)
    config = load_config(config_file, search=False, environ={})
    loop = asyncio.new_event_loop()
    started: Future[tuple[web.Application, web.AppRunner, str]] = Future()

    async def setup() -> tuple[web.Application, web.AppRunner, str]:
        engine = Client(
            config,
            sources=SourceOverrides(regions=("us-east-1",)),
            history=database_path(state_dir),
            session_factory=lambda region: session_from_env(sb.env, region),
        )
        settings = ServerSettings(
            state_dir=state_dir,
            sign_in_failures=3,
            live_check_s=0.5,
            extra_origins=frozenset({"https://console.example"}),
            trusted_proxies=("127.0.0.1/32",),
        )
        app = open_server_app(
            config,
            engine,
            settings,
            job_dirs=job_dirs,
            keystore=KeyStore(state_dir / "keystore"),
        )
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=10.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return app, runner, f"http://{host}:{port}"

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            started.set_result(loop.run_until_complete(setup()))
        except BaseException as exc:
            started.set_exception(exc)
            return
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=main, name="web-server", daemon=True)
    thread.start()
    app, runner, base_url = started.result(timeout=60)
    return WebServer(base_url, state_dir, {}, loop, app, runner, thread)


@pytest.fixture(scope="module")
def web_server(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """The console on the session's sandbox, with a user of each role (see module doc)."""
    state_dir = tmp_path_factory.mktemp("web-state")
    jobs = state_dir / "jobs"
    jobs.mkdir()
    (jobs / "greet.yaml").write_text(TEST_JOB)
    (jobs / "java-thread-dump.yaml").write_text(
        (EXAMPLE_JOBS / "java-thread-dump.yaml").read_text()
    )
    users = make_users(state_dir)
    server = start_server(sandbox, state_dir, job_dirs=(jobs,))
    server.users = users
    try:
        yield server
    finally:
        server.stop()

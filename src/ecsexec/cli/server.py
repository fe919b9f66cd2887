"""``ecsexec server``: the web console and REST API for a team (docs in README "Web console").

It serves the console on ``--listen`` (default [server].listen, else 127.0.0.1:8440), over TLS with
``--tls-cert``/``--tls-key``, keeping users, sessions, tokens, audit, schedules and run
history in one SQLite database under ``--state-dir``. ``--sandbox`` starts an embedded
sandbox region (as ``ecsexec demo`` does), points the console at it, and creates a demo
admin whose password (new on each start) is printed. Stopping it (Ctrl-C, SIGTERM) closes every
terminal and event stream, and records runs still in flight as incomplete.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import signal
import ssl
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import click

from ecsexec.app import Client, SourceOverrides
from ecsexec.cli.common import config_option, context_config_path
from ecsexec.config import DEFAULT_LISTEN, Config, listen_problem, load_config
from ecsexec.errors import ConfigurationError
from ecsexec.store.keys import KeyStore
from ecsexec.store.team import database_path, default_state_dir, open_team_store
from ecsexec.web.app import open_server_app
from ecsexec.web.keys import ServerSettings
from ecsexec.web.passwords import hash_password, new_secret

DEMO_ADMIN: Final = "admin"
_LISTEN: Final = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d+)$")


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port); ConfigurationError if not."""
    problem = listen_problem(listen)
    found = _LISTEN.fullmatch(listen)
    if problem or found is None:
        raise ConfigurationError(f"--listen: {problem or repr(listen) + ' is not HOST:PORT'}")
    host = found.group("v6") or found.group("host") or "0.0.0.0"
    return host, int(found.group("port"))


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """A server TLS context from PEM files, or None without them (both or neither)."""
    if not cert and not key:
        return None
    if not cert or not key:
        raise ConfigurationError("--tls-cert and --tls-key go together: give both or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"--tls-cert/--tls-key: cannot load them: {exc}") from None
    return context


def plain_http_warning(host: str, *, tls: bool) -> str:
    """A warning when plain HTTP is served beyond this machine ("" when it is not)."""
    if tls or host == "localhost":
        return ""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return ""
    except ValueError:
        pass  # a host name other than localhost: it may resolve to anything
    return (
        f"warning: serving plain HTTP on {host}: passwords, session cookies and tokens "
        "cross the network in clear; use --tls-cert/--tls-key, or keep the server on "
        "127.0.0.1 behind a TLS proxy"
    )


def server_settings(config: Config, state_dir: Path, *, tls: bool) -> ServerSettings:
    """The settings the server runs with, from its flags and ``[server]``."""
    return ServerSettings(
        state_dir=state_dir,
        tls=tls,
        extra_origins=frozenset(config.server.origins),
        trusted_proxies=config.server.trusted_proxies,
    )


def ensure_admin(state_dir: Path, name: str = DEMO_ADMIN) -> str:
    """Create (or reset) the admin ``name`` with a fresh one-time password; return it."""
    password = new_secret(12)
    store = open_team_store(database_path(state_dir))
    try:
        if store.get_user(name) is None:
            store.add_user(name, "admin", hash_password(password))
        else:
            store.set_password(name, hash_password(password))
            store.set_disabled(name, False)
    finally:
        store.close()
    return password


@contextlib.contextmanager
def _sandbox_engine(config: Config, state_dir: Path, initial_wait: float) -> Iterator[Client]:
    """An embedded sandbox and an engine that reaches only it (as ``ecsexec demo``)."""
    from ecsexec.aws.clients import AwsSession, session_from_env
    from ecsexec.sandbox import Sandbox

    # botocore reads AWS_* from the environment; the sandbox's settings must win.
    for variable in [v for v in os.environ if v.startswith("AWS_")]:
        del os.environ[variable]
    with Sandbox(process=False, initial_wait=initial_wait) as sb:
        env = sb.env

        def factory(region: str) -> AwsSession:
            return session_from_env(env, region)

        click.echo(f"sandbox ready at {sb.endpoint_url} (regions: {', '.join(sb.regions)})")
        for notice in sb.notices:
            click.echo(f"note: {notice}")
        yield Client(
            load_config(search=False, environ={}) if config.path is None else config,
            sources=SourceOverrides(regions=tuple(sb.regions)),
            history=database_path(state_dir),
            session_factory=factory,
        )


async def serve(
    app: Any, host: str, port: int, tls: ssl.SSLContext | None, ready: str = ""
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then shut down gracefully."""
    from aiohttp import web

    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=10.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigurationError(f"--listen {host}:{port}: {exc.strerror or exc}") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if ready:
            click.echo(ready)
        await stop.wait()
        click.echo("stopping: closing streams, recording in-flight runs as incomplete")
    finally:
        await runner.cleanup()


def _url(host: str, port: int, tls: bool) -> str:
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"{'https' if tls else 'http'}://{shown}:{port}/"


@click.group("server", invoke_without_command=True)
@click.option(
    "--listen",
    default=None,
    help=f"HOST:PORT to serve on (default [server].listen, else {DEFAULT_LISTEN}).",
)
@config_option
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the database lives (default [server].state_dir, else $ECSEXEC_STATE_DIR, "
    "else $XDG_STATE_HOME/ecsexec, else ~/.local/state/ecsexec; with --sandbox a "
    "temporary one).",
)
@click.option(
    "--tls-cert", type=click.Path(dir_okay=False, exists=True), help="PEM certificate chain."
)
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="PEM private key.")
@click.option(
    "--jobs",
    "job_dirs",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A job directory (repeatable; default [server].job_dirs).",
)
@click.option(
    "--sandbox",
    is_flag=True,
    help="Start an embedded sandbox region and a demo admin (a one-command trial).",
)
@click.pass_context
def server_group(
    ctx: click.Context,
    listen: str | None,
    state_dir: Path | None,
    tls_cert: str | None,
    tls_key: str | None,
    job_dirs: tuple[Path, ...],
    sandbox: bool,
) -> None:
    """Serve the web console and REST API for a team."""
    if ctx.invoked_subcommand is not None:
        return
    config = load_config(context_config_path())
    host, port = parse_listen(listen or config.server.listen)
    tls = tls_context(tls_cert, tls_key)
    warning = plain_http_warning(host, tls=tls is not None)
    if warning:
        click.echo(warning, err=True)
    jobs = job_dirs or config.server.job_dirs
    if sandbox and not jobs and Path("examples/jobs").is_dir():
        jobs = (Path("examples/jobs"),)  # the thread-dump job, from a clone of the repository
    with contextlib.ExitStack() as stack:
        # A sandbox trial keeps its own state: next to a real ecsexec.toml it must not
        # reset the real admin's password or add sandbox runs to the real history.
        state = state_dir or (None if sandbox else config.server.state_dir)
        if state is None and sandbox:
            state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ecsexec-server-")))
        state = state or default_state_dir()
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings = server_settings(config, state, tls=tls is not None)
        if sandbox:
            engine = stack.enter_context(_sandbox_engine(config, state, initial_wait=1.0))
            keystore = KeyStore(state / "keystore")
            password = ensure_admin(state)
        else:
            engine = Client(config, history=database_path(state))
            keystore = config.open_keystore()
            password = ""
        app = open_server_app(config, engine, settings, job_dirs=jobs, keystore=keystore)
        url = _url(host, port, tls is not None)
        ready = f"ecsexec server: {url} (state in {state})"
        if password:
            ready += f"\nsign in as {DEMO_ADMIN!r} with this run's password: {password}"
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(app, host, port, tls, ready))
    sys.stdout.flush()


def _attach_users() -> None:
    """``ecsexec server users ...`` (W1's group), when it is installed."""
    try:
        from ecsexec.cli.server_users import users_group
    except ImportError:
        return
    server_group.add_command(users_group)


_attach_users()

"""``ecsexec sandbox ...``: start, stop and inspect the local ECS region.

See docs/sandbox.md §1, §9.4.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ecsexec.cli.entry import run_click
from ecsexec.errors import ConfigurationError

FC = TypeVar("FC", bound=Callable[..., Any])
_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?$")


def parse_duration(text: str) -> float:
    """``1s``, ``250ms``, ``2m``, ``1h`` or plain seconds (``0.05``)."""
    m = _DURATION.match(text.strip())
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration (e.g. 1s, 250ms, 0.05)")
    value = float(m.group(1))
    return {"ms": value / 1000.0, "m": value * 60.0, "h": value * 3600.0}.get(
        m.group(2) or "s", value
    )


def _duration(ctx: click.Context, param: click.Parameter, value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return parse_duration(str(value))


def duration_option(name: str, default: str, help: str) -> Callable[[FC], FC]:
    return click.option(
        name,
        default=default,
        show_default=True,
        metavar="DURATION",
        callback=_duration,
        help=f"{help} (e.g. 500ms, 2s, 20m).",
    )


def _state_dir(value: str | None) -> Path:
    from ecsexec.sandbox.state import default_state_dir

    return Path(value).expanduser() if value else default_state_dir()


state_dir_option = click.option(
    "--state-dir",
    "state_dir",
    metavar="DIR",
    help="State directory (default $XDG_STATE_HOME/ecsexec/sandbox or ~/.local/state/...).",
)


@click.group()
def sandbox() -> None:
    """Run a local ECS region (ECS API, message gateway, container agents)."""


@sandbox.command()
@click.option(
    "--topology", "topology_file", metavar="FILE", help="Topology YAML (default: built-in)."
)
@click.option("--tasks", type=click.IntRange(min=0), help="Generate N exec-ready tasks instead.")
@click.option("--clusters", type=click.IntRange(min=1), help="Generator: clusters.")
@click.option("--services", type=click.IntRange(min=1), help="Generator: services per cluster.")
@click.option("--containers", type=click.IntRange(1, 3), help="Generator: containers per task.")
@click.option("--mix", is_flag=True, help="Generator: ~5% exec-disabled, ~2% agent-stopped.")
@click.option("--seed", type=int, help="Seed for IDs and the generator.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Main port (0 = free).",
)
@click.option(
    "--metadata-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port of the container-credentials and IMDSv2 endpoint (0: any free port); "
    "started only for --credentials container|imds|instance.",
)
@state_dir_option
@click.option(
    "--tls", is_flag=True, help="Serve HTTPS/WSS with a local CA (ca.pem in the state dir)."
)
@click.option(
    "--credentials",
    type=click.Choice(["keys", "container", "imds", "instance"]),
    default="keys",
    show_default=True,
    help="How clients get credentials: static keys in the profile, the ECS container "
    "credentials endpoint, or EC2 instance metadata.",
)
@click.option(
    "--faults", default="", metavar="SPEC", help="Fault injection, e.g. drop=0.05,seed=1."
)
@click.option(
    "--throttle", default="", metavar="SPEC|off", help="ACTION:RATE/s[:BURST],... or off."
)
@duration_option("--initial-wait", "1s", "The agent's wait before a command's first output")
@duration_option(
    "--agent-start-delay", "0.2s", "Delay between a client attaching and its process starting"
)
@duration_option(
    "--drain-timeout", "2s", "How long an agent resends unacked output after the command ends"
)
@duration_option("--handshake-timeout", "15s", "How long an agent waits for a handshake answer")
@duration_option("--idle-timeout", "20m", "A session with no input or output ends after this")
@duration_option("--token-ttl", "60s", "Lifetime of a stream token (reconnects need ResumeSession)")
@duration_option(
    "--close-grace", "1s", "After channel_closed, the relay closes the socket this much later"
)
@duration_option("--credential-ttl", "3600s", "Lifetime of issued temporary credentials")
@duration_option("--retention", "1h", "How long stopped tasks stay describable")
@click.option(
    "--session-limit",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Concurrent exec sessions per container (the ECS agent's SessionWorkersLimit).",
)
@click.option(
    "--session-limit-mode",
    type=click.Choice(["channel", "api"]),
    default="channel",
    show_default=True,
    help="How a session over the limit is refused: a channel_closed naming the limit, or "
    "an ExecuteCommand error.",
)
@click.option(
    "--agent-loss",
    type=click.Choice(["close", "silent"]),
    default="close",
    show_default=True,
    help="When a container's agent is lost: send channel_closed, or go silent (clients "
    "must time out on their own).",
)
@click.option(
    "--require-challenge-ack",
    is_flag=True,
    help="KMS sessions: require the client to acknowledge the random challenge.",
)
@click.option("--imds-v1", is_flag=True, help="Allow IMDS GETs without a token.")
@click.option(
    "--namespaces/--no-namespaces",
    default=True,
    show_default=True,
    help="Give each container its own PID, UTS and mount namespaces (its own ps, hostname "
    "and /tmp), where the host allows it: as root, or inside a user namespace. Otherwise, "
    "and with --no-namespaces, containers share the host's, with a notice.",
)
@click.option(
    "--share",
    default="",
    metavar="DIR[:DIR...]",
    help="Host directories every container sees at the same path although its /tmp is "
    "private (like bind mounts), separated by ':'.",
)
@click.option("--no-verify-signatures", is_flag=True, help="Accept any SigV4 signature.")
@click.option(
    "--strict/--no-strict", default=False, help="Validate every response against botocore."
)
@click.option("--no-main", is_flag=True, help="Do not start containers' main processes.")
@click.option("--detach", is_flag=True, help="Run in the background; return once healthy.")
def up(
    topology_file: str | None,
    tasks: int | None,
    clusters: int | None,
    services: int | None,
    containers: int | None,
    mix: bool,
    seed: int | None,
    port: int,
    metadata_port: int,
    state_dir: str | None,
    tls: bool,
    credentials: str,
    faults: str,
    throttle: str,
    initial_wait: float,
    agent_start_delay: float,
    drain_timeout: float,
    handshake_timeout: float,
    idle_timeout: float,
    token_ttl: float,
    close_grace: float,
    credential_ttl: float,
    retention: float,
    session_limit: int,
    session_limit_mode: str,
    agent_loss: str,
    require_challenge_ack: bool,
    imds_v1: bool,
    namespaces: bool,
    share: str,
    no_verify_signatures: bool,
    strict: bool,
    no_main: bool,
    detach: bool,
) -> None:
    """Start the sandbox (foreground unless --detach)."""
    from ecsexec.sandbox.runtime import SandboxConfig
    from ecsexec.sandbox.state import StateDir

    if topology_file and tasks is not None:
        raise click.UsageError("--topology and --tasks are mutually exclusive")
    state = StateDir(_state_dir(state_dir))
    if detach:
        _up_detached(state)
        return
    config = SandboxConfig(
        state_dir=state.path,
        topology_file=topology_file,
        tasks=tasks,
        generator={
            k: v
            for k, v in {
                "clusters": clusters,
                "services": services,
                "containers": containers,
            }.items()
            if v is not None
        }
        | ({"mix": True} if mix else {}),
        seed=seed,
        port=port,
        metadata_port=metadata_port,
        tls=tls,
        credentials=credentials,
        faults=faults,
        throttle=throttle,
        initial_wait=initial_wait,
        agent_start_delay=agent_start_delay,
        drain_timeout=drain_timeout,
        handshake_timeout=handshake_timeout,
        idle_timeout=idle_timeout,
        token_ttl=token_ttl,
        close_grace=close_grace,
        require_challenge_ack=require_challenge_ack,
        agent_loss=agent_loss,
        session_limit=session_limit,
        session_limit_mode=session_limit_mode,
        namespaces=namespaces,
        share=[os.path.abspath(p) for p in share.split(os.pathsep) if p],
        verify_signatures=not no_verify_signatures,
        strict=strict,
        run_main=not no_main,
        credential_ttl=credential_ttl,
        imds_v1=imds_v1,
        retention=retention,
    )
    state.create()
    _setup_logging(state.log_file)
    asyncio.run(_foreground(config))


def _up_detached(state: Any) -> None:
    from ecsexec.errors import SandboxError
    from ecsexec.sandbox.control import start_detached

    try:
        _proc, info = start_detached(_child_args(click.get_current_context()), state)
    except SandboxError as exc:
        click.echo(f"ecsexec: error: {exc}", err=True)
        sys.exit(1)
    click.echo(_ready_line(info))
    for notice in info.get("notices") or []:
        click.echo(f"notice: {notice}")


def _child_args(ctx: click.Context) -> list[str]:
    """The options the user gave ``up``, rebuilt for the detached child (minus --detach)."""
    args: list[str] = []
    for param in ctx.command.params:
        name = param.name
        if not isinstance(param, click.Option) or name in ("detach", "state_dir", None):
            continue
        source = ctx.get_parameter_source(name)
        if source not in (
            click.core.ParameterSource.COMMANDLINE,
            click.core.ParameterSource.ENVIRONMENT,
        ):
            continue
        value = ctx.params[name]
        if param.is_flag and param.secondary_opts:
            args.append(param.opts[0] if value else param.secondary_opts[0])
        elif param.is_flag:
            if value:
                args.append(param.opts[0])
        elif value is not None:
            args += [param.opts[0], repr(value) if isinstance(value, float) else str(value)]
    return args


def _ready_line(info: dict[str, Any]) -> str:
    return (
        f"ready endpoint={info['endpoint_url']} regions={','.join(info['regions'])} "
        f"state={info['state_dir']}"
    )


def _setup_logging(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("ecsexec")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


async def _foreground(config: Any) -> None:
    from ecsexec.sandbox.server import SandboxServer

    server = SandboxServer(config)
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_stop)
    info = server.info()
    # docs/sandbox.md §1: one ready line, printed only once every listener is bound.
    print(_ready_line(info), flush=True)
    # docs/sandbox.md §15: the sandbox states its session capacity at start-up.
    print(
        f"capacity sessions={info['capacity']['sessions']} "
        f"(limited by {info['capacity']['limited_by']})",
        flush=True,
    )
    for notice in server.rt.notices:
        print(f"notice: {notice}", flush=True)
    try:
        await server.wait_stopped()
    finally:
        if not server.stopped.is_set():
            await server.stop()


@sandbox.command()
@state_dir_option
def down(state_dir: str | None) -> None:
    """Stop the sandbox (POST /_sandbox/shutdown with the control token)."""
    from ecsexec.errors import SandboxError
    from ecsexec.sandbox.control import ControlClient, wait_until_gone
    from ecsexec.sandbox.state import StateDir

    state = StateDir(_state_dir(state_dir))
    if not state.locked_by_other():
        click.echo(f"no sandbox is running (state dir {state.path})")
        return
    pid = (state.read_info() or {}).get("pid")
    try:
        ControlClient.from_state(state).shutdown()
    except SandboxError as exc:
        raise ConfigurationError(str(exc)) from None
    if not wait_until_gone(state, pid if isinstance(pid, int) else None):
        raise ConfigurationError(f"the sandbox in {state.path} did not stop within 30 s")
    click.echo("stopped")


@sandbox.command()
@state_dir_option
def status(state_dir: str | None) -> None:
    """Say whether a sandbox runs, and where."""
    from ecsexec.errors import SandboxError
    from ecsexec.sandbox.control import ControlClient
    from ecsexec.sandbox.state import StateDir

    state = StateDir(_state_dir(state_dir))
    if not state.locked_by_other():
        click.echo(f"not running (state dir {state.path})")
        sys.exit(1)
    try:
        health = ControlClient.from_state(state).health()
    except SandboxError as exc:
        click.echo(f"unhealthy: {exc}")
        sys.exit(1)
    info = state.read_info() or {}
    click.echo(
        f"running pid={health['pid']} endpoint={health['endpoint_url']} "
        f"regions={','.join(health['regions'])} uptime={health['uptime']:.0f}s "
        f"sessions={health['sessions_active']} tls={'on' if info.get('tls') else 'off'} "
        f"credentials={info.get('credentials', 'keys')} state={state.path}"
    )


@sandbox.command()
@state_dir_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["sh", "fish", "json", "dotenv"]),
    default="sh",
    help="Shell syntax to print (eval it), or JSON / a .env file.",
    show_default=True,
)
@click.option(
    "--per-service", is_flag=True, help="AWS_ENDPOINT_URL_ECS/_SSM/_KMS/_STS instead of one URL."
)
def env(state_dir: str | None, fmt: str, per_service: bool) -> None:
    """Print environment settings that point AWS SDKs at the sandbox (paths and URLs only)."""
    from ecsexec.sandbox.state import StateDir, env_vars, render_env

    state = StateDir(_state_dir(state_dir))
    info = state.read_info()
    if info is None or not state.locked_by_other():
        raise ConfigurationError(
            f"no sandbox is running with state dir {state.path}; "
            "start one with `ecsexec sandbox up --detach`"
        )
    values, unset = env_vars(info, per_service=per_service)
    click.echo(render_env(values, unset, fmt), nl=False)


@sandbox.command()
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Raw JSON.")
@click.option("--watch", is_flag=True, help="Refresh every second until Ctrl-C.")
def stats(state_dir: str | None, as_json: bool, watch: bool) -> None:
    """Show API calls, sessions, frames, agent and process counters."""
    from ecsexec.errors import SandboxError
    from ecsexec.sandbox.control import ControlClient
    from ecsexec.sandbox.state import StateDir

    state = StateDir(_state_dir(state_dir))
    try:
        client = ControlClient.from_state(state)
        while True:
            data = client.stats()
            if as_json:
                click.echo(json.dumps(data, indent=2))
            else:
                if watch:
                    click.clear()
                click.echo(render_stats(data))
            if not watch:
                return
            time.sleep(1.0)
    except SandboxError as exc:
        raise ConfigurationError(str(exc)) from None
    except KeyboardInterrupt:
        return


def render_stats(data: dict[str, Any]) -> str:
    lines = ["API calls (all regions):"]
    api = data.get("api", {})
    if not api:
        lines.append("  (none)")
    for service in sorted(api):
        for action, c in sorted(api[service].items()):
            errors = ", ".join(f"{k}={v}" for k, v in sorted(c["errors"].items()))
            lines.append(
                f"  {service}:{action:<24} calls={c['calls']:<6} seconds={c['seconds']:.3f}"
                + (f"  errors: {errors}" if errors else "")
            )
    s = data["sessions"]
    lines.append(
        f"sessions: opened={s['opened']} closed={s['closed']} active={s['active']} "
        f"client_connects={s['client_connects']} resumes={s['resumes']}"
    )
    ended = ", ".join(f"{k}={v}" for k, v in s["by_end_reason"].items() if v)
    if ended:
        lines.append(f"  ended: {ended}")
    for direction, f in data["frames"].items():
        lines.append(f"frames {direction}: " + " ".join(f"{k}={v}" for k, v in f.items()))
    lines.append("agent: " + " ".join(f"{k}={v}" for k, v in data["agent"].items()))
    lines.append("processes: " + " ".join(f"{k}={v}" for k, v in data["processes"].items()))
    lag = data["loop_lag_ms"]
    lines.append(f"loop lag: p50={lag['p50']}ms p99={lag['p99']}ms  cpu={data['cpu_seconds']}s")
    warnings = data.get("protocol_warnings") or []
    if warnings:
        lines.append(f"protocol warnings: {len(warnings)}")
        lines += [f"  {w['session']}: {w['code']}: {w['detail']}" for w in warnings[-10:]]
    return "\n".join(lines)


@sandbox.command()
@click.option(
    "--tasks", type=click.IntRange(min=0), help="Generate N tasks (default: the built-in topology)."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for IDs and the generator."
)
@click.option("--clusters", type=click.IntRange(min=1), help="Generator: clusters.")
@click.option("--services", type=click.IntRange(min=1), help="Services per cluster.")
@click.option(
    "--containers",
    type=click.IntRange(1, 3),
    default=1,
    show_default=True,
    help="Generator: containers per task.",
)
@click.option("--mix", is_flag=True, help="About 5% exec-disabled and 2% agent-stopped tasks.")
def topology(
    tasks: int | None,
    seed: int,
    clusters: int | None,
    services: int | None,
    containers: int,
    mix: bool,
) -> None:
    """Print a topology as YAML: the built-in one, or a generated one with --tasks."""
    from ecsexec.sandbox import topology as topo

    if tasks is None:
        doc, notices = topo.default_topology()
        for notice in notices:
            click.echo(f"# notice: {notice}")
    else:
        doc = topo.generate(
            tasks, seed=seed, clusters=clusters, services=services, containers=containers, mix=mix
        )
    click.echo(topo.dump(doc), nl=False)


def run(prog_name: str = "ecsexec sandbox") -> None:
    """Entry point of ``python -m ecsexec.cli.sandbox``: the sandbox commands alone, what
    ``up --detach`` and ``Sandbox(process=True)`` start (faster to load than all of ecsexec).
    """
    run_click(sandbox, prog_name)


if __name__ == "__main__":
    run()

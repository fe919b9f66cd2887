"""``ecsexec whoami``: the caller identity, which provider resolved it, the region and endpoint."""

from __future__ import annotations

import dataclasses
import json

import click

from ecsexec.aws.credentials import Identity, SessionFactories
from ecsexec.cli.common import config_option, context_config_path
from ecsexec.config import load_config
from ecsexec.errors import EcsexecError
from ecsexec.nodes.ecs_source import EcsSourceConfig


def render(identity: Identity, title: str | None = None) -> str:
    rows = [
        ("account", identity.account),
        ("arn", identity.arn),
        ("user id", identity.user_id),
        ("provider", identity.provider),
        ("resolved by", f"botocore {identity.method}" if identity.method else "-"),
        ("region", identity.region),
        ("endpoint", identity.endpoint_url),
    ]
    head = [f"[{title}]"] if title else []
    return "\n".join(head + [f"{name:<12}{value}" for name, value in rows]) + "\n"


@click.command("whoami")
@click.option("--region", default=None, help="Region for the STS call (default: the configured).")
@click.option("--profile", default=None, help="AWS profile (credential_provider=profile).")
@click.option("--sources", "all_sources", is_flag=True, help="Also each [[sources]] entry.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format."
)
@config_option
def whoami_command(region: str | None, profile: str | None, all_sources: bool, fmt: str) -> None:
    """Show who the configured credentials are (sts:GetCallerIdentity) and where they came from."""
    config = load_config(context_config_path(), profile=profile)
    factories = SessionFactories(secret_reader=config.read_password)
    results: list[tuple[str | None, Identity | EcsexecError]] = [
        (None, factories(config.aws).caller_identity(region))
    ]
    failed = False
    if all_sources:
        for source in config.sources:
            if not isinstance(source.config, EcsSourceConfig):
                continue
            try:
                identity: Identity | EcsexecError = factories(source.aws).caller_identity(
                    region or source.config.region or None
                )
            except EcsexecError as exc:
                identity, failed = exc, True
            results.append((source.label, identity))
    if fmt == "json":
        records = []
        for title, outcome in results:
            record = (
                dataclasses.asdict(outcome)
                if isinstance(outcome, Identity)
                else {"error": str(outcome)}
            )
            records.append({"source": title, **record} if title else record)
        click.echo(json.dumps(records[0] if not all_sources else records, indent=2))
    else:
        texts = []
        for title, outcome in results:
            if isinstance(outcome, Identity):
                texts.append(render(outcome, title))
            else:
                texts.append(f"[{title}]\nerror       {outcome}\n")
        click.echo("\n".join(texts), nl=False)
    if failed:
        raise SystemExit(2)

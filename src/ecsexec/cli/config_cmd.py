"""``ecsexec config show``: the effective configuration, where each value came from, no secrets."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from ecsexec.cli.common import config_option, context_config_path
from ecsexec.config import Config, ConfiguredSource, load_config
from ecsexec.nodes.ecs_source import EcsSourceConfig
from ecsexec.nodes.sources import source_type_of


def _source_record(source: ConfiguredSource) -> dict[str, Any]:
    record: dict[str, Any] = {"name": source.name} if source.name else {}
    config = source.config
    if isinstance(config, EcsSourceConfig):
        record["type"] = "ecs"
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            if field.name == "tags":
                value = [f"{k}={v}" for k, v in value]
            elif isinstance(value, tuple):
                value = list(value)
            record[field.name] = value
        record["credentials"] = source.aws.describe()
        record["aws"] = {k: v for k, v in source.aws.masked().items() if v}
    else:  # any other registered source type: its configuration's fields as text
        record["type"] = source_type_of(config).name
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            record[field.name] = list(value) if isinstance(value, tuple) else str(value)
    record["origin"] = source.origin
    return record


def config_record(config: Config) -> dict[str, Any]:
    """The effective configuration as JSON-able data, identifying values masked."""
    aws = config.aws.masked()
    return {
        "path": str(config.path) if config.path else None,
        "aws": {
            key: {"value": value, "origin": config.origin(f"aws.{key}")}
            for key, value in aws.items()
        },
        "credentials": config.aws.describe(),
        "sources": [_source_record(s) for s in config.sources],
        "dispatch": {
            key: {"value": value, "origin": config.origin(f"dispatch.{key}")}
            for key, value in dataclasses.asdict(config.dispatch).items()
        },
        "keystore": {
            "dir": {"value": str(config.keystore_dir()), "origin": config.origin("keystore.dir")},
            "key_file": {
                "value": str(config.open_keystore().key_file),
                "origin": config.origin("keystore.key_file"),
            },
        },
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def render_text(record: dict[str, Any]) -> str:
    """TOML-shaped text; each value's origin is a comment."""
    lines = [f"# configuration file: {record['path'] or 'none found (defaults and environment)'}"]

    def section(name: str, items: dict[str, dict[str, Any]], always: tuple[str, ...] = ()) -> None:
        lines.extend(["", f"[{name}]"])
        for key, item in items.items():
            if item["value"] in ("", None) and key not in always:
                continue
            text = f"{key} = {_toml_value(item['value'])}"
            lines.append(f"{text:<48} # {item['origin']}")

    section("aws", record["aws"], always=("credential_provider",))
    lines.append(f"# credentials: {record['credentials']}")
    for source in record["sources"]:
        lines.extend(["", f"[[sources]]{'':<37} # {source['origin']}"])
        for key, value in source.items():
            if key in ("origin", "aws") or value in ("", [], None):
                continue
            lines.append(f"{key} = {_toml_value(value)}")
    section("dispatch", record["dispatch"])
    section("keystore", record["keystore"])
    return "\n".join(lines) + "\n"


@click.group("config")
def config_group() -> None:
    """Project configuration (ecsexec.toml)."""


@config_group.command("show")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format."
)
@click.option("--profile", default=None, help="As `--profile` on other commands.")
@config_option
def show(fmt: str, profile: str | None) -> None:
    """Print the effective configuration: file, environment and flags merged, secrets masked."""
    config = load_config(context_config_path(), profile=profile)
    record = config_record(config)
    if fmt == "json":
        click.echo(json.dumps(record, indent=2))
    else:
        click.echo(render_text(record), nl=False)

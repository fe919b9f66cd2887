"""``ecsexec keys``: put, list, info, rm and get for key storage (values never on argv)."""

from __future__ import annotations

import sys
from typing import cast

import click
from rich.console import Console
from rich.table import Table

from ecsexec.cli.common import config_option, context_config_path
from ecsexec.config import load_config
from ecsexec.errors import KeyStoreError
from ecsexec.store.keys import KEY_TYPES, KeyInfo, KeyStore, KeyType, Secret


def _store() -> KeyStore:
    return load_config(context_config_path()).open_keystore()


def _read_value(key_type: str) -> Secret:
    """From stdin when it is not a terminal, else a no-echo prompt (typed twice)."""
    if sys.stdin.isatty():
        text = click.prompt(
            f"Value ({key_type})", hide_input=True, confirmation_prompt=True, err=True
        )
        return Secret(text.encode("utf-8"))
    data = sys.stdin.buffer.read()
    if key_type == "password":
        # `echo secret | ecsexec keys put …` must not store the shell's line break.
        data = data.removesuffix(b"\n").removesuffix(b"\r")
    if not data:
        raise KeyStoreError("no value on stdin")
    return Secret(data)


def _when(info: KeyInfo) -> str:
    return info.modified.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


@click.group("keys")
def keys_group() -> None:
    """Key storage: secrets kept encrypted (AES-GCM) under paths like keys/project/p/aws-secret.

    Password and private values can be stored but never read back; only ecsexec itself
    uses them (for example `secret_key_path` of the keys credential provider).
    """


@keys_group.command("put")
@click.argument("path")
@click.option(
    "--type",
    "key_type",
    type=click.Choice(KEY_TYPES),
    default="password",
    show_default=True,
    help="Rundeck key type.",
)
@config_option
def put(path: str, key_type: str) -> None:
    """Store a value at PATH, read from stdin or a no-echo prompt (never from the command line)."""
    store = _store()
    value = _read_value(key_type)
    info = store.put(path, value, cast(KeyType, key_type))  # click.Choice checked it
    click.echo(f"stored {info.path} ({info.type}, {info.size} bytes)", err=True)


@keys_group.command("list")
@click.argument("prefix", required=False, default="keys")
@config_option
def list_keys(prefix: str) -> None:
    """List keys under PREFIX (default: all)."""
    infos = _store().list(prefix)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("PATH", "TYPE", "SIZE", "MODIFIED"):
        table.add_column(column, overflow="fold")
    for info in infos:
        table.add_row(info.path, info.type, str(info.size), _when(info))
    Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200).print(table)


@keys_group.command("info")
@click.argument("path")
@config_option
def info(path: str) -> None:
    """Show a key's type, size and times (never its value)."""
    meta = _store().info(path)
    click.echo(f"path      {meta.path}")
    click.echo(f"type      {meta.type}")
    click.echo(f"size      {meta.size} bytes")
    click.echo(f"created   {meta.created.isoformat()}")
    click.echo(f"modified  {meta.modified.isoformat()}")


@keys_group.command("rm")
@click.argument("path")
@config_option
def rm(path: str) -> None:
    """Delete the key at PATH."""
    store = _store()
    store.remove(path)
    click.echo(f"removed {path}", err=True)


@keys_group.command("get")
@click.argument("path")
@config_option
def get(path: str) -> None:
    """Print a public key's value. Password and private values are refused, as in Rundeck."""
    sys.stdout.buffer.write(_store().get_public(path))
    sys.stdout.buffer.flush()

"""Project configuration: ``ecsexec.toml`` (found upward from the cwd), environment and flags.

Precedence, lowest first: built-in defaults, the file, ``ECSEXEC_*`` environment variables,
command-line flags. The file is ``--config PATH``, else ``$ECSEXEC_CONFIG``, else the first
``ecsexec.toml`` in the working directory or one of its parents.

Sections: ``[aws]`` (region, credentials, endpoint), ``[[sources]]`` (node sources, with
per-source credentials as ecs-nodes.md §3), ``[dispatch]`` (defaults for ``run``),
``[keystore]`` (where key storage lives), ``[history]`` (retention) and ``[server]`` (the web
console: listen address, state dir, job dirs, and its roles as ``[server.roles.NAME]``).
Secrets never belong in the file: a secret key is referenced by its key-storage path
(``secret_key_path``). Every error names ``file:line`` and, where there is a choice, the
valid choices.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlsplit

# AwsSettings and its pieces live in the aws layer (the credential resolver consumes them);
# re-exported here, where they were first defined.
from ecsexec.aws.settings import PROVIDERS as PROVIDERS  # noqa: PLC0414
from ecsexec.aws.settings import AwsSettings as AwsSettings  # noqa: PLC0414
from ecsexec.aws.settings import CredentialProvider as CredentialProvider  # noqa: PLC0414
from ecsexec.aws.settings import mask as mask  # noqa: PLC0414
from ecsexec.errors import ConfigurationError, CredentialsError, FilterSyntaxError, KeyStoreError
from ecsexec.exec.dispatcher import DEFAULT_BURST, DEFAULT_RATE, DEFAULT_THREADS, DEFAULT_TIMEOUT
from ecsexec.nodes.filter import parse_filter
from ecsexec.nodes.regex_errors import JavaRegexError
from ecsexec.nodes.sources import SOURCE_TYPES, SourceConfig, SourceType
from ecsexec.store.keys import (
    DIR_ENV,
    KEY_FILE_ENV,
    PASSPHRASE_ENV,
    KeyStore,
    default_dir,
    normalize_path,
)

CONFIG_NAME: Final = "ecsexec.toml"
CONFIG_ENV: Final = "ECSEXEC_CONFIG"

SECTIONS: Final = ("aws", "sources", "dispatch", "keystore", "history", "server")
AWS_KEYS: Final = (
    "region",
    "credential_provider",
    "profile",
    "access_key_id",
    "secret_key_path",
    "assume_role_arn",
    "external_id",
    "role_session_name",
    "endpoint_url",
    "ca_bundle",
)
# ecs-nodes.md §3: the credential part of a source; if a source sets any of these, its
# base credentials are its own, otherwise it inherits [aws]'s.
BASE_CREDENTIAL_KEYS: Final = ("credential_provider", "profile", "access_key_id", "secret_key_path")
ROLE_KEYS: Final = ("assume_role_arn", "external_id", "role_session_name")


def source_keys(source_type: SourceType[Any]) -> tuple[str, ...]:
    """Every key a ``[[sources]]`` table of ``source_type`` may hold."""
    if source_type.aws:
        return (
            "type",
            "name",
            "region",
            *source_type.keys,
            *BASE_CREDENTIAL_KEYS,
            *ROLE_KEYS,
            "endpoint_url",
            "ca_bundle",
        )
    return ("type", "name", *source_type.keys)


ECS_SOURCE_KEYS: Final = source_keys(SOURCE_TYPES["ecs"])
FILE_SOURCE_KEYS: Final = source_keys(SOURCE_TYPES["file"])
DISPATCH_KEYS: Final = ("threads", "rate", "burst", "timeout", "keepgoing")
KEYSTORE_KEYS: Final = ("dir", "key_file")
SERVER_KEYS: Final = ("listen", "state_dir", "job_dirs", "roles", "origins", "trusted_proxies")
SERVER_ROLE_KEYS: Final = ("actions", "nodes", "jobs", "description")
#: What a web console role may be allowed (ecsexec.web.acl.Action has the same values).
SERVER_ACTIONS: Final = (
    "view_nodes",
    "run_command",
    "run_job",
    "open_terminal",
    "manage_keys",
    "view_activity",
    "admin",
)
DEFAULT_LISTEN: Final = "127.0.0.1:8440"
_ROLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LISTEN = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]*)):(?P<port>[0-9]{1,5})"
)
# Keys that would put a secret in the file. Their values are never echoed.
FORBIDDEN_KEYS: Final = frozenset(
    {
        "secret_access_key",
        "aws_secret_access_key",
        "secret_key",
        "session_token",
        "aws_session_token",
        "password",
    }
)
SENSITIVE_KEYS: Final = frozenset({"access_key_id", "external_id"})

ENV_PREFIX: Final = "ECSEXEC_"
TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS: Final = frozenset({"0", "false", "no", "off"})
_ROLE_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
# botocore's rule for a region name (a host label, not all digits); anything else makes it
# raise InvalidRegionError later, from deep inside discovery.
_REGION = re.compile(r"(?![0-9]+\Z)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)")

Fail = Callable[[str], None]
KeyFail = Callable[[tuple[str | int, ...], str], None]


@dataclass(frozen=True)
class DispatchSettings:
    """Defaults for ``ecsexec run`` (flags override them)."""

    threads: int = DEFAULT_THREADS
    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    timeout: float = DEFAULT_TIMEOUT
    keepgoing: bool = True


@dataclass(frozen=True)
class HistorySettings:
    """How long history keeps finished runs (``ecsexec history prune`` applies it too).

    Each recorded run prunes what is older than ``keep_days`` and beyond the newest
    ``keep_runs``; 0 keeps everything by that measure.
    """

    keep_days: float = 90.0
    keep_runs: int = 10_000


@dataclass(frozen=True)
class RoleConfig:
    """One ``[server.roles.NAME]`` table, validated (ecsexec.web.acl turns it into a Role).

    ``nodes`` is a node filter (docs/node-filter.md; "" allows every node) and ``jobs`` a
    Java regex that must match a job's whole path (group/name; "" allows every job).
    """

    name: str
    actions: tuple[str, ...]
    nodes: str = ""
    jobs: str = ""
    description: str = ""
    origin: str = ""  # file:line of the table


@dataclass(frozen=True)
class ServerConfig:
    """``[server]``: the web console's settings from the file (flags override them)."""

    listen: str = DEFAULT_LISTEN
    state_dir: Path | None = None  # None: ecsexec.store.team.default_state_dir()
    job_dirs: tuple[Path, ...] = ()
    roles: Mapping[str, RoleConfig] = field(default_factory=dict)
    # Behind a reverse proxy: the addresses users open (scheme://host[:port], lower case),
    # accepted as the console's own origin; and the proxies (networks, normalized) whose
    # X-Forwarded-For names the client.
    origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeystoreSettings:
    dir: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class ConfiguredSource:
    """One ``[[sources]]`` entry with its effective credentials (ecs-nodes.md §3)."""

    index: int  # 1-based position among [[sources]]
    name: str
    config: SourceConfig  # a registered source type's (ecsexec.nodes.sources)
    aws: AwsSettings
    origin: str  # file:line of the [[sources]] header

    @property
    def label(self) -> str:
        return self.name or f"sources[{self.index}]"


@dataclass(frozen=True)
class Config:
    """The effective configuration and where each setting came from."""

    path: Path | None = None
    aws: AwsSettings = field(default_factory=AwsSettings)
    sources: tuple[ConfiguredSource, ...] = ()
    dispatch: DispatchSettings = DispatchSettings()
    keystore: KeystoreSettings = KeystoreSettings()
    history: HistorySettings = HistorySettings()
    server: ServerConfig = field(default_factory=ServerConfig)
    origins: Mapping[str, str] = field(default_factory=dict)

    def origin(self, key: str) -> str:
        return self.origins.get(key, "default")

    def keystore_dir(self, environ: Mapping[str, str] | None = None) -> Path:
        return self.keystore.dir or default_dir(environ)

    def open_keystore(self, environ: Mapping[str, str] | None = None) -> KeyStore:
        env = os.environ if environ is None else environ
        return KeyStore(
            self.keystore_dir(env),
            passphrase=env.get(PASSPHRASE_ENV) or None,
            key_file=self.keystore.key_file,
        )

    def read_password(self, path: str) -> str:
        """The ``secret_key_path`` reader of the ``keys`` provider: a *password* key only."""
        try:
            store = self.open_keystore()
            info = store.info(path)
            if info.type != "password":
                raise KeyStoreError(
                    f"{info.path} is a {info.type} key; secret_key_path must name a password"
                )
            return store.read(info.path).reveal_text()
        except KeyStoreError as exc:
            raise CredentialsError(f"keys provider: {exc}") from None


# -- finding the file -------------------------------------------------------------------------


def find_config(start: Path) -> Path | None:
    """The first ``ecsexec.toml`` in ``start`` or one of its parents."""
    directory = start.absolute()
    for candidate in (directory, *directory.parents):
        path = candidate / CONFIG_NAME
        if path.is_file():
            return path
    return None


def config_path(
    explicit: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Path | None:
    """``--config``, else ``$ECSEXEC_CONFIG``, else the search from ``cwd`` upward."""
    env = os.environ if environ is None else environ
    chosen = explicit or env.get(CONFIG_ENV) or None
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            via = "--config" if explicit else CONFIG_ENV
            raise ConfigurationError(f"{via}: configuration file {path} does not exist")
        return path
    return find_config(cwd or Path.cwd())


# -- locating keys ----------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[|\[)\s*(.+?)\s*(\]\]|\])\s*(#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*="""
)
_PART = re.compile(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""")


def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(a or b or c for a, b, c in _PART.findall(dotted))


class Locator:
    """Line numbers of tables and keys in TOML text, for ``file:line`` in errors.

    tomllib reports positions only for syntax errors, so semantic errors look the key up
    here: ``[[sources]]`` entries are numbered from 0, as in the parsed document.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str | int, ...], int] = {}
        table: tuple[str | int, ...] = ()
        counts: dict[tuple[str, ...], int] = {}
        in_string = ""
        for number, line in enumerate(text.splitlines(), start=1):
            if in_string:
                if line.count(in_string) % 2 == 1:
                    in_string = ""
                continue
            header = _HEADER.match(line)
            if header and not _KEY.match(line):
                names = _parts(header.group(2))
                if header.group(1) == "[[":
                    index = counts.get(names, -1) + 1
                    counts[names] = index
                    table = (*names, index)
                else:
                    table = names
                self.lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                self.lines.setdefault((*table, *_parts(key.group(1))), number)
                rest = line[key.end() :]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        in_string = quote

    def line(self, *path: str | int) -> int:
        """The line of ``path``, else of its nearest located parent, else 1."""
        for end in range(len(path), 0, -1):
            found = self.lines.get(tuple(path[:end]))
            if found is not None:
                return found
        return 1


# -- reading ----------------------------------------------------------------------------------


def _choices(value: str, choices: Iterable[str]) -> str:
    options = list(choices)
    close = difflib.get_close_matches(value, options, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"choose one of {', '.join(options)}{hint}"


class _Reader:
    """Validates one document, collecting every error with its location."""

    def __init__(self, path: Path | None, locator: Locator | None) -> None:
        self.path = path
        self.locator = locator
        self.errors: list[str] = []
        self.origins: dict[str, str] = {}

    def where(self, *key: str | int) -> str:
        if self.path is None or self.locator is None:
            return "<config>"
        return f"{self.path}:{self.locator.line(*key)}"

    def fail(self, key: tuple[str | int, ...], message: str) -> None:
        self.errors.append(f"{self.where(*key)}: {message}")

    def keys(
        self,
        table: Mapping[str, Any],
        allowed: Iterable[str],
        key: tuple[str | int, ...],
        label: str,
    ) -> None:
        options = list(allowed)
        for name in table:
            if name in FORBIDDEN_KEYS:
                self.fail(
                    (*key, name),
                    f"{label}: {name} does not belong in a configuration file: store the "
                    "secret with `ecsexec keys put keys/project/<name>/aws-secret` and set "
                    "secret_key_path to that path",
                )
            elif name not in options:
                self.fail((*key, name), f"{label}: unknown key {name!r}; {_choices(name, options)}")

    def string(
        self, table: Mapping[str, Any], name: str, key: tuple[str | int, ...], label: str
    ) -> str | None:
        if name not in table:
            return None
        value = table[name]
        if not isinstance(value, str):
            self.fail((*key, name), f"{label}.{name}: expected a string, got {_kind(value)}")
            return None
        return value.strip()

    def number(
        self,
        table: Mapping[str, Any],
        name: str,
        key: tuple[str | int, ...],
        label: str,
        *,
        minimum: float,
        maximum: float | None = None,
        integer: bool = False,
    ) -> float | None:
        if name not in table:
            return None
        value = table[name]
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            want = "an integer" if integer else "a number"
            self.fail((*key, name), f"{label}.{name}: expected {want}, got {_kind(value)}")
            return None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum:g} and {maximum:g}" if maximum else f"at least {minimum:g}"
            self.fail((*key, name), f"{label}.{name}: {value!r} is out of range; use {bound}")
            return None
        return float(value)

    def strings(
        self, table: Mapping[str, Any], name: str, key: tuple[str | int, ...], label: str
    ) -> tuple[str, ...] | None:
        """ecs-nodes.md §3: a list or a comma-separated string; items trimmed, blanks dropped."""
        if name not in table:
            return None
        value = table[name]
        if isinstance(value, str):
            items = value.split(",")
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = value
        else:
            self.fail(
                (*key, name),
                f"{label}.{name}: expected a list of strings or a comma-separated string",
            )
            return None
        return tuple(item.strip() for item in items if item.strip())


def _table(doc: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name)
    return value if isinstance(value, dict) else {}


def _kind(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _provider(fail: Fail, raw: str) -> tuple[CredentialProvider, str] | None:
    """``default|instance|container|keys|profile``, or ``profile:<name>`` (ecs-nodes.md §3)."""
    value = raw.strip()
    if value.startswith("profile:"):
        name = value.partition(":")[2].strip()
        if not name:
            fail("profile:<name> needs a profile name")
            return None
        return "profile", name
    if value not in PROVIDERS:
        fail(f"{value!r} is not a credential provider; {_choices(value, PROVIDERS)}")
        return None
    return value, ""  # narrowed to CredentialProvider by the membership test


def _aws_table(
    reader: _Reader, table: Mapping[str, Any], key: tuple[str | int, ...], label: str
) -> dict[str, str]:
    """The string-valued credential/endpoint keys present in ``table``, validated one by one."""
    out: dict[str, str] = {}
    for name in AWS_KEYS:
        value = reader.string(table, name, key, label)
        if value is None:
            continue
        if name == "credential_provider":
            parsed = _provider(
                lambda m: reader.fail(
                    (*key, "credential_provider"), f"{label}.credential_provider: {m}"
                ),
                value,
            )
            if parsed is None:
                continue
            out[name] = parsed[0]
            if parsed[1]:
                out["profile"] = parsed[1]
            continue
        if name == "secret_key_path" and value:
            try:
                value = normalize_path(value)
            except ConfigurationError as exc:
                reader.fail((*key, name), f"{label}.{name}: {exc}")
                continue
        out[name] = value
    return out


def check_credentials(
    settings: AwsSettings, fail: KeyFail, label: str, key: tuple[str | int, ...]
) -> AwsSettings:
    """ecs-nodes.md §3 rules: a key pair is both-or-neither and excludes other providers."""
    pair = (bool(settings.access_key_id), bool(settings.secret_key_path))
    provider = settings.credential_provider
    if pair[0] != pair[1]:
        missing = "secret_key_path" if pair[0] else "access_key_id"
        fail(
            (*key, "access_key_id"),
            f"{label}: access_key_id and secret_key_path go together; {missing} is missing",
        )
    elif all(pair) and provider not in ("default", "keys"):
        fail(
            (*key, "credential_provider"),
            f"{label}: access_key_id/secret_key_path cannot be used with credential_provider "
            f"{provider!r}; use 'keys' (or drop the key pair)",
        )
    elif all(pair):
        settings = dataclasses.replace(settings, credential_provider="keys")
    elif provider == "keys":
        fail(
            (*key, "credential_provider"),
            f"{label}: credential_provider 'keys' needs access_key_id and secret_key_path",
        )
    if settings.credential_provider == "profile" and not settings.profile:
        fail(
            (*key, "credential_provider"),
            f"{label}: credential_provider 'profile' needs profile = \"<name>\" "
            "(or write 'profile:<name>')",
        )
    if settings.external_id and not settings.assume_role_arn:
        fail((*key, "external_id"), f"{label}: external_id needs assume_role_arn")
    if settings.assume_role_arn and not settings.assume_role_arn.startswith("arn:"):
        fail(
            (*key, "assume_role_arn"),
            f"{label}: assume_role_arn must be a role ARN (arn:aws:iam::<account>:role/<name>)",
        )
    if settings.role_session_name and not _ROLE_SESSION_NAME.fullmatch(settings.role_session_name):
        fail(
            (*key, "role_session_name"),
            f"{label}: role_session_name must be 2-64 characters of letters, digits and _+=,.@-",
        )
    if settings.endpoint_url and not re.match(r"https?://[^/]", settings.endpoint_url):
        fail((*key, "endpoint_url"), f"{label}: endpoint_url must be an http:// or https:// URL")
    if settings.region and not _REGION.fullmatch(settings.region):
        fail((*key, "region"), f"{label}: {region_problem(settings.region)}")
    return settings


def region_problem(region: str) -> str:
    """Why ``region`` is not a region name (for a message), or "" when it is one."""
    if _REGION.fullmatch(region):
        return ""
    return (
        f"region {region!r} is not a region name: letters, digits and '-' only (not at "
        "either end, not digits alone), at most 63 characters, e.g. us-east-1"
    )


def _resolve_path(base: Path | None, value: str) -> str:
    if not value:
        return value
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = base.parent / path
    return str(path)


@dataclass
class _Layer:
    """Values from one origin (env or flags) with their origin label."""

    values: dict[str, str] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)


def _env_fail(reader: _Reader, variable: str) -> Fail:
    def fail(message: str) -> None:
        reader.errors.append(f"{variable}: {message}")

    return fail


def _env_layer(environ: Mapping[str, str], reader: _Reader) -> _Layer:
    layer = _Layer()
    for name in AWS_KEYS:
        variable = ENV_PREFIX + name.upper()
        value = environ.get(variable)
        if value is None or value == "":
            continue
        if name == "credential_provider":
            parsed = _provider(_env_fail(reader, variable), value)
            if parsed is None:
                continue
            layer.values[name] = parsed[0]
            layer.origins[name] = f"env {variable}"
            if parsed[1]:
                layer.values["profile"] = parsed[1]
                layer.origins["profile"] = f"env {variable}"
            continue
        if name == "secret_key_path":
            try:
                value = normalize_path(value)
            except ConfigurationError as exc:
                reader.errors.append(f"{variable}: {exc}")
                continue
        layer.values[name] = value.strip()
        layer.origins[name] = f"env {variable}"
    return layer


def _merge_aws(
    reader: _Reader,
    file_values: Mapping[str, str],
    layers: Iterable[_Layer],
) -> tuple[AwsSettings, dict[str, str]]:
    values = dict(file_values)
    origins = {name: reader.where("aws", name) for name in file_values}
    for layer in layers:
        if "credential_provider" in layer.values and layer.values["credential_provider"] != "keys":
            # Choosing another provider by env/flag drops the file's key pair, which would
            # otherwise conflict with it (ecs-nodes.md §3).
            for name in ("access_key_id", "secret_key_path"):
                if name in values and name not in layer.values:
                    del values[name]
                    origins.pop(name, None)
        values.update(layer.values)
        origins.update(layer.origins)
    settings = AwsSettings(**cast(dict[str, Any], values))
    return settings, origins


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    profile: str | None = None,
    search: bool = True,
) -> Config:
    """Read the project configuration (see the module docstring for precedence).

    ``path`` is ``--config``; ``profile`` is the ``--profile`` flag. With ``search`` false,
    no file is looked for unless one is named.
    """
    env = os.environ if environ is None else environ
    file = config_path(path, environ=env, cwd=cwd) if (search or path) else None
    doc: dict[str, Any] = {}
    locator: Locator | None = None
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{file}: cannot read the configuration ({exc})") from None
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(_syntax_error(file, exc)) from None
        except RecursionError:
            raise ConfigurationError(
                f"{file}: arrays or tables nested too deeply (TOML syntax)"
            ) from None
        locator = Locator(text)
    reader = _Reader(file, locator)
    for name, value in doc.items():
        if name not in SECTIONS:
            reader.fail((name,), f"unknown section [{name}]; {_choices(name, SECTIONS)}")
        elif name == "sources" and not (
            isinstance(value, list) and all(isinstance(v, dict) for v in value)
        ):
            reader.fail((name,), "sources must be written as [[sources]] tables")
        elif name != "sources" and not isinstance(value, dict):
            reader.fail((name,), f"{name} must be a table: [{name}]")

    aws_doc = _table(doc, "aws")
    reader.keys(aws_doc, AWS_KEYS, ("aws",), "[aws]")
    file_aws = _aws_table(reader, aws_doc, ("aws",), "[aws]")
    for name in ("ca_bundle",):
        if file_aws.get(name):
            file_aws[name] = _resolve_path(file, file_aws[name])

    flags = _Layer()
    if profile:
        flags.values.update(credential_provider="profile", profile=profile)
        flags.origins.update(credential_provider="flag --profile", profile="flag --profile")
    aws, aws_origins = _merge_aws(reader, file_aws, [_env_layer(env, reader), flags])
    aws = check_credentials(aws, _where_fail(reader, aws_origins), "[aws]", ("aws",))
    origins = {f"aws.{k}": v for k, v in aws_origins.items()}

    sources = _sources(reader, doc, file, aws, origins)
    dispatch = _dispatch(reader, doc, env, origins)
    keystore = _keystore(reader, doc, env, file, origins)
    history = _history(reader, doc, origins)
    server = _server(reader, doc, file, origins)
    if reader.errors:
        raise ConfigurationError("\n".join(sorted(reader.errors, key=_line_of)))
    return Config(
        path=file,
        aws=aws,
        sources=tuple(sources),
        dispatch=dispatch,
        keystore=keystore,
        history=history,
        server=server,
        origins=origins,
    )


def _line_of(error: str) -> int:
    """Errors are shown in file order; environment errors (no line) first."""
    found = re.match(r"[^\n]*?:(\d+): ", error)
    return int(found.group(1)) if found else 0


def _where_fail(reader: _Reader, origins: Mapping[str, str]) -> KeyFail:
    """An error reporter for merged [aws] settings: an env/flag origin is named as such."""

    def fail(key: tuple[str | int, ...], message: str) -> None:
        origin = origins.get(str(key[-1])) if key else None
        if origin and not origin.startswith(("env ", "flag ")):
            reader.fail(key, message)
        elif origin:
            reader.errors.append(f"{origin.split(' ', 1)[1]}: {message}")
        else:
            reader.fail(key, message)

    return fail


def _syntax_error(file: Path, exc: tomllib.TOMLDecodeError) -> str:
    message = str(exc)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        message = message[: found.start()]
        return f"{file}:{found.group(1)}:{found.group(2)}: {message} (TOML syntax)"
    return f"{file}: {message} (TOML syntax)"


class _SourceTable:
    """One ``[[sources]]`` table, as :class:`ecsexec.nodes.sources.SourceTable` for a parser."""

    def __init__(
        self,
        reader: _Reader,
        table: Mapping[str, Any],
        key: tuple[str | int, ...],
        label: str,
        file: Path | None,
        aws: AwsSettings,
    ) -> None:
        self._reader = reader
        self._table = table
        self._key = key
        self._file = file
        self.label = label
        self.aws = aws

    def get(self, key: str) -> object:
        return self._table.get(key)

    def string(self, key: str) -> str | None:
        return self._reader.string(self._table, key, self._key, self.label)

    def strings(self, key: str) -> tuple[str, ...] | None:
        return self._reader.strings(self._table, key, self._key, self.label)

    def number(
        self, key: str, *, minimum: float, maximum: float | None = None, integer: bool = False
    ) -> float | None:
        return self._reader.number(
            self._table,
            key,
            self._key,
            self.label,
            minimum=minimum,
            maximum=maximum,
            integer=integer,
        )

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.string(key) or default
        if value not in choices:
            self.fail(
                key, f"{self.label}.{key}: {value!r} is not valid; {_choices(value, choices)}"
            )
            return default
        return value

    def path(self, key: str) -> Path | None:
        value = self.string(key)
        return Path(_resolve_path(self._file, value)) if value else None

    def fail(self, key: str | None, message: str) -> None:
        self._reader.fail(self._key if key is None else (*self._key, key), message)


def _sources(
    reader: _Reader,
    doc: Mapping[str, Any],
    file: Path | None,
    aws: AwsSettings,
    origins: dict[str, str],
) -> list[ConfiguredSource]:
    raw_sources = doc.get("sources")
    if not isinstance(raw_sources, list):
        return []
    out: list[ConfiguredSource] = []
    for index, table in enumerate(raw_sources):
        if not isinstance(table, dict):
            continue
        key: tuple[str | int, ...] = ("sources", index)
        label = f"[[sources]] #{index + 1}"
        kind = reader.string(table, "type", key, label) or "ecs"
        name = reader.string(table, "name", key, label) or ""
        where = reader.where(*key)
        origins[f"sources[{index + 1}]"] = where
        source_type = SOURCE_TYPES.get(kind)
        if source_type is None:
            reader.fail(
                (*key, "type"),
                f"{label}: type {kind!r} is not valid; {_choices(kind, SOURCE_TYPES)}",
            )
            continue
        reader.keys(table, source_keys(source_type), key, label)
        settings = aws
        if source_type.aws:
            own = _aws_table(reader, table, key, label)
            settings = _source_credentials(aws, own)
            for name_ in ("ca_bundle",):
                if own.get(name_):
                    settings = dataclasses.replace(
                        settings, ca_bundle=_resolve_path(file, own[name_])
                    )
            settings = check_credentials(settings, reader.fail, label, key)
        config = source_type.parse(_SourceTable(reader, table, key, label, file, settings))
        if config is not None:
            out.append(ConfiguredSource(index + 1, name, config, settings, where))
    return out


def _source_credentials(aws: AwsSettings, own: Mapping[str, str]) -> AwsSettings:
    """ecs-nodes.md §3 [ours]: a source's empty settings fall back to [aws]'s."""
    values: dict[str, Any] = dataclasses.asdict(aws)
    if any(k in own for k in BASE_CREDENTIAL_KEYS):
        for k in BASE_CREDENTIAL_KEYS:
            values[k] = own.get(k, "default" if k == "credential_provider" else "")
    if "assume_role_arn" in own:
        for k in ROLE_KEYS:
            values[k] = own.get(k, "")
    for k in ("region", "endpoint_url", "ca_bundle"):
        if own.get(k):
            values[k] = own[k]
    return AwsSettings(**values)


def _env_number(
    reader: _Reader, environ: Mapping[str, str], name: str, *, integer: bool
) -> float | None:
    variable = f"{ENV_PREFIX}{name.upper()}"
    raw = environ.get(variable, "").strip()
    if not raw:
        return None
    try:
        value = float(int(raw) if integer else float(raw))
    except (ValueError, OverflowError):
        value = math.nan
    if not math.isfinite(value):
        want = "an integer" if integer else "a number"
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        reader.errors.append(f"{variable}: expected {want}, got {shown!r}")
        return None
    return value


_DISPATCH_LIMITS: Final[dict[str, tuple[float, float | None, bool]]] = {
    # the same ranges `ecsexec run` accepts on its command line
    "threads": (1, 10_000, True),
    "rate": (0.1, 10_000, False),
    "burst": (1, 10_000, True),
    "timeout": (0.1, None, False),
}


def _dispatch(
    reader: _Reader, doc: Mapping[str, Any], environ: Mapping[str, str], origins: dict[str, str]
) -> DispatchSettings:
    table = _table(doc, "dispatch")
    reader.keys(table, DISPATCH_KEYS, ("dispatch",), "[dispatch]")
    values: dict[str, Any] = {}
    for name, (low, high, integer) in _DISPATCH_LIMITS.items():
        number = reader.number(
            table, name, ("dispatch",), "[dispatch]", minimum=low, maximum=high, integer=integer
        )
        if number is not None:
            values[name] = number
            origins[f"dispatch.{name}"] = reader.where("dispatch", name)
        from_env = _env_number(reader, environ, name, integer=integer)
        if from_env is not None:
            if from_env < low or (high is not None and from_env > high):
                reader.errors.append(f"{ENV_PREFIX}{name.upper()}: {from_env:g} is out of range")
            else:
                values[name] = from_env
                origins[f"dispatch.{name}"] = f"env {ENV_PREFIX}{name.upper()}"
    if "keepgoing" in table:
        if isinstance(table["keepgoing"], bool):
            values["keepgoing"] = table["keepgoing"]
            origins["dispatch.keepgoing"] = reader.where("dispatch", "keepgoing")
        else:
            reader.fail(
                ("dispatch", "keepgoing"),
                f"[dispatch].keepgoing: expected true or false, got {_kind(table['keepgoing'])}",
            )
    raw = environ.get(f"{ENV_PREFIX}KEEPGOING", "").strip().lower()
    if raw:
        if raw in TRUE_WORDS | FALSE_WORDS:
            values["keepgoing"] = raw in TRUE_WORDS
            origins["dispatch.keepgoing"] = f"env {ENV_PREFIX}KEEPGOING"
        else:
            reader.errors.append(f"{ENV_PREFIX}KEEPGOING: expected true or false, got {raw!r}")
    for name in ("threads", "burst"):
        if name in values:
            values[name] = int(values[name])
    return DispatchSettings(**values)


def _history(reader: _Reader, doc: Mapping[str, Any], origins: dict[str, str]) -> HistorySettings:
    table = _table(doc, "history")
    reader.keys(table, ("keep_days", "keep_runs"), ("history",), "[history]")
    values: dict[str, Any] = {}
    for name, integer in (("keep_days", False), ("keep_runs", True)):
        number = reader.number(table, name, ("history",), "[history]", minimum=0, integer=integer)
        if number is not None:
            values[name] = int(number) if integer else number
            origins[f"history.{name}"] = reader.where("history", name)
    return HistorySettings(**values)


def _keystore(
    reader: _Reader,
    doc: Mapping[str, Any],
    environ: Mapping[str, str],
    file: Path | None,
    origins: dict[str, str],
) -> KeystoreSettings:
    table = _table(doc, "keystore")
    reader.keys(table, KEYSTORE_KEYS, ("keystore",), "[keystore]")
    out: dict[str, Path] = {}
    for name, variable in (("dir", DIR_ENV), ("key_file", KEY_FILE_ENV)):
        value = reader.string(table, name, ("keystore",), "[keystore]")
        if value:
            out[name] = Path(_resolve_path(file, value))
            origins[f"keystore.{name}"] = reader.where("keystore", name)
        if environ.get(variable):
            out[name] = Path(environ[variable]).expanduser()
            origins[f"keystore.{name}"] = f"env {variable}"
    return KeystoreSettings(**out)


def _server(
    reader: _Reader, doc: Mapping[str, Any], file: Path | None, origins: dict[str, str]
) -> ServerConfig:
    table = _table(doc, "server")
    key: tuple[str, ...] = ("server",)
    reader.keys(table, SERVER_KEYS, key, "[server]")
    values: dict[str, Any] = {}
    listen = reader.string(table, "listen", key, "[server]")
    if listen is not None:
        problem = listen_problem(listen)
        if problem:
            reader.fail((*key, "listen"), f"[server].listen: {problem}")
        else:
            values["listen"] = listen
            origins["server.listen"] = reader.where(*key, "listen")
    state_dir = reader.string(table, "state_dir", key, "[server]")
    if state_dir:
        values["state_dir"] = Path(_resolve_path(file, state_dir))
        origins["server.state_dir"] = reader.where(*key, "state_dir")
    if "job_dirs" in table:
        raw = table["job_dirs"]
        if isinstance(raw, list) and all(isinstance(v, str) and v.strip() for v in raw):
            values["job_dirs"] = tuple(Path(_resolve_path(file, v.strip())) for v in raw)
            origins["server.job_dirs"] = reader.where(*key, "job_dirs")
        else:
            reader.fail(
                (*key, "job_dirs"),
                '[server].job_dirs: expected a list of directory paths, e.g. ["jobs"]',
            )
    origin_list = reader.strings(table, "origins", key, "[server]")
    if origin_list is not None:
        values["origins"] = tuple(
            o for o in (_origin(reader, key, item) for item in origin_list) if o is not None
        )
        origins["server.origins"] = reader.where(*key, "origins")
    proxies = reader.strings(table, "trusted_proxies", key, "[server]")
    if proxies is not None:
        values["trusted_proxies"] = tuple(
            p for p in (_proxy(reader, key, item) for item in proxies) if p is not None
        )
        origins["server.trusted_proxies"] = reader.where(*key, "trusted_proxies")
    if "roles" in table:
        roles = table["roles"]
        if isinstance(roles, dict):
            values["roles"] = {
                name: role
                for name, body in roles.items()
                if (role := _role(reader, name, body)) is not None
            }
        else:
            reader.fail((*key, "roles"), "[server].roles: write each role as [server.roles.NAME]")
    return ServerConfig(**values)


def _origin(reader: _Reader, key: tuple[str, ...], text: str) -> str | None:
    """An origin as browsers send it (``scheme://host[:port]``, lower case), or None after
    reporting why ``text`` is not one."""
    where = (*key, "origins")
    parts = urlsplit(text.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        reader.fail(where, f"[server].origins: {text!r} is not scheme://host[:port]")
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        reader.fail(
            where,
            f"[server].origins: {text!r} must be scheme://host[:port] only, with no path "
            "(an origin, as a browser sends it)",
        )
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _proxy(reader: _Reader, key: tuple[str, ...], text: str) -> str | None:
    """A trusted proxy's network (``10.0.0.0/8``; an address is a one-address network)."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        reader.fail(
            (*key, "trusted_proxies"),
            f"[server].trusted_proxies: {text!r} is not an IP address or network "
            "(e.g. 127.0.0.1, 10.0.0.0/8, ::1)",
        )
        return None


def listen_problem(listen: str) -> str:
    """Why ``listen`` is not ``HOST:PORT`` (``[::1]:PORT`` for IPv6), or "" when it is."""
    found = _LISTEN.fullmatch(listen)
    if found is None or not 1 <= int(found.group("port")) <= 65535:
        return f"{listen!r} is not HOST:PORT (e.g. 127.0.0.1:8440, [::1]:8440, 0.0.0.0:443)"
    return ""


def _role(reader: _Reader, name: str, body: object) -> RoleConfig | None:
    key: tuple[str, ...] = ("server", "roles", name)
    label = f"[server.roles.{name}]"
    if not _ROLE_NAME.fullmatch(name):
        reader.fail(key, f"{label}: a role name is 1 to 64 letters, digits, '_' or '-'")
        return None
    if not isinstance(body, dict):
        reader.fail(key, f"{label}: expected a table with actions = [...]")
        return None
    errors_before = len(reader.errors)
    reader.keys(body, SERVER_ROLE_KEYS, key, label)
    actions: list[str] = []
    raw = body.get("actions")
    if raw is None:
        reader.fail(key, f"{label}: actions is required; choose from {', '.join(SERVER_ACTIONS)}")
    elif not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
        reader.fail(
            (*key, "actions"),
            f'{label}.actions: expected a list of action names, e.g. ["view_nodes", '
            f'"run_job"]; choose from {", ".join(SERVER_ACTIONS)}',
        )
    elif not raw:
        reader.fail(
            (*key, "actions"),
            f"{label}.actions: the list is empty (a role that may do nothing); "
            f"choose from {', '.join(SERVER_ACTIONS)}",
        )
    else:
        for action in raw:
            word = action.strip()
            if "," in word:
                parts = [w.strip() for w in word.split(",")]
                reader.fail(
                    (*key, "actions"),
                    f"{label}.actions: {action!r} holds several actions: write one per item, "
                    f"{parts!r}",
                )
            elif word not in SERVER_ACTIONS:
                reader.fail(
                    (*key, "actions"),
                    f"{label}.actions: unknown action {action!r}; {_choices(word, SERVER_ACTIONS)}",
                )
            elif word not in actions:
                actions.append(word)
    nodes = reader.string(body, "nodes", key, label) or ""
    if nodes:
        try:
            parsed = parse_filter(nodes)
            # A policy is no place for guesses: what a command line would warn about is an error.
            for warning in parsed.warnings:
                reader.fail((*key, "nodes"), f"{label}.nodes: {warning}")
            if parsed.is_blank and not parsed.warnings:
                reader.fail(
                    (*key, "nodes"),
                    f"{label}.nodes: {nodes!r} selects no node; leave nodes out to allow "
                    "every node",
                )
        except FilterSyntaxError as exc:
            reader.fail((*key, "nodes"), f"{label}.nodes: not a valid node filter: {exc}")
    jobs = reader.string(body, "jobs", key, label) or ""
    if jobs:
        from ecsexec.nodes.javaregex import compile_bounded  # only server roles name jobs

        try:
            compile_bounded(jobs)
        except JavaRegexError as exc:
            reader.fail((*key, "jobs"), f"{label}.jobs: not a valid regex: {exc}")
    description = reader.string(body, "description", key, label) or ""
    if len(reader.errors) > errors_before:
        return None
    return RoleConfig(name, tuple(actions), nodes, jobs, description, reader.where(*key))

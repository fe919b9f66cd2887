"""A contract harness that loads and invokes a Rundeck script plugin as Rundeck does.

Every rule here is one of docs/rundeck-plugin.md (cited by section):

- :func:`validate_archive`: the loader's checks of the zip and ``plugin.yaml`` (§1-§3);
- :class:`Plugin`: the archive extracted as Rundeck extracts it, modes kept (§1);
- :func:`resolve_config`: property values in Rundeck's resolution order, with
  ``instance-scope-node-attribute``, ``${node.X}`` references and Key Storage's automatic
  read (§3);
- :func:`script_environment`: the ``RD_*`` variables with the renaming rule (§2, §4);
- :func:`expand` / :func:`command_line`: ``script-args`` and ``script-interpreter`` tokenised
  and expanded (§2, §4);
- :meth:`Plugin.start`: the process, on the server's environment overlaid with those
  variables, with no standard input (§4).

It knows nothing of ecsexec: tests give it a zip, a node, properties and a command.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PLUGIN_VERSIONS = ("1.0", "1.1", "1.2", "2.0")
TARGET_HOSTS = ("all", "unix", "windows")
SERVICES = (
    "NodeExecutor",
    "FileCopier",
    "ResourceModelSource",
    "WorkflowNodeStep",
    "RemoteScriptNodeStep",
)
PROPERTY_TYPES = ("String", "Boolean", "Integer", "Long", "Select", "FreeSelect", "Options")
SCOPES = ("Framework", "Project", "ProjectOnly", "Instance", "InstanceOnly")
RESOURCE_FORMATS = ("resourcejson", "resourceyaml", "resourcexml")
COMPATIBILITY = re.compile(r"\d+(\.(\d+|x))*\+?")
REFERENCE = re.compile(r"\$\{([^}.]+)\.([^}]+)\}")
AUTOMATIC_READ = "STORAGE_PATH_AUTOMATIC_READ"


class PluginLoadError(Exception):
    """What Rundeck's loader would refuse, every problem listed."""


class ConfigResolutionError(Exception):
    """A property Rundeck could not resolve (an unreadable Key Storage path)."""


# -- §1-§3: the loader ---------------------------------------------------------------------------


def validate_archive(path: Path) -> list[str]:
    """The problems Rundeck's loader finds in a script-plugin zip (empty: it loads)."""
    problems: list[str] = []
    base = path.name.rsplit(".", 1)[0]  # §1: the file name minus its last extension
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        tops = {name.split("/", 1)[0] for name in infos}
        if tops != {base}:
            problems.append(f"top directory must be {base!r} alone, found {sorted(tops)}")
        meta_name = f"{base}/plugin.yaml"
        if meta_name not in infos:
            return [*problems, f"{meta_name} is missing"]
        if not any(name.startswith(f"{base}/contents/") for name in infos):
            problems.append(f"{base}/contents/ is missing")
        try:
            meta = yaml.safe_load(archive.read(meta_name))
        except yaml.YAMLError as exc:
            return [*problems, f"plugin.yaml is not YAML: {exc}"]
        problems += validate_descriptor(meta)
        for provider in meta.get("providers") or [] if isinstance(meta, dict) else []:
            if not isinstance(provider, dict) or "script-file" not in provider:
                continue
            script = f"{base}/contents/{provider['script-file']}"
            info = infos.get(script)
            if info is None:
                problems.append(f"{provider.get('name')}: script-file {script} is not in the zip")
                continue
            if provider.get("script-interpreter"):
                continue
            # §1: with no interpreter the script is executed itself.
            mode = info.external_attr >> 16
            if not mode & stat.S_IXUSR:
                problems.append(f"{provider.get('name')}: {script} has no execute bit in the zip")
            if not archive.read(script).startswith(b"#!"):
                problems.append(f"{provider.get('name')}: {script} has no shebang line")
    return problems


def validate_descriptor(meta: object) -> list[str]:
    """§2-§3 on the parsed ``plugin.yaml``."""
    if not isinstance(meta, dict):
        return ["plugin.yaml must be a map"]
    problems = [f"{key} is required" for key in ("name", "version") if not meta.get(key)]
    version = str(meta.get("rundeckPluginVersion", ""))
    if version not in PLUGIN_VERSIONS:
        problems.append(f"rundeckPluginVersion {version!r} is not one of {PLUGIN_VERSIONS}")
    if version == "2.0":
        compat = str(meta.get("rundeckCompatibilityVersion", ""))
        if not COMPATIBILITY.fullmatch(compat):
            problems.append(f"2.0 needs rundeckCompatibilityVersion (e.g. 3.x), got {compat!r}")
        if meta.get("targetHostCompatibility") not in TARGET_HOSTS:
            problems.append(f"2.0 needs targetHostCompatibility, one of {TARGET_HOSTS}")
    providers = meta.get("providers")
    if not isinstance(providers, list) or not providers:
        return [*problems, "providers must be a non-empty list"]
    for provider in providers:
        problems += _provider_problems(provider)
    return problems


def _provider_problems(provider: object) -> list[str]:
    if not isinstance(provider, dict):
        return ["a provider entry must be a map"]
    name = provider.get("name") or "?"
    problems = [
        f"{name}: {key} is required"
        for key in ("name", "service", "plugin-type", "script-file")
        if not provider.get(key)
    ]
    if provider.get("service") not in SERVICES:
        problems.append(f"{name}: service {provider.get('service')!r} is not one of {SERVICES}")
    if provider.get("plugin-type") != "script":
        problems.append(f"{name}: plugin-type must be script")
    if provider.get("service") == "FileCopier" and "script-args" not in provider:
        problems.append(f"{name}: a FileCopier needs script-args")
    service = provider.get("service")
    if service == "ResourceModelSource" and provider.get("resource-format") not in RESOURCE_FORMATS:
        problems.append(f"{name}: resource-format must be one of {RESOURCE_FORMATS}")
    args = provider.get("script-args")
    if args is not None and not isinstance(args, str | list):
        problems.append(f"{name}: script-args must be a string or a list")
    config = provider.get("config") or []
    if not isinstance(config, list):
        return [*problems, f"{name}: config must be a list"]
    seen: set[str] = set()
    for prop in config:
        problems += [f"{name}: {p}" for p in _property_problems(prop, seen)]
    return problems


def _property_problems(prop: object, seen: set[str]) -> list[str]:
    if not isinstance(prop, dict) or not prop.get("name"):
        return ["a config property needs a name"]
    where = f"property {prop['name']}"
    problems = []
    if prop["name"] in seen:
        problems.append(f"{where} is defined twice")
    seen.add(prop["name"])
    if prop.get("type") not in PROPERTY_TYPES:
        problems.append(f"{where}: type {prop.get('type')!r} is not one of {PROPERTY_TYPES}")
    if prop.get("scope", "Instance") not in SCOPES:
        problems.append(f"{where}: scope {prop.get('scope')!r} is not one of {SCOPES}")
    if prop.get("type") in ("Select", "FreeSelect", "Options") and not prop.get("values"):
        problems.append(f"{where}: a {prop['type']} needs values")
    values = _values(prop)
    default = prop.get("default")
    if prop.get("type") == "Select" and default is not None and str(default) not in values:
        problems.append(f"{where}: default {default!r} is not among its values")
    number = prop.get("type") in ("Integer", "Long")
    if number and default is not None and not re.fullmatch(r"-?\d+", str(default)):
        problems.append(f"{where}: default {default!r} is not a number")
    rendering = prop.get("renderingOptions") or {}
    if not isinstance(rendering, dict):
        problems.append(f"{where}: renderingOptions must be a map")
    elif (
        rendering.get("valueConversion") == AUTOMATIC_READ
        and rendering.get("selectionAccessor") != "STORAGE_PATH"
    ):
        problems.append(f"{where}: automatic read needs selectionAccessor STORAGE_PATH")
    return problems


def _values(prop: Mapping[str, Any]) -> list[str]:
    values = prop.get("values") or []
    if isinstance(values, str):
        return [v.strip() for v in values.split(",")]
    return [str(v) for v in values]


# -- §1: the extracted plugin --------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderDef:
    """One provider entry of a loaded plugin."""

    meta: Mapping[str, Any]
    plugin_version: str

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def service(self) -> str:
        return str(self.meta["service"])

    @property
    def properties(self) -> list[Mapping[str, Any]]:
        return list(self.meta.get("config") or [])


@dataclass(frozen=True)
class Invocation:
    """One script run, as Rundeck makes it: the argv and the environment overlay."""

    argv: list[str]
    env: dict[str, str]


def command_line(
    provider: ProviderDef, script: Path, context: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """§2, §4: ``[interpreter...] <absolute script path> [args...]``, references expanded."""
    meta = provider.meta
    args: list[str] = []
    raw_args = meta.get("script-args")
    if isinstance(raw_args, list):
        args = [expand(str(item), context) for item in raw_args]  # one argv item each
    elif isinstance(raw_args, str):
        args = [expand(token, context) for token in shlex.split(raw_args)]
    interpreter = meta.get("script-interpreter")
    if not interpreter:
        return [str(script), *args]
    words = [expand(token, context) for token in shlex.split(str(interpreter))]
    if meta.get("interpreter-args-quoted"):
        return [*words, shlex.join([str(script), *args])]
    return [*words, str(script), *args]


def expand(text: str, context: Mapping[str, Mapping[str, str]]) -> str:
    """``${group.key}`` references replaced by their values; unknown ones stay as written."""

    def value(match: re.Match[str]) -> str:
        group = context.get(match.group(1))
        if group is None or match.group(2) not in group:
            return match.group(0)
        return group[match.group(2)]

    return REFERENCE.sub(value, text)


def env_name(key: str) -> str:
    """§4: ``RD_`` + the context key upper-cased, every character outside [A-Za-z0-9_] -> _."""
    return "RD_" + re.sub(r"[^A-Za-z0-9_]", "_", key.upper())


@dataclass(frozen=True)
class Node:
    """A Rundeck node: its name, tags and attributes (standard fields included)."""

    name: str
    attributes: Mapping[str, str]
    tags: Sequence[str] = ()

    def context(self) -> dict[str, str]:
        """§4: ``node.*``: the standard fields, then every attribute under its own name."""
        attrs = self.attributes
        data = {
            "name": self.name,
            "hostname": attrs.get("hostname", ""),
            "username": attrs.get("username", ""),
            "description": attrs.get("description", ""),
            "tags": ",".join(sorted(self.tags)),
            "os-family": attrs.get("osFamily", ""),
            "os-name": attrs.get("osName", ""),
            "os-arch": attrs.get("osArch", ""),
            "os-version": attrs.get("osVersion", ""),
        }
        data.update(attrs)
        return data


@dataclass
class Project:
    """What a Rundeck server knows: project and framework properties, Key Storage."""

    name: str = "shop"
    properties: dict[str, str] = field(default_factory=dict)
    framework: dict[str, str] = field(default_factory=dict)
    key_storage: dict[str, str] = field(default_factory=dict)


def resolve_config(
    provider: ProviderDef,
    project: Project,
    node: Node | None = None,
    *,
    source_index: int | None = None,
) -> dict[str, str]:
    """§3: each property's value, or none at all when nothing sets it.

    NodeExecutor and FileCopier: the node attribute named by
    ``instance-scope-node-attribute``, then ``project.plugin.<Service>.<provider>.<prop>``,
    then ``framework.plugin...``, then the default; ``${node.X}`` expanded per node. A
    ResourceModelSource instance reads ``resources.source.<N>.config.<prop>``. Key Storage
    paths with automatic read become the key's content.
    """
    node_context = {"node": node.context()} if node is not None else {}
    resolved: dict[str, str] = {}
    for prop in provider.properties:
        name = str(prop["name"])
        rendering = prop.get("renderingOptions") or {}
        value: str | None = None
        if provider.service == "ResourceModelSource":
            assert source_index is not None, "a resource source instance needs its index"
            value = project.properties.get(f"resources.source.{source_index}.config.{name}")
        else:
            attribute = rendering.get("instance-scope-node-attribute")
            if attribute and node is not None:
                value = node.attributes.get(str(attribute)) or None
            key = f"plugin.{provider.service}.{provider.name}.{name}"
            if value is None:
                value = project.properties.get(f"project.{key}")
            if value is None:
                value = project.framework.get(f"framework.{key}")
        if value is None and prop.get("default") is not None:
            value = str(prop["default"])
        if value is None:
            continue  # an unset property yields no variable
        if prop.get("type") == "Boolean":
            value = "true" if value.lower() == "true" else "false"
        value = expand(value, node_context)
        if rendering.get("valueConversion") == AUTOMATIC_READ and value:
            secret = project.key_storage.get(value)
            if secret is None:
                if rendering.get("valueConversionFailure") == "remove":
                    continue
                raise ConfigResolutionError(f"{name}: cannot read Key Storage path {value!r}")
            value = secret
        resolved[name] = value
    return resolved


@dataclass
class Plugin:
    """A plugin zip, validated and extracted as Rundeck's loader does."""

    zip_path: Path
    work: Path
    providers: dict[str, ProviderDef] = field(default_factory=dict)

    @classmethod
    def load(cls, zip_path: Path, work: Path) -> Plugin:
        problems = validate_archive(zip_path)
        if problems:
            raise PluginLoadError("; ".join(problems))
        plugin = cls(zip_path, work)
        base = zip_path.name.rsplit(".", 1)[0]
        with zipfile.ZipFile(zip_path) as archive:
            meta = yaml.safe_load(archive.read(f"{base}/plugin.yaml"))
            prefix = f"{base}/contents/"
            for info in archive.infolist():
                if not info.filename.startswith(prefix) or info.is_dir():
                    continue
                target = plugin.contents / info.filename[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(info))
                target.chmod((info.external_attr >> 16) & 0o777 or 0o644)
        version = str(meta["rundeckPluginVersion"])
        for entry in meta["providers"]:
            plugin.providers[str(entry["name"])] = ProviderDef(entry, version)
        for sub in ("var", "tmp"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        return plugin

    @property
    def contents(self) -> Path:
        return self.work / "contents"

    def invocation(
        self,
        provider_name: str,
        project: Project,
        *,
        node: Node | None = None,
        source_index: int | None = None,
        exec_command: str | None = None,
        file_copy: tuple[str, str] | None = None,
        job: Mapping[str, str] | None = None,
    ) -> Invocation:
        """§3-§4: the argv and RD_* environment Rundeck gives this provider's script."""
        provider = self.providers[provider_name]
        config = resolve_config(provider, project, node, source_index=source_index)
        script = (self.contents / str(provider.meta["script-file"])).resolve()
        context: dict[str, dict[str, str]] = {
            "config": config,
            "plugin": {
                "base": str(self.contents),
                "file": str(self.zip_path),
                "scriptfile": str(script),
                "vardir": str(self.work / "var"),
                "tmpdir": str(self.work / "tmp"),
            },
            "rundeck": {"base": str(self.work), "project": project.name},
        }
        if node is not None:
            context["node"] = node.context()
        if exec_command is not None:
            context["exec"] = {"command": exec_command}
        if file_copy is not None:
            context["file-copy"] = {"file": file_copy[0], "destination": file_copy[1]}
        if job is not None:
            context["job"] = dict(job)
        env: dict[str, str] = {}
        for group, values in context.items():
            for key, value in values.items():
                env[env_name(f"{group}.{key}")] = value
        if provider.plugin_version == "2.0":
            # §2: config values a second time as RD_<SERVICE>_<PROP>.
            for key, value in config.items():
                env[env_name(f"{provider.service}.{key}")] = value
        return Invocation(command_line(provider, script, context), env)

    def start(
        self, invocation: Invocation, server_env: Mapping[str, str], cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """§4: run locally, the server's environment overlaid, standard input not connected."""
        env = {**server_env, **invocation.env}
        return subprocess.Popen(
            invocation.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd or self.work,
        )

    def run(
        self,
        invocation: Invocation,
        server_env: Mapping[str, str],
        *,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[bytes]:
        process = self.start(invocation, server_env)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        return subprocess.CompletedProcess(invocation.argv, process.returncode, out, err)


def remote_script_path(directory: str, counter: int, execid: str, node: str, file: str) -> str:
    """§5: where a script step's script is copied: ``<dir>/<counter>-<execid>-<node>-<file>.sh``."""
    return f"{directory.rstrip('/')}/{counter}-{execid}-{node}-{file}.sh"


def copied_path(stdout: bytes, requested: str) -> str:
    """§6: the first line of the FileCopier's stdout, else the requested destination."""
    first = stdout.decode("utf-8", "replace").split("\n", 1)[0].strip()
    return first or requested


__all__ = [
    "ConfigResolutionError",
    "Invocation",
    "Node",
    "Plugin",
    "PluginLoadError",
    "Project",
    "ProviderDef",
    "command_line",
    "copied_path",
    "env_name",
    "expand",
    "remote_script_path",
    "resolve_config",
    "validate_archive",
    "validate_descriptor",
]

# The server environment tests start from: PATH and HOME of this process, nothing of AWS.
BASE_SERVER_ENV = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}

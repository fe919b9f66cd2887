"""Build ``ecsexec-rundeck-plugin.zip``: Rundeck's script-plugin archive for ecsexec.

The archive follows docs/rundeck-plugin.md §1-§3: one top directory named after the zip,
``plugin.yaml`` (plugin version 2.0) declaring a NodeExecutor, a FileCopier and a
ResourceModelSource, the POSIX ``sh`` scripts under ``contents/`` (shebang and execute
bit kept in the zip), and the UI texts in ``resources/i18n/messages.properties``. The
scripts only map Rundeck's environment onto an installed ``ecsexec``; everything else
happens there.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from ecsexec import __version__

BASE_NAME: Final = "ecsexec-rundeck-plugin"
ZIP_NAME: Final = f"{BASE_NAME}.zip"
NODE_EXECUTOR: Final = "ecsexec-node-executor"
FILE_COPIER: Final = "ecsexec-file-copier"
RESOURCE_SOURCE: Final = "ecsexec-ecs-source"
# §2: 2.0 exposes each property as RD_CONFIG_<PROP> and RD_<SERVICE>_<PROP>, and needs
# these two keys; the plugin runs from Rundeck 3 on, on a unix server.
PLUGIN_VERSION: Final = "2.0"
COMPATIBILITY: Final = "3.0+"
TARGET_HOST: Final = "unix"
SHARED_SCRIPT: Final = "ecsexec-env.sh"  # sourced by the three scripts
EXECUTABLE: Final = 0o755
# The node attribute that overrides the role per node, as in Rundeck's commercial ECS
# plugin (docs/rundeck-plugin.md §8; ecsexec's ECS source writes it, docs/ecs-nodes.md §2).
ASSUME_ROLE_NODE_ATTRIBUTE: Final = "assume-role-arn"
CREDENTIALS_GROUP: Final = "Credentials"


@dataclass(frozen=True)
class Property:
    """One ``config`` property of a provider (docs/rundeck-plugin.md §3)."""

    name: str
    title: str
    description: str
    type: str = "String"
    default: str | None = None
    values: tuple[str, ...] = ()
    required: bool = False
    rendering: Mapping[str, str] = field(default_factory=dict)

    def as_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "title": self.title,
            "description": self.description,
        }
        if self.required:
            out["required"] = True
        if self.default is not None:
            out["default"] = self.default
        if self.values:
            out["values"] = list(self.values)
        if self.rendering:
            out["renderingOptions"] = dict(self.rendering)
        return out


@dataclass(frozen=True)
class Provider:
    """One provider entry of ``plugin.yaml`` (docs/rundeck-plugin.md §2)."""

    name: str
    service: str
    title: str
    description: str
    script: str
    properties: tuple[Property, ...]
    script_args: tuple[str, ...] | None = None
    resource_format: str | None = None

    def as_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "service": self.service,
            "plugin-type": "script",
            "script-file": self.script,
            "title": self.title,
            "description": self.description,
        }
        if self.script_args is not None:
            out["script-args"] = list(self.script_args)  # a list: one argv item each
        if self.resource_format is not None:
            out["resource-format"] = self.resource_format
        out["config"] = [prop.as_yaml() for prop in self.properties]
        return out


def _credentials(*, per_node_role: bool) -> tuple[Property, ...]:
    """The commercial ECS plugin's credential settings (docs/rundeck-plugin.md §8)."""
    secondary = {"groupName": CREDENTIALS_GROUP, "grouping": "secondary"}
    role_rendering = dict(secondary)
    if per_node_role:
        role_rendering["instance-scope-node-attribute"] = ASSUME_ROLE_NODE_ATTRIBUTE
    return (
        Property(
            "access_key_id",
            "Access Key ID",
            "AWS access key ID; its secret comes from Secret Key. Empty: the credential "
            "provider below.",
            rendering=secondary,
        ),
        Property(
            "secret_key",
            "Secret Key",
            "Key Storage path of a Password holding the AWS secret access key "
            "(e.g. keys/project/<project>/aws-secret).",
            rendering={
                **secondary,
                "selectionAccessor": "STORAGE_PATH",
                "storage-path-root": "keys",
                "storage-file-meta-filter": "Rundeck-data-type=password",
                "valueConversion": "STORAGE_PATH_AUTOMATIC_READ",
            },
        ),
        Property(
            "credential_provider",
            "Credential Provider",
            "Where credentials come from without an access key: default (the standard "
            "chain of the Rundeck server's environment), instance (EC2 instance metadata) "
            "or container (the ECS container credentials endpoint).",
            type="Select",
            default="default",
            values=("default", "instance", "container"),
            rendering=secondary,
        ),
        Property(
            "assume_role_arn",
            "Assume Role ARN",
            "A role to assume on top of the credentials (sts:AssumeRole)."
            + (
                f" The node attribute {ASSUME_ROLE_NODE_ATTRIBUTE} overrides it per node."
                if per_node_role
                else ""
            ),
            rendering=role_rendering,
        ),
        Property(
            "external_id",
            "External ID",
            "The ExternalId the role's trust policy asks for (with Assume Role ARN).",
            rendering=secondary,
        ),
        Property(
            "ecsexec_path",
            "ecsexec Path",
            "The ecsexec command on the Rundeck server: a name looked up on PATH, or a path.",
            default="ecsexec",
            rendering={"groupName": "Advanced", "grouping": "secondary"},
        ),
    )


def providers() -> tuple[Provider, ...]:
    """The three providers of the plugin, in the order plugin.yaml lists them."""
    executor = Provider(
        NODE_EXECUTOR,
        "NodeExecutor",
        "ECS Exec (ecsexec)",
        "Runs commands in the node's ECS container through ECS Exec, with its output "
        "streamed and its real exit code. The container comes from the node's attributes "
        "(ECS:Cluster-ARN, ECS:Task-ARN, ECS:Container-Name, ECS:Region).",
        "node-executor.sh",
        (
            *_credentials(per_node_role=True),
            Property(
                "timeout",
                "Timeout",
                "Seconds a command may run; then its session is terminated.",
                type="Integer",
                default="86400",
            ),
        ),
    )
    copier = Provider(
        FILE_COPIER,
        "FileCopier",
        "ECS Exec file copy (ecsexec)",
        "Copies files (and script steps) into the node's ECS container through ECS Exec.",
        "file-copier.sh",
        _credentials(per_node_role=True),
        # §2: the loader refuses a FileCopier without script-args; the script reads the
        # same values from RD_FILE_COPY_FILE and RD_FILE_COPY_DESTINATION.
        script_args=("${file-copy.file}", "${file-copy.destination}"),
    )
    source = Provider(
        RESOURCE_SOURCE,
        "ResourceModelSource",
        "AWS ECS containers (ecsexec)",
        "Every running container of the region's ECS clusters as a node, with the ECS:* "
        "attributes ecsexec's executor and file copier use.",
        "resource-source.sh",
        (
            Property(
                "region", "Region", "AWS region of the clusters, e.g. us-east-1.", required=True
            ),
            Property(
                "clusters",
                "ECS Clusters",
                "Cluster names or ARNs, comma-separated. Empty: every cluster "
                "(needs ecs:ListClusters).",
            ),
            Property(
                "filter_behavior",
                "Filter Behavior",
                "include: keep only the containers that pass every filter below; exclude: "
                "drop the containers that pass any.",
                type="Select",
                default="include",
                values=("include", "exclude"),
            ),
            Property("service_names", "Service Name", "ECS service names, comma-separated."),
            Property(
                "task_definition_names",
                "Task Definition Name",
                "Task definition families (or family:revision), comma-separated.",
            ),
            Property("container_names", "Container Name", "Container names, comma-separated."),
            Property("tags", "Tags", "Task tags that must all be present: k=v,k2=v2."),
            *_credentials(per_node_role=False),
        ),
        resource_format="resourcejson",
    )
    return executor, copier, source


def descriptor() -> dict[str, Any]:
    """``plugin.yaml`` as data (docs/rundeck-plugin.md §2)."""
    return {
        "name": BASE_NAME,
        "version": __version__,
        "rundeckPluginVersion": PLUGIN_VERSION,
        "rundeckCompatibilityVersion": COMPATIBILITY,
        "targetHostCompatibility": TARGET_HOST,
        "author": "ecsexec",
        "description": "Run commands and copy files in Amazon ECS containers through ECS "
        "Exec, and list the containers as nodes (an installed ecsexec does the work).",
        "license": "Apache-2.0",
        "tags": ["aws", "ecs", "ecs-exec", "node-executor", "file-copier", "resource-model"],
        "providers": [provider.as_yaml() for provider in providers()],
    }


def plugin_yaml() -> str:
    return yaml.safe_dump(descriptor(), sort_keys=False, allow_unicode=True, width=1000)


def _escape_property(text: str) -> str:
    """A value for a ``.properties`` file: ASCII, with ``\\uXXXX`` for anything else."""
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif ord(char) > 126 or ord(char) < 32:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def messages_properties() -> str:
    """The UI texts of §1's ``resources/i18n/messages.properties``: the plugin's and every
    property's title and description (the properties are shared by name)."""
    lines = [
        f"plugin.title={_escape_property('ecsexec: AWS ECS containers through ECS Exec')}",
        f"plugin.description={_escape_property(str(descriptor()['description']))}",
    ]
    seen: set[str] = set()
    for provider in providers():
        for prop in provider.properties:
            if prop.name in seen:
                continue
            seen.add(prop.name)
            lines.append(f"property.{prop.name}.title={_escape_property(prop.title)}")
            lines.append(f"property.{prop.name}.description={_escape_property(prop.description)}")
    return "\n".join(lines) + "\n"


def scripts() -> dict[str, bytes]:
    """``contents/``: the providers' scripts and the file they share, by name."""
    folder = resources.files("ecsexec.rundeck").joinpath("contents")
    names: Sequence[str] = sorted({p.script for p in providers()} | {SHARED_SCRIPT})
    return {name: folder.joinpath(name).read_bytes() for name in names}


def _entry(path: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = (0o100000 | mode) << 16  # a regular file with these permissions
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so unzip and Rundeck's extractor honour the mode
    return info


def build_zip() -> bytes:
    """The plugin archive (reproducible: fixed dates and order)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_entry(f"{BASE_NAME}/plugin.yaml", 0o644), plugin_yaml())
        for name, data in scripts().items():
            mode = 0o644 if name == SHARED_SCRIPT else EXECUTABLE  # sourced, never run
            archive.writestr(_entry(f"{BASE_NAME}/contents/{name}", mode), data)
        archive.writestr(
            _entry(f"{BASE_NAME}/resources/i18n/messages.properties", 0o644),
            messages_properties(),
        )
    return buffer.getvalue()


def write_plugin(directory: Path) -> Path:
    """Write the archive into ``directory`` (e.g. ``$RDECK_BASE/libext``) atomically."""
    target = directory / ZIP_NAME
    partial = directory / f".{ZIP_NAME}.partial"
    partial.write_bytes(build_zip())
    partial.replace(target)
    return target

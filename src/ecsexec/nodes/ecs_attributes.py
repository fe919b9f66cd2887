"""Map one ECS container (from DescribeTasks) to a node name, attributes and standard fields.

Pure: takes the API's dicts, returns strings. Spec: docs/ecs-nodes.md §1-§2.

Every attribute name a node carries is a constant here (``CLUSTER_ARN`` is
``"ECS:Cluster-ARN"``, ...); code that reads node attributes uses these, never the literals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from ecsexec.nodes.node import Node

# -- attribute names (docs/ecs-nodes.md §2), in the spec's order -----------------------------------

CLUSTER_ARN: Final = "ECS:Cluster-ARN"
CONTAINER_ARN: Final = "ECS:Container-ARN"
CONTAINER_IMAGE: Final = "ECS:Container-Image"
CONTAINER_NAME: Final = "ECS:Container-Name"
CONTAINER_TAGS: Final = "ECS:Container-Tags"
CPU: Final = "ECS:CPU"
MEMORY_RESERVATION: Final = "ECS:Memory-Reservation"
REGION: Final = "ECS:Region"
RUNTIME_ID: Final = "ECS:Runtime-ID"
TASK_LAUNCH_TYPE: Final = "ECS:Task-Launch-Type"
CLUSTER_NAME: Final = "ECS:Cluster-Name"
TASK_ARN: Final = "ECS:Task-ARN"
TASK_ID: Final = "ECS:Task-ID"
TASK_DEFINITION_ARN: Final = "ECS:Task-Definition-ARN"
TASK_DEFINITION_FAMILY: Final = "ECS:Task-Definition-Family"
TASK_DEFINITION_REVISION: Final = "ECS:Task-Definition-Revision"
SERVICE_NAME: Final = "ECS:Service-Name"
TASK_TAGS: Final = "ECS:Task-Tags"
AVAILABILITY_ZONE: Final = "ECS:Availability-Zone"
PLATFORM_VERSION: Final = "ECS:Platform-Version"
PRIVATE_IP: Final = "ECS:Private-IP"
TASK_STATUS: Final = "ECS:Task-Status"
EXEC_ENABLED: Final = "ECS:Exec-Enabled"
EXEC_AGENT_STATUS: Final = "ECS:Exec-Agent-Status"
ACCOUNT_ID: Final = "ECS:Account-ID"
STARTED_AT: Final = "ECS:Started-At"
TAG_PREFIX: Final = "ECS:Tag:"
"""``ECS:Tag:<key>``: one attribute per effective tag (see :func:`tag_attribute`)."""
NODE_EXECUTOR: Final = "node-executor"
FILE_COPIER: Final = "file-copier"
ASSUME_ROLE_ARN: Final = "assume-role-arn"

ECS_ATTRIBUTES: Final[tuple[str, ...]] = (
    CLUSTER_ARN,
    CONTAINER_ARN,
    CONTAINER_IMAGE,
    CONTAINER_NAME,
    CONTAINER_TAGS,
    CPU,
    MEMORY_RESERVATION,
    REGION,
    RUNTIME_ID,
    TASK_LAUNCH_TYPE,
    CLUSTER_NAME,
    TASK_ARN,
    TASK_ID,
    TASK_DEFINITION_ARN,
    TASK_DEFINITION_FAMILY,
    TASK_DEFINITION_REVISION,
    SERVICE_NAME,
    TASK_TAGS,
    AVAILABILITY_ZONE,
    PLATFORM_VERSION,
    PRIVATE_IP,
    TASK_STATUS,
    EXEC_ENABLED,
    EXEC_AGENT_STATUS,
    ACCOUNT_ID,
    STARTED_AT,
)
"""Every fixed ``ECS:*`` attribute of a container node (``ECS:Tag:<key>`` comes on top)."""


def tag_attribute(key: str) -> str:
    """The attribute holding tag ``key``: ``ECS:Tag:<key>``."""
    return TAG_PREFIX + key


def tags_of(attributes: Mapping[str, str]) -> dict[str, str]:
    """The tags a node's ``ECS:Tag:<key>`` attributes hold, by key."""
    return {k[len(TAG_PREFIX) :]: v for k, v in attributes.items() if k.startswith(TAG_PREFIX)}


AWS_TAG_PREFIX: Final = "aws:"
RUNDECK_TAGS_KEY: Final = "Rundeck-Tags"
# docs/ecs-nodes.md §2: the Rundeck plugin's provider ids (docs/rundeck-plugin.md §2), so a
# node reads through ecsexec in Rundeck whatever the project's default executor is.
NODE_EXECUTOR_PROVIDER: Final = "ecsexec-node-executor"
FILE_COPIER_PROVIDER: Final = "ecsexec-file-copier"


def node_name(container: Mapping[str, Any]) -> str:
    """docs/ecs-nodes.md §1: ``<container.name>-<last '/' segment of containerArn>``."""
    return (
        f"{container.get('name', '')}-{str(container.get('containerArn', '')).rsplit('/', 1)[-1]}"
    )


def _tags_to_dict(tags: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag in tags or []:
        if isinstance(tag, Mapping) and "key" in tag:
            out[str(tag["key"])] = str(tag.get("value", ""))
    return out


def effective_tags(task: Mapping[str, Any], service_tags: Mapping[str, str]) -> dict[str, str]:
    """docs/ecs-nodes.md §2: the task's tags; if none outside ``aws:``, add the service's."""
    own = _tags_to_dict(task.get("tags"))
    if any(not key.startswith(AWS_TAG_PREFIX) for key in own):
        return own
    merged = dict(own)
    for key, value in service_tags.items():
        merged.setdefault(key, value)
    return merged


def _utc_millis(value: Any) -> str:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        return text[:-3] + "Z"  # milliseconds, truncated
    if isinstance(value, int | float):
        return _utc_millis(datetime.fromtimestamp(value, UTC))
    return ""


def _private_ip(task: Mapping[str, Any], container: Mapping[str, Any]) -> str:
    for iface in container.get("networkInterfaces") or []:
        if iface.get("privateIpv4Address"):
            return str(iface["privateIpv4Address"])
    for attachment in task.get("attachments") or []:
        if attachment.get("type") == "ElasticNetworkInterface":
            for detail in attachment.get("details") or []:
                if detail.get("name") == "privateIPv4Address":
                    return str(detail.get("value", ""))
    return ""


def _agent_status(container: Mapping[str, Any]) -> str:
    for agent in container.get("managedAgents") or []:
        if agent.get("name") == "ExecuteCommandAgent":
            return str(agent.get("lastStatus", ""))
    return ""


def container_node(
    task: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    region: str,
    task_definition: Mapping[str, Any] | None = None,
    service_tags: Mapping[str, str] | None = None,
    assume_role_arn: str = "",
) -> Node:
    """Build one node per docs/ecs-nodes.md §1-§2."""
    task_arn = str(task.get("taskArn", ""))
    cluster_arn = str(task.get("clusterArn", ""))
    td_arn = str(task.get("taskDefinitionArn", ""))
    family_rev = td_arn.split(":task-definition/", 1)[-1] if ":task-definition/" in td_arn else ""
    family, _, revision = family_rev.rpartition(":")
    group = str(task.get("group", ""))
    cpu = container.get("cpu")
    task_id = task_arn.rsplit("/", 1)[-1]
    cluster_name = cluster_arn.split(":cluster/", 1)[-1] if ":cluster/" in cluster_arn else ""
    own_tags = _tags_to_dict(task.get("tags"))
    tags = effective_tags(task, service_tags or {})
    private_ip = _private_ip(task, container)
    attributes: dict[str, str] = {
        CLUSTER_ARN: cluster_arn,
        CONTAINER_ARN: str(container.get("containerArn", "")),
        CONTAINER_IMAGE: str(container.get("image", "")),
        CONTAINER_NAME: str(container.get("name", "")),
        CONTAINER_TAGS: "[]",
        # docs/ecs-nodes.md §2: container.cpu unless absent or 0, else task.cpu.
        CPU: str(cpu) if cpu not in (None, "", 0, "0") else str(task.get("cpu", "") or ""),
        MEMORY_RESERVATION: str(container.get("memoryReservation", "") or ""),
        REGION: region,
        RUNTIME_ID: str(container.get("runtimeId", "")),
        TASK_LAUNCH_TYPE: str(task.get("launchType", "")),
        CLUSTER_NAME: cluster_name,
        TASK_ARN: task_arn,
        TASK_ID: task_id,
        TASK_DEFINITION_ARN: td_arn,
        TASK_DEFINITION_FAMILY: family,
        TASK_DEFINITION_REVISION: revision,
        SERVICE_NAME: group[len("service:") :] if group.startswith("service:") else "",
        TASK_TAGS: json.dumps(
            [{"key": k, "value": own_tags[k]} for k in sorted(own_tags)],
            separators=(",", ":"),
            ensure_ascii=False,
        ),
        AVAILABILITY_ZONE: str(task.get("availabilityZone", "")),
        PLATFORM_VERSION: str(task.get("platformVersion", "") or ""),
        PRIVATE_IP: private_ip,
        TASK_STATUS: str(task.get("lastStatus", "")),
        EXEC_ENABLED: "true" if task.get("enableExecuteCommand") else "false",
        EXEC_AGENT_STATUS: _agent_status(container),
        ACCOUNT_ID: task_arn.split(":")[4] if task_arn.count(":") >= 5 else "",
        STARTED_AT: _utc_millis(task.get("startedAt")),
        NODE_EXECUTOR: NODE_EXECUTOR_PROVIDER,
        FILE_COPIER: FILE_COPIER_PROVIDER,
    }
    for key, value in tags.items():
        attributes[tag_attribute(key)] = value
    if assume_role_arn:
        attributes[ASSUME_ROLE_ARN] = assume_role_arn

    platform = (task_definition or {}).get("runtimePlatform") or {}
    os_family_raw = str(platform.get("operatingSystemFamily", "") or "")
    windows = os_family_raw.upper().startswith("WINDOWS")
    fields = {
        "hostname": private_ip or task_id,
        "username": "root",
        "osFamily": "windows" if windows else "unix",
        "osName": os_family_raw if windows else "Linux",
        "description": (
            f"ECS container {container.get('name', '')} of task {task_id} "
            f"in cluster {cluster_name} ({region})"
        ),
    }
    if platform.get("cpuArchitecture"):
        fields["osArch"] = str(platform["cpuArchitecture"]).lower()
    tag_set = ["ecs"]
    if task.get("launchType"):
        tag_set.append(str(task["launchType"]).lower())
    tag_set += [t.strip() for t in tags.get(RUNDECK_TAGS_KEY, "").split(",") if t.strip()]
    return Node(node_name(container), {**fields, **attributes}, frozenset(tag_set))

"""Map one ECS container (from DescribeTasks) to a node name, attributes and standard fields.

Pure: takes the API's dicts, returns strings. Spec: ecs-nodes.md §1-§2.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from ecsexec.nodes.node import Node

AWS_TAG_PREFIX: Final = "aws:"
RUNDECK_TAGS_KEY: Final = "Rundeck-Tags"
PROVIDER: Final = "ecsexec"  # node-executor / file-copier placeholder ids (ecs-nodes.md §2)


def node_name(container: Mapping[str, Any]) -> str:
    """ecs-nodes.md §1: ``<container.name>-<last '/' segment of containerArn>``."""
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
    """ecs-nodes.md §2: the task's tags; if none outside ``aws:``, add the service's."""
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
    """Build one node per ecs-nodes.md §1-§2."""
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
        "ECS:Cluster-ARN": cluster_arn,
        "ECS:Container-ARN": str(container.get("containerArn", "")),
        "ECS:Container-Image": str(container.get("image", "")),
        "ECS:Container-Name": str(container.get("name", "")),
        "ECS:Container-Tags": "[]",
        # ecs-nodes.md §2: container.cpu unless absent or 0, else task.cpu.
        "ECS:CPU": str(cpu) if cpu not in (None, "", 0, "0") else str(task.get("cpu", "") or ""),
        "ECS:Memory-Reservation": str(container.get("memoryReservation", "") or ""),
        "ECS:Region": region,
        "ECS:Runtime-ID": str(container.get("runtimeId", "")),
        "ECS:Task-Launch-Type": str(task.get("launchType", "")),
        "ECS:Cluster-Name": cluster_name,
        "ECS:Task-ARN": task_arn,
        "ECS:Task-ID": task_id,
        "ECS:Task-Definition-ARN": td_arn,
        "ECS:Task-Definition-Family": family,
        "ECS:Task-Definition-Revision": revision,
        "ECS:Service-Name": group[len("service:") :] if group.startswith("service:") else "",
        "ECS:Task-Tags": json.dumps(
            [{"key": k, "value": own_tags[k]} for k in sorted(own_tags)],
            separators=(",", ":"),
            ensure_ascii=False,
        ),
        "ECS:Availability-Zone": str(task.get("availabilityZone", "")),
        "ECS:Platform-Version": str(task.get("platformVersion", "") or ""),
        "ECS:Private-IP": private_ip,
        "ECS:Task-Status": str(task.get("lastStatus", "")),
        "ECS:Exec-Enabled": "true" if task.get("enableExecuteCommand") else "false",
        "ECS:Exec-Agent-Status": _agent_status(container),
        "ECS:Account-ID": task_arn.split(":")[4] if task_arn.count(":") >= 5 else "",
        "ECS:Started-At": _utc_millis(task.get("startedAt")),
        "node-executor": PROVIDER,
        "file-copier": PROVIDER,
    }
    for key, value in tags.items():
        attributes[f"ECS:Tag:{key}"] = value
    if assume_role_arn:
        attributes["assume-role-arn"] = assume_role_arn

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

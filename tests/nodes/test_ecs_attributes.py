"""ECS container -> node mapping (docs/ecs-nodes.md §1-§2)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ecsexec.nodes import ecs_attributes as attr
from ecsexec.nodes.ecs_attributes import container_node, effective_tags, node_name

TASK_ARN = "arn:aws:ecs:us-west-1:027501300764:task/default/cef73b218edc4475835d1d83814d501c"
CONTAINER = {
    "containerArn": "arn:aws:ecs:us-west-1:027501300764:container/default/"
    "cef73b218edc4475835d1d83814d501c/3b4196bd-4a50-46a2-a8fb-024cd43a42e1",
    "name": "nginx",
    "image": "nginx:latest",
    "runtimeId": "cef73b218edc4475835d1d83814d501c-2531612879",
    "cpu": "0",
    "memoryReservation": 512,
    "networkInterfaces": [{"attachmentId": "a", "privateIpv4Address": "10.0.1.23"}],
    "managedAgents": [{"name": "ExecuteCommandAgent", "lastStatus": "RUNNING"}],
}
TASK = {
    "taskArn": TASK_ARN,
    "clusterArn": "arn:aws:ecs:us-west-1:027501300764:cluster/default",
    "taskDefinitionArn": "arn:aws:ecs:us-west-1:027501300764:task-definition/web:12",
    "group": "service:web",
    "launchType": "FARGATE",
    "cpu": "256",
    "lastStatus": "RUNNING",
    "enableExecuteCommand": True,
    "availabilityZone": "us-west-1a",
    "platformVersion": "1.4.0",
    # botocore returns local-zone datetimes; the attribute is UTC with milliseconds.
    "startedAt": datetime(2024, 5, 1, 14, 34, 56, 789999, tzinfo=timezone(timedelta(hours=2))),
    "tags": [{"key": "team", "value": "web"}, {"key": "Rundeck-Tags", "value": "a, b,,c "}],
    "containers": [CONTAINER],
}


def test_node_name_uses_container_id_not_task_id() -> None:
    assert node_name(CONTAINER) == "nginx-3b4196bd-4a50-46a2-a8fb-024cd43a42e1"


def test_attributes_and_fields() -> None:
    node = container_node(
        TASK,
        CONTAINER,
        region="us-west-1",
        task_definition={
            "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"}
        },
    )
    a = node.attributes
    assert a["ECS:CPU"] == "256"  # container cpu 0 means "not set": take the task's
    assert a["ECS:Memory-Reservation"] == "512"
    assert a["ECS:Task-ID"] == "cef73b218edc4475835d1d83814d501c"
    assert a["ECS:Task-Definition-Family"] == "web"
    assert a["ECS:Task-Definition-Revision"] == "12"
    assert a["ECS:Service-Name"] == "web"
    assert a["ECS:Cluster-Name"] == "default"
    assert a["ECS:Account-ID"] == "027501300764"
    assert a["ECS:Private-IP"] == "10.0.1.23"
    assert a["ECS:Exec-Enabled"] == "true"
    assert a["ECS:Exec-Agent-Status"] == "RUNNING"
    assert a["ECS:Started-At"] == "2024-05-01T12:34:56.789Z"
    assert a["ECS:Tag:team"] == "web"
    assert a["ECS:Task-Tags"] == (
        '[{"key":"Rundeck-Tags","value":"a, b,,c "},{"key":"team","value":"web"}]'
    )
    assert a["ECS:Container-Tags"] == "[]"
    assert node.attributes["hostname"] == "10.0.1.23"
    assert node.attributes["osArch"] == "x86_64"
    assert (node.attributes["osFamily"], node.attributes["osName"]) == ("unix", "Linux")
    assert node.tags == {"ecs", "fargate", "a", "b", "c"}
    assert "assume-role-arn" not in a


def test_service_tags_fill_in_only_when_task_has_none_of_its_own() -> None:
    managed = {"tags": [{"key": "aws:ecs:serviceName", "value": "web"}]}
    assert effective_tags(managed, {"team": "web"}) == {"aws:ecs:serviceName": "web", "team": "web"}
    own = {"tags": [{"key": "team", "value": "mine"}]}
    assert effective_tags(own, {"team": "web", "env": "x"}) == {"team": "mine"}


def test_bridge_mode_and_windows() -> None:
    task = {**TASK, "launchType": "EC2", "group": "family:web", "tags": []}
    container = {**CONTAINER, "networkInterfaces": [], "cpu": 128}
    node = container_node(
        task,
        container,
        region="r",
        task_definition={"runtimePlatform": {"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE"}},
    )
    assert node.attributes["ECS:Private-IP"] == ""
    assert node.attributes["ECS:Service-Name"] == ""
    assert node.attributes["ECS:CPU"] == "128"
    assert node.attributes["hostname"] == "cef73b218edc4475835d1d83814d501c"
    assert node.attributes["osFamily"] == "windows"
    assert node.attributes["osName"] == "WINDOWS_SERVER_2022_CORE"


def test_every_attribute_name_is_a_constant_in_spec_order() -> None:
    node = container_node(TASK, CONTAINER, region="us-west-1", assume_role_arn="arn:role")
    names = [k for k in node.attributes if k.startswith("ECS:")]
    assert [k for k in names if not k.startswith(attr.TAG_PREFIX)] == list(attr.ECS_ATTRIBUTES)
    assert attr.tags_of(node.attributes) == {"team": "web", "Rundeck-Tags": "a, b,,c "}
    assert attr.tag_attribute("team") == "ECS:Tag:team"
    assert node.attributes[attr.ASSUME_ROLE_ARN] == "arn:role"
    assert node.attributes[attr.NODE_EXECUTOR] == "ecsexec-node-executor"
    assert node.attributes[attr.FILE_COPIER] == "ecsexec-file-copier"

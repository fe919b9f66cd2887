"""The sandbox ECS API against real boto3 over HTTP (docs/sandbox.md §4, §4.2).

The shared ``sandbox`` fixture runs the default topology; ``lab`` is a small module-scoped
sandbox with access rules, a disconnected agent and a cluster that tests may change.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from tests.conftest import boto3_session, client
from tests.exec.sandbox_nodes import targets, with_pool
from websockets.sync.client import connect

from ecsexec.exec.runner import run_on_container
from ecsexec.exec.wrap import wrap
from ecsexec.sandbox import Sandbox, shapes
from ecsexec.ssm.frames import decode_frame

NOT_ENABLED = "execute command was not enabled"
TNC_BODY = "The execute command failed due to an internal error. Try again later."


def _fargate(family: str, *containers: dict[str, Any]) -> dict[str, Any]:
    return {
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": list(containers),
    }


LAB = {
    "version": 1,
    "account": "210987654321",
    "iam": {"roles": ["readonly", "operator"]},
    "access": [
        {
            "deny": "ecs:ExecuteCommand",
            "principal": "arn:aws:sts::*:assumed-role/readonly/*",
            "resource": "arn:aws:ecs:*:*:task/prod/*",
        }
    ],
    "regions": {
        "us-east-1": {
            "clusters": [
                {
                    "clusterName": "prod",
                    "services": [
                        {
                            "serviceName": "app",
                            "taskDefinition": "app",
                            "desiredCount": 2,
                            "launchType": "FARGATE",
                            "enableExecuteCommand": True,
                        }
                    ],
                    "tasks": [
                        {"taskDefinition": "pair", "startedBy": "pair-off"},
                        {
                            "taskDefinition": "offline",
                            "startedBy": "offline",
                            "enableExecuteCommand": True,
                        },
                        {"taskDefinition": "offline", "startedBy": "offline-off"},
                        {
                            "taskDefinition": "rofs",
                            "startedBy": "rofs",
                            "enableExecuteCommand": True,
                        },
                    ],
                },
                {"clusterName": "scratch", "tags": {"purpose": "mutations"}},
            ]
        }
    },
    "taskDefinitions": [
        _fargate("app", {"name": "app", "image": "app:1"}),
        _fargate("pair", {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}),
        _fargate("offline", {"name": "off", "image": "off:1", "sandbox": {"ssmConnected": False}}),
        _fargate("rofs", {"name": "ro", "image": "ro:1", "readonlyRootFilesystem": True}),
    ],
}


@pytest.fixture(scope="module")
def lab() -> Iterator[Sandbox]:
    with Sandbox(LAB, initial_wait=0.05) as sb:
        yield sb


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _message(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Message"])


def assert_valid(api: Any, operation: str, response: dict[str, Any]) -> None:
    """What boto3 parsed must validate against botocore's output shape."""
    body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    service = api.meta.service_model.service_name
    issues = shapes.validate(body, shapes.operation(service, operation).output_shape)
    assert not issues, issues


def _task_by(ecs: Any, cluster: str, **match: Any) -> dict[str, Any]:
    arns = ecs.list_tasks(cluster=cluster)["taskArns"]
    for task in ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]:
        if all(task.get(k) == v for k, v in match.items()):
            return dict(task)
    raise AssertionError(f"no task in {cluster} with {match}")


# -- shapes and fields ------------------------------------------------------------------------


def test_every_read_operation_returns_model_valid_shapes(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    calls: list[tuple[str, dict[str, Any]]] = [
        ("ListClusters", {}),
        (
            "DescribeClusters",
            {
                "clusters": ["demo", "secure"],
                "include": ["CONFIGURATIONS", "TAGS", "SETTINGS", "STATISTICS", "ATTACHMENTS"],
            },
        ),
        ("ListServices", {"cluster": "demo"}),
        (
            "DescribeServices",
            {"cluster": "demo", "services": ["web", "api", "legacy"], "include": ["TAGS"]},
        ),
        ("ListTasks", {"cluster": "demo"}),
        ("ListTasks", {"cluster": "demo", "desiredStatus": "STOPPED"}),
        ("DescribeTaskDefinition", {"taskDefinition": "api", "include": ["TAGS"]}),
        ("DescribeTaskDefinition", {"taskDefinition": "legacy:1"}),
    ]
    for op, params in calls:
        method = getattr(ecs, _snake(op))
        assert_valid(ecs, op, method(**params))
    arns = ecs.list_tasks(cluster="demo")["taskArns"]
    stopped = ecs.list_tasks(cluster="demo", desiredStatus="STOPPED")["taskArns"]
    described = ecs.describe_tasks(cluster="demo", tasks=arns + stopped, include=["TAGS"])
    assert_valid(ecs, "DescribeTasks", described)
    assert len(described["tasks"]) == 12
    assert_valid(ecs, "ListTagsForResource", ecs.list_tags_for_resource(resourceArn=arns[0]))
    # The server validated every response in strict mode too; none was rejected.
    assert "ServerException" not in json.dumps(sandbox.stats()["api"]["ecs"])


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def test_task_and_container_fields(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    task = _task_by(ecs, "demo", group="service:api")
    assert task["lastStatus"] == task["desiredStatus"] == "RUNNING"
    assert task["launchType"] == "FARGATE" and task["platformVersion"] == "1.4.0"
    assert task["cpu"] == "512" and isinstance(task["memory"], str)
    assert task["startedBy"].startswith("ecs-svc/") and len(task["startedBy"]) == 8 + 19
    task_id = task["taskArn"].rsplit("/", 1)[1]
    assert len(task_id) == 32 and all(c in "0123456789abcdef" for c in task_id)
    details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    ip = details["privateIPv4Address"]
    assert details["privateDnsName"] == "ip-" + ip.replace(".", "-") + ".ec2.internal"
    names = [c["name"] for c in task["containers"]]
    assert names == ["api", "log-router"]
    for c in task["containers"]:
        assert c["taskArn"] == task["taskArn"]
        assert c["runtimeId"].startswith(task_id + "-") and len(c["runtimeId"]) == 43
        assert c["networkInterfaces"] == [
            {"attachmentId": task["attachments"][0]["id"], "privateIpv4Address": ip}
        ]
        assert c["managedAgents"][0]["name"] == "ExecuteCommandAgent"
        assert c["managedAgents"][0]["lastStatus"] == "RUNNING"
    assert "tags" not in task  # tags only with include=["TAGS"]
    legacy = _task_by(ecs, "demo", group="service:legacy")
    assert legacy["launchType"] == "EC2" and "attachments" not in legacy
    assert legacy["containerInstanceArn"].startswith(
        "arn:aws:ecs:us-east-1:123456789012:container-instance/demo/"
    )
    assert len(legacy["containers"][0]["runtimeId"]) == 64
    assert "networkInterfaces" not in legacy["containers"][0]
    migrate = _task_by(ecs, "demo", startedBy="manual")
    assert migrate["group"] == "family:db-migrate" and migrate["enableExecuteCommand"] is False
    assert "managedAgents" not in migrate["containers"][0]


def test_web_tasks_span_zones_and_carry_propagated_and_managed_tags(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    arns = ecs.list_tasks(cluster="demo", serviceName="web")["taskArns"]
    tasks = ecs.describe_tasks(cluster="demo", tasks=arns, include=["TAGS"])["tasks"]
    assert sorted(t["availabilityZone"] for t in tasks) == [
        "us-east-1a",
        "us-east-1b",
        "us-east-1c",
    ]
    tags = {t["key"]: t["value"] for t in tasks[0]["tags"]}
    assert tags["team"] == "web"
    assert tags["aws:ecs:clusterName"] == "demo" and tags["aws:ecs:serviceName"] == "web"
    service = ecs.describe_services(cluster="demo", services=["web"])["services"][0]
    assert "tags" not in service
    assert service["deployments"][0]["id"] == tasks[0]["startedBy"]
    assert service["runningCount"] == service["desiredCount"] == 3


def test_describe_clusters_configuration_only_when_asked(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    plain = ecs.describe_clusters(clusters=["secure"])["clusters"][0]
    assert "configuration" not in plain and "tags" not in plain
    full = ecs.describe_clusters(clusters=["secure"], include=["CONFIGURATIONS"])["clusters"][0]
    assert full["configuration"]["executeCommandConfiguration"]["kmsKeyId"] == "alias/ecs-exec"
    default = ecs.describe_clusters()
    assert default["clusters"] == [] and default["failures"][0]["reason"] == "MISSING"


def test_task_definition_defaults_and_tags(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    td = ecs.describe_task_definition(taskDefinition="worker")["taskDefinition"]
    c = td["containerDefinitions"][0]
    assert c["essential"] is True and c["cpu"] == 0
    assert c["portMappings"] == [] and c["environment"] == [] and c["mountPoints"] == []
    assert "sandbox" not in c
    arn = td["taskDefinitionArn"]
    assert ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["revision"] == 1
    with pytest.raises(ClientError) as exc:
        ecs.describe_task_definition(taskDefinition="nope")
    assert _code(exc) == "ClientException"


def test_reads_never_change_state(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    arns = ecs.list_tasks(cluster="demo")["taskArns"]
    first = ecs.describe_tasks(cluster="demo", tasks=arns)["tasks"]
    second = ecs.describe_tasks(cluster="demo", tasks=arns)["tasks"]
    assert first == second


# -- names, failures, limits, regions -------------------------------------------------------------


def test_exact_cluster_names(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    demo = set(ecs.list_tasks(cluster="demo")["taskArns"])
    staging = set(ecs.list_tasks(cluster="demo-staging")["taskArns"])
    assert len(demo) == 11 and len(staging) == 1 and not demo & staging
    for wrong in ("dem", "demo-", "DEMO", "staging"):
        with pytest.raises(ClientError) as exc:
            ecs.list_tasks(cluster=wrong)
        assert _code(exc) == "ClusterNotFoundException"
    staging_id = next(iter(staging)).rsplit("/", 1)[1]
    result = ecs.describe_tasks(cluster="demo", tasks=[staging_id])
    assert result["tasks"] == []
    assert result["failures"] == [
        {"arn": f"arn:aws:ecs:us-east-1:123456789012:task/demo/{staging_id}", "reason": "MISSING"}
    ]


def test_missing_failures(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    arn = ecs.list_tasks(cluster="demo")["taskArns"][0]
    bogus = "0" * 32
    result = ecs.describe_tasks(cluster="demo", tasks=[arn, bogus])
    assert [t["taskArn"] for t in result["tasks"]] == [arn]
    assert result["failures"][0]["reason"] == "MISSING"
    services = ecs.describe_services(cluster="demo", services=["web", "webb"])
    assert [s["serviceName"] for s in services["services"]] == ["web"]
    assert services["failures"] == [
        {"arn": "arn:aws:ecs:us-east-1:123456789012:service/demo/webb", "reason": "MISSING"}
    ]
    with pytest.raises(ClientError) as exc:
        ecs.list_tasks(cluster="demo", serviceName="webb")
    assert _code(exc) == "ServiceNotFoundException"
    with pytest.raises(ClientError) as exc:
        ecs.list_services(cluster="nope")
    assert _code(exc) == "ClusterNotFoundException"


def test_limits_are_enforced(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    with pytest.raises(ClientError) as exc:
        ecs.describe_tasks(cluster="demo", tasks=["0" * 32] * 101)
    assert _code(exc) == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        ecs.describe_services(cluster="demo", services=[f"s{i}" for i in range(11)])
    assert _code(exc) == "InvalidParameterException"
    for bad in (0, 101):
        with pytest.raises(ClientError) as exc:
            ecs.list_tasks(cluster="demo", maxResults=bad)
        assert _code(exc) == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        ecs.list_tasks(cluster="demo", startedBy="manual", family="db-migrate")
    assert _code(exc) == "InvalidParameterException"
    assert ecs.list_tasks(cluster="demo", desiredStatus="PENDING")["taskArns"] == []


def test_list_filters(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    assert len(ecs.list_tasks(cluster="demo", family="worker")["taskArns"]) == 2
    assert len(ecs.list_tasks(cluster="demo", startedBy="manual")["taskArns"]) == 1
    assert len(ecs.list_tasks(cluster="demo", launchType="EC2")["taskArns"]) == 1
    stopped = ecs.list_tasks(cluster="demo", desiredStatus="STOPPED")["taskArns"]
    task = ecs.describe_tasks(cluster="demo", tasks=stopped)["tasks"][0]
    assert task["lastStatus"] == "STOPPED" and task["stopCode"] == "EssentialContainerExited"
    assert task["containers"][0]["exitCode"] == 1
    assert len(ecs.list_services(cluster="demo")["serviceArns"]) == 5
    assert len(ecs.list_services(cluster="demo", launchType="EC2")["serviceArns"]) == 1


def test_multi_region(sandbox: Sandbox) -> None:
    eu = client(sandbox, "ecs", region="eu-west-1")
    assert eu.list_clusters()["clusterArns"] == ["arn:aws:ecs:eu-west-1:123456789012:cluster/demo"]
    eu_tasks = eu.list_tasks(cluster="demo")["taskArns"]
    assert len(eu_tasks) == 2 and all(":eu-west-1:" in a for a in eu_tasks)
    us_task = client(sandbox, "ecs").list_tasks(cluster="demo")["taskArns"][0]
    assert eu.describe_tasks(cluster="demo", tasks=[us_task])["failures"][0]["reason"] == "MISSING"
    empty = client(sandbox, "ecs", region="ap-south-1")
    assert empty.list_clusters()["clusterArns"] == []
    with pytest.raises(ClientError) as exc:
        empty.list_tasks(cluster="demo")
    assert _code(exc) == "ClusterNotFoundException"
    api = sandbox.stats()["api_by_region"]
    assert api["eu-west-1"]["ecs"]["ListTasks"]["calls"] >= 1
    assert api["ap-south-1"]["ecs"]["ListTasks"]["errors"] == {"ClusterNotFoundException": 1}


# -- pagination ---------------------------------------------------------------------------------


def test_pagination_covers_every_task_once(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    seen: list[str] = []
    pages = 0
    kwargs: dict[str, Any] = {"cluster": "demo", "maxResults": 2}
    while True:
        page = ecs.list_tasks(**kwargs)
        assert len(page["taskArns"]) <= 2
        seen += page["taskArns"]
        pages += 1
        if "nextToken" not in page:
            break
        kwargs["nextToken"] = page["nextToken"]
    assert pages == 6 and len(seen) == len(set(seen)) == 11
    services = [
        a
        for p in ecs.get_paginator("list_services").paginate(cluster="demo")
        for a in p["serviceArns"]
    ]
    assert len(services) == 5


def test_tampered_or_reused_tokens_are_rejected(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    token = ecs.list_tasks(cluster="demo", maxResults=1)["nextToken"]
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad in (flipped, "garbage", token + "x"):
        with pytest.raises(ClientError) as exc:
            ecs.list_tasks(cluster="demo", maxResults=1, nextToken=bad)
        assert _code(exc) == "InvalidParameterException"
    for other in ({"cluster": "demo", "family": "web"}, {"cluster": "demo-staging"}):
        with pytest.raises(ClientError) as exc:
            ecs.list_tasks(maxResults=1, nextToken=token, **other)
        assert _code(exc) == "InvalidParameterException"
    # Another page size is fine: maxResults is not a filter.
    assert ecs.list_tasks(cluster="demo", maxResults=5, nextToken=token)["taskArns"]


def test_changes_between_pages_cause_no_duplicates_or_skips(lab: Sandbox) -> None:
    ecs = client(lab, "ecs")
    listing = {"cluster": "scratch", "startedBy": "paging", "maxResults": 3}
    ecs.run_task(cluster="scratch", taskDefinition="app", count=10, startedBy="paging")
    original = [
        a for p in ecs.get_paginator("list_tasks").paginate(**listing) for a in p["taskArns"]
    ]
    assert len(original) == 10
    page = ecs.list_tasks(**listing)
    seen = list(page["taskArns"])
    ecs.run_task(cluster="scratch", taskDefinition="app", count=2, startedBy="paging")
    removed = {seen[0], original[6]}
    for arn in removed:
        ecs.stop_task(cluster="scratch", task=arn)
    token = page["nextToken"]
    while token:
        page = ecs.list_tasks(**listing, nextToken=token)
        seen += page["taskArns"]
        token = page.get("nextToken")
    assert len(seen) == len(set(seen))
    assert set(original) - removed <= set(seen)
    assert original[6] not in seen
    assert len(seen) == 10 - 1 + 2  # the two new tasks come last, after the cursor


# -- throttling and injected faults ------------------------------------------------------------


def test_throttling_gives_rate_exceeded(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    sandbox.set_faults("throttle=ListClusters:0.01/s:2")
    try:
        ecs.list_clusters()
        ecs.list_clusters()
        with pytest.raises(ClientError) as exc:
            ecs.list_clusters()
        assert _code(exc) == "ThrottlingException" and _message(exc) == "Rate exceeded"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    finally:
        sandbox.set_faults("")
    ecs.list_clusters()


def test_injected_errors_and_short_pages(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    sandbox.set_faults("error=ListServices:1,short_pages=1,seed=3")
    try:
        with pytest.raises(ClientError) as exc:
            ecs.list_services(cluster="demo")
        assert _code(exc) == "ServerException"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        page = ecs.list_tasks(cluster="demo", maxResults=10)
        assert len(page["taskArns"]) < 10 and "nextToken" in page
    finally:
        sandbox.set_faults("")
    assert len(ecs.list_tasks(cluster="demo", maxResults=11)["taskArns"]) == 11


# -- ExecuteCommand (§4.2) ------------------------------------------------------------------------


def _exec(ecs: Any, **kw: Any) -> Any:
    params = {"cluster": "demo", "command": "true", "interactive": True, **kw}
    return ecs.execute_command(**params)


def test_execute_command_errors(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    migrate = _task_by(ecs, "demo", startedBy="manual")["taskArn"]
    api = _task_by(ecs, "demo", group="service:api")["taskArn"]
    web = _task_by(ecs, "demo", group="service:web")["taskArn"]
    workers = ecs.describe_tasks(
        cluster="demo", tasks=ecs.list_tasks(cluster="demo", serviceName="worker")["taskArns"]
    )["tasks"]
    stopped_agent = next(
        t["taskArn"]
        for t in workers
        if t["containers"][0]["managedAgents"][0]["lastStatus"] == "STOPPED"
    )
    stopped_task = ecs.list_tasks(cluster="demo", desiredStatus="STOPPED")["taskArns"][0]
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"task": migrate}, "InvalidParameterException", NOT_ENABLED),
        ({"task": stopped_agent}, "InvalidParameterException", NOT_ENABLED),
        ({"task": stopped_task}, "InvalidParameterException", NOT_ENABLED),
        (
            {"task": api},
            "InvalidParameterException",
            "The container name is required when the task has more than one container.",
        ),
        ({"task": api, "container": "nope"}, "InvalidParameterException", ""),
        (
            {"task": web, "interactive": False},
            "InvalidParameterException",
            "Interactive is the only mode supported currently.",
        ),
        ({"task": web, "cluster": "demo-staging"}, "InvalidParameterException", ""),
        ({"task": web, "cluster": "nope"}, "ClusterNotFoundException", ""),
        ({"task": "f" * 32}, "InvalidParameterException", ""),
    ]
    for params, code, text in cases:
        with pytest.raises(ClientError) as exc:
            _exec(ecs, **params)
        assert (_code(exc), text in _message(exc)) == (code, True), params
    with pytest.raises(ClientError) as exc:
        _exec(ecs, task=migrate)
    # The wording users report, typographic apostrophe included.
    assert "isn’t running" in _message(exc)


def test_execute_command_check_order(lab: Sandbox) -> None:
    ecs = client(lab, "ecs")
    pair = _task_by(ecs, "prod", startedBy="pair-off")["taskArn"]
    offline_off = _task_by(ecs, "prod", startedBy="offline-off")["taskArn"]
    app = _task_by(ecs, "prod", group="service:app")["taskArn"]
    # 4 before 5: interactive is checked before the cluster exists.
    with pytest.raises(ClientError) as exc:
        _exec(ecs, cluster="nope", task=app, interactive=False)
    assert "Interactive is the only mode" in _message(exc)
    # 7 before 8: the container name comes before "not enabled".
    with pytest.raises(ClientError) as exc:
        _exec(ecs, cluster="prod", task=pair)
    assert "container name is required" in _message(exc)
    # 8 before 9: "not enabled" comes before "not connected".
    with pytest.raises(ClientError) as exc:
        _exec(ecs, cluster="prod", task=offline_off)
    assert NOT_ENABLED in _message(exc)
    # 1 before 2: an empty bucket wins over invalid input.
    raw = boto3_session(lab).client(
        "ecs",
        endpoint_url=lab.endpoint_url,
        config=Config(
            parameter_validation=False, retries={"total_max_attempts": 1, "mode": "standard"}
        ),
    )
    with pytest.raises(ClientError) as exc:
        raw.execute_command(cluster="prod", task=app, command="true", interactive="yes")
    assert _code(exc) == "InvalidParameterException"
    lab.set_faults("throttle=ExecuteCommand:0.01/s:1")
    try:
        ecs.list_clusters()  # other actions keep their own buckets
        with pytest.raises(ClientError):
            raw.execute_command(cluster="prod", task=app, command="true", interactive="yes")
        with pytest.raises(ClientError) as exc:
            raw.execute_command(cluster="prod", task=app, command="true", interactive="yes")
        assert _code(exc) == "ThrottlingException"
    finally:
        lab.set_faults("")


def test_execute_command_access_rules_come_first(lab: Sandbox) -> None:
    sts = client(lab, "sts")
    creds = sts.assume_role(
        RoleArn="arn:aws:iam::210987654321:role/readonly", RoleSessionName="alice"
    )["Credentials"]
    readonly = boto3_session(lab).client(
        "ecs",
        endpoint_url=lab.endpoint_url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    app = _task_by(client(lab, "ecs"), "prod", group="service:app")["taskArn"]
    for interactive in (True, False):
        with pytest.raises(ClientError) as exc:
            readonly.execute_command(
                cluster="prod", task=app, command="true", interactive=interactive
            )
        assert _code(exc) == "AccessDeniedException"
        assert _message(exc) == (
            "User: arn:aws:sts::210987654321:assumed-role/readonly/alice is not authorized to "
            f"perform: ecs:ExecuteCommand on resource: {app} with an explicit deny in an "
            "identity-based policy"
        )
    # Reads are not denied, and the rule names prod only.
    assert readonly.list_tasks(cluster="prod")["taskArns"]


def test_target_not_connected(lab: Sandbox, sandbox: Sandbox) -> None:
    ecs = client(lab, "ecs")
    for started_by in ("offline", "rofs"):
        task = _task_by(ecs, "prod", startedBy=started_by)["taskArn"]
        with pytest.raises(ClientError) as exc:
            _exec(ecs, cluster="prod", task=task)
        assert _code(exc) == "TargetNotConnectedException"
        assert exc.value.response["Error"]["Message"] == TNC_BODY
    shared = client(sandbox, "ecs")
    web = _task_by(shared, "demo", group="service:web")["taskArn"]
    sandbox.set_faults("tnc=1")
    try:
        with pytest.raises(ClientError) as exc:
            _exec(shared, task=web)
        assert _code(exc) == "TargetNotConnectedException"
    finally:
        sandbox.set_faults("")


def test_execute_command_session_streams_over_websocket(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    ssm = client(sandbox, "ssm")
    web = _task_by(ecs, "demo", group="service:web")
    result = ecs.execute_command(
        cluster="demo", task=web["taskArn"], command="echo sandbox-smoke", interactive=True
    )
    assert_valid(ecs, "ExecuteCommand", result)
    session = result["session"]
    sid = session["sessionId"]
    try:
        assert sid.startswith("ecs-execute-command-") and len(sid) == 20 + 26
        assert result["containerName"] == "app" and result["interactive"] is True
        assert session["streamUrl"].startswith(
            f"ws://127.0.0.1:{sandbox.endpoint_url.rsplit(':', 1)[1]}/v1/data-channel/{sid}"
            "?role=publish_subscribe&cell-number="
        )
        with connect(session["streamUrl"], compression=None, open_timeout=10) as ws:
            ws.send(
                json.dumps(
                    {
                        "MessageSchemaVersion": "1.0",
                        "RequestId": str(uuid.uuid4()),
                        "TokenValue": session["tokenValue"],
                        "ClientId": str(uuid.uuid4()),
                        "ClientVersion": "1.2.0.0",
                    }
                )
            )
            output = b""
            deadline = time.monotonic() + 10
            while b"sandbox-smoke" not in output and time.monotonic() < deadline:
                frame = decode_frame(ws.recv(timeout=10))
                if frame.message_type == "output_stream_data":
                    output += frame.payload
            assert b"sandbox-smoke\r\n" in output
        assert ssm.terminate_session(SessionId=sid)["SessionId"] == sid
        resumed = ssm.resume_session(SessionId=sid)
        assert "TokenValue" not in resumed  # ended less than an hour ago
    finally:
        ssm.terminate_session(SessionId=sid)


def test_kms_cluster_target_carries_the_key(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    ssm = client(sandbox, "ssm")
    task = ecs.list_tasks(cluster="secure")["taskArns"][0]
    result = ecs.execute_command(cluster="secure", task=task, command="true", interactive=True)
    sid = result["session"]["sessionId"]
    try:
        listed = {s["sessionId"]: s for s in sandbox.control.sessions()}
        desc = ecs.describe_tasks(cluster="secure", tasks=[task])["tasks"][0]
        runtime = desc["containers"][0]["runtimeId"]
        assert listed[sid]["targetId"] == f"ecs:secure_{task.rsplit('/', 1)[1]}_{runtime}"
    finally:
        ssm.terminate_session(SessionId=sid)


def test_session_limit_channel_mode(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    ssm = client(sandbox, "ssm")
    task = _task_by(ecs, "demo", group="service:web")["taskArn"]
    sids = []
    try:
        for _ in range(3):
            sids.append(_exec(ecs, task=task, command="sleep 30")["session"]["sessionId"])
        states = {s["sessionId"]: s for s in sandbox.control.sessions()}
        assert [states[s]["state"] for s in sids] == ["active", "active", "ended"]
        assert states[sids[2]]["endReason"] == "limit"
    finally:
        for sid in sids:
            ssm.terminate_session(SessionId=sid)


def test_unknown_operation(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    with pytest.raises(ClientError) as exc:
        ecs.list_container_instances(cluster="demo")
    assert _code(exc) == "UnknownOperationException"
    assert _message(exc) == "ecsexec sandbox does not implement ECS ListContainerInstances"


# -- mutations ------------------------------------------------------------------------------------


def test_run_task_and_stop_task(lab: Sandbox) -> None:
    ecs = client(lab, "ecs")
    result = ecs.run_task(
        cluster="scratch",
        taskDefinition="app",
        launchType="FARGATE",
        enableExecuteCommand=True,
        startedBy="tester",
        tags=[{"key": "ticket", "value": "T-1"}],
    )
    assert_valid(ecs, "RunTask", result)
    task = result["tasks"][0]
    arn = task["taskArn"]
    assert task["group"] == "family:app" and task["startedBy"] == "tester"
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [
        {"key": "ticket", "value": "T-1"}
    ]
    with pytest.raises(ClientError) as exc:
        ecs.run_task(cluster="scratch", taskDefinition="app", count=11)
    assert _code(exc) == "InvalidParameterException"
    stopped = ecs.stop_task(cluster="scratch", task=arn, reason="done")["task"]
    assert stopped["desiredStatus"] == "STOPPED" and stopped["stoppedReason"] == "done"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = ecs.describe_tasks(cluster="scratch", tasks=[arn], include=["TAGS"])["tasks"][0]
        if now["lastStatus"] == "STOPPED":
            break
        time.sleep(0.02)
    assert now["lastStatus"] == "STOPPED" and now["stopCode"] == "UserInitiated"
    assert now["tags"] == []  # StopTask deletes the task's tags
    assert arn in ecs.list_tasks(cluster="scratch", desiredStatus="STOPPED")["taskArns"]
    assert arn not in ecs.list_tasks(cluster="scratch")["taskArns"]
    with pytest.raises(ClientError) as exc:
        _exec(ecs, cluster="scratch", task=arn)
    assert NOT_ENABLED in _message(exc)


def test_list_tags_for_resource(lab: Sandbox) -> None:
    ecs = client(lab, "ecs")
    cluster = "arn:aws:ecs:us-east-1:210987654321:cluster/scratch"
    assert ecs.list_tags_for_resource(resourceArn=cluster)["tags"] == [
        {"key": "purpose", "value": "mutations"}
    ]
    for bad in (
        cluster + "x",
        "arn:aws:ecs:us-east-1:210987654321:service/scratch/none",
        "not-an-arn",
    ):
        with pytest.raises(ClientError) as exc:
            ecs.list_tags_for_resource(resourceArn=bad)
        assert _code(exc) == "InvalidParameterException"


def test_create_cluster_register_and_create_service(lab: Sandbox) -> None:
    ecs = client(lab, "ecs")
    cluster = ecs.create_cluster(clusterName="fresh", tags=[{"key": "k", "value": "v"}])
    assert_valid(ecs, "CreateCluster", cluster)
    assert (
        ecs.create_cluster(clusterName="fresh")["cluster"]["clusterArn"]
        == cluster["cluster"]["clusterArn"]
    )
    registered = ecs.register_task_definition(
        family="fresh",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "web", "image": "web:2", "essential": True}],
        tags=[{"key": "owner", "value": "me"}],
    )
    assert_valid(ecs, "RegisterTaskDefinition", registered)
    assert registered["taskDefinition"]["revision"] == 1
    again = ecs.register_task_definition(
        family="fresh", containerDefinitions=[{"name": "web", "image": "web:3"}]
    )
    assert again["taskDefinition"]["revision"] == 2
    described = ecs.describe_task_definition(taskDefinition="fresh:1", include=["TAGS"])
    assert described["tags"] == [{"key": "owner", "value": "me"}]
    assert ecs.describe_task_definition(taskDefinition="fresh")["taskDefinition"]["revision"] == 2
    service = ecs.create_service(
        cluster="fresh",
        serviceName="svc",
        taskDefinition="fresh:1",
        desiredCount=3,
        launchType="FARGATE",
        enableExecuteCommand=True,
        propagateTags="TASK_DEFINITION",
    )
    assert_valid(ecs, "CreateService", service)
    arns = ecs.list_tasks(cluster="fresh", serviceName="svc")["taskArns"]
    tasks = ecs.describe_tasks(cluster="fresh", tasks=arns, include=["TAGS"])["tasks"]
    assert len(tasks) == 3 and all(t["tags"] == [{"key": "owner", "value": "me"}] for t in tasks)
    assert {t["startedBy"] for t in tasks} == {service["service"]["deployments"][0]["id"]}
    with pytest.raises(ClientError) as exc:
        ecs.create_service(cluster="fresh", serviceName="svc", taskDefinition="fresh:1")
    assert _code(exc) == "InvalidParameterException"


def test_execute_command_refuses_a_nul_byte_up_front(sandbox: Sandbox) -> None:
    """No process argument can hold a NUL: refused before a session exists, instead of a
    session whose agent cannot start the command and a client waiting for its timeout."""
    ecs = client(sandbox, "ecs")
    web = _task_by(ecs, "demo", group="service:web")["taskArn"]
    opened = sandbox.stats()["sessions"]["opened"]
    for command in ("echo a\x00b", "\x00", "sh -c 'printf x'\x00"):
        with pytest.raises(ClientError) as exc:
            _exec(ecs, task=web, command=command)
        assert _code(exc) == "InvalidParameterException"
        assert "NUL" in _message(exc)
    assert sandbox.stats()["sessions"]["opened"] == opened


def test_an_exec_sessions_home_and_cwd_are_its_containers_scratch_directory(
    sandbox: Sandbox,
) -> None:
    """docs/sandbox.md §8.3: HOME (and the cwd without a workingDirectory) is the scratch
    directory ``<state>/containers/<region>/<cluster>/<task id>/<container>``."""
    target = targets(sandbox, "ECS:Cluster-Name: demo ECS:Service-Name: web")[0]
    result = with_pool(
        sandbox,
        lambda p: run_on_container(p(target), target, wrap('echo "$HOME"; pwd'), timeout=30),
    )
    task_id = target.task.rsplit("/", 1)[-1]
    scratch = sandbox.state_dir / "containers" / "us-east-1" / "demo" / task_id / target.container
    assert result.exit_code == 0, result
    assert result.output.decode().splitlines() == [str(scratch), str(scratch)]
    assert scratch.is_dir()

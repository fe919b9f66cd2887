"""Topologies: YAML with file:line:col errors, the default, the generator, building (§10).

ECS-named fields are exactly the CreateCluster, RegisterTaskDefinition, CreateService and
RunTask inputs and are validated against those shapes; tags may also be written as a
``{key: value}`` map; sandbox-only settings live in ``sandbox:`` blocks. Building goes
through the same World methods the ECS API uses.
"""

from __future__ import annotations

import math
import random
import re
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ecsexec.errors import TopologyError
from ecsexec.sandbox import kms, shapes
from ecsexec.sandbox.access import AccessRule
from ecsexec.sandbox.model import (
    AGENT_STATUSES,
    DEFAULT_ACCOUNT,
    ApiError,
    ContainerSandbox,
    Task,
    World,
    tags_from,
)

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_TOP_KEYS = {"version", "account", "iam", "access", "regions", "taskDefinitions"}
_REGION_KEYS = {"kmsKeys", "clusters"}
_CONTAINER_SANDBOX = {"main", "agent", "ssmConnected", "distroless"}
_TASK_SANDBOX = {
    "availabilityZone",
    "agent",
    "ssmConnected",
    "enableExecuteCommand",
    "lastStatus",
    "stoppedReason",
    "stopCode",
    "exitCode",
}


@dataclass
class Topology:
    """A parsed topology document and where each of its values came from."""

    doc: dict[str, Any]
    source: str = "<topology>"
    marks: dict[str, tuple[int, int]] = field(default_factory=dict)

    def error(self, path: str, message: str) -> TopologyError:
        where = self._mark(path)
        loc = f"{self.source}:{where[0]}:{where[1]}" if where else self.source
        return TopologyError(f"{loc}: {path or '<document>'}: {message}")

    def _mark(self, path: str) -> tuple[int, int] | None:
        # The nearest recorded ancestor: a missing member is reported at its parent.
        while True:
            if path in self.marks:
                return self.marks[path]
            if not path:
                return None
            cut = max(path.rfind("."), path.rfind("["))
            path = path[: max(cut, 0)]


# -- loading ------------------------------------------------------------------------------


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _convert(loader: yaml.SafeLoader, node: yaml.Node, path: str, marks: dict[str, Any]) -> Any:
    marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise TopologyError(f"{path}: mapping keys must be scalars") from None
            out[key] = _convert(loader, value_node, _join(path, key), marks)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, n, f"{path}[{i}]", marks) for i, n in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_text(text: str, source: str = "<topology>") -> Topology:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        marks: dict[str, tuple[int, int]] = {}
        try:
            doc = _convert(loader, node, "", marks) if node is not None else None
        except TopologyError as exc:
            raise TopologyError(f"{source}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise TopologyError(f"{where}: invalid YAML: {exc.problem}") from None
    finally:
        loader.dispose()
    if not isinstance(doc, dict):
        raise TopologyError(f"{source}:1:1: <document>: expected a mapping")
    return Topology(doc, source, marks)


def load_file(path: str | Path) -> Topology:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise TopologyError(f"{p}: cannot read topology: {exc.strerror}") from None
    return load_text(text, str(p))


def from_document(doc: dict[str, Any], source: str = "<topology>") -> Topology:
    return Topology(doc, source)


def dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)


# -- the default topology (§10 table) --------------------------------------------------------


def demo_orders_path() -> Path:
    return Path(str(resources.files("ecsexec.sandbox") / "data" / "DemoOrders.java"))


def default_topology() -> tuple[dict[str, Any], list[str]]:
    """The built-in topology plus notices (e.g. why the orders containers idle)."""
    notices: list[str] = []
    java = shutil.which("java")
    orders_main: dict[str, Any] = {}
    if java:
        # docs/sandbox.md §10: single-file source mode, so no build step and Java 11+ suffices.
        orders_main = {"main": [java, "-Xmx64m", "-XX:+UseSerialGC", str(demo_orders_path())]}
    else:
        notices.append(
            "java is not on PATH: the demo/orders containers idle without the DemoOrders "
            "main process, so the Java thread-dump job has no JVM to dump"
        )
    fargate = {
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
    }

    def svc(name: str, td: str, count: int, **extra: Any) -> dict[str, Any]:
        return {
            "serviceName": name,
            "taskDefinition": td,
            "desiredCount": count,
            "launchType": "FARGATE",
            "enableExecuteCommand": True,
            "enableECSManagedTags": True,
            "propagateTags": "SERVICE",
            **extra,
        }

    task_defs = [
        {
            "family": "web",
            **fargate,
            "containerDefinitions": [
                {
                    "name": "app",
                    "image": "public.ecr.aws/nginx/nginx:1.27",
                    "memory": 512,
                    "environment": [{"name": "APP_ENV", "value": "demo"}],
                }
            ],
        },
        {
            "family": "api",
            **fargate,
            "cpu": "512",
            "memory": "1024",
            "containerDefinitions": [
                {
                    "name": "api",
                    "image": "public.ecr.aws/docker/library/python:3.12-slim",
                    "cpu": 384,
                    "memory": 768,
                    "environment": [{"name": "APP_ENV", "value": "demo"}],
                },
                {
                    "name": "log-router",
                    "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.0",
                    "cpu": 128,
                    "memoryReservation": 64,
                    "essential": False,
                    "firelensConfiguration": {"type": "fluentbit"},
                },
            ],
        },
        {
            "family": "orders",
            **fargate,
            "cpu": "512",
            "memory": "1024",
            "containerDefinitions": [
                {
                    "name": "orders",
                    "image": "spring-orders:1.4.2",
                    "memory": 1024,
                    "environment": [{"name": "JAVA_TOOL_OPTIONS", "value": "-Xss512k"}],
                    "sandbox": orders_main,
                }
            ],
        },
        {
            "family": "worker",
            **fargate,
            "containerDefinitions": [
                {
                    "name": "worker",
                    "image": "public.ecr.aws/docker/library/busybox:1.36",
                    "memory": 512,
                }
            ],
        },
        {
            "family": "db-migrate",
            **fargate,
            "containerDefinitions": [
                {"name": "migrate", "image": "flyway/flyway:10", "memory": 512}
            ],
        },
        {
            "family": "legacy",
            "networkMode": "bridge",
            "requiresCompatibilities": ["EC2"],
            "containerDefinitions": [
                {
                    "name": "legacy",
                    "image": "public.ecr.aws/docker/library/httpd:2.4",
                    "cpu": 128,
                    "memory": 256,
                    "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}],
                }
            ],
        },
        {
            "family": "payments",
            **fargate,
            "containerDefinitions": [
                {"name": "payments", "image": "payments:3.0.1", "memory": 512}
            ],
        },
    ]
    doc: dict[str, Any] = {
        "version": 1,
        "account": DEFAULT_ACCOUNT,
        "iam": {"roles": ["ecsexec-readonly", "ecsexec-operator"]},
        "regions": {
            "us-east-1": {
                "kmsKeys": [{"alias": "alias/ecs-exec", "description": "ECS Exec sessions"}],
                "clusters": [
                    {
                        "clusterName": "demo",
                        "tags": {"env": "demo"},
                        "configuration": {"executeCommandConfiguration": {"logging": "DEFAULT"}},
                        "services": [
                            svc(
                                "web",
                                "web",
                                3,
                                tags={"team": "web", "Rundeck-Tags": "web,frontend"},
                            ),
                            svc("api", "api", 2, tags={"team": "api"}),
                            svc("orders", "orders", 2, tags={"team": "orders", "lang": "java"}),
                            svc(
                                "worker",
                                "worker",
                                2,
                                tags={"team": "batch"},
                                sandbox={"taskOverrides": {1: {"agent": "STOPPED"}}},
                            ),
                            {
                                "serviceName": "legacy",
                                "taskDefinition": "legacy",
                                "desiredCount": 1,
                                "launchType": "EC2",
                                "enableExecuteCommand": True,
                                "tags": {"team": "legacy"},
                                "propagateTags": "SERVICE",
                            },
                        ],
                        "tasks": [
                            {
                                "taskDefinition": "db-migrate",
                                "startedBy": "manual",
                                "enableExecuteCommand": False,
                                "launchType": "FARGATE",
                            },
                            {
                                "taskDefinition": "worker",
                                "startedBy": "manual",
                                "enableExecuteCommand": True,
                                "launchType": "FARGATE",
                                "sandbox": {
                                    "lastStatus": "STOPPED",
                                    "stopCode": "EssentialContainerExited",
                                    "stoppedReason": "Essential container in task exited",
                                    "exitCode": 1,
                                },
                            },
                        ],
                    },
                    {
                        "clusterName": "demo-staging",
                        "tags": {"env": "staging"},
                        "services": [svc("web", "web", 1, tags={"team": "web"})],
                    },
                    {
                        "clusterName": "secure",
                        "tags": {"env": "prod"},
                        "configuration": {
                            "executeCommandConfiguration": {
                                "kmsKeyId": "alias/ecs-exec",
                                "logging": "DEFAULT",
                            }
                        },
                        "services": [svc("payments", "payments", 1, tags={"team": "payments"})],
                    },
                ],
            },
            "eu-west-1": {
                "clusters": [
                    {
                        "clusterName": "demo",
                        "tags": {"env": "demo"},
                        "services": [svc("web", "web", 2, tags={"team": "web"})],
                    }
                ]
            },
        },
        "taskDefinitions": task_defs,
    }
    return doc, notices


# -- generator ----------------------------------------------------------------------------


def generate(
    tasks: int,
    *,
    seed: int = 0,
    clusters: int | None = None,
    services: int | None = None,
    containers: int = 1,
    mix: bool = False,
    region: str = "us-east-1",
) -> dict[str, Any]:
    """A deterministic topology of ``tasks`` RUNNING exec-ready tasks for benchmarks (§10).

    ``mix`` makes about 5% of the tasks exec-disabled and 2% agent-stopped.
    """
    if tasks < 0:
        raise TopologyError("--tasks must be at least 0")
    if not 1 <= containers <= 3:
        raise TopologyError("--containers must be between 1 and 3")
    rng = random.Random(seed)
    n_clusters = clusters or max(1, min(3, math.ceil(tasks / 100)))
    n_services = services or max(1, min(4, math.ceil(tasks / (n_clusters * 50))))
    names = ["app", "sidecar", "agent"][:containers]
    task_defs = [
        {
            "family": f"bench-{i}",
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": [
                {"name": n, "image": f"bench/{n}:{i}", "memory": 512 // containers} for n in names
            ],
        }
        for i in range(n_services)
    ]
    slots = n_clusters * n_services
    cluster_docs = []
    for c in range(n_clusters):
        # /16 per cluster: enough addresses for any count the sandbox can hold.
        cluster: dict[str, Any] = {
            "clusterName": f"bench-{c}",
            "tags": {"bench": "true"},
            "sandbox": {"cidr": f"10.{c % 256}.0.0/16"},
            "services": [],
        }
        for s in range(n_services):
            slot = c * n_services + s
            count = tasks // slots + (1 if slot < tasks % slots else 0)
            service: dict[str, Any] = {
                "serviceName": f"svc-{s}",
                "taskDefinition": f"bench-{s}",
                "desiredCount": count,
                "launchType": "FARGATE",
                "enableExecuteCommand": True,
            }
            if mix:
                overrides: dict[int, dict[str, Any]] = {}
                for i in range(count):
                    roll = rng.random()
                    if roll < 0.05:
                        overrides[i] = {"enableExecuteCommand": False}
                    elif roll < 0.07:
                        overrides[i] = {"agent": "STOPPED"}
                if overrides:
                    service["sandbox"] = {"taskOverrides": overrides}
            cluster["services"].append(service)
        cluster_docs.append(cluster)
    return {
        "version": 1,
        "account": DEFAULT_ACCOUNT,
        "regions": {region: {"clusters": cluster_docs}},
        "taskDefinitions": task_defs,
    }


# -- building -----------------------------------------------------------------------------


class _Builder:
    def __init__(self, topo: Topology, world: World, principal: str) -> None:
        self.topo = topo
        self.world = world
        self.principal = principal
        self.tasks: list[Task] = []

    def fail(self, path: str, message: str) -> TopologyError:
        return self.topo.error(path, message)

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "expected a mapping")
        return value

    def seq(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, "expected a list")
        return value

    def keys(self, value: dict[str, Any], allowed: set[str], path: str) -> None:
        for key in value:
            if key not in allowed:
                raise self.fail(
                    _join(path, key), f"unknown key (allowed: {', '.join(sorted(allowed))})"
                )

    def ecs_input(
        self, value: dict[str, Any], action: str, path: str, drop: set[str]
    ) -> dict[str, Any]:
        """An ECS-named block as the API input it stands for, validated with that shape."""
        params = {k: v for k, v in value.items() if k not in drop}
        if "tags" in params:
            tags = params["tags"]
            if isinstance(tags, dict):
                params["tags"] = tags_from(tags)
        issues = shapes.validate(params, shapes.input_shape("ecs", action))
        if issues:
            issue = issues[0]
            raise self.fail(_join(path, issue.path) if issue.path else path, issue.message)
        return params

    def build(self) -> None:
        doc = self.mapping(self.topo.doc, "")
        self.keys(doc, _TOP_KEYS, "")
        version = doc.get("version", 1)
        if version != 1:
            raise self.fail("version", "only version 1 is supported")
        account = str(doc.get("account", DEFAULT_ACCOUNT))
        if not re.fullmatch(r"\d{12}", account):
            raise self.fail("account", "expected a 12-digit account ID")
        self.world.account = account
        iam = self.mapping(doc.get("iam") or {}, "iam")
        self.keys(iam, {"roles"}, "iam")
        roles = self.seq(iam.get("roles"), "iam.roles")
        for i, role in enumerate(roles):
            if not isinstance(role, str) or not re.fullmatch(r"[\w+=,.@-]{1,64}", role):
                raise self.fail(f"iam.roles[{i}]", "expected an IAM role name")
        self.world.iam_roles = list(roles)
        regions = self.mapping(doc.get("regions") or {}, "regions")
        task_defs = self.seq(doc.get("taskDefinitions"), "taskDefinitions")
        parsed_tds = [
            self.task_definition(td, f"taskDefinitions[{i}]") for i, td in enumerate(task_defs)
        ]
        for name, body in regions.items():
            path = _join("regions", name)
            if not isinstance(name, str) or not _REGION.match(name):
                raise self.fail(path, "expected a region name such as us-east-1")
            self.region(name, self.mapping(body or {}, path), path, parsed_tds)

    def access_rules(self) -> list[AccessRule]:
        rules = []
        for i, raw in enumerate(self.seq(self.topo.doc.get("access"), "access")):
            path = f"access[{i}]"
            rule = self.mapping(raw, path)
            self.keys(rule, {"deny", "principal", "resource"}, path)
            if not isinstance(rule.get("deny"), str):
                raise self.fail(
                    _join(path, "deny"), "expected an action such as ecs:ExecuteCommand"
                )
            for key in ("principal", "resource"):
                if not isinstance(rule.get(key, "*"), str):
                    raise self.fail(_join(path, key), "expected a string")
            rules.append(
                AccessRule(rule["deny"], rule.get("principal", "*"), rule.get("resource", "*"))
            )
        return rules

    def task_definition(
        self, raw: Any, path: str
    ) -> tuple[dict[str, Any], dict[str, ContainerSandbox], str]:
        td = self.mapping(raw, path)
        sandboxes: dict[str, ContainerSandbox] = {}
        cleaned = dict(td)
        defs = []
        for i, c in enumerate(
            self.seq(td.get("containerDefinitions"), _join(path, "containerDefinitions"))
        ):
            cpath = f"{path}.containerDefinitions[{i}]"
            cdef = self.mapping(c, cpath)
            sb_raw = cdef.get("sandbox")
            defs.append({k: v for k, v in cdef.items() if k != "sandbox"})
            if sb_raw is not None and "name" in cdef:
                sandboxes[str(cdef["name"])] = self.container_sandbox(
                    sb_raw, _join(cpath, "sandbox")
                )
        cleaned["containerDefinitions"] = defs
        params = self.ecs_input(cleaned, "RegisterTaskDefinition", path, set())
        return params, sandboxes, path

    def container_sandbox(self, raw: Any, path: str) -> ContainerSandbox:
        sb = self.mapping(raw or {}, path)
        self.keys(sb, _CONTAINER_SANDBOX, path)
        out = ContainerSandbox()
        if "main" in sb and sb["main"] is not None:
            main = sb["main"]
            if not isinstance(main, list) or not main or not all(isinstance(a, str) for a in main):
                raise self.fail(_join(path, "main"), "expected a non-empty list of strings (argv)")
            out.main = list(main)
        if "agent" in sb:
            if sb["agent"] not in AGENT_STATUSES:
                raise self.fail(_join(path, "agent"), f"must be one of {', '.join(AGENT_STATUSES)}")
            out.agent = sb["agent"]
        for key, attr in (("ssmConnected", "ssm_connected"), ("distroless", "distroless")):
            if key in sb:
                if not isinstance(sb[key], bool):
                    raise self.fail(_join(path, key), "expected a boolean")
                setattr(out, attr, sb[key])
        return out

    def task_sandbox(self, raw: Any, path: str) -> dict[str, Any]:
        sb = self.mapping(raw or {}, path)
        self.keys(sb, _TASK_SANDBOX, path)
        agent = sb.get("agent")
        if agent is not None:
            values = agent.values() if isinstance(agent, dict) else [agent]
            if any(v not in AGENT_STATUSES for v in values):
                raise self.fail(_join(path, "agent"), f"must be one of {', '.join(AGENT_STATUSES)}")
        if "lastStatus" in sb and sb["lastStatus"] not in ("RUNNING", "STOPPED"):
            raise self.fail(_join(path, "lastStatus"), "must be RUNNING or STOPPED")
        for key in ("enableExecuteCommand",):
            if key in sb and not isinstance(sb[key], bool):
                raise self.fail(_join(path, key), "expected a boolean")
        if "exitCode" in sb and not isinstance(sb["exitCode"], int):
            raise self.fail(_join(path, "exitCode"), "expected an integer")
        return sb

    def region(
        self,
        name: str,
        body: dict[str, Any],
        path: str,
        task_defs: list[tuple[dict[str, Any], dict[str, ContainerSandbox], str]],
    ) -> None:
        self.keys(body, _REGION_KEYS, path)
        self.world.region_for_write(name)
        for i, raw in enumerate(self.seq(body.get("kmsKeys"), _join(path, "kmsKeys"))):
            kpath = f"{path}.kmsKeys[{i}]"
            key = self.mapping(raw, kpath)
            self.keys(key, {"alias", "description"}, kpath)
            try:
                kms.create_key(self.world, name, key.get("alias"), str(key.get("description", "")))
            except ApiError as exc:
                raise self.fail(kpath, exc.message) from None
        for params, sandboxes, tpath in task_defs:
            try:
                self.world.register_task_definition(name, params, self.principal, sandboxes)
            except ApiError as exc:
                raise self.fail(tpath, exc.message) from None
        for i, raw in enumerate(self.seq(body.get("clusters"), _join(path, "clusters"))):
            self.cluster(name, raw, f"{path}.clusters[{i}]")

    def cluster(self, region: str, raw: Any, path: str) -> None:
        body = self.mapping(raw, path)
        params = self.ecs_input(body, "CreateCluster", path, {"services", "tasks", "sandbox"})
        if params.get("clusterName") is None:
            raise self.fail(path, "missing required field 'clusterName'")
        if params["clusterName"] in self.world.region(region).clusters:
            raise self.fail(_join(path, "clusterName"), "duplicate cluster name")
        sb = self.mapping(body.get("sandbox") or {}, _join(path, "sandbox"))
        self.keys(sb, {"cidr"}, _join(path, "sandbox"))
        try:
            cluster = self.world.create_cluster(region, params, cidr=sb.get("cidr"))
        except ApiError as exc:
            raise self.fail(_join(path, "sandbox.cidr"), exc.message) from None
        for i, raw_service in enumerate(self.seq(body.get("services"), _join(path, "services"))):
            spath = f"{path}.services[{i}]"
            service = self.mapping(raw_service, spath)
            params = self.ecs_input(service, "CreateService", spath, {"sandbox"})
            params["cluster"] = cluster.name
            sb = self.mapping(service.get("sandbox") or {}, _join(spath, "sandbox"))
            self.keys(sb, {"taskOverrides"}, _join(spath, "sandbox"))
            overrides: dict[int, dict[str, Any]] = {}
            opath = _join(spath, "sandbox.taskOverrides")
            for index, value in self.mapping(sb.get("taskOverrides") or {}, opath).items():
                if not isinstance(index, int) or index < 0:
                    raise self.fail(_join(opath, index), "keys are task indexes (0, 1, ...)")
                overrides[index] = self.task_sandbox(value, _join(opath, index))
            try:
                made = self.world.create_service(region, cluster, params, overrides)
            except ApiError as exc:
                raise self.fail(spath, exc.message) from None
            self._apply_exec_overrides(made.tasks, overrides)
            self.tasks.extend(made.tasks)
        for i, raw_task in enumerate(self.seq(body.get("tasks"), _join(path, "tasks"))):
            tpath = f"{path}.tasks[{i}]"
            task = self.mapping(raw_task, tpath)
            params = self.ecs_input(task, "RunTask", tpath, {"sandbox"})
            params["cluster"] = cluster.name
            count = params.get("count", 1)
            if not 1 <= count <= 10:
                raise self.fail(_join(tpath, "count"), "must be between 1 and 10")
            sb = self.task_sandbox(task.get("sandbox"), _join(tpath, "sandbox"))
            try:
                made_tasks = self.world.run_task(region, cluster, params, sb)
            except ApiError as exc:
                raise self.fail(tpath, exc.message) from None
            self._apply_exec_overrides(made_tasks, dict.fromkeys(range(len(made_tasks)), sb))
            self.tasks.extend(made_tasks)

    @staticmethod
    def _apply_exec_overrides(tasks: list[Task], overrides: dict[int, dict[str, Any]]) -> None:
        # enableExecuteCommand per task (the generator's --mix) is a sandbox override: ECS sets
        # it per service or RunTask, so it is applied after the task exists.
        for i, task in enumerate(tasks):
            value = overrides.get(i, {}).get("enableExecuteCommand")
            if isinstance(value, bool):
                task.enable_exec = value


@dataclass
class Built:
    world: World
    access: list[AccessRule]
    tasks: list[Task]


def build(topo: Topology, world: World) -> Built:
    """Populate ``world`` from ``topo``; TopologyError names file:line:col and the path."""
    principal = f"arn:aws:iam::{topo.doc.get('account', DEFAULT_ACCOUNT)}:user/sandbox"
    builder = _Builder(topo, world, principal)
    builder.build()
    return Built(world, builder.access_rules(), builder.tasks)

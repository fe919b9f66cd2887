"""The regional state (clusters, services, task definitions, tasks) and the rules that change it.

Everything here is plain data plus the few operations that mutate it: CreateCluster,
RegisterTaskDefinition, CreateService, RunTask and the two halves of StopTask. The ECS API
(``ecs_api``) and the topology loader (``topology``) both go through these, so a topology
builds exactly what the API calls would build (docs/sandbox.md §10). Nothing here does I/O, and
reads never change state (docs/sandbox.md §3).
"""

from __future__ import annotations

import bisect
import ipaddress
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_CIDR = "10.0.0.0/16"
AZ_SUFFIXES = ("a", "b", "c")
AGENT_STATUSES = ("PENDING", "RUNNING", "STOPPED")
# docs/sandbox.md §4: stopped tasks stay listable and describable for the retention period.
DEFAULT_STOPPED_RETENTION = 3600.0


class ApiError(Exception):
    """An AWS API error: ``code`` is ``__type`` (or the XML ``Code``), ``status`` the HTTP one."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterException", message)


def cluster_not_found() -> ApiError:
    # docs/sandbox.md §4: wording is (model).
    return ApiError("ClusterNotFoundException", "Cluster not found.")


@dataclass(slots=True)
class ContainerSandbox:
    """A container definition's ``sandbox:`` block (docs/sandbox.md §10), after task overrides."""

    main: list[str] | None = None
    agent: str = "RUNNING"
    ssm_connected: bool = True
    distroless: bool = False

    def copy(self) -> ContainerSandbox:
        return ContainerSandbox(
            list(self.main) if self.main else None, self.agent, self.ssm_connected, self.distroless
        )


@dataclass(slots=True, eq=False)
class TaskDefinition:
    family: str
    revision: int
    arn: str
    region: str
    params: dict[str, Any]
    tags: list[dict[str, str]]
    sandbox: dict[str, ContainerSandbox]
    registered_at: float
    registered_by: str
    status: str = "ACTIVE"

    @property
    def network_mode(self) -> str:
        mode = self.params.get("networkMode")
        if mode:
            return str(mode)
        # ECS: Fargate-only definitions must be awsvpc; EC2 defaults to bridge.
        return "awsvpc" if self.requires == ["FARGATE"] else "bridge"

    @property
    def requires(self) -> list[str]:
        return list(self.params.get("requiresCompatibilities") or [])

    @property
    def container_defs(self) -> list[dict[str, Any]]:
        defs: list[dict[str, Any]] = self.params["containerDefinitions"]
        return defs


@dataclass(slots=True)
class Eni:
    attachment_id: str
    eni_id: str
    subnet_id: str
    mac: str
    ip: str
    dns: str


@dataclass(slots=True, eq=False)
class Container:
    task: Task
    name: str
    arn: str
    image: str
    image_digest: str
    runtime_id: str
    definition: dict[str, Any]
    sandbox: ContainerSandbox
    cpu: str
    memory: str | None
    memory_reservation: str | None
    environment: dict[str, str]
    last_status: str = "RUNNING"
    health_status: str = "UNKNOWN"
    exit_code: int | None = None
    agent_started_at: float = 0.0

    @property
    def agent_status(self) -> str:
        return self.sandbox.agent

    @property
    def target_id(self) -> str:
        # docs/sandbox.md §3: the SSM target, as the AWS CLI builds it.
        return f"ecs:{self.task.cluster.name}_{self.task.id}_{self.runtime_id}"

    @property
    def essential(self) -> bool:
        return bool(self.definition.get("essential", True))


@dataclass(slots=True, eq=False)
class Task:
    id: str
    arn: str
    cluster: Cluster
    task_def: TaskDefinition
    launch_type: str
    group: str
    started_by: str | None
    enable_exec: bool
    availability_zone: str
    cpu: str
    memory: str
    created_at: float
    platform_version: str | None
    service: Service | None
    eni: Eni | None
    container_instance_arn: str | None
    overrides: dict[str, Any]
    tags: list[dict[str, str]]
    containers: list[Container] = field(default_factory=list)
    last_status: str = "RUNNING"
    desired_status: str = "RUNNING"
    version: int = 3
    stop_code: str | None = None
    stopped_reason: str | None = None
    stopping_at: float | None = None
    stopped_at: float | None = None

    @property
    def sort_key(self) -> tuple[float, str]:
        return (self.created_at, self.arn)

    @property
    def region(self) -> str:
        return self.cluster.region

    def container(self, name: str) -> Container | None:
        for c in self.containers:
            if c.name == name:
                return c
        return None

    def visible(self, now: float, retention: float) -> bool:
        """Stopped tasks vanish from reads after the retention period (docs/sandbox.md §4)."""
        return self.stopped_at is None or now - self.stopped_at <= retention


def _task_key(t: Task) -> tuple[float, str]:
    return (t.created_at, t.arn)


@dataclass(slots=True, eq=False)
class Service:
    name: str
    arn: str
    cluster: Cluster
    task_def: TaskDefinition
    desired_count: int
    launch_type: str
    platform_version: str | None
    enable_exec: bool
    managed_tags: bool
    propagate_tags: str
    tags: list[dict[str, str]]
    created_at: float
    deployment_id: str
    scheduling_strategy: str
    network_configuration: dict[str, Any] | None
    tasks: list[Task] = field(default_factory=list)

    @property
    def sort_key(self) -> tuple[float, str]:
        return (self.created_at, self.arn)

    def count(self, status: str) -> int:
        return sum(1 for t in self.tasks if t.last_status == status)


@dataclass(slots=True, eq=False)
class Cluster:
    name: str
    arn: str
    region: str
    created_at: float
    tags: list[dict[str, str]]
    configuration: dict[str, Any] | None
    settings: list[dict[str, str]]
    cidr: ipaddress.IPv4Network
    services: dict[str, Service] = field(default_factory=dict)
    service_order: list[Service] = field(default_factory=list)
    tasks: dict[str, Task] = field(default_factory=dict)
    task_order: list[Task] = field(default_factory=list)
    container_instance_arn: str | None = None
    subnets: dict[str, str] = field(default_factory=dict)
    standalone_count: int = 0

    @property
    def sort_key(self) -> tuple[float, str]:
        return (self.created_at, self.arn)

    def add_task(self, task: Task) -> None:
        self.tasks[task.id] = task
        bisect.insort(self.task_order, task, key=_task_key)

    def count(self, status: str) -> int:
        return sum(1 for t in self.task_order if t.last_status == status)

    @property
    def kms_key_ref(self) -> str | None:
        conf = (self.configuration or {}).get("executeCommandConfiguration") or {}
        ref = conf.get("kmsKeyId")
        return str(ref) if ref else None


@dataclass(slots=True, eq=False)
class KmsKey:
    key_id: str
    arn: str
    region: str
    material: bytes
    aliases: list[str]
    created_at: float
    description: str = ""


@dataclass(slots=True, eq=False)
class Region:
    name: str
    clusters: dict[str, Cluster] = field(default_factory=dict)
    cluster_order: list[Cluster] = field(default_factory=list)
    task_defs: dict[str, list[TaskDefinition]] = field(default_factory=dict)
    kms_keys: dict[str, KmsKey] = field(default_factory=dict)
    kms_aliases: dict[str, str] = field(default_factory=dict)
    next_host: dict[str, int] = field(default_factory=dict)

    def availability_zones(self) -> list[str]:
        return [f"{self.name}{s}" for s in AZ_SUFFIXES]


def arn(region: str, account: str, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{region}:{account}:{resource}"


def private_dns_name(region: str, ip: str) -> str:
    # docs/sandbox.md §3: us-east-1 uses ec2.internal, every other region <region>.compute.internal.
    host = "ip-" + ip.replace(".", "-")
    return f"{host}.ec2.internal" if region == "us-east-1" else f"{host}.{region}.compute.internal"


def tags_from(value: Any) -> list[dict[str, str]]:
    """Tags as the ECS list form; the topology may also write a ``{key: value}`` map (§10)."""
    if isinstance(value, dict):
        return [{"key": str(k), "value": str(v)} for k, v in value.items()]
    return [{"key": t["key"], "value": t.get("value", "")} for t in value or []]


def merge_tags(*groups: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    merged: dict[str, str] = {}
    for group in groups:
        for t in group:
            merged[t["key"]] = t["value"]
    return [{"key": k, "value": v} for k, v in merged.items()]


class World:
    """Every region's state plus the seeded generator that names things."""

    def __init__(
        self,
        account: str = DEFAULT_ACCOUNT,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        retention: float = DEFAULT_STOPPED_RETENTION,
    ) -> None:
        self.account = account
        # docs/sandbox.md §3: IDs come from the seed when one is given, random otherwise.
        self.rng = random.Random(
            seed if seed is not None else random.SystemRandom().getrandbits(64)
        )
        self.clock = clock
        self.retention = retention
        self.regions: dict[str, Region] = {}
        self.iam_roles: list[str] = []
        self._last_time = 0.0
        self._empty = Region("")

    # -- naming ---------------------------------------------------------------------------

    def now(self) -> float:
        # Creation times never go backwards, so the pagination order is also creation order.
        t = max(self.clock(), self._last_time)
        self._last_time = t
        return t

    def hex_id(self, chars: int) -> str:
        return format(self.rng.getrandbits(chars * 4), f"0{chars}x")

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def digits(self, n: int) -> str:
        return str(self.rng.randrange(10 ** (n - 1), 10**n))

    # -- lookup ---------------------------------------------------------------------------

    def region(self, name: str) -> Region:
        """The region for reads: an absent region is empty and is not created (§2)."""
        return self.regions.get(name) or self._empty

    def region_for_write(self, name: str) -> Region:
        if name not in self.regions:
            self.regions[name] = Region(name)
        return self.regions[name]

    def find_cluster(self, region: str, ref: str | None) -> Cluster | None:
        """Exact name or ARN match; an omitted cluster means ``default`` (§4)."""
        name = ref or "default"
        if name.startswith("arn:"):
            prefix = arn(region, self.account, "ecs", "cluster/")
            if not name.startswith(prefix):
                return None
            name = name[len(prefix) :]
        return self.region(region).clusters.get(name)

    def find_task(self, cluster: Cluster, ref: str) -> Task | None:
        if ref.startswith("arn:"):
            prefix = arn(cluster.region, self.account, "ecs", f"task/{cluster.name}/")
            if not ref.startswith(prefix):
                return None
            ref = ref[len(prefix) :]
        task = cluster.tasks.get(ref)
        if task is None or not task.visible(self.clock(), self.retention):
            return None
        return task

    def find_service(self, cluster: Cluster, ref: str) -> Service | None:
        if ref.startswith("arn:"):
            prefix = arn(cluster.region, self.account, "ecs", f"service/{cluster.name}/")
            if not ref.startswith(prefix):
                return None
            ref = ref[len(prefix) :]
        return cluster.services.get(ref)

    def find_task_definition(self, region: str, ref: str) -> TaskDefinition | None:
        """``family`` (latest ACTIVE revision), ``family:rev`` or the ARN."""
        if ref.startswith("arn:"):
            prefix = arn(region, self.account, "ecs", "task-definition/")
            if not ref.startswith(prefix):
                return None
            ref = ref[len(prefix) :]
        family, _, rev = ref.partition(":")
        revisions = self.region(region).task_defs.get(family)
        if not revisions:
            return None
        if not rev:
            active = [td for td in revisions if td.status == "ACTIVE"]
            return active[-1] if active else None
        if not rev.isdigit():
            return None
        n = int(rev)
        return revisions[n - 1] if 1 <= n <= len(revisions) else None

    # -- mutations (the same code paths as the API) -------------------------------------------

    def create_cluster(
        self, region: str, params: dict[str, Any], cidr: str | None = None
    ) -> Cluster:
        reg = self.region_for_write(region)
        name = params.get("clusterName") or "default"
        existing = reg.clusters.get(name)
        if existing is not None:
            # ECS CreateCluster is idempotent on the name.
            return existing
        try:
            network = ipaddress.IPv4Network(cidr or DEFAULT_CIDR)
        except ValueError as exc:
            raise invalid(f"cidr: {exc}") from None
        cluster = Cluster(
            name=name,
            arn=arn(region, self.account, "ecs", f"cluster/{name}"),
            region=region,
            created_at=self.now(),
            tags=tags_from(params.get("tags")),
            configuration=params.get("configuration"),
            settings=list(
                params.get("settings") or [{"name": "containerInsights", "value": "disabled"}]
            ),
            cidr=network,
        )
        reg.clusters[name] = cluster
        bisect.insort(reg.cluster_order, cluster, key=lambda c: c.sort_key)
        return cluster

    def register_task_definition(
        self,
        region: str,
        params: dict[str, Any],
        principal: str,
        sandbox: dict[str, ContainerSandbox] | None = None,
    ) -> TaskDefinition:
        reg = self.region_for_write(region)
        family = params["family"]
        names = [c["name"] for c in params["containerDefinitions"]]
        if len(set(names)) != len(names):
            raise ApiError(
                "ClientException", "Container names must be unique within a task definition."
            )
        body = {k: v for k, v in params.items() if k != "tags"}
        revisions = reg.task_defs.setdefault(family, [])
        rev = len(revisions) + 1
        td = TaskDefinition(
            family=family,
            revision=rev,
            arn=arn(region, self.account, "ecs", f"task-definition/{family}:{rev}"),
            region=region,
            params=body,
            tags=tags_from(params.get("tags")),
            sandbox={n: (sandbox or {}).get(n) or ContainerSandbox() for n in names},
            registered_at=self.now(),
            registered_by=principal,
        )
        revisions.append(td)
        return td

    def create_service(
        self,
        region: str,
        cluster: Cluster,
        params: dict[str, Any],
        task_overrides: dict[int, dict[str, Any]] | None = None,
    ) -> Service:
        name = params["serviceName"]
        if name in cluster.services:
            raise invalid("Creation of service was not idempotent.")
        td = self.find_task_definition(region, params["taskDefinition"])
        if td is None:
            raise invalid("TaskDefinition not found.")
        launch_type = params.get("launchType") or _default_launch_type(td)
        service = Service(
            name=name,
            arn=arn(region, self.account, "ecs", f"service/{cluster.name}/{name}"),
            cluster=cluster,
            task_def=td,
            desired_count=int(params.get("desiredCount", 0)),
            launch_type=launch_type,
            platform_version=(params.get("platformVersion") or "1.4.0")
            if launch_type == "FARGATE"
            else None,
            enable_exec=bool(params.get("enableExecuteCommand", False)),
            managed_tags=bool(params.get("enableECSManagedTags", False)),
            propagate_tags=params.get("propagateTags") or "NONE",
            tags=tags_from(params.get("tags")),
            created_at=self.now(),
            # docs/sandbox.md §4: deployment id ecs-svc/<19 digits>; tasks carry it as startedBy.
            deployment_id="ecs-svc/" + self.digits(19),
            scheduling_strategy=params.get("schedulingStrategy") or "REPLICA",
            network_configuration=params.get("networkConfiguration"),
        )
        cluster.services[name] = service
        bisect.insort(cluster.service_order, service, key=lambda s: s.sort_key)
        overrides = task_overrides or {}
        for i in range(service.desired_count):
            self._start_task(
                cluster,
                td,
                launch_type=launch_type,
                platform_version=service.platform_version,
                group=f"service:{name}",
                started_by=service.deployment_id,
                enable_exec=service.enable_exec,
                managed_tags=service.managed_tags,
                propagate=service.propagate_tags,
                tags=[],
                overrides={},
                service=service,
                index=i,
                sandbox=overrides.get(i) or {},
            )
        return service

    def run_task(
        self,
        region: str,
        cluster: Cluster,
        params: dict[str, Any],
        sandbox: dict[str, Any] | None = None,
    ) -> list[Task]:
        td = self.find_task_definition(region, params["taskDefinition"])
        if td is None:
            raise invalid("TaskDefinition not found.")
        count = int(params.get("count", 1))
        launch_type = params.get("launchType") or _default_launch_type(td)
        if launch_type == "FARGATE" and td.network_mode != "awsvpc":
            raise invalid("Network Configuration must be provided when networkMode 'awsvpc'.")
        tasks = []
        for _ in range(count):
            index = cluster.standalone_count
            cluster.standalone_count += 1
            tasks.append(
                self._start_task(
                    cluster,
                    td,
                    launch_type=launch_type,
                    platform_version=(params.get("platformVersion") or "1.4.0")
                    if launch_type == "FARGATE"
                    else None,
                    group=params.get("group") or f"family:{td.family}",
                    started_by=params.get("startedBy"),
                    enable_exec=bool(params.get("enableExecuteCommand", False)),
                    managed_tags=bool(params.get("enableECSManagedTags", False)),
                    propagate=params.get("propagateTags") or "NONE",
                    tags=tags_from(params.get("tags")),
                    overrides=params.get("overrides") or {},
                    service=None,
                    index=index,
                    sandbox=sandbox or {},
                )
            )
        return tasks

    def _start_task(
        self,
        cluster: Cluster,
        td: TaskDefinition,
        *,
        launch_type: str,
        platform_version: str | None,
        group: str,
        started_by: str | None,
        enable_exec: bool,
        managed_tags: bool,
        propagate: str,
        tags: list[dict[str, str]],
        overrides: dict[str, Any],
        service: Service | None,
        index: int,
        sandbox: dict[str, Any],
    ) -> Task:
        region = self.regions[cluster.region]
        task_id = self.hex_id(32)
        now = self.now()
        zones = region.availability_zones()
        fargate = launch_type == "FARGATE"
        eni: Eni | None = None
        instance_arn: str | None = None
        if fargate or td.network_mode == "awsvpc":
            az = str(sandbox.get("availabilityZone") or zones[index % len(zones)])
            eni = self._allocate_eni(region, cluster, az)
        else:
            az = str(sandbox.get("availabilityZone") or zones[0])
        if not fargate:
            if cluster.container_instance_arn is None:
                cluster.container_instance_arn = arn(
                    cluster.region,
                    self.account,
                    "ecs",
                    f"container-instance/{cluster.name}/{self.hex_id(32)}",
                )
            instance_arn = cluster.container_instance_arn
        task_tags = list(tags)
        if propagate == "SERVICE" and service is not None:
            task_tags = merge_tags(service.tags, task_tags)
        elif propagate == "TASK_DEFINITION":
            task_tags = merge_tags(td.tags, task_tags)
        if managed_tags:
            managed = [{"key": "aws:ecs:clusterName", "value": cluster.name}]
            if service is not None:
                managed.append({"key": "aws:ecs:serviceName", "value": service.name})
            task_tags = merge_tags(task_tags, managed)
        container_overrides = {
            o["name"]: o for o in overrides.get("containerOverrides") or [] if "name" in o
        }
        cpu, memory = _task_size(td, overrides)
        task = Task(
            id=task_id,
            arn=arn(cluster.region, self.account, "ecs", f"task/{cluster.name}/{task_id}"),
            cluster=cluster,
            task_def=td,
            launch_type=launch_type,
            group=group,
            started_by=started_by,
            enable_exec=enable_exec,
            availability_zone=az,
            cpu=cpu,
            memory=memory,
            created_at=now,
            platform_version=platform_version,
            service=service,
            eni=eni,
            container_instance_arn=instance_arn,
            overrides={
                "containerOverrides": [
                    container_overrides.get(c["name"], {"name": c["name"]})
                    for c in td.container_defs
                ],
                "inferenceAcceleratorOverrides": [],
                **{k: v for k, v in overrides.items() if k in ("cpu", "memory")},
            },
            tags=task_tags,
        )
        agent_override = sandbox.get("agent")
        ssm_override = sandbox.get("ssmConnected")
        for cdef in td.container_defs:
            name = cdef["name"]
            sb = td.sandbox[name].copy()
            if isinstance(agent_override, str):
                sb.agent = agent_override
            elif isinstance(agent_override, dict) and name in agent_override:
                sb.agent = str(agent_override[name])
            if isinstance(ssm_override, bool):
                sb.ssm_connected = ssm_override
            elif isinstance(ssm_override, dict) and name in ssm_override:
                sb.ssm_connected = bool(ssm_override[name])
            env = {e["name"]: e.get("value", "") for e in cdef.get("environment") or []}
            override = container_overrides.get(name) or {}
            env.update({e["name"]: e.get("value", "") for e in override.get("environment") or []})
            runtime_id = (
                f"{task_id}-{self.digits(10)}" if fargate else self.hex_id(64)
            )  # docs/sandbox.md §3: Fargate <taskId>-<10 digits>, EC2 64 hex characters
            task.containers.append(
                Container(
                    task=task,
                    name=name,
                    arn=arn(
                        cluster.region,
                        self.account,
                        "ecs",
                        f"container/{cluster.name}/{task_id}/{self.uuid()}",
                    ),
                    image=cdef.get("image", ""),
                    image_digest="sha256:" + self.hex_id(64),
                    runtime_id=runtime_id,
                    definition=cdef,
                    sandbox=sb,
                    cpu=str(override.get("cpu", cdef.get("cpu", 0))),
                    memory=_opt_str(override.get("memory", cdef.get("memory"))),
                    memory_reservation=_opt_str(
                        override.get("memoryReservation", cdef.get("memoryReservation"))
                    ),
                    environment=env,
                    agent_started_at=now,
                )
            )
        cluster.add_task(task)
        if service is not None:
            bisect.insort(service.tasks, task, key=_task_key)
        if sandbox.get("lastStatus") == "STOPPED":
            self.begin_stop(
                task,
                str(sandbox.get("stoppedReason") or "Task stopped by user"),
                str(sandbox.get("stopCode") or "UserInitiated"),
            )
            self.finish_stop(task, exit_code=int(sandbox.get("exitCode", 0)))
        return task

    def _allocate_eni(self, region: Region, cluster: Cluster, az: str) -> Eni:
        key = str(cluster.cidr)
        # Start at x.x.1.10 so addresses look like a real VPC's, and never reuse one (§3).
        host = region.next_host.get(key, 256 + 10)
        if host >= cluster.cidr.num_addresses - 1:
            raise ApiError("ServerException", f"sandbox: CIDR {key} has no free addresses", 500)
        region.next_host[key] = host + 1
        ip = str(cluster.cidr.network_address + host)
        subnet = cluster.subnets.get(az)
        if subnet is None:
            subnet = cluster.subnets[az] = "subnet-" + self.hex_id(17)
        mac = "0a:" + ":".join(format(self.rng.getrandbits(8), "02x") for _ in range(5))
        return Eni(
            attachment_id=self.uuid(),
            eni_id="eni-" + self.hex_id(17),
            subnet_id=subnet,
            mac=mac,
            ip=ip,
            dns=private_dns_name(cluster.region, ip),
        )

    def begin_stop(self, task: Task, reason: str, code: str) -> bool:
        """First half of StopTask (docs/sandbox.md §8.4): desired STOPPED, last STOPPING.

        Returns False when the task was already stopping, so the caller starts no second stop.
        """
        if task.desired_status == "STOPPED":
            return False
        task.desired_status = "STOPPED"
        task.last_status = "STOPPING"
        task.stop_code = code
        task.stopped_reason = reason
        task.stopping_at = self.now()
        # ECS documents that StopTask deletes the task's tags.
        task.tags = []
        task.version += 1
        return True

    def finish_stop(self, task: Task, exit_code: int | None = None) -> None:
        task.last_status = "STOPPED"
        task.stopped_at = self.now()
        task.version += 1
        for c in task.containers:
            c.last_status = "STOPPED"
            if c.exit_code is None:
                c.exit_code = exit_code
            if task.enable_exec:
                c.sandbox.agent = "STOPPED"


def _default_launch_type(td: TaskDefinition) -> str:
    return "FARGATE" if "FARGATE" in td.requires and "EC2" not in td.requires else "EC2"


def _task_size(td: TaskDefinition, overrides: dict[str, Any]) -> tuple[str, str]:
    cpu = overrides.get("cpu") or td.params.get("cpu")
    memory = overrides.get("memory") or td.params.get("memory")
    if cpu is None:
        cpu = sum(int(c.get("cpu", 0)) for c in td.container_defs)
    if memory is None:
        memory = sum(
            int(c.get("memory") or c.get("memoryReservation") or 0) for c in td.container_defs
        )
    return str(cpu), str(memory)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)

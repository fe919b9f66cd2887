"""The sandbox ECS API: the operations clients call, with AWS's fields and errors.

See docs/sandbox.md §4.

Input has already passed throttling and botocore's ParamValidator (server.py); this module
adds the checks the validator does not make (ranges, limits, filter combinations) and the
semantics: exact name matching, MISSING failures, pagination and ExecuteCommand's checks in
the order of §4.2.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from ecsexec.sandbox.model import (
    ApiError,
    Cluster,
    Container,
    Service,
    Task,
    TaskDefinition,
    arn,
    cluster_not_found,
    invalid,
)
from ecsexec.sandbox.runtime import Call, Handler, Runtime

# docs/sandbox.md §4.2 step 8: the wording users report (2024), typographic apostrophe included.
EXEC_NOT_ENABLED = (
    "The execute command failed because execute command was not enabled when the task was run "
    "or the execute command agent isn’t running. Wait and try again or run a new task with "
    "execute command enabled and try again."
)
# docs/sandbox.md §4.2 step 9: the exact body AWS returns.
TARGET_NOT_CONNECTED = "The execute command failed due to an internal error. Try again later."
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONTAINER_DEFAULTS: dict[str, Any] = {
    "cpu": 0,
    "portMappings": [],
    "essential": True,
    "environment": [],
    "mountPoints": [],
    "volumesFrom": [],
    "systemControls": [],
}


def _ts(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _max_results(p: dict[str, Any], default: int, top: int = 100) -> int:
    n = p.get("maxResults")
    if n is None:
        return default
    if not 1 <= n <= top:
        raise invalid(f"maxResults must be between 1 and {top}.")
    return int(n)


def _name_of(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


class EcsApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.handlers: dict[str, Handler] = {
            "ListClusters": self.list_clusters,
            "DescribeClusters": self.describe_clusters,
            "ListServices": self.list_services,
            "DescribeServices": self.describe_services,
            "ListTasks": self.list_tasks,
            "DescribeTasks": self.describe_tasks,
            "DescribeTaskDefinition": self.describe_task_definition,
            "ListTagsForResource": self.list_tags_for_resource,
            "ExecuteCommand": self.execute_command,
            "CreateCluster": self.create_cluster,
            "RegisterTaskDefinition": self.register_task_definition,
            "CreateService": self.create_service,
            "RunTask": self.run_task,
            "StopTask": self.stop_task,
        }

    # -- helpers ----------------------------------------------------------------------------

    def _cluster(self, call: Call, ref: str | None) -> Cluster:
        cluster = self.rt.world.find_cluster(call.region, ref)
        if cluster is None:
            raise cluster_not_found()
        return cluster

    def _limit(self, requested: int) -> int:
        # short_pages (docs/sandbox.md §12): a page shorter than maxResults with a nextToken.
        if requested > 1 and self.rt.api_faults.fire("short_pages", self.rt.api_faults.short_pages):
            return max(1, int(self.rt.api_faults.draw("short_pages:size") * requested))
        return requested

    def _visible(self, task: Task) -> bool:
        return task.visible(self.rt.world.clock(), self.rt.world.retention)

    # -- rendering --------------------------------------------------------------------------

    def render_cluster(self, c: Cluster, include: list[str]) -> dict[str, Any]:
        now = self.rt.world.clock()
        visible = [t for t in c.task_order if t.visible(now, self.rt.world.retention)]
        out: dict[str, Any] = {
            "clusterArn": c.arn,
            "clusterName": c.name,
            "status": "ACTIVE",
            "registeredContainerInstancesCount": 1 if c.container_instance_arn else 0,
            "runningTasksCount": sum(1 for t in visible if t.last_status == "RUNNING"),
            "pendingTasksCount": sum(1 for t in visible if t.last_status == "PENDING"),
            "activeServicesCount": len(c.services),
        }
        # docs/sandbox.md §4: configuration only with CONFIGURATIONS, tags only with TAGS.
        if "CONFIGURATIONS" in include and c.configuration:
            out["configuration"] = c.configuration
        if "TAGS" in include:
            out["tags"] = list(c.tags)
        if "SETTINGS" in include:
            out["settings"] = list(c.settings)
        if "STATISTICS" in include:
            out["statistics"] = []
        if "ATTACHMENTS" in include:
            out["attachments"] = []
        return out

    def render_service(self, s: Service, include: list[str]) -> dict[str, Any]:
        running = s.count("RUNNING")
        deployment: dict[str, Any] = {
            "id": s.deployment_id,
            "status": "PRIMARY",
            "taskDefinition": s.task_def.arn,
            "desiredCount": s.desired_count,
            "pendingCount": 0,
            "runningCount": running,
            "failedTasks": 0,
            "createdAt": _ts(s.created_at),
            "updatedAt": _ts(s.created_at),
            "launchType": s.launch_type,
            "rolloutState": "COMPLETED",
            "rolloutStateReason": f"ECS deployment {s.deployment_id} completed.",
        }
        out: dict[str, Any] = {
            "serviceArn": s.arn,
            "serviceName": s.name,
            "clusterArn": s.cluster.arn,
            "status": "ACTIVE",
            "desiredCount": s.desired_count,
            "runningCount": running,
            "pendingCount": 0,
            "launchType": s.launch_type,
            "taskDefinition": s.task_def.arn,
            "deployments": [deployment],
            "createdAt": _ts(s.created_at),
            "schedulingStrategy": s.scheduling_strategy,
            "enableExecuteCommand": s.enable_exec,
            "enableECSManagedTags": s.managed_tags,
            "propagateTags": s.propagate_tags,
        }
        if s.platform_version:
            out["platformVersion"] = deployment["platformVersion"] = s.platform_version
            out["platformFamily"] = deployment["platformFamily"] = "Linux"
        if s.network_configuration:
            out["networkConfiguration"] = deployment["networkConfiguration"] = (
                s.network_configuration
            )
        if "TAGS" in include:
            out["tags"] = list(s.tags)
        return out

    def render_container(self, c: Container) -> dict[str, Any]:
        t = c.task
        out: dict[str, Any] = {
            "containerArn": c.arn,
            "taskArn": t.arn,
            "name": c.name,
            "image": c.image,
            "imageDigest": c.image_digest,
            "runtimeId": c.runtime_id,
            "lastStatus": c.last_status,
            "healthStatus": c.health_status,
            "cpu": c.cpu,
        }
        if c.memory is not None:
            out["memory"] = c.memory
        if c.memory_reservation is not None:
            out["memoryReservation"] = c.memory_reservation
        if c.exit_code is not None and c.last_status == "STOPPED":
            out["exitCode"] = c.exit_code
        if t.eni is not None:
            out["networkInterfaces"] = [
                {"attachmentId": t.eni.attachment_id, "privateIpv4Address": t.eni.ip}
            ]
        if t.enable_exec:
            # docs/sandbox.md §4: managedAgents only when enableExecuteCommand is true.
            out["managedAgents"] = [
                {
                    "lastStartedAt": _ts(c.agent_started_at),
                    "name": "ExecuteCommandAgent",
                    "lastStatus": c.agent_status,
                }
            ]
        return out

    def render_task(self, t: Task, include: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "taskArn": t.arn,
            "clusterArn": t.cluster.arn,
            "taskDefinitionArn": t.task_def.arn,
            "lastStatus": t.last_status,
            "desiredStatus": t.desired_status,
            "launchType": t.launch_type,
            "availabilityZone": t.availability_zone,
            "group": t.group,
            "enableExecuteCommand": t.enable_exec,
            "cpu": t.cpu,
            "memory": t.memory,
            "createdAt": _ts(t.created_at),
            "pullStartedAt": _ts(t.created_at),
            "pullStoppedAt": _ts(t.created_at),
            "startedAt": _ts(t.created_at),
            "connectivity": "CONNECTED",
            "connectivityAt": _ts(t.created_at),
            "healthStatus": "UNKNOWN",
            "version": t.version,
            "overrides": t.overrides,
            "containers": [self.render_container(c) for c in t.containers],
        }
        if t.started_by is not None:
            out["startedBy"] = t.started_by
        if t.launch_type == "FARGATE":
            out["capacityProviderName"] = "FARGATE"
            out["platformVersion"] = t.platform_version or "1.4.0"
            out["platformFamily"] = "Linux"
        if t.container_instance_arn:
            out["containerInstanceArn"] = t.container_instance_arn
        if t.eni is not None:
            e = t.eni
            out["attachments"] = [
                {
                    "id": e.attachment_id,
                    "type": "ElasticNetworkInterface",
                    "status": "ATTACHED",
                    "details": [
                        {"name": "subnetId", "value": e.subnet_id},
                        {"name": "networkInterfaceId", "value": e.eni_id},
                        {"name": "macAddress", "value": e.mac},
                        {"name": "privateDnsName", "value": e.dns},
                        # Capital "IPv4": that is how ECS spells it in attachment details.
                        {"name": "privateIPv4Address", "value": e.ip},
                    ],
                }
            ]
        if t.stopping_at is not None:
            out["stopCode"] = t.stop_code
            out["stoppedReason"] = t.stopped_reason
            out["stoppingAt"] = _ts(t.stopping_at)
        if t.stopped_at is not None:
            out["stoppedAt"] = _ts(t.stopped_at)
            out["executionStoppedAt"] = _ts(t.stopped_at)
        if "TAGS" in include:
            out["tags"] = list(t.tags)
        return out

    def render_task_definition(self, td: TaskDefinition) -> dict[str, Any]:
        p = td.params
        out: dict[str, Any] = {
            "taskDefinitionArn": td.arn,
            # ECS fills in defaults for container definitions (§4 DescribeTaskDefinition).
            "containerDefinitions": [{**CONTAINER_DEFAULTS, **c} for c in td.container_defs],
            "family": td.family,
            "revision": td.revision,
            "volumes": p.get("volumes") or [],
            "status": td.status,
            "placementConstraints": p.get("placementConstraints") or [],
            "compatibilities": ["EC2", "FARGATE"]
            if td.network_mode == "awsvpc" and p.get("cpu") and p.get("memory")
            else ["EC2"],
            "networkMode": td.network_mode,
            "registeredAt": _ts(td.registered_at),
            "registeredBy": td.registered_by,
        }
        for key in (
            "taskRoleArn",
            "executionRoleArn",
            "requiresCompatibilities",
            "cpu",
            "memory",
            "runtimePlatform",
            "pidMode",
            "ipcMode",
            "ephemeralStorage",
        ):
            if p.get(key) is not None:
                out[key] = p[key]
        return out

    # -- discovery --------------------------------------------------------------------------

    async def list_clusters(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        self.rt.authorize(call, "*")
        limit = self._limit(_max_results(p, 100))
        items, token = self.rt.pager.page(
            self.rt.world.region(call.region).cluster_order,
            lambda c: c.sort_key,
            lambda c: True,
            scope={"op": "ListClusters", "region": call.region},
            token=p.get("nextToken"),
            limit=limit,
        )
        out: dict[str, Any] = {"clusterArns": [c.arn for c in items]}
        if token:
            out["nextToken"] = token
        return out

    async def describe_clusters(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        refs = p.get("clusters") or ["default"]
        if len(refs) > 100:
            raise invalid("Clusters cannot have more than 100 elements")
        include = p.get("include") or []
        clusters: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for ref in refs:
            c = self.rt.world.find_cluster(call.region, ref)
            if c is None:
                missing = ref if ref.startswith("arn:") else self._arn(call, f"cluster/{ref}")
                failures.append({"arn": missing, "reason": "MISSING"})
                continue
            self.rt.authorize(call, c.arn)
            clusters.append(self.render_cluster(c, include))
        return {"clusters": clusters, "failures": failures}

    async def list_services(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(call, p.get("cluster"))
        self.rt.authorize(call, cluster.arn)
        # docs/sandbox.md §4: ListServices defaults to 10 per page, unlike the other List calls.
        limit = self._limit(_max_results(p, 10))
        launch, strategy = p.get("launchType"), p.get("schedulingStrategy")
        items, token = self.rt.pager.page(
            cluster.service_order,
            lambda s: s.sort_key,
            lambda s: (
                (launch is None or s.launch_type == launch)
                and (strategy is None or s.scheduling_strategy == strategy)
            ),
            scope={"op": "ListServices", "cluster": cluster.arn, "l": launch, "s": strategy},
            token=p.get("nextToken"),
            limit=limit,
        )
        out: dict[str, Any] = {"serviceArns": [s.arn for s in items]}
        if token:
            out["nextToken"] = token
        return out

    async def describe_services(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(call, p.get("cluster"))
        refs = p["services"]
        if len(refs) > 10:
            raise invalid("Services cannot have more than 10 elements")
        include = p.get("include") or []
        services: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for ref in refs:
            s = self.rt.world.find_service(cluster, ref)
            if s is None:
                missing = (
                    ref
                    if ref.startswith("arn:")
                    else self._arn(call, f"service/{cluster.name}/{ref}")
                )
                failures.append({"arn": missing, "reason": "MISSING"})
                continue
            self.rt.authorize(call, s.arn)
            services.append(self.render_service(s, include))
        return {"services": services, "failures": failures}

    async def list_tasks(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(call, p.get("cluster"))
        self.rt.authorize(call, cluster.arn)
        limit = self._limit(_max_results(p, 100))
        started_by = p.get("startedBy")
        others = ("family", "serviceName", "containerInstance", "launchType", "daemonName")
        if started_by is not None and any(p.get(k) is not None for k in others):
            # ECS documents startedBy as having to be the only filter (*(model)* error).
            raise invalid("startedBy must be the only filter when it is specified.")
        candidates: list[Task] = cluster.task_order
        service_name = p.get("serviceName")
        if service_name is not None:
            service = self.rt.world.find_service(cluster, service_name)
            if service is None:
                raise ApiError("ServiceNotFoundException", "Service not found.")
            candidates = service.tasks
        desired = p.get("desiredStatus") or "RUNNING"
        family = p.get("family")
        launch = p.get("launchType")
        instance = p.get("containerInstance")
        now = self.rt.world.clock()
        retention = self.rt.world.retention

        def keep(t: Task) -> bool:
            return (
                t.desired_status == desired
                and (family is None or t.task_def.family == family)
                and (launch is None or t.launch_type == launch)
                and (started_by is None or t.started_by == started_by)
                and (
                    instance is None
                    or (t.container_instance_arn or "") == instance
                    or (t.container_instance_arn or "").endswith("/" + instance)
                )
                and t.visible(now, retention)
            )

        if desired == "PENDING" or p.get("daemonName") is not None:
            # Documented: PENDING never matches (tasks are listed RUNNING); no daemons here.
            return {"taskArns": []}
        scope = {
            "op": "ListTasks",
            "cluster": cluster.arn,
            **{k: p.get(k) for k in (*others, "startedBy", "desiredStatus")},
        }
        items, token = self.rt.pager.page(
            candidates,
            lambda t: t.sort_key,
            keep,
            scope=scope,
            token=p.get("nextToken"),
            limit=limit,
        )
        out: dict[str, Any] = {"taskArns": [t.arn for t in items]}
        if token:
            out["nextToken"] = token
        return out

    async def describe_tasks(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        refs = p["tasks"]
        if not refs:
            raise invalid("Tasks cannot be empty.")
        if len(refs) > 100:
            raise invalid("Tasks cannot have more than 100 elements")
        cluster = self._cluster(call, p.get("cluster"))
        self.rt.authorize(call, cluster.arn)
        include = p.get("include") or []
        tasks: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        seen: set[str] = set()
        for ref in refs:
            t = self.rt.world.find_task(cluster, ref)
            if t is None:
                missing = (
                    ref if ref.startswith("arn:") else self._arn(call, f"task/{cluster.name}/{ref}")
                )
                failures.append({"arn": missing, "reason": "MISSING"})
                continue
            if t.arn in seen:
                continue
            seen.add(t.arn)
            tasks.append(self.render_task(t, include))
        return {"tasks": tasks, "failures": failures}

    async def describe_task_definition(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        td = self.rt.world.find_task_definition(call.region, p["taskDefinition"])
        if td is None:
            raise ApiError("ClientException", "Unable to describe task definition.")
        self.rt.authorize(call, td.arn)
        out: dict[str, Any] = {"taskDefinition": self.render_task_definition(td)}
        if "TAGS" in (p.get("include") or []):
            out["tags"] = list(td.tags)
        return out

    async def list_tags_for_resource(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        ref = p["resourceArn"]
        self.rt.authorize(call, ref)
        tags = self._tags_of(call, ref)
        if tags is None:
            raise invalid("The specified resource could not be found.")
        return {"tags": tags}

    def _tags_of(self, call: Call, ref: str) -> list[dict[str, str]] | None:
        parts = ref.split(":", 5)
        if len(parts) != 6 or parts[:3] != ["arn", "aws", "ecs"]:
            return None
        if parts[3] != call.region or parts[4] != self.rt.world.account:
            return None
        kind, _, path = parts[5].partition("/")
        world = self.rt.world
        if kind == "task-definition":
            td = world.find_task_definition(call.region, ref)
            return list(td.tags) if td else None
        cluster_name, _, rest = path.partition("/")
        cluster = world.find_cluster(call.region, cluster_name) if cluster_name else None
        if cluster is None:
            return None
        if kind == "cluster" and not rest:
            return list(cluster.tags)
        if kind == "service" and rest:
            s = world.find_service(cluster, rest)
            return list(s.tags) if s else None
        if kind == "task" and rest:
            t = world.find_task(cluster, rest)
            return list(t.tags) if t else None
        return None

    def _arn(self, call: Call, resource: str) -> str:
        return arn(call.region, self.rt.world.account, "ecs", resource)

    # -- ExecuteCommand (§4.2) --------------------------------------------------------------

    async def execute_command(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        # Steps 1 (throttle) and 2 (input shape) already ran in the server.
        cluster_ref = p.get("cluster") or "default"
        task_ref = p["task"]
        cluster_name = _name_of(cluster_ref) if cluster_ref.startswith("arn:") else cluster_ref
        task_arn = (
            task_ref
            if task_ref.startswith("arn:")
            else self._arn(call, f"task/{cluster_name}/{task_ref}")
        )
        # 3. Access rules, on the task ARN the request names.
        self.rt.authorize(call, task_arn)
        # 4. Interactive is the only mode.
        if p["interactive"] is not True:
            raise invalid("Interactive is the only mode supported currently.")
        # 4a. No process argument can hold a NUL: refuse it here rather than open a session
        # whose agent cannot start the command (the client would wait out its timeout).
        if "\0" in p["command"]:
            raise invalid("The command contains a NUL character, which no command can hold.")
        # 5. Cluster.
        cluster = self._cluster(call, p.get("cluster"))
        # 6. Task (*(model)* wording).
        task = self.rt.world.find_task(cluster, task_ref)
        if task is None:
            raise invalid(f"The specified task {task_ref} was not found in cluster {cluster.name}.")
        # 7. Container selection (*(model)* wording).
        name = p.get("container")
        if name is None:
            if len(task.containers) > 1:
                raise invalid(
                    "The container name is required when the task has more than one container."
                )
            container = task.containers[0]
        else:
            found = task.container(name)
            if found is None:
                raise invalid(f"The container {name} was not found in task {task.id}.")
            container = found
        grant = self.open_session(task, container, p["command"])
        return {
            "clusterArn": cluster.arn,
            "containerArn": container.arn,
            "containerName": container.name,
            "interactive": True,
            "taskArn": task.arn,
            "session": {
                "sessionId": grant.session_id,
                "streamUrl": grant.stream_url,
                "tokenValue": grant.token_value,
            },
        }

    def open_session(self, task: Task, container: Container, command: str) -> Any:
        """Steps 8-10: start ``command`` in ``container`` (ExecuteCommand and SSM
        StartSession share them); returns the hub's grant."""
        # 8. Task running, exec enabled, agent running.
        if (
            task.last_status != "RUNNING"
            or task.desired_status != "RUNNING"
            or not task.enable_exec
            or container.agent_status != "RUNNING"
        ):
            raise invalid(EXEC_NOT_ENABLED)
        # 9. The SSM agent must be able to connect.
        if (
            not container.sandbox.ssm_connected
            or container.definition.get("readonlyRootFilesystem") is True
            or self.rt.api_faults.fire("tnc", self.rt.api_faults.tnc)
        ):
            raise ApiError("TargetNotConnectedException", TARGET_NOT_CONNECTED)
        hub = self.rt.hub
        if hub is None:
            raise ApiError("ServerException", "sandbox data plane is not available", 500)
        target = self.exec_target(container)
        # 10. Session limit (§11).
        limit = self.rt.config.session_limit
        if hub.active_sessions(task.arn, container.name) >= limit:
            if self.rt.config.session_limit_mode == "api":
                raise ApiError("TargetNotConnectedException", TARGET_NOT_CONNECTED)
            grant = hub.refuse_session(
                target,
                f"Session limit reached: this container allows at most {limit} concurrent "
                "sessions (sandbox --session-limit).",
            )
        else:
            try:
                grant = hub.start_session(target, command)
            except ApiError:
                raise
            except OSError as exc:
                # docs/sandbox.md §15: beyond capacity, ServerException naming the limit.
                raise ApiError(
                    "ServerException", f"sandbox capacity exhausted: {exc.strerror or exc}", 500
                ) from None
            except RuntimeError as exc:
                raise ApiError("ServerException", str(exc), 500) from None
        return grant

    def scratch_dir(self, c: Container) -> Path:
        return Path(self.scratch_path(c))

    def scratch_path(self, c: Container) -> str:
        """:meth:`scratch_dir` as a string, joined without pathlib: one ExecuteCommand
        needed it three times, and the ``Path`` joins were ~2% of the sandbox's CPU in the
        1,000-node fan-out benchmark. The parts are ECS names and ids (no ``/``)."""
        t = c.task
        return os.path.join(
            str(Path(self.rt.config.state_dir)),
            "containers",
            t.region,
            t.cluster.name,
            t.id,
            c.name,
        )

    def container_env(self, c: Container) -> dict[str, str]:
        """The complete environment of a process in ``c`` (docs/sandbox.md §8.3).

        Built from the container definition only: nothing is inherited from the sandbox's
        own environment, so the developer's AWS credentials never reach a container.
        """
        t = c.task
        env: dict[str, str] = {
            "PATH": DEFAULT_PATH,
            "HOME": self.scratch_path(c),
            "HOSTNAME": t.eni.dns if t.eni else c.runtime_id[:12],
            "AWS_REGION": t.region,
            "AWS_DEFAULT_REGION": t.region,
            "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE" if t.launch_type == "FARGATE" else "AWS_ECS_EC2",
        }
        env.update(c.environment)
        env["TERM"] = "xterm-256color"
        env.setdefault("LANG", "C.UTF-8")
        return env

    def container_cwd(self, c: Container) -> str:
        # docs/sandbox.md §8.3: workingDirectory if it exists on the host, else the scratch dir.
        # The scratch dir is also HOME (§8.3), so it exists either way.
        self.scratch_dir(c).mkdir(parents=True, exist_ok=True, mode=0o700)
        return self._cwd(c)

    def _cwd(self, c: Container) -> str:
        """:meth:`container_cwd` without creating the scratch dir."""
        wd = c.definition.get("workingDirectory")
        if wd and os.path.isdir(wd):
            return str(wd)
        return self.scratch_path(c)

    def exec_target(self, c: Container) -> Any:
        from ecsexec.sandbox.hub import ExecTarget

        key_arn: str | None = None
        ref = c.task.cluster.kms_key_ref
        if ref:
            from ecsexec.sandbox.kms import resolve_key

            key = resolve_key(self.rt.world, c.task.region, ref)
            key_arn = key.arn if key else ref
        return ExecTarget(
            target_id=c.target_id,
            task_arn=c.task.arn,
            container_name=c.name,
            env=self.container_env(c),
            # §8.3: the agent creates the scratch dir (HOME) in its spawn thread, right
            # before the process starts: a mkdir here costs the event loop ~170 µs per
            # ExecuteCommand on a new container.
            cwd=self._cwd(c),
            scratch_dir=self.scratch_path(c),
            distroless=c.sandbox.distroless,
            kms_key_id=key_arn,
            namespace=self.rt.namespace_for(c),
        )

    # -- mutations (the topology loader uses the same paths) ----------------------------------

    async def create_cluster(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        self.rt.authorize(call, self._arn(call, f"cluster/{p.get('clusterName') or 'default'}"))
        cluster = self.rt.world.create_cluster(call.region, p)
        return {"cluster": self.render_cluster(cluster, ["CONFIGURATIONS", "TAGS", "SETTINGS"])}

    async def register_task_definition(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        self.rt.authorize(call, "*")
        td = self.rt.world.register_task_definition(call.region, p, call.principal)
        return {"taskDefinition": self.render_task_definition(td), "tags": list(td.tags)}

    async def create_service(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(call, p.get("cluster"))
        self.rt.authorize(call, cluster.arn)
        service = self.rt.world.create_service(call.region, cluster, p)
        for t in service.tasks:
            self.rt.on_task_started(t)
        return {"service": self.render_service(service, ["TAGS"])}

    async def run_task(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(call, p.get("cluster"))
        self.rt.authorize(call, cluster.arn)
        count = p.get("count", 1)
        if not 1 <= count <= 10:
            raise invalid("count must be between 1 and 10.")
        tasks = self.rt.world.run_task(call.region, cluster, p)
        for t in tasks:
            self.rt.on_task_started(t)
        return {"tasks": [self.render_task(t, ["TAGS"]) for t in tasks], "failures": []}

    async def stop_task(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        cluster = self._cluster(call, p.get("cluster"))
        task = self.rt.world.find_task(cluster, p["task"])
        self.rt.authorize(
            call, task.arn if task else self._arn(call, f"task/{cluster.name}/{p['task']}")
        )
        if task is None:
            raise invalid("The referenced task was not found.")
        reason = p.get("reason") or "Task stopped by user"
        self.stop(task, reason, "UserInitiated")
        return {"task": self.render_task(task, [])}

    def stop(self, task: Task, reason: str, code: str) -> None:
        """Begin a stop now; sessions, main processes and the final STOPPED follow (§8.4)."""
        if not self.rt.world.begin_stop(task, reason, code):
            return
        job = asyncio.get_running_loop().create_task(self._complete_stop(task))
        self.rt.background.add(job)
        job.add_done_callback(self.rt.background.discard)

    async def _complete_stop(self, task: Task) -> None:
        exit_code: int | None = None
        # §8.4: SIGTERM to the main process and every session's group at once, SIGKILL
        # after the task's stopTimeout.
        stop_timeout = max(
            (float(c.definition.get("stopTimeout") or 30) for c in task.containers),
            default=30.0,
        )
        try:
            if self.rt.hub is not None:
                # The hub's end reason (stats, channel_closed text), not the user's reason.
                sessions = self.rt.hub.stop_task(
                    task.arn, "task_stopped", stop_timeout=stop_timeout
                )
            else:
                sessions = asyncio.sleep(0)
            if self.rt.stop_main is not None:
                _, exit_code = await asyncio.gather(sessions, self.rt.stop_main(task, stop_timeout))
            else:
                await sessions
        finally:
            self.rt.world.finish_stop(task, exit_code)

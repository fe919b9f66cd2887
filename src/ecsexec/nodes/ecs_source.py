"""Discover ECS containers as nodes with the fewest API calls (docs/ecs-nodes.md §1-§4).

Per source (one region): clusters (configured, or ListClusters), then per cluster
ListTasks and batched DescribeTasks, one DescribeTaskDefinition per distinct ARN ever,
and DescribeServices only when a task carries no tags of its own. Clusters are worked
on concurrently (at most four, as §4 advises), calls within a cluster sequentially.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from ecsexec.aws.ecs import EcsApi
from ecsexec.aws.endpoints import endpoint_identity
from ecsexec.errors import AwsError, ConfigurationError, DiscoveryError
from ecsexec.nodes.cache import config_cache_key
from ecsexec.nodes.ecs_attributes import (
    AWS_TAG_PREFIX,
    CONTAINER_NAME,
    SERVICE_NAME,
    TASK_DEFINITION_FAMILY,
    TASK_DEFINITION_REVISION,
    container_node,
    tags_of,
)
from ecsexec.nodes.node import Node

if TYPE_CHECKING:
    from ecsexec.nodes.sources import SourceContext, SourceTable

log = logging.getLogger(__name__)

MAX_PARALLEL_CLUSTERS: Final = 4  # docs/ecs-nodes.md §4: listing ~20 clusters at once throttles
SOURCE_KEYS: Final = (
    "clusters",
    "filter_behavior",
    "service_names",
    "task_definition_names",
    "container_names",
    "tags",
    "refresh_interval",
)
"""The keys of a ``[[sources]] type = "ecs"`` table besides ``type``, ``name`` and the
``[aws]`` keys (region, credentials, endpoint), which the configuration resolves."""
DEFAULT_REFRESH_INTERVAL: Final = 30.0


@dataclass(frozen=True)
class EcsSourceConfig:
    """One ECS node source (docs/ecs-nodes.md §3); credentials are resolved elsewhere."""

    region: str
    clusters: tuple[str, ...] = ()
    filter_behavior: Literal["include", "exclude"] = "include"
    service_names: tuple[str, ...] = ()
    task_definition_names: tuple[str, ...] = ()
    container_names: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    assume_role_arn: str = ""
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL

    @staticmethod
    def parse_tags(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
        pairs = []
        for raw in items:
            item = raw.strip()
            if not item:
                continue
            if "=" not in item:
                raise ConfigurationError(f"tag filter {item!r} needs the form key=value")
            key, _, value = item.partition("=")
            pairs.append((key.strip(), value.strip()))
        return tuple(pairs)

    @property
    def has_filters(self) -> bool:
        return bool(
            self.service_names or self.task_definition_names or self.container_names or self.tags
        )


@dataclass(frozen=True)
class ContainerFilters:
    """An ECS source's filters (docs/ecs-nodes.md §3) given on a command line rather than in
    a ``[[sources]]`` table: they apply to every source the flags describe."""

    filter_behavior: Literal["include", "exclude"] = "include"
    service_names: tuple[str, ...] = ()
    task_definition_names: tuple[str, ...] = ()
    container_names: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return self != ContainerFilters()


@dataclass
class DiscoveryReport:
    """What a discovery did, for progress and for tests."""

    clusters: int = 0
    tasks: int = 0
    containers: int = 0
    warnings: list[str] = field(default_factory=list)


ProgressFn = Callable[[str, int, int], None]
"""(cluster name, tasks described so far, tasks listed) as discovery advances."""


class TaskDefinitionCache:
    """Task definitions by ARN. Revisions are immutable, so entries never expire.

    Concurrent discoveries of one ARN share a single DescribeTaskDefinition call.
    """

    def __init__(self) -> None:
        self._items: dict[str, Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get_or_fetch(self, arn: str, fetch: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            future = self._items.get(arn)
            owner = future is None
            if future is None:
                future = Future()
                self._items[arn] = future
        if owner:
            try:
                future.set_result(fetch())
            except BaseException as exc:
                with self._lock:
                    del self._items[arn]  # let a later refresh try again
                future.set_exception(exc)
        return future.result()


def _passes(config: EcsSourceConfig, node: Node, tags: dict[str, str]) -> bool:
    """docs/ecs-nodes.md §3 Filters: include keeps iff all tests pass; exclude drops iff any."""
    tests: list[bool] = []
    attrs = node.attributes
    if config.service_names:
        tests.append(attrs[SERVICE_NAME] in config.service_names)
    if config.task_definition_names:
        family = attrs[TASK_DEFINITION_FAMILY]
        family_rev = f"{family}:{attrs[TASK_DEFINITION_REVISION]}"
        tests.append(
            any(
                (item == family_rev) if ":" in item else (item == family)
                for item in config.task_definition_names
            )
        )
    if config.container_names:
        tests.append(attrs[CONTAINER_NAME] in config.container_names)
    if config.tags:
        tests.append(all(tags.get(k) == v for k, v in config.tags))
    if not tests:
        return True
    if config.filter_behavior == "include":
        return all(tests)
    return not any(tests)


class EcsNodeSource:
    """Turns one region's ECS containers into :class:`Node` objects.

    The ``ecs`` :class:`ecsexec.nodes.sources.NodeSource`: cached per configuration and
    endpoint for ``refresh_interval`` seconds.
    """

    def __init__(
        self,
        config: EcsSourceConfig,
        api: EcsApi | None = None,
        *,
        api_factory: Callable[[], EcsApi] | None = None,
        task_definitions: TaskDefinitionCache | None = None,
    ) -> None:
        if (api is None) == (api_factory is None):
            raise TypeError("give either api or api_factory")
        self.config = config
        self._api = api
        # Built only when discovery runs: a cache hit needs no client and no credentials.
        self._api_factory = api_factory
        self.task_definitions = task_definitions or TaskDefinitionCache()

    @property
    def api(self) -> EcsApi:
        if self._api is None:
            assert self._api_factory is not None
            self._api = self._api_factory()
        return self._api

    @property
    def label(self) -> str:
        return self.config.region

    @property
    def refresh_interval(self) -> float:
        return self.config.refresh_interval

    def cache_key(self) -> str | None:
        """The configuration and what decides the ECS endpoint, built without a client."""
        return config_cache_key(self.config, endpoint=endpoint_identity("ECS", self.config.region))

    def discover(self, progress: ProgressFn | None = None) -> tuple[list[Node], DiscoveryReport]:
        report = DiscoveryReport()
        api = self.api  # built here, before the cluster threads share it
        clusters: Sequence[str] = self.config.clusters or api.list_clusters()
        report.clusters = len(clusters)
        results: dict[str, list[Node]] = {}
        errors: dict[str, AwsError] = {}

        def work(cluster: str) -> None:
            try:
                results[cluster] = self._cluster(cluster, report, progress)
            except AwsError as exc:
                errors[cluster] = exc

        with ThreadPoolExecutor(max_workers=MAX_PARALLEL_CLUSTERS) as pool:
            list(pool.map(work, clusters))
        # docs/ecs-nodes.md §4: the refresh fails only if every cluster fails or a call is denied.
        for cluster, exc in errors.items():
            if exc.code == "AccessDeniedException" or len(errors) == len(clusters):
                raise DiscoveryError(
                    f"discovery failed in {self.config.region} (cluster {cluster!r}): {exc}"
                ) from exc
            if exc.code == "ClusterNotFoundException":
                report.warnings.append(f"cluster {cluster!r} not found in {self.config.region}")
            else:
                report.warnings.append(f"cluster {cluster!r}: {exc}")
        nodes = [node for cluster in clusters for node in results.get(cluster, [])]
        report.containers = len(nodes)
        return nodes, report

    def _list_task_arns(self, cluster: str, report: DiscoveryReport) -> list[str]:
        config = self.config
        if config.filter_behavior == "include" and config.service_names:
            arns: list[str] = []
            for service in config.service_names:
                try:
                    arns += self.api.list_tasks(cluster, serviceName=service)
                except AwsError as exc:
                    if exc.code != "ServiceNotFoundException":
                        raise
                    report.warnings.append(f"service {service!r} not found in cluster {cluster!r}")
            return list(dict.fromkeys(arns))
        if config.filter_behavior == "include" and config.task_definition_names:
            families = dict.fromkeys(n.split(":", 1)[0] for n in config.task_definition_names)
            arns = []
            for family in families:
                arns += self.api.list_tasks(cluster, family=family)
            return list(dict.fromkeys(arns))
        return self.api.list_tasks(cluster)

    def _cluster(
        self, cluster: str, report: DiscoveryReport, progress: ProgressFn | None
    ) -> list[Node]:
        arns = self._list_task_arns(cluster, report)
        if not arns:
            return []
        tasks, failures = self.api.describe_tasks(cluster, arns, tags=True)
        for failure in failures:
            if failure.get("reason") != "MISSING":
                report.warnings.append(
                    f"DescribeTasks: {failure.get('arn')}: {failure.get('reason')}"
                )
        tasks = [
            t
            for t in tasks
            if t.get("desiredStatus") == "RUNNING" and t.get("lastStatus") == "RUNNING"
        ]
        report.tasks += len(tasks)
        if progress is not None:
            progress(cluster, len(tasks), len(arns))
        service_tags = self._service_tags(cluster, tasks, report)
        nodes: list[Node] = []
        for task in tasks:
            task_def = self._task_definition(str(task.get("taskDefinitionArn", "")), report)
            group = str(task.get("group", ""))
            svc_tags = (
                service_tags.get(group[len("service:") :], {})
                if group.startswith("service:")
                else {}
            )
            for container in task.get("containers", []):
                if container.get("lastStatus") == "STOPPED":
                    continue  # finished init/sidecar containers: unreachable (docs/ecs-nodes.md §1)
                node = container_node(
                    task,
                    container,
                    region=self.config.region,
                    task_definition=task_def,
                    service_tags=svc_tags,
                    assume_role_arn=self.config.assume_role_arn,
                )
                if _passes(self.config, node, tags_of(node.attributes)):
                    nodes.append(node)
        return nodes

    def _task_definition(self, arn: str, report: DiscoveryReport) -> dict[str, Any] | None:
        if not arn:
            return None

        def fetch() -> dict[str, Any]:
            try:
                return self.api.describe_task_definition(arn)
            except AwsError as exc:
                if exc.code != "AccessDeniedException":
                    raise
                report.warnings.append(
                    "ecs:DescribeTaskDefinition denied: os fields default to unix"
                )
                return {}

        return self.task_definitions.get_or_fetch(arn, fetch)

    def _service_tags(
        self, cluster: str, tasks: list[dict[str, Any]], report: DiscoveryReport
    ) -> dict[str, dict[str, str]]:
        """docs/ecs-nodes.md §2: service tags only for service tasks without own tags."""
        needed = sorted(
            {
                str(t.get("group", ""))[len("service:") :]
                for t in tasks
                if str(t.get("group", "")).startswith("service:")
                and not any(
                    not str(tag.get("key", "")).startswith(AWS_TAG_PREFIX)
                    for tag in t.get("tags") or []
                )
            }
        )
        if not needed:
            return {}
        try:
            services, _ = self.api.describe_services(cluster, needed)
        except AwsError as exc:
            if exc.code != "AccessDeniedException":
                raise
            report.warnings.append("ecs:DescribeServices denied: service tags are not applied")
            return {}
        return {
            str(s.get("serviceName")): {
                str(t.get("key")): str(t.get("value", "")) for t in s.get("tags") or []
            }
            for s in services
        }


def describe_container(
    api: EcsApi, *, cluster: str, task: str, container: str, region: str
) -> Node:
    """One container as a node through a single DescribeTasks, listing nothing.

    For callers that already know the container (a Rundeck node's ``ECS:Cluster-ARN``,
    ``ECS:Task-ARN`` and ``ECS:Container-Name``). The node has every attribute of
    docs/ecs-nodes.md §2 except the os fields, which would cost a DescribeTaskDefinition:
    ``unix``/``Linux`` as when that call is denied. A task that is gone or not running,
    or a container it lacks, is a :class:`DiscoveryError` naming it.
    """
    tasks, failures = api.describe_tasks(cluster, [task], tags=True)
    where = f"cluster {cluster!r} ({region})"
    if not tasks:
        reason = str(failures[0].get("reason", "")) if failures else ""
        raise DiscoveryError(
            f"task {task!r} is not in {where}"
            + (f": DescribeTasks says {reason}" if reason else "")
        )
    described = tasks[0]
    status = (str(described.get("desiredStatus", "")), str(described.get("lastStatus", "")))
    if status != ("RUNNING", "RUNNING"):
        raise DiscoveryError(
            f"task {task!r} in {where} is not running (desired {status[0]}, last {status[1]})"
        )
    names = [str(c.get("name", "")) for c in described.get("containers", [])]
    for item in described.get("containers", []):
        if item.get("name") == container:
            return container_node(described, item, region=region)
    raise DiscoveryError(
        f"task {task!r} in {where} has no container {container!r} (it has {', '.join(names)})"
    )


def open_ecs_source(config: EcsSourceConfig, context: SourceContext) -> EcsNodeSource:
    return EcsNodeSource(
        config,
        api_factory=lambda: context.api_factory(config),
        task_definitions=context.task_definitions,
    )


def parse_ecs_source(table: SourceTable) -> EcsSourceConfig:
    """An ``[[sources]] type = "ecs"`` table (docs/ecs-nodes.md §3); its region and role come
    from the source's effective AWS settings."""
    behavior = table.choice("filter_behavior", ("include", "exclude"), "include")
    tags = _parse_tags(table)
    refresh = table.number("refresh_interval", minimum=0)
    return EcsSourceConfig(
        region=table.aws.region,
        clusters=table.strings("clusters") or (),
        filter_behavior=cast(Literal["include", "exclude"], behavior),
        service_names=table.strings("service_names") or (),
        task_definition_names=table.strings("task_definition_names") or (),
        container_names=table.strings("container_names") or (),
        tags=tags,
        assume_role_arn=table.aws.assume_role_arn,
        refresh_interval=DEFAULT_REFRESH_INTERVAL if refresh is None else refresh,
    )


def _parse_tags(table: SourceTable) -> tuple[tuple[str, str], ...]:
    """``tags``: a table of key = value, or ``key=value`` items (a list or comma-separated)."""
    value = table.get("tags")
    if value is None:
        return ()
    if isinstance(value, dict):
        if not all(isinstance(v, str) for v in value.values()):
            table.fail("tags", f"{table.label}.tags: tag values must be strings")
            return ()
        return tuple((str(k).strip(), v.strip()) for k, v in value.items())
    items = table.strings("tags")
    if items is None:
        return ()
    try:
        return EcsSourceConfig.parse_tags(items)
    except ConfigurationError as exc:
        table.fail("tags", f"{table.label}.tags: {exc}")
        return ()

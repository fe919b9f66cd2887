"""ECS discovery end to end against the sandbox, counting API calls from its stats."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ecsexec.aws.clients import session_from_env
from ecsexec.aws.ecs import EcsApi
from ecsexec.errors import DiscoveryError
from ecsexec.nodes.ecs_source import EcsNodeSource, EcsSourceConfig, describe_container
from ecsexec.nodes.filter import select
from ecsexec.nodes.formats import load_nodes
from ecsexec.nodes.inventory import FileSourceConfig, Inventory, NodeCache
from ecsexec.sandbox import Sandbox
from ecsexec.sandbox.topology import generate


def api(sb: Sandbox, region: str = "us-east-1") -> EcsApi:
    return EcsApi(session_from_env(sb.env, region), region=region)


def calls(sb: Sandbox) -> dict[str, int]:
    return {k: v["calls"] for k, v in sb.stats()["api"].get("ecs", {}).items()}


def test_default_topology_nodes_and_attributes(sandbox: Sandbox) -> None:
    nodes, report = EcsNodeSource(EcsSourceConfig(region="us-east-1"), api(sandbox)).discover()
    assert report.clusters == 3
    names = {n.name for n in nodes}
    assert len(names) == len(nodes)
    spring = select(nodes, "ECS:Container-Image: spring.*")
    assert len(spring) == 2
    assert {n.get("ECS:Service-Name") for n in spring} == {"orders"}
    web = select(nodes, "ECS:Service-Name: web ECS:Cluster-Name: demo")
    assert len(web) == 3
    node = web[0]
    assert node.get("ECS:Task-Launch-Type") == "FARGATE"
    assert node.get("ECS:Exec-Agent-Status") == "RUNNING"
    assert node.get(
        "ECS:Private-IP",
    ) and node.hostname == node.get("ECS:Private-IP")
    assert node.get("ECS:Tag:team") == "web"  # the service's tags, propagated
    assert node.get("ECS:Runtime-ID")
    assert "fargate" in node.tags and "ecs" in node.tags
    # A stopped task never becomes a node; the exec-disabled standalone task does.
    assert select(nodes, "ECS:Exec-Enabled: false")
    assert not select(nodes, "ECS:Task-Status: STOPPED")


def test_exact_cluster_names_and_multiple_regions(sandbox: Sandbox) -> None:
    demo, _ = EcsNodeSource(
        EcsSourceConfig(region="us-east-1", clusters=("demo",)), api(sandbox)
    ).discover()
    assert {n.get("ECS:Cluster-Name") for n in demo} == {"demo"}  # not demo-staging
    eu, _ = EcsNodeSource(EcsSourceConfig(region="eu-west-1"), api(sandbox, "eu-west-1")).discover()
    assert eu and {n.get("ECS:Region") for n in eu} == {"eu-west-1"}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            EcsSourceConfig(
                region="us-east-1",
                clusters=("demo",),
                service_names=("api",),
                container_names=("log-router",),
            ),
            {"log-router"},
        ),
        (
            EcsSourceConfig(
                region="us-east-1",
                clusters=("demo",),
                filter_behavior="exclude",
                service_names=("web", "api", "orders", "worker", "legacy"),
            ),
            {"migrate"},
        ),
        (
            EcsSourceConfig(region="us-east-1", clusters=("demo",), task_definition_names=("web",)),
            {"app"},
        ),
    ],
)
def test_source_filters(sandbox: Sandbox, config: EcsSourceConfig, expected: set[str]) -> None:
    nodes, _ = EcsNodeSource(config, api(sandbox)).discover()
    assert {n.get("ECS:Container-Name") for n in nodes} == expected


def test_unknown_cluster_is_a_warning_and_all_failing_is_an_error(sandbox: Sandbox) -> None:
    nodes, report = EcsNodeSource(
        EcsSourceConfig(region="us-east-1", clusters=("demo", "nope")), api(sandbox)
    ).discover()
    assert nodes and any("nope" in w for w in report.warnings)
    with pytest.raises(DiscoveryError):
        EcsNodeSource(
            EcsSourceConfig(region="us-east-1", clusters=("nope",)), api(sandbox)
        ).discover()


def test_thousand_tasks_use_exactly_the_lower_bound_of_calls() -> None:
    topology = generate(1000, seed=1, clusters=3, containers=2)
    with Sandbox(topology=topology, initial_wait=0.05) as sb:
        source = EcsNodeSource(EcsSourceConfig(region="us-east-1"), api(sb))
        sb.reset_stats()
        nodes, report = source.discover()
        first = calls(sb)
        sb.reset_stats()
        source.discover()
        second = calls(sb)
    assert len(nodes) == 2000 and report.tasks == 1000
    per_cluster = [math.ceil(n / 100) for n in _tasks_per_cluster(topology)]
    families = {t["family"] for t in topology["taskDefinitions"]}
    assert first["ListClusters"] == 1
    assert first["ListTasks"] == sum(per_cluster)
    assert first["DescribeTasks"] == sum(per_cluster)
    assert first["DescribeTaskDefinition"] == len(families)
    # docs/ecs-nodes.md §4: tasks without tags of their own need their services' tags, in
    # batches of 10 services per cluster.
    services = [len(c.get("services", [])) for c in topology["regions"]["us-east-1"]["clusters"]]
    assert first["DescribeServices"] == sum(math.ceil(n / 10) for n in services)
    assert set(first) == {
        "ListClusters",
        "ListTasks",
        "DescribeTasks",
        "DescribeTaskDefinition",
        "DescribeServices",
    }
    # Task definitions are cached for good: the second refresh skips them.
    assert "DescribeTaskDefinition" not in second


def _tasks_per_cluster(topology: dict) -> list[int]:
    counts = []
    for region in topology["regions"].values():
        for cluster in region["clusters"]:
            counts.append(
                sum(s["desiredCount"] for s in cluster.get("services", []))
                + len(cluster.get("tasks", []))
            )
    return counts


def test_inventory_cache_and_refresh(sandbox: Sandbox, tmp_path: Path) -> None:
    config = EcsSourceConfig(region="us-east-1", clusters=("demo",))
    clock = [1000.0]

    def inventory(refresh: bool = False) -> Inventory:
        return Inventory(
            [config],
            api_factory=lambda _c: api(sandbox),
            file_loader=load_nodes,
            cache=NodeCache(tmp_path),
            refresh=refresh,
            clock=lambda: clock[0],
        )

    sandbox.reset_stats()
    nodes, _ = inventory().nodes()
    assert calls(sandbox)["ListTasks"] == 1
    clock[0] += 10
    again, report = inventory().nodes()
    assert report.from_cache == 1 and again == nodes
    assert calls(sandbox)["ListTasks"] == 1  # served from the cache file
    inventory(refresh=True).nodes()
    assert calls(sandbox)["ListTasks"] == 2
    clock[0] += 31
    inventory().nodes()
    assert calls(sandbox)["ListTasks"] == 3  # older than refresh_interval
    cache_file = next(tmp_path.glob("*.json"))
    assert cache_file.stat().st_mode & 0o777 == 0o600


def test_a_cache_hit_builds_no_client(sandbox: Sandbox, tmp_path: Path) -> None:
    # The cache key names the endpoint without a client: a warm run resolves no
    # credentials and loads no service model before its first ExecuteCommand.
    config = EcsSourceConfig(region="us-east-1", clusters=("demo",))
    built: list[str] = []

    def counting_api(source: EcsSourceConfig) -> EcsApi:
        built.append(source.region)
        return api(sandbox)

    def inventory() -> Inventory:
        return Inventory(
            [config], api_factory=counting_api, file_loader=load_nodes, cache=NodeCache(tmp_path)
        )

    nodes, _ = inventory().nodes()
    assert built == ["us-east-1"]
    again, report = inventory().nodes()
    assert report.from_cache == 1 and again == nodes
    assert built == ["us-east-1"]  # no second API object: the cache answered alone


def test_later_file_source_replaces_nodes_whole(tmp_path: Path) -> None:
    first = tmp_path / "a.json"
    second = tmp_path / "b.yaml"
    first.write_text('{"n1": {"hostname": "a", "x": "1"}, "n2": {"hostname": "b"}}')
    second.write_text('n1:\n  hostname: "c"\n')
    nodes, _ = Inventory(
        [FileSourceConfig(first), FileSourceConfig(second)],
        api_factory=lambda _c: None,  # type: ignore[arg-type,return-value]
        file_loader=load_nodes,
    ).nodes()
    by_name = {n.name: n for n in nodes}
    assert by_name["n1"].hostname == "c" and by_name["n1"].get("x") is None


def test_one_container_by_its_task_with_one_describe_tasks(sandbox: Sandbox) -> None:
    nodes, _ = EcsNodeSource(
        EcsSourceConfig(region="us-east-1", clusters=("demo",)), api(sandbox)
    ).discover()
    wanted = select(nodes, "ECS:Service-Name: api ECS:Container-Name: log-router")[0]
    attrs = wanted.attributes
    sandbox.reset_stats()
    node = describe_container(
        api(sandbox),
        cluster=attrs["ECS:Cluster-ARN"],
        task=attrs["ECS:Task-ARN"],
        container="log-router",
        region="us-east-1",
    )
    assert calls(sandbox) == {"DescribeTasks": 1}  # no listing, no task definition
    assert node.name == wanted.name
    # Every attribute discovery gives, except the os fields a task definition would give.
    assert {k: v for k, v in node.attributes.items() if k.startswith("ECS:")} == {
        k: v for k, v in attrs.items() if k.startswith("ECS:")
    }
    with pytest.raises(DiscoveryError, match=r"has no container 'nope' \(it has api, log-router"):
        describe_container(
            api(sandbox),
            cluster="demo",
            task=attrs["ECS:Task-ARN"],
            container="nope",
            region="us-east-1",
        )
    gone = attrs["ECS:Task-ARN"].rsplit("/", 1)[0] + "/" + "0" * 32
    with pytest.raises(DiscoveryError, match=r"is not in cluster 'demo' .* MISSING"):
        describe_container(
            api(sandbox), cluster="demo", task=gone, container="api", region="us-east-1"
        )

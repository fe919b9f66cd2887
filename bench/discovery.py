"""Benchmark ECS discovery: API calls per action against the spec's lower bound, and wall time.

Usage: .venv/bin/python bench/discovery.py [--tasks N] [--clusters C] [--containers K]
                                           [--throttle default|off]

The sandbox runs as a child process with a generated topology. The lower bound is
docs/ecs-nodes.md §4: ListClusters ⌈clusters/100⌉; ListTasks and DescribeTasks ⌈n/100⌉ per
cluster; one DescribeTaskDefinition per distinct task definition; DescribeServices
⌈services/10⌉ per cluster when tasks carry no tags of their own.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

from ecsexec.aws.clients import session_from_env
from ecsexec.aws.ecs import EcsApi
from ecsexec.nodes.ecs_source import EcsNodeSource, EcsSourceConfig
from ecsexec.sandbox import Sandbox
from ecsexec.sandbox.topology import generate


def lower_bound(topology: dict[str, Any]) -> dict[str, int]:
    clusters = topology["regions"]["us-east-1"]["clusters"]
    tasks = [sum(s["desiredCount"] for s in c.get("services", [])) for c in clusters]
    return {
        "ListClusters": max(1, math.ceil(len(clusters) / 100)),
        "ListTasks": sum(max(1, math.ceil(n / 100)) for n in tasks),
        "DescribeTasks": sum(math.ceil(n / 100) for n in tasks),
        "DescribeTaskDefinition": len(topology["taskDefinitions"]),
        "DescribeServices": sum(math.ceil(len(c.get("services", [])) / 10) for c in clusters),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--containers", type=int, default=2)
    parser.add_argument("--throttle", choices=["default", "off"], default="default")
    args = parser.parse_args()
    topology = generate(args.tasks, seed=1, clusters=args.clusters, containers=args.containers)
    throttle = "off" if args.throttle == "off" else ""
    # strict=False: response validation is a test aid, not what a region costs.
    with Sandbox(
        topology=topology, throttle=throttle, process=True, initial_wait=0.0, strict=False
    ) as sb:
        api = EcsApi(session_from_env(sb.env), region="us-east-1")
        source = EcsNodeSource(EcsSourceConfig(region="us-east-1"), api)
        sb.reset_stats()
        start = time.perf_counter()
        nodes, _report = source.discover()
        cold = time.perf_counter() - start
        stats = sb.stats()
        sb.reset_stats()
        start = time.perf_counter()
        source.discover()
        warm = time.perf_counter() - start
    calls = {k: v["calls"] for k, v in stats["api"]["ecs"].items()}
    throttled = sum(v["errors"].get("ThrottlingException", 0) for v in stats["api"]["ecs"].values())
    bound = lower_bound(topology)
    exact = all(calls.get(k, 0) == v for k, v in bound.items()) and set(calls) <= set(bound)
    print(
        f"{args.tasks} tasks x {args.containers} containers in {args.clusters} clusters "
        f"-> {len(nodes)} nodes; throttling {args.throttle}"
    )
    for action, need in bound.items():
        print(f"  {action:24} {calls.get(action, 0):>5} calls (lower bound {need})")
    print(
        f"cold discovery {cold:.2f} s (throttled calls retried: {throttled}); "
        f"warm (task definitions cached) {warm:.2f} s; at the lower bound: {exact}"
    )
    print(
        json.dumps(
            {
                "bench": "discovery",
                "tasks": args.tasks,
                "clusters": args.clusters,
                "containers": args.containers,
                "throttle": args.throttle,
                "nodes": len(nodes),
                "calls": calls,
                "lower_bound": bound,
                "at_lower_bound": exact,
                "throttled": throttled,
                "cold_seconds": round(cold, 3),
                "warm_seconds": round(warm, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

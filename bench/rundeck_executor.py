"""Benchmark the Rundeck plugin's node executor: wall time per command on one container.

Usage: .venv/bin/python bench/rundeck_executor.py [--runs N]

Runs `true` N times through the plugin's node-executor.sh (as Rundeck would: RD_* variables,
no stdin) on one sandbox container, and, for comparison, `ecsexec run -F 'name: NODE'`
with a warm node cache. Each figure is process start to exit; the sandbox keeps its real
agent initial wait off (0.05 s). Prints medians and one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from ecsexec.rundeck.plugin import BASE_NAME, build_zip
from ecsexec.sandbox import Sandbox

BIN = Path(sys.executable).parent


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp, Sandbox(initial_wait=0.05) as sb:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
        env.update(sb.env, XDG_CACHE_HOME=str(work / "cache"), ECSEXEC_HISTORY="off")
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        listed = subprocess.run(
            ["ecsexec", "nodes", "--format", "json", "--cluster", "demo"],
            env=env,
            capture_output=True,
            check=True,
            text=True,
        )
        node = next(n for n in json.loads(listed.stdout).values() if n["ECS:Service-Name"] == "web")
        with zipfile.ZipFile(io.BytesIO(build_zip())) as archive:
            archive.extractall(work)
        contents = work / BASE_NAME / "contents"
        script = contents / "node-executor.sh"
        script.chmod(0o755)
        rd_env = {
            **env,
            "RD_EXEC_COMMAND": "true",
            "RD_NODE_NAME": node["nodename"],
            "RD_NODE_ECS_CLUSTER_ARN": node["ECS:Cluster-ARN"],
            "RD_NODE_ECS_TASK_ARN": node["ECS:Task-ARN"],
            "RD_NODE_ECS_CONTAINER_NAME": node["ECS:Container-Name"],
            "RD_NODE_ECS_REGION": node["ECS:Region"],
            "RD_PLUGIN_BASE": str(contents),
        }
        plugin = [timed([str(script)], rd_env) for _ in range(runs)]
        filtered = ["ecsexec", "run", "--cluster", "demo", "-F", f"name: {node['nodename']}"]
        direct = [timed([*filtered, "--", "true"], env) for _ in range(runs)]
    figures = {
        "runs": runs,
        "plugin_node_executor_median_s": round(statistics.median(plugin), 3),
        "ecsexec_run_filter_warm_cache_median_s": round(statistics.median(direct), 3),
    }
    plugin_s = figures["plugin_node_executor_median_s"]
    filter_s = figures["ecsexec_run_filter_warm_cache_median_s"]
    print(f"node executor (plugin, --task: one DescribeTasks): {plugin_s} s per command")
    print(f"ecsexec run -F 'name: NODE' (warm node cache): {filter_s} s per command")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

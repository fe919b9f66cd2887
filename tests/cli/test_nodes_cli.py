"""`ecsexec nodes` on resource files: selection, formats and the filter's warnings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

NODES = {
    "web-1": {"ECS:Container-Image": "nginx:latest", "ECS:Service-Name": "web", "tags": "ecs"},
    "api-1": {"ECS:Container-Image": "spring-api:2", "ECS:Service-Name": "api", "tags": "ecs"},
}


def nodes(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "nodes.json"
    path.write_text(json.dumps(NODES))
    return subprocess.run(
        [sys.executable, "-m", "ecsexec", "nodes", "--nodes-file", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **env},
    )


def test_filter_selects_like_rundeck_and_round_trips(tmp_path: Path) -> None:
    result = nodes(tmp_path, "-F", "ECS:Container-Image: spring.*", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout)) == ["api-1"]
    everything = nodes(tmp_path, "--format", "yaml")
    assert "web-1" in everything.stdout and "api-1" in everything.stdout


def test_missing_space_after_the_keys_last_colon_warns_with_a_hint(tmp_path: Path) -> None:
    result = nodes(tmp_path, "-F", "ECS:Container-Image:nginx:latest", "--format", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {}
    assert 'did you mean "ECS:Container-Image: nginx:latest"' in result.stderr
    quiet = nodes(tmp_path, "-F", "ECS:Container-Image:nginx:latest", ECSEXEC_FILTER_WARNINGS="off")
    assert "warning" not in quiet.stderr


def test_the_table_has_one_line_per_node_and_a_region_column_across_regions(
    tmp_path: Path,
) -> None:
    long_name = "orders-7af5b67a-eb1a-4bdd-bb83-712858b91a27-with-a-long-suffix"
    NODES[long_name] = {"ECS:Service-Name": "orders", "ECS:Region": "eu-west-1"}
    NODES["web-1"]["ECS:Region"] = "us-east-1"
    try:
        result = nodes(tmp_path)
    finally:
        del NODES[long_name]
        del NODES["web-1"]["ECS:Region"]
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:2] == ["NAME", "REGION"]
    assert len(rows) == 3
    assert any(row.startswith(long_name + " ") and "eu-west-1" in row for row in rows)


def test_filter_mistakes_get_did_you_mean_hints(tmp_path: Path) -> None:
    bare = nodes(tmp_path, "-F", "web", "--format", "json")
    assert bare.returncode == 0 and json.loads(bare.stdout) == {}  # Rundeck's answer stands
    assert 'did you mean "ECS:Service-Name: web"?' in bare.stderr
    case = nodes(tmp_path, "-F", "ecs:service-name: web", "--format", "json")
    assert 'did you mean "ECS:Service-Name: web"?' in case.stderr
    silenced = nodes(tmp_path, "-F", "web", "--format", "json", ECSEXEC_FILTER_WARNINGS="off")
    assert silenced.stderr == ""


def test_source_filters_are_for_discovery_and_tags_need_key_value(tmp_path: Path) -> None:
    with_file = nodes(tmp_path, "--service-name", "web")
    assert with_file.returncode == 2
    assert "act in ECS discovery, which --nodes-file replaces" in with_file.stderr
    bad_tag = nodes(tmp_path, "--tag", "team=web,oops")
    assert bad_tag.returncode == 2 and "'oops' needs the form key=value" in bad_tag.stderr

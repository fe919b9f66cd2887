"""The plugin's scripts against a stand-in ``ecsexec`` that records how it was called.

What each script hands ecsexec (argv and environment) is the contract between the plugin
and the CLI (docs/rundeck-plugin.md §9); the scripts run as Rundeck runs them (harness).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecsexec.rundeck.plugin import FILE_COPIER, NODE_EXECUTOR, RESOURCE_SOURCE, build_zip
from tests.rundeck.harness import BASE_SERVER_ENV, Node, Plugin, Project

pytestmark = pytest.mark.e2e

# Records argv and the AWS/ECSEXEC/RD environment as JSON, then prints a path as cp does.
STAND_IN = """#!/usr/bin/env python3
import json, os, sys
record = {"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items()
          if k.startswith(("AWS_", "ECSEXEC_", "RD_"))}}
with open(os.environ["STAND_IN_RECORD"], "w") as f:
    json.dump(record, f)
print("/remote/path/of/the/copy")
"""
NODE = Node(
    "app-1",
    {
        "ECS:Cluster-ARN": "arn:aws:ecs:eu-west-1:123456789012:cluster/shop",
        "ECS:Task-ARN": "arn:aws:ecs:eu-west-1:123456789012:task/shop/0123abcd",
        "ECS:Task-ID": "0123abcd",
        "ECS:Container-Name": "app",
        "ECS:Region": "eu-west-1",
    },
)
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Plugin, Project, dict[str, str], Path]:
    archive = tmp_path / "ecsexec-rundeck-plugin.zip"
    archive.write_bytes(build_zip())
    plugin = Plugin.load(archive, tmp_path / "rundeck")
    stand_in = tmp_path / "bin" / "ecsexec"
    stand_in.parent.mkdir()
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    record = tmp_path / "record.json"
    env = {
        **BASE_SERVER_ENV,
        "PATH": f"{stand_in.parent}:/usr/bin:/bin",
        "STAND_IN_RECORD": str(record),
        "AWS_PROFILE": "server-profile",
        "AWS_SESSION_TOKEN": "server-token",
    }
    return plugin, Project(), env, record


def recorded(record: Path) -> dict[str, dict[str, str] | list[str]]:
    data: dict[str, dict[str, str] | list[str]] = json.loads(record.read_text())
    return data


def test_the_file_copier_calls_ecsexec_cp_as_agreed(
    setup: tuple[Plugin, Project, dict[str, str], Path], tmp_path: Path
) -> None:
    plugin, project, env, record = setup
    local = tmp_path / "script.sh"
    local.write_text("echo hi\n")
    call = plugin.invocation(FILE_COPIER, project, node=NODE, file_copy=(str(local), "/tmp/x/"))
    done = plugin.run(call, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(b"\n", 1)[0] == b"/remote/path/of/the/copy"  # §6, passed on
    argv = recorded(record)["argv"]
    assert argv == [
        "cp",
        "--yes",
        "--print-path",
        "--cluster",
        "arn:aws:ecs:eu-west-1:123456789012:cluster/shop",
        "--task",
        NODE.attributes["ECS:Task-ARN"],
        "--container",
        "app",
        "--region",
        "eu-west-1",
        str(local),
        ":/tmp/x/",
    ]


def test_keys_reach_ecsexec_in_its_environment_only(
    setup: tuple[Plugin, Project, dict[str, str], Path],
) -> None:
    plugin, project, env, record = setup
    prefix = f"project.plugin.NodeExecutor.{NODE_EXECUTOR}"
    project.properties.update(
        {
            f"{prefix}.access_key_id": "AKIAIOSFODNN7EXAMPLE",
            f"{prefix}.secret_key": "keys/project/shop/aws-secret",
            f"{prefix}.assume_role_arn": "arn:aws:iam::123456789012:role/ops",
        }
    )
    project.key_storage["keys/project/shop/aws-secret"] = SECRET
    call = plugin.invocation(NODE_EXECUTOR, project, node=NODE, exec_command="echo hi")
    assert call.env["RD_CONFIG_SECRET_KEY"] == SECRET  # Rundeck hands the secret over
    done = plugin.run(call, env)
    assert done.returncode == 0, done.stderr
    seen = recorded(record)
    assert isinstance(seen["env"], dict) and isinstance(seen["argv"], list)
    child_env = seen["env"]
    assert child_env["AWS_ACCESS_KEY_ID"] == "AKIAIOSFODNN7EXAMPLE"
    assert child_env["AWS_SECRET_ACCESS_KEY"] == SECRET
    # Once only, and nothing of the server's own credentials mixes in.
    assert [k for k, v in child_env.items() if v == SECRET] == ["AWS_SECRET_ACCESS_KEY"]
    assert "AWS_PROFILE" not in child_env and "AWS_SESSION_TOKEN" not in child_env
    assert child_env["ECSEXEC_CREDENTIAL_PROVIDER"] == "default"
    assert child_env["ECSEXEC_ASSUME_ROLE_ARN"] == "arn:aws:iam::123456789012:role/ops"
    assert child_env["ECSEXEC_HISTORY"] == "off"
    assert not [arg for arg in seen["argv"] if SECRET in arg or "echo hi" in arg]
    assert "--command-env" in seen["argv"] and "RD_EXEC_COMMAND" in seen["argv"]
    assert SECRET.encode() not in done.stdout + done.stderr


def test_the_provider_keeps_the_servers_environment(
    setup: tuple[Plugin, Project, dict[str, str], Path],
) -> None:
    plugin, project, env, record = setup
    project.properties["resources.source.1.config.region"] = "eu-west-1"
    project.properties["resources.source.1.config.clusters"] = " shop , ,*, web"
    project.properties["resources.source.1.config.credential_provider"] = "container"
    project.properties["resources.source.1.config.tags"] = "team=web,env=prod"
    call = plugin.invocation(RESOURCE_SOURCE, project, source_index=1)
    done = plugin.run(call, env)
    assert done.returncode == 0, done.stderr
    seen = recorded(record)
    assert seen["argv"] == [
        "nodes",
        "--format",
        "json",
        "--region",
        "eu-west-1",
        "--cluster",
        "shop",
        "--cluster",
        "*",  # never globbed
        "--cluster",
        "web",
        "--filter-behavior",
        "include",
        "--tag",
        "team=web,env=prod",
    ]
    child_env = seen["env"]
    assert isinstance(child_env, dict)
    assert child_env["ECSEXEC_CREDENTIAL_PROVIDER"] == "container"
    assert child_env["AWS_PROFILE"] == "server-profile"  # only keys replace the server's


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"access_key_id": "AKIA"}, "access_key_id is set but secret_key is empty"),
        ({"credential_provider": "magic"}, "credential_provider must be default, instance"),
        (
            {"access_key_id": "AKIA", "secret_key": "k", "credential_provider": "instance"},
            "cannot be combined with credential_provider instance",
        ),
        ({"ecsexec_path": "/nowhere/ecsexec"}, "ecsexec_path /nowhere/ecsexec is not an"),
        ({"ecsexec_path": "no-such-ecsexec"}, "no-such-ecsexec is not on PATH"),
    ],
)
def test_bad_properties_are_clear_errors(
    setup: tuple[Plugin, Project, dict[str, str], Path],
    properties: dict[str, str],
    message: str,
) -> None:
    plugin, project, env, record = setup
    prefix = f"project.plugin.NodeExecutor.{NODE_EXECUTOR}"
    project.properties.update({f"{prefix}.{k}": v for k, v in properties.items()})
    project.key_storage["k"] = "a-secret"
    call = plugin.invocation(NODE_EXECUTOR, project, node=NODE, exec_command="true")
    done = plugin.run(call, env)
    assert done.returncode == 2
    assert message in done.stderr.decode()
    assert not record.exists()  # ecsexec never ran

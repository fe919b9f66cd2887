"""The plugin's three providers invoked exactly as Rundeck invokes them, against the sandbox.

The harness (tests/rundeck/harness.py) loads the zip ``ecsexec rundeck plugin`` writes,
resolves properties, builds the RD_* environment and runs the scripts with no stdin
(docs/rundeck-plugin.md §3-§7). Nodes come from the plugin's own resource source, so the
chain is Rundeck's: source -> node attributes -> executor / file copier.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import re
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from ecsexec.nodes.formats import parse_resourcejson
from ecsexec.rundeck.plugin import FILE_COPIER, NODE_EXECUTOR, RESOURCE_SOURCE, build_zip
from ecsexec.sandbox import Sandbox
from tests.rundeck.harness import (
    BASE_SERVER_ENV,
    Node,
    Plugin,
    Project,
    copied_path,
    expand,
    remote_script_path,
)

pytestmark = pytest.mark.e2e

ACCOUNT = "123456789012"
OPERATOR = f"arn:aws:iam::{ACCOUNT}:role/ecsexec-operator"
EXECUTOR_KEY = f"project.plugin.NodeExecutor.{NODE_EXECUTOR}"
README = Path(__file__).parents[2] / "README.md"


@dataclass
class Rundeck:
    """One Rundeck server with the plugin installed, on the sandbox."""

    plugin: Plugin
    project: Project
    env: dict[str, str]
    sandbox: Sandbox

    def nodes(self, **config: str) -> list[Node]:
        """Nodes from resource source #1 configured with ``config``."""
        self.project.properties.update(
            {f"resources.source.1.config.{k}": v for k, v in config.items()}
        )
        call = self.plugin.invocation(RESOURCE_SOURCE, self.project, source_index=1)
        done = self.plugin.run(call, self.env)
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout.strip(), "Script output was empty"  # §7
        return [
            Node(n.name, {**n.attributes}, tuple(sorted(n.tags)))
            for n in parse_resourcejson(done.stdout.decode())
        ]

    def node(self, service: str) -> Node:
        chosen = [n for n in self.nodes(region="us-east-1", clusters="demo") if _svc(n) == service]
        return sorted(chosen, key=lambda n: n.name)[0]

    def execute(self, node: Node, command: str) -> subprocess.CompletedProcess[bytes]:
        call = self.plugin.invocation(NODE_EXECUTOR, self.project, node=node, exec_command=command)
        return self.plugin.run(call, self.env)

    def start(self, node: Node, command: str) -> subprocess.Popen[bytes]:
        call = self.plugin.invocation(NODE_EXECUTOR, self.project, node=node, exec_command=command)
        return self.plugin.start(call, self.env)

    def copy(self, node: Node, local: Path, destination: str) -> subprocess.CompletedProcess[bytes]:
        call = self.plugin.invocation(
            FILE_COPIER, self.project, node=node, file_copy=(str(local), destination)
        )
        return self.plugin.run(call, self.env)


def _svc(node: Node) -> str:
    return node.attributes.get("ECS:Service-Name", "")


def server_env(sb: Sandbox, tmp_path: Path) -> dict[str, str]:
    """The Rundeck server's environment: the sandbox's AWS settings and ecsexec on PATH."""
    env = {**BASE_SERVER_ENV, **sb.env}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for name in ("CACHE", "STATE", "DATA"):
        env[f"XDG_{name}_HOME"] = str(tmp_path / name.lower())
    return env


@pytest.fixture
def rundeck(sandbox: Sandbox, tmp_path: Path) -> Rundeck:
    archive = tmp_path / "libext" / "ecsexec-rundeck-plugin.zip"
    archive.parent.mkdir()
    archive.write_bytes(build_zip())
    plugin = Plugin.load(archive, tmp_path / "rundeck")
    return Rundeck(plugin, Project(), server_env(sandbox, tmp_path), sandbox)


def cp_available(env: dict[str, str]) -> bool:
    done = subprocess.run(
        ["ecsexec", "cp", "--help"], env=env, capture_output=True, check=False, timeout=60
    )
    return done.returncode == 0


@pytest.fixture
def with_cp(rundeck: Rundeck) -> Rundeck:
    if not cp_available(rundeck.env):
        pytest.skip("ecsexec cp not available (the FileCopier calls it)")
    return rundeck


# -- ResourceModelSource (§7) ---------------------------------------------------------------------


def test_the_source_prints_resourcejson_with_the_ecs_attributes(rundeck: Rundeck) -> None:
    nodes = rundeck.nodes(region="us-east-1", clusters="demo, demo-staging")
    assert len(nodes) > 5
    for node in nodes:
        attributes = node.attributes
        for key in ("ECS:Cluster-ARN", "ECS:Task-ARN", "ECS:Container-Name", "ECS:Task-ID"):
            assert attributes[key], (node.name, key)
        assert attributes["ECS:Region"] == "us-east-1"
        assert attributes["node-executor"] == NODE_EXECUTOR
        assert attributes["file-copier"] == FILE_COPIER
        assert "ecs" in node.tags
    clusters = {n.attributes["ECS:Cluster-Name"] for n in nodes}
    assert clusters == {"demo", "demo-staging"}


def test_the_source_honours_include_and_exclude(rundeck: Rundeck) -> None:
    everything = {n.name for n in rundeck.nodes(region="us-east-1", clusters="demo")}
    included = rundeck.nodes(service_names="orders,web", filter_behavior="include")
    assert {_svc(n) for n in included} == {"orders", "web"}
    excluded = rundeck.nodes(filter_behavior="exclude")
    assert excluded and not {_svc(n) for n in excluded} & {"orders", "web"}
    assert {n.name for n in included} | {n.name for n in excluded} == everything
    rundeck.project.properties.pop("resources.source.1.config.service_names")
    by_container = rundeck.nodes(container_names="log-router", filter_behavior="include")
    assert by_container and {n.attributes["ECS:Container-Name"] for n in by_container} == {
        "log-router"
    }


def test_a_bad_source_configuration_fails_with_the_reason(rundeck: Rundeck) -> None:
    rundeck.project.properties.update(
        {"resources.source.1.config.region": "us-east-1", "resources.source.1.config.tags": "x"}
    )
    call = rundeck.plugin.invocation(RESOURCE_SOURCE, rundeck.project, source_index=1)
    done = rundeck.plugin.run(call, rundeck.env)
    assert done.returncode == 2
    assert b"key=value" in done.stderr and not done.stdout


# -- NodeExecutor (§5) ----------------------------------------------------------------------------


def test_exit_codes_and_output_pass_through(rundeck: Rundeck) -> None:
    node = rundeck.node("web")
    ok = rundeck.execute(node, "echo hello; echo to-stderr >&2")
    assert ok.returncode == 0, ok.stderr
    # Raw output: no node-name prefix, no banner, no summary (stderr is merged by the PTY).
    assert ok.stdout == b"hello\nto-stderr\n" and ok.stderr == b""
    assert rundeck.execute(node, "exit 3").returncode == 3
    missing = rundeck.execute(node, "no-such-command-xyz")
    assert missing.returncode == 127 and b"not found" in missing.stdout
    # Rundeck's exec.command: the argv joined with spaces, run by sh -c remotely.
    quoted = rundeck.execute(node, "printf '%s|' a 'b c'")
    assert quoted.stdout.rstrip(b"\n") == b"a|b c|"  # --line-buffered may add one


def test_output_streams_before_the_command_ends(rundeck: Rundeck) -> None:
    node = rundeck.node("web")
    gate = f"/tmp/rundeck-gate-{uuid.uuid4().hex}"
    command = f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second"
    with rundeck.start(node, command) as waiting:
        try:
            assert waiting.stdout is not None
            assert waiting.stdout.readline() == b"first\n"
            assert waiting.poll() is None  # the command is still waiting for the gate
            assert rundeck.execute(node, f"touch {gate}").returncode == 0
            assert waiting.stdout.read() == b"second\n"
            assert waiting.wait(timeout=60) == 0
        finally:
            if waiting.poll() is None:
                waiting.kill()
    rundeck.execute(node, f"rm -f {gate}")


def test_an_aborted_execution_ends_the_remote_command(rundeck: Rundeck) -> None:
    """Rundeck aborts by ending the script's process; the script is ecsexec itself (exec),
    so the session is terminated and nothing keeps running (the sandbox's leak check)."""
    node = rundeck.node("web")
    with rundeck.start(node, "echo started; sleep 600") as running:
        assert running.stdout is not None
        assert running.stdout.readline() == b"started\n"
        running.send_signal(signal.SIGTERM)
        assert running.wait(timeout=60) == 130
        assert running.stderr is not None
        assert b"SIGTERM: interrupted" in running.stderr.read()


def test_a_node_without_ecs_attributes_is_a_clear_error(rundeck: Rundeck) -> None:
    done = rundeck.execute(Node("web01", {"hostname": "10.0.0.5"}), "true")
    assert done.returncode == 2
    assert b"node web01 has no ECS:Cluster-ARN attribute" in done.stderr


def static_keys(sb: Sandbox) -> tuple[str, str]:
    parser = configparser.ConfigParser()
    parser.read(sb.env["AWS_SHARED_CREDENTIALS_FILE"])
    section = parser[sb.env["AWS_PROFILE"]]
    return section["aws_access_key_id"], section["aws_secret_access_key"]


def argv_of_tree(root: int) -> list[str]:
    """Every command line of ``root`` and its descendants, from /proc/<pid>/cmdline."""
    found = []
    process = psutil.Process(root)
    for each in [process, *process.children(recursive=True)]:
        try:
            found.append(Path(f"/proc/{each.pid}/cmdline").read_bytes().decode(errors="replace"))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def test_keys_from_key_storage_travel_only_in_the_environment(
    rundeck: Rundeck, tmp_path: Path
) -> None:
    node = rundeck.node("web")
    key_id, secret = static_keys(rundeck.sandbox)
    # The server itself has no credentials: only the plugin's properties give them.
    for name in ("AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"):
        rundeck.env.pop(name)
    rundeck.env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    rundeck.env["AWS_CONFIG_FILE"] = str(tmp_path / "none")
    without = rundeck.execute(node, "true")
    assert without.returncode == 2 and b"credentials" in without.stderr
    rundeck.project.properties.update(
        {
            f"{EXECUTOR_KEY}.access_key_id": key_id,
            f"{EXECUTOR_KEY}.secret_key": "keys/project/shop/aws-secret",
        }
    )
    rundeck.project.key_storage["keys/project/shop/aws-secret"] = secret
    gate = f"/tmp/rundeck-gate-{uuid.uuid4().hex}"
    with rundeck.start(node, f"echo ready; while [ ! -e {gate} ]; do sleep 0.05; done") as waiting:
        try:
            assert waiting.stdout is not None
            assert waiting.stdout.readline() == b"ready\n"
            # ecsexec is in its session now: no command line in the tree holds the secret.
            lines = argv_of_tree(waiting.pid)
            assert any("ecsexec" in line for line in lines), lines
            assert not [line for line in lines if secret in line]
            assert rundeck.execute(node, f"touch {gate}").returncode == 0
            rest, errors = waiting.communicate(timeout=60)
        finally:
            if waiting.poll() is None:
                waiting.kill()
    assert waiting.returncode == 0, errors
    assert secret.encode() not in rest + errors
    rundeck.execute(node, f"rm -f {gate}")


def test_assume_role_and_the_per_node_override(rundeck: Rundeck) -> None:
    node = rundeck.node("web")
    before = _assume_role_calls(rundeck.sandbox)
    rundeck.project.properties[f"{EXECUTOR_KEY}.assume_role_arn"] = OPERATOR
    done = rundeck.execute(node, "echo as-role")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"as-role\n"
    assert _assume_role_calls(rundeck.sandbox) > before
    # The node attribute assume-role-arn wins over the project's (instance-scope-node-attribute).
    denied = f"arn:aws:iam::{ACCOUNT}:role/not-in-topology"
    other = Node(node.name, {**node.attributes, "assume-role-arn": denied}, node.tags)
    refused = rundeck.execute(other, "echo never")
    assert refused.returncode == 2
    assert denied.encode() in refused.stderr and b"never" not in refused.stdout


def _assume_role_calls(sb: Sandbox) -> int:
    api = sb.stats()["api"]
    return int(api.get("sts", {}).get("AssumeRole", {}).get("calls", 0))


def readme_job() -> dict[str, Any]:
    """The job of the README's "Use it from Rundeck" section."""
    text = README.read_text()
    section = text[text.index("## Use it from Rundeck") :]
    found = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert found, "the Rundeck section has no job"
    [job] = yaml.safe_load(found.group(1))
    return dict(job)


def test_the_readmes_thread_dump_job_runs_through_the_executor(rundeck: Rundeck) -> None:
    """The commercial product's job "Java Thread Dump from Container" (pgrep java, then
    jstack <pid>), as the README gives it, step by step on every node its filter selects,
    each exec step through the plugin's node executor; the key-value-data log filter's
    capture feeds ${data.pid}, as Rundeck's does."""
    job = readme_job()
    assert job["nodefilters"]["filter"] == "ECS:Service-Name: orders"
    orders = [n for n in rundeck.nodes(region="us-east-1", clusters="demo") if _svc(n) == "orders"]
    assert len(orders) == 2
    if any("java" in notice for notice in rundeck.sandbox.notices):
        pytest.skip("no java on PATH: the sandbox's orders containers idle without a JVM")
    for node in orders:
        data: dict[str, str] = {}
        outputs = []
        for step in job["sequence"]["commands"]:
            command = expand(step["exec"], {"data": data})
            assert "${" not in command, command
            done = rundeck.execute(node, command)
            assert done.returncode == 0, done.stdout[-2000:]
            outputs.append(done.stdout)
            for log_filter in step.get("plugins", {}).get("LogFilter", []):
                config = log_filter["config"]
                assert log_filter["type"] == "key-value-data"
                for line in done.stdout.decode().splitlines():
                    match = re.match(config["regex"], line)
                    if match:
                        data[config["name"]] = match.group(1)
        assert data["pid"].isdigit()
        assert b"Full thread dump" in outputs[-1]
        assert b"Found one Java-level deadlock" in outputs[-1]


# -- FileCopier (§6) and script steps (§5) --------------------------------------------------------


def test_a_file_copy_lands_byte_exact(with_cp: Rundeck, tmp_path: Path) -> None:
    rundeck = with_cp
    node = rundeck.node("web")
    local = tmp_path / "payload.bin"
    local.write_bytes(bytes(range(256)) * 4096 + b"\x00\r\n\xff")
    destination = f"/tmp/rundeck-copy-{uuid.uuid4().hex}/"
    assert rundeck.execute(node, f"mkdir -p {destination}").returncode == 0
    done = rundeck.copy(node, local, destination)
    assert done.returncode == 0, done.stderr
    remote = copied_path(done.stdout, destination)
    assert remote == f"{destination}payload.bin"
    digest = rundeck.execute(node, f"sha256sum {remote} | cut -d' ' -f1")
    assert digest.stdout.decode().strip() == hashlib.sha256(local.read_bytes()).hexdigest()
    rundeck.execute(node, f"rm -rf {destination}")


def test_a_script_step_copies_chmods_runs_and_removes(with_cp: Rundeck, tmp_path: Path) -> None:
    rundeck = with_cp
    node = rundeck.node("web")
    script = tmp_path / "dispatch-script.tmp"
    script.write_text('#!/bin/sh\necho "args: $*"\necho "$0"\nexit 4\n')
    execid = str(uuid.uuid4().int % 100000)
    wanted = remote_script_path("/tmp/", 1, execid, node.name, "dispatch-script")
    copied = rundeck.copy(node, script, wanted)
    assert copied.returncode == 0, copied.stderr
    path = copied_path(copied.stdout, wanted)
    assert path == wanted
    assert rundeck.execute(node, f"chmod +x {path}").returncode == 0
    ran = rundeck.execute(node, f"{path} one two")
    assert ran.returncode == 4
    assert ran.stdout == f"args: one two\n{path}\n".encode()
    assert rundeck.execute(node, f"rm -f {path}").returncode == 0
    assert rundeck.execute(node, f"test -e {path}").returncode == 1

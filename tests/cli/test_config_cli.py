"""Issue 6's Done-when, as a user runs it: ``ecsexec`` subprocesses with a private environment.

For each credential provider (container, instance, keys, assume-role) ``whoami``, ``nodes``
and ``run`` succeed against a sandbox, configured only by ``ecsexec.toml`` plus what
``ecsexec sandbox env`` prints. Every byte any command printed, and every file it left in
its cache and key-storage directories, is checked for every secret the sandbox issued.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ecsexec.sandbox import Sandbox
from ecsexec.sandbox.topology import default_topology

ECSEXEC = [sys.executable, "-m", "ecsexec"]
ACCOUNT = "123456789012"
OPERATOR = f"arn:aws:iam::{ACCOUNT}:role/ecsexec-operator"
SECURE = "ECS:Cluster-Name: secure"  # KMS-encrypted sessions: ECS, SSM and KMS calls


@dataclass
class Project:
    """A project directory with ``ecsexec.toml`` and private XDG/AWS settings."""

    root: Path
    env: dict[str, str]
    outputs: list[str] = field(default_factory=list)

    def config(self, text: str) -> None:
        (self.root / "ecsexec.toml").write_text(textwrap.dedent(text).lstrip())

    def __call__(
        self, *args: str, stdin: str | None = None, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*ECSEXEC, *args],
            capture_output=True,
            text=True,
            input=stdin if stdin is not None else "",
            env={**self.env, **(extra or {})},
            cwd=self.root,
            timeout=120,
            check=False,
        )
        self.outputs += [result.stdout, result.stderr]
        return result

    def ok(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        result = self(*args, **kw)
        assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-2000:])
        return result

    def files_text(self) -> str:
        """Everything the commands left on disk: project, node cache, key storage."""
        files = [p for p in self.root.parent.rglob("*") if p.is_file()]
        return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in files)


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    env.update(
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
    )
    return env


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    return Project(root, base_env(tmp_path))


def sandbox_env(project: Project, sb: Sandbox) -> dict[str, str]:
    """What ``eval "$(ecsexec sandbox env)"`` would set (issue 6, Deliver 5)."""
    shown = project.ok("sandbox", "env", "--state-dir", str(sb.state_dir), "--format", "json")
    data = json.loads(shown.stdout)
    values: dict[str, str] = data["set"]
    assert "AWS_ACCESS_KEY_ID" in data["unset"] and "AWS_SECRET_ACCESS_KEY" not in values
    return values


def secrets_of(sb: Sandbox) -> list[str]:
    creds = sb.call(lambda: list(sb.server.rt.creds._by_key.values()))
    found = [c.secret_key for c in creds] + [c.token for c in creds if c.token]
    token_file = sb.state_dir / "container-credentials-token"
    if token_file.exists():
        found.append(token_file.read_text().strip())
    return found


def assert_no_leak(project: Project, sb: Sandbox, *extra: str) -> None:
    secrets = [*secrets_of(sb), *extra]
    assert len(secrets) >= 2
    texts = [*project.outputs, project.files_text()]
    for secret in secrets:
        for text in texts:
            assert secret not in text


def whoami(project: Project, *args: str, **kw: Any) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(
        project.ok("whoami", "--format", "json", *args, **kw).stdout
    )
    return record


def nodes_and_run(project: Project, **kw: Any) -> None:
    """The Done-when pair: discovery, then a command over ECS Exec with KMS encryption."""
    listed = json.loads(project.ok("nodes", "--format", "json", **kw).stdout)
    names = list(listed) if isinstance(listed, dict) else [n["nodename"] for n in listed]
    assert len(names) > 10
    ran = project.ok("run", "-F", SECURE, "--format", "json", "--", "echo ran-$((6*7))", **kw)
    records = json.loads(ran.stdout)
    assert [(r["status"], r["output"]) for r in records] == [("succeeded", "ran-42\n")]
    cache = Path(project.env["XDG_CACHE_HOME"])
    assert list(cache.rglob("*.json"))  # node caches are among the files checked for leaks


# -- container ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def container_sb() -> Iterator[Sandbox]:
    with Sandbox(credentials="container", initial_wait=0.05) as sb:
        yield sb


def test_container_credentials(container_sb: Sandbox, project: Project) -> None:
    env = sandbox_env(project, container_sb)
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
    assert Path(env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]).is_file()
    project.env.update(env)
    project.config('[aws]\ncredential_provider = "container"\n')
    me = whoami(project)
    assert me["arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/ecsexec-sandbox/ecs-task"
    assert me["method"] == "container-role" and me["endpoint_url"] == container_sb.endpoint_url
    nodes_and_run(project)
    assert_no_leak(project, container_sb)


def test_container_credentials_with_a_bad_token(container_sb: Sandbox, project: Project) -> None:
    env = sandbox_env(project, container_sb)
    del env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]
    env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "bad-token-31337"
    project.env.update(env)
    project.config('[aws]\ncredential_provider = "container"\n')
    failed = project("nodes")
    assert failed.returncode == 2
    assert "ecsexec: error: container provider: the container credentials endpoint" in failed.stderr
    assert "returned 401" in failed.stderr and "Traceback" not in failed.stderr
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] not in failed.stderr
    assert_no_leak(project, container_sb, "bad-token-31337")


# -- instance (IMDSv2) --------------------------------------------------------------------------


def test_instance_credentials(project: Project) -> None:
    with Sandbox(credentials="instance", initial_wait=0.05) as sb:
        env = sandbox_env(project, sb)
        assert env["AWS_EC2_METADATA_SERVICE_ENDPOINT"].startswith("http://127.0.0.1:")
        assert not any(k.startswith("AWS_CONTAINER") for k in env)
        project.env.update(env)
        project.config('[aws]\ncredential_provider = "instance"\n')
        me = whoami(project)
        assert me["arn"].endswith(":assumed-role/ecsexec-sandbox/i-0ec5e7ec5e7ec5e70")
        assert me["method"] == "iam-role"
        nodes_and_run(project)
        assert_no_leak(project, sb)


# -- keys from key storage -----------------------------------------------------------------------


def test_keys_from_key_storage(sandbox: Sandbox, project: Project) -> None:
    parser = configparser.ConfigParser()
    parser.read(sandbox.env["AWS_SHARED_CREDENTIALS_FILE"])
    access_key = parser["ecsexec-sandbox"]["aws_access_key_id"]
    secret = parser["ecsexec-sandbox"]["aws_secret_access_key"]
    # No AWS files, profile, keys or endpoint in the environment: only ecsexec.toml.
    project.env["ECSEXEC_KEYSTORE_PASSPHRASE"] = "correct horse battery staple"
    project.config(
        f"""
        [aws]
        region = "us-east-1"
        credential_provider = "keys"
        access_key_id = "{access_key}"
        secret_key_path = "keys/project/demo/aws-secret"
        endpoint_url = "{sandbox.endpoint_url}"

        [keystore]
        dir = "keystore"
        """
    )
    put = project.ok("keys", "put", "keys/project/demo/aws-secret", stdin=secret + "\n")
    assert "stored keys/project/demo/aws-secret (password, 40 bytes)" in put.stderr
    assert (
        secret
        not in (project.root / "keystore")
        .joinpath("keys/project/demo/aws-secret.entry")
        .read_text()
    )
    listed = project.ok("keys", "list")
    assert "keys/project/demo/aws-secret" in listed.stdout and "password" in listed.stdout
    refused = project("keys", "get", "keys/project/demo/aws-secret")
    assert refused.returncode == 2 and "password key: its value cannot be read" in refused.stderr
    me = whoami(project)
    assert me["arn"] == f"arn:aws:iam::{ACCOUNT}:user/sandbox" and me["method"] == "keys"
    nodes_and_run(project)
    shown = project.ok("config", "show")
    assert access_key not in shown.stdout and access_key[-4:] in shown.stdout
    assert 'credential_provider = "keys"' in shown.stdout
    wrong = project("nodes", extra={"ECSEXEC_KEYSTORE_PASSPHRASE": "wrong"})
    assert wrong.returncode == 2 and "keys provider: wrong passphrase" in wrong.stderr
    assert_no_leak(project, sandbox, "correct horse battery staple")


def test_keys_put_never_takes_the_value_from_argv(project: Project) -> None:
    extra = project("keys", "put", "keys/p/x", "the-value")
    assert extra.returncode == 2 and "unexpected extra argument" in extra.stderr.lower()
    empty = project("keys", "put", "keys/p/x", stdin="")
    assert empty.returncode == 2 and "no value on stdin" in empty.stderr
    public = project.ok("keys", "put", "keys/p/id.pub", "--type", "public", stdin="ssh-ed25519 A\n")
    assert "public" in public.stderr
    assert project.ok("keys", "get", "keys/p/id.pub").stdout == "ssh-ed25519 A\n"
    info = project.ok("keys", "info", "keys/p/id.pub").stdout
    assert "type      public" in info and "ssh-ed25519" not in info
    project.ok("keys", "rm", "keys/p/id.pub")
    gone = project("keys", "info", "keys/p/id.pub")
    assert gone.returncode == 2 and "no key at keys/p/id.pub" in gone.stderr


# -- assume-role --------------------------------------------------------------------------------


def test_assume_role_per_source(project: Project) -> None:
    """The static user may not touch ECS, SSM or KMS; only the assumed role can."""
    topology, _ = default_topology()
    user = f"arn:aws:iam::{ACCOUNT}:user/sandbox"
    topology["access"] = [{"deny": f"{svc}:*", "principal": user} for svc in ("ecs", "ssm", "kms")]
    with Sandbox(topology, initial_wait=0.05, run_main=False) as sb:
        project.env.update(sandbox_env(project, sb))
        project.config("")
        denied = project("nodes")
        # An AWS API error exits 3 wherever it happens (errors carry their exit code).
        assert denied.returncode == 3 and "AccessDenied" in denied.stderr
        project.config(
            f"""
            [[sources]]
            name = "operator"
            region = "us-east-1"
            clusters = ["demo", "secure"]
            assume_role_arn = "{OPERATOR}"
            external_id = "ext-2024"
            """
        )
        me = whoami(project, "--sources")
        assert me[0]["arn"] == user  # [aws] itself has no role
        assert me[1]["source"] == "operator"
        assert me[1]["arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/ecsexec-operator/ecsexec"
        nodes_and_run(project)
        shown = project.ok("config", "show").stdout
        assert "ext-2024" not in shown and "assume-role " + OPERATOR in shown
        assert_no_leak(project, sb)


def test_invalid_config_fails_every_command_with_file_line(project: Project) -> None:
    project.config('[aws]\ncredential_provider = "conatiner"\n')
    for args in (["nodes"], ["whoami"], ["config", "show"], ["run", "-F", ".*", "--", "true"]):
        result = project(*args)
        assert result.returncode == 2, args
        assert f"{project.root / 'ecsexec.toml'}:2: [aws].credential_provider" in result.stderr
        assert "did you mean 'container'?" in result.stderr

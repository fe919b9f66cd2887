"""aws.ecs: timestamp parsing and the SSM target; ExecuteCommand to a remembered endpoint."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from ecsexec.aws.clients import session_from_env
from ecsexec.aws.credentials import AwsSessionFactory
from ecsexec.aws.ecs import EcsApi, _utc_timestamp, ssm_target
from ecsexec.aws.settings import AwsSettings
from ecsexec.aws.ssm import SsmSessionControl
from ecsexec.errors import AwsError
from ecsexec.sandbox import Sandbox
from tests.aws.test_credentials import closed_port


def test_epoch_and_iso_timestamps_parse_to_utc() -> None:
    assert _utc_timestamp(1714566896.789).isoformat() == "2024-05-01T12:34:56.789000+00:00"
    assert _utc_timestamp("2024-05-01T12:34:56Z").utcoffset() == timedelta(0)


def test_ssm_target_uses_the_last_arn_segments() -> None:
    assert (
        ssm_target(
            "arn:aws:ecs:us-east-1:1:cluster/demo", "arn:aws:ecs:us-east-1:1:task/demo/abc", "abc-1"
        )
        == "ecs:demo_abc_abc-1"
    )


def _configured_api(sb: Sandbox, monkeypatch: pytest.MonkeyPatch, cache: Path) -> EcsApi:
    """An EcsApi as the CLI builds it: AwsSessionFactory over the process environment."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in sb.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return EcsApi(AwsSessionFactory(AwsSettings())("us-east-1"), region="us-east-1")


def _a_container(api: EcsApi) -> dict[str, str]:
    cluster = api.list_clusters()[0]
    tasks, _ = api.describe_tasks(cluster, api.list_tasks(cluster)[:1], tags=False)
    container = tasks[0]["containers"][0]
    return {
        "cluster": cluster,
        "task": tasks[0]["taskArn"],
        "container": container["name"],
        "runtime_id": container["runtimeId"],
    }


def test_a_later_process_sends_execute_command_without_building_a_client(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    discovery = _configured_api(sandbox, monkeypatch, tmp_path)
    target = _a_container(discovery)  # discovery built a client and remembered its endpoint
    later = _configured_api(sandbox, monkeypatch, tmp_path)
    started = later.execute_command(command="true", **target)
    SsmSessionControl(session_from_env(sandbox.env)).terminate_session(started.session_id)
    assert started.session_id in started.stream_url
    assert later._client is None  # no service model loaded, no endpoint rules run


def test_a_changed_endpoint_setting_is_never_answered_from_memory(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = _a_container(_configured_api(sandbox, monkeypatch, tmp_path))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    moved = EcsApi(AwsSessionFactory(AwsSettings())("us-east-1"), region="us-east-1")
    with pytest.raises(AwsError) as caught:
        moved.execute_command(command="true", **target)
    assert caught.value.code == "EndpointConnectionError"
    assert os.environ["AWS_ENDPOINT_URL"].removeprefix("http://") in caught.value.message

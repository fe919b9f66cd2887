"""The endpoint identity a node cache key holds, computed without a botocore client."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ecsexec.aws.endpoints import endpoint_identity


@pytest.fixture
def aws_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    path = tmp_path / "config"
    path.write_text("[default]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    return path


def test_same_inputs_give_the_same_identity(aws_config: Path) -> None:
    assert endpoint_identity("ECS", "us-east-1") == endpoint_identity("ECS", "us-east-1")


@pytest.mark.parametrize(
    "variable",
    ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECS", "AWS_PROFILE", "AWS_USE_FIPS_ENDPOINT"],
)
def test_each_endpoint_variable_changes_it(
    aws_config: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    before = endpoint_identity("ECS", "us-east-1")
    monkeypatch.setenv(variable, "http://127.0.0.1:1" if "URL" in variable else "x")
    assert endpoint_identity("ECS", "us-east-1") != before


def test_region_and_explicit_endpoint_change_it(aws_config: Path) -> None:
    base = endpoint_identity("ECS", "us-east-1")
    assert endpoint_identity("ECS", "eu-west-1") != base
    assert endpoint_identity("ECS", "us-east-1", "http://127.0.0.1:1") != base


def test_another_service_variable_does_not(
    aws_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = endpoint_identity("ECS", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:1")
    assert endpoint_identity("ECS", "us-east-1") == before


def test_an_edited_config_file_changes_it(aws_config: Path) -> None:
    # A profile's endpoint_url lives in the file: an edit must not reuse the old cache.
    before = endpoint_identity("ECS", "us-east-1")
    aws_config.write_text("[default]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:1\n")
    assert endpoint_identity("ECS", "us-east-1") != before


def test_a_missing_config_file_is_an_identity_too(
    aws_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config.parent / "absent"))
    assert "config=none" in endpoint_identity("ECS", "us-east-1")

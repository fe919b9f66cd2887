"""The endpoint identity a node cache key holds, computed without a botocore client, and
the endpoint URLs remembered under it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ecsexec.aws.endpoints import (
    MEMORY_LIMIT,
    endpoint_identity,
    recall_endpoint,
    remember_endpoint,
)


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


# -- remembered endpoints -------------------------------------------------------------------


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "ecsexec"


def test_a_remembered_endpoint_is_recalled_only_for_its_identity(cache_home: Path) -> None:
    assert recall_endpoint("identity A") is None
    remember_endpoint("identity A", "https://ecs.eu-west-3.amazonaws.com")
    remember_endpoint("identity B", "http://127.0.0.1:4000")
    assert recall_endpoint("identity A") == "https://ecs.eu-west-3.amazonaws.com"
    assert recall_endpoint("identity B") == "http://127.0.0.1:4000"
    assert recall_endpoint("identity C") is None
    remember_endpoint("identity A", "http://127.0.0.1:5000")  # a new answer replaces the old
    assert recall_endpoint("identity A") == "http://127.0.0.1:5000"


def test_the_file_is_private_and_names_no_identity(cache_home: Path) -> None:
    remember_endpoint("profile=secret-team-profile", "http://127.0.0.1:4000")
    path = cache_home / "endpoints.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert "secret-team-profile" not in path.read_text()


def test_only_the_newest_identities_are_kept(cache_home: Path) -> None:
    for number in range(MEMORY_LIMIT + 5):
        remember_endpoint(f"identity {number}", f"http://127.0.0.1:{number + 1000}")
    assert recall_endpoint("identity 0") is None
    assert (
        recall_endpoint(f"identity {MEMORY_LIMIT + 4}") == f"http://127.0.0.1:{MEMORY_LIMIT + 1004}"
    )
    assert recall_endpoint("identity 5") == "http://127.0.0.1:1005"


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"k": 3}', ""])
def test_a_damaged_file_is_forgotten_and_rewritten(cache_home: Path, content: str) -> None:
    cache_home.mkdir(parents=True)
    (cache_home / "endpoints.json").write_text(content)
    assert recall_endpoint("identity A") is None
    remember_endpoint("identity A", "http://127.0.0.1:4000")
    assert recall_endpoint("identity A") == "http://127.0.0.1:4000"


def test_a_cache_that_cannot_be_written_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file where a directory must be
    remember_endpoint("identity A", "http://127.0.0.1:4000")
    assert recall_endpoint("identity A") is None

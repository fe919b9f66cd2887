"""Node selection's cache identity: pure, no sandbox (a boto3 session calls nothing here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3

from ecsexec.app.selection import fixed_node_cache


def _factory(
    endpoint: str, access_key: str = "AKIDEXAMPLE"
) -> Callable[[str], boto3.session.Session]:
    def make(region: str) -> boto3.session.Session:
        session = boto3.session.Session(
            aws_access_key_id=access_key, aws_secret_access_key="x", region_name=region
        )
        real_client = session.client

        def client(service: str, **kwargs: Any) -> Any:
            return real_client(service, endpoint_url=endpoint, **kwargs)

        session.client = client
        return session

    return make


def test_a_callers_session_factory_gets_a_cache_per_endpoint_and_access_key() -> None:
    # Two private sandboxes share no variable or setting: only their sessions tell them
    # apart, so their cached nodes must never answer for each other.
    one = fixed_node_cache(_factory("http://127.0.0.1:1111"), ["us-east-1"])
    again = fixed_node_cache(_factory("http://127.0.0.1:1111"), ["us-east-1"])
    other = fixed_node_cache(_factory("http://127.0.0.1:2222"), ["us-east-1"])
    other_key = fixed_node_cache(_factory("http://127.0.0.1:1111", "AKIDOTHER"), ["us-east-1"])
    assert one.directory == again.directory
    assert len({one.directory, other.directory, other_key.directory}) == 3

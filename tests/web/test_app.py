"""Pure pieces of the server: listen addresses, TLS flags, sign-in redirects, error shapes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from ecsexec.cli.server import parse_listen, tls_context
from ecsexec.errors import ConfigurationError
from ecsexec.web.app import CONTENT_SECURITY_POLICY
from ecsexec.web.auth import _safe_next
from ecsexec.web.keys import LiveConnections


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:8440", ("127.0.0.1", 8440)),
        ("0.0.0.0:443", ("0.0.0.0", 443)),
        ("[::1]:8440", ("::1", 8440)),
        ("localhost:9000", ("localhost", 9000)),
    ],
)
def test_listen_addresses_parse(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["8440", "host:", "host:0", "host:70000", "::1:80", "a b:1"])
def test_a_bad_listen_address_names_the_flag_and_the_form(listen: str) -> None:
    with pytest.raises(ConfigurationError, match=r"--listen.*HOST:PORT"):
        parse_listen(listen)


def test_tls_needs_both_files() -> None:
    assert tls_context(None, None) is None
    with pytest.raises(ConfigurationError, match="give both or neither"):
        tls_context("cert.pem", None)
    with pytest.raises(ConfigurationError, match="cannot load them"):
        tls_context("/nonexistent/cert.pem", "/nonexistent/key.pem")


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("/activity?user=ana", "/activity?user=ana"),
        ("/", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: x=y", "/"),
        (None, "/"),
    ],
)
def test_after_sign_in_only_local_paths_are_followed(wanted: object, expected: str) -> None:
    assert _safe_next(wanted) == expected


def test_the_content_security_policy_allows_only_this_origin() -> None:
    directives = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY and "*" not in CONTENT_SECURITY_POLICY


def test_signing_out_closes_every_connection_of_that_user_only() -> None:
    closed: list[str] = []

    def closer(name: str) -> Callable[[], Awaitable[None]]:
        async def close() -> None:
            closed.append(name)

        return close

    async def scenario() -> None:
        live = LiveConnections()
        live.add("ana", closer("ana-terminal"))
        live.add("ana", closer("ana-stream"), ends_with_run=True)
        bo = live.add("bo", closer("bo-terminal"))
        live.add("bo", closer("bo-stream"), ends_with_run=True)
        assert await live.close_user("ana") == 2
        assert sorted(closed) == ["ana-stream", "ana-terminal"] and live.count("ana") == 0
        live.discard("bo", bo)
        live.add("cy", closer("cy-terminal"))
        await live.close_all()  # shutting down: run streams end with their runs instead
        assert closed[2:] == ["cy-terminal"] and live.count("bo") == 1

    asyncio.run(scenario())

"""Pure pieces of the server: listen addresses, TLS flags, sign-in redirects, error shapes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ecsexec.cli.server import parse_listen, plain_http_warning, server_settings, tls_context
from ecsexec.config import load_config
from ecsexec.errors import ConfigurationError
from ecsexec.web.app import CONTENT_SECURITY_POLICY
from ecsexec.web.auth import _safe_next, client_address
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


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # not from a trusted proxy: ignored
        ("127.0.0.1", [], "127.0.0.1"),  # the proxy itself
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", ["1.2.3.4, 198.51.100.1"], "198.51.100.1"),  # the client can forge 1.2.3.4
        ("127.0.0.1", ["198.51.100.1, 10.1.2.3"], "198.51.100.1"),  # an inner proxy skipped
        ("127.0.0.1", ["198.51.100.1", "10.1.2.3"], "198.51.100.1"),  # repeated headers
        ("127.0.0.1", ["not-an-address"], "127.0.0.1"),
        ("127.0.0.1", ["10.1.2.3"], "10.1.2.3"),  # only proxies: the first of them
        (None, ["198.51.100.1"], "-"),
    ],
)
def test_the_client_address_is_believed_from_trusted_proxies_only(
    remote: str | None, forwarded: list[str], expected: str
) -> None:
    trusted = ("127.0.0.1/32", "10.1.0.0/16")
    assert client_address(remote, forwarded, trusted) == expected


def test_the_servers_settings_take_origins_and_proxies_from_its_config(tmp_path: Path) -> None:
    path = tmp_path / "ecsexec.toml"
    path.write_text(
        '[server]\norigins = ["https://console.example"]\ntrusted_proxies = ["127.0.0.1"]\n'
    )
    settings = server_settings(load_config(path, search=False, environ={}), tmp_path, tls=False)
    assert settings.extra_origins == frozenset({"https://console.example"})
    assert settings.trusted_proxies == ("127.0.0.1/32",)
    assert settings.state_dir == tmp_path and not settings.tls


@pytest.mark.parametrize(
    ("host", "tls", "warns"),
    [
        ("127.0.0.1", False, False),
        ("::1", False, False),
        ("localhost", False, False),
        ("0.0.0.0", False, True),
        ("::", False, True),
        ("10.0.0.5", False, True),
        ("console.example", False, True),
        ("0.0.0.0", True, False),
    ],
)
def test_plain_http_beyond_loopback_is_warned_about(host: str, tls: bool, warns: bool) -> None:
    warning = plain_http_warning(host, tls=tls)
    assert bool(warning) == warns
    if warns:
        assert "--tls-cert" in warning and "in clear" in warning


def test_signing_out_closes_only_what_that_sign_in_opened() -> None:
    closed: list[str] = []

    def closer(name: str) -> Callable[[], Awaitable[None]]:
        async def close() -> None:
            closed.append(name)

        return close

    async def scenario() -> None:
        live = LiveConnections()
        live.add("ana", closer("laptop-terminal"), credential="session-1")
        live.add("ana", closer("laptop-stream"), ends_with_run=True, credential="session-1")
        live.add("ana", closer("phone-stream"), ends_with_run=True, credential="session-2")
        live.add("ana", closer("ci-stream"), ends_with_run=True, credential="token-1")
        assert await live.close_user("ana", credential="session-1") == 2
        assert sorted(closed) == ["laptop-stream", "laptop-terminal"] and live.count("ana") == 2

    asyncio.run(scenario())

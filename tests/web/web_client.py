"""An HTTP client for the web tests: signed in by cookie (with CSRF) or by API token."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

if TYPE_CHECKING:
    from tests.web.conftest import WebServer, WebUser

T = TypeVar("T")


class Caller:
    """An aiohttp client session signed in one way: a browser's cookie (with its CSRF
    token) or an API token. Use inside ``async with``."""

    def __init__(self, server: WebServer, user: WebUser | None, *, via: str = "token") -> None:
        self.server = server
        self.user = user
        self.via = via
        self.csrf = ""
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies for 127.0.0.1
            headers=({"Authorization": f"Bearer {user.token}"} if user and via == "token" else {}),
        )

    async def __aenter__(self) -> Caller:
        if self.user is not None and self.via == "cookie":
            response = await self.sign_in(self.user.name, self.user.password)
            assert response.status == 302, await response.text()
            me = await self.get_json("/api/v1/me")
            self.csrf = me["csrf_token"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def sign_in(self, name: str, password: str) -> aiohttp.ClientResponse:
        async with self.session.get(self.server.url("/login")) as page:
            html = await page.text()
        token = re.search(r'name="csrf_token" value="([^"]*)"', html)
        assert token is not None, html
        response = await self.session.post(
            self.server.url("/login"),
            data={
                "username": name,
                "password": password,
                "csrf_token": token.group(1),
                "next": "/",
            },
            allow_redirects=False,
        )
        await response.read()
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if self.csrf and method not in ("GET", "HEAD") and "X-CSRF-Token" not in headers:
            headers["X-CSRF-Token"] = self.csrf
        if headers.get("X-CSRF-Token") == "":
            del headers["X-CSRF-Token"]
        return self.session.request(
            method, self.server.url(path), headers=headers, allow_redirects=False, **kwargs
        )

    async def get_json(self, path: str, status: int = 200) -> Any:
        async with self.request("GET", path) as response:
            body = await response.json()
            assert response.status == status, body
            return body

    async def send(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.send_raw(method, path, body)

    async def send_raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        csrf: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """``send`` with the CSRF token replaced (``csrf``, "" for none) and extra headers."""
        sent = dict(headers or {})
        if csrf is not None:
            sent["X-CSRF-Token"] = csrf
        async with self.request(method, path, json=body, headers=sent) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text) if text else None
            except ValueError:
                return response.status, text


def run(coro: Awaitable[T]) -> T:
    """Run a test's async scenario to the end."""

    async def main() -> T:
        return await coro

    return asyncio.run(main())

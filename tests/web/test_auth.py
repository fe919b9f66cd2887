"""Authentication against the real server: cookies, tokens, bad passwords, throttling,
disabled users, CSRF, origins, and sign-out closing the user's streams."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from ecsexec.store.team import database_path, open_team_store
from ecsexec.web.auth import LOGIN_COOKIE, SESSION_COOKIE
from ecsexec.web.passwords import hash_password, new_api_token
from tests.web.conftest import WebServer, WebUser
from tests.web.web_client import Caller, run

pytestmark = pytest.mark.e2e


def test_a_password_signs_in_with_a_strict_httponly_session_cookie(web_server: WebServer) -> None:
    async def scenario() -> None:
        async with Caller(web_server, None) as caller:
            response = await caller.sign_in("operator", web_server.users["operator"].password)
            assert response.status == 302 and response.headers["Location"] == "/"
            cookie = response.cookies[SESSION_COOKIE]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            assert not cookie["secure"]  # plain HTTP here; Secure under TLS
            me = await caller.get_json("/api/v1/me")
            assert me["name"] == "operator" and me["role"] == "operator"
            assert "run_command" in me["actions"] and "admin" not in me["actions"]

    run(scenario())


def test_a_bearer_token_authenticates_and_a_wrong_one_does_not(web_server: WebServer) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["viewer"]) as caller:
            me = await caller.get_json("/api/v1/me")
            assert me["name"] == "viewer" and "csrf_token" not in me
        async with (
            aiohttp.ClientSession(headers={"Authorization": "Bearer ecx_not-a-token"}) as session,
            session.get(web_server.url("/api/v1/me")) as response,
        ):
            body = await response.json()
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert body["error"]["code"] == "unauthorized"

    run(scenario())


def test_a_wrong_password_is_refused_without_saying_which_part(web_server: WebServer) -> None:
    async def scenario() -> None:
        async with Caller(web_server, None) as caller:
            wrong = await caller.sign_in("viewer", "not the password")
            nobody = await caller.sign_in("nobody-at-all", "not the password")
            for response in (wrong, nobody):
                assert response.status == 401
                assert SESSION_COOKIE not in response.cookies
            assert (await caller.send("GET", "/api/v1/me"))[0] == 401

    run(scenario())


def test_repeated_failures_lock_sign_in_even_for_the_right_password(
    web_server: WebServer,
) -> None:
    # The fixture's server allows 3 failures per user and address.
    store = open_team_store(database_path(web_server.state_dir))
    store.add_user("locked-out", "viewer", hash_password("right-password"))
    store.close()

    async def scenario() -> None:
        async with Caller(web_server, None) as caller:
            for _ in range(3):
                assert (await caller.sign_in("locked-out", "wrong")).status == 401
            refused = await caller.sign_in("locked-out", "right-password")
            assert refused.status == 429
            assert SESSION_COOKIE not in refused.cookies
            admin = web_server.users["admin"]
        async with Caller(web_server, admin) as caller:
            entries = (await caller.get_json("/api/v1/audit?user=locked-out"))["entries"]
            outcomes = [(e["action"], e["outcome"], e["detail"].get("reason")) for e in entries]
            assert ("sign-in", "denied", "throttled") in outcomes
            assert outcomes.count(("sign-in", "failed", "bad credentials")) == 3
            assert all(e["source"] == "127.0.0.1" for e in entries)

    run(scenario())


def test_a_disabled_user_can_neither_sign_in_nor_use_a_token(web_server: WebServer) -> None:
    store = open_team_store(database_path(web_server.state_dir))
    store.add_user("leaver", "operator", hash_password("leaver-password"))
    token, digest = new_api_token()
    store.add_token("leaver", "ci", digest, None)
    store.close()

    async def status() -> int:
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
            session.get(web_server.url("/api/v1/me")) as response,
        ):
            return response.status

    async def scenario() -> None:
        assert await status() == 200
        store = open_team_store(database_path(web_server.state_dir))
        store.set_disabled("leaver", True)
        store.close()
        assert await status() == 401
        async with Caller(web_server, None) as caller:
            assert (await caller.sign_in("leaver", "leaver-password")).status == 401

    run(scenario())


def test_the_sign_in_form_needs_its_own_double_submitted_token(web_server: WebServer) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            form = {"username": "viewer", "password": web_server.users["viewer"].password}
            async with session.post(
                web_server.url("/login"), data=form, allow_redirects=False
            ) as response:
                assert response.status == 403
                page = await response.text()
                assert "The sign-in form expired" in page and "Traceback" not in page
            session.cookie_jar.update_cookies({LOGIN_COOKIE: "abc"})
            async with session.post(
                web_server.url("/login"),
                data={**form, "csrf_token": "xyz"},
                allow_redirects=False,
            ) as response:
                assert response.status == 403

    run(scenario())


def test_state_changes_with_a_cookie_need_the_csrf_token(web_server: WebServer) -> None:
    body = {"name": "from-a-form"}

    async def scenario() -> None:
        async with Caller(web_server, web_server.users["viewer"], via="cookie") as caller:
            missing = await caller.send_raw("POST", "/api/v1/tokens", body, csrf="")
            wrong = await caller.send_raw("POST", "/api/v1/tokens", body, csrf="x" * 43)
            for status, answer in (missing, wrong):
                assert status == 403
                assert "CSRF" in answer["error"]["message"]
            foreign = await caller.send_raw(
                "POST", "/api/v1/tokens", body, headers={"Origin": "https://evil.example"}
            )
            assert foreign[0] == 403
            tokens = (await caller.get_json("/api/v1/tokens"))["tokens"]
            assert "from-a-form" not in [t["name"] for t in tokens]  # nothing was done
            status, created = await caller.send("POST", "/api/v1/tokens", body)
            assert status == 201 and created["token"].startswith("ecx_")

    run(scenario())


def test_signing_out_ends_the_session_and_closes_its_event_streams(
    web_server: WebServer,
) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["operator"], via="cookie") as caller:
            status, started = await caller.send(
                "POST", "/api/v1/runs", {"filter": "ECS:Service-Name: web", "command": "sleep 20"}
            )
            assert status == 202, started
            async with caller.request("GET", f"/api/v1/runs/{started['id']}/events") as stream:
                assert stream.status == 200
                await stream.content.readuntil(b"event: run_started")
                async with caller.request("POST", "/logout") as out:
                    assert out.status == 302
                rest = await asyncio.wait_for(stream.content.read(), timeout=10)
                assert b"run_finished" not in rest  # closed at sign-out, not at the run's end
            assert (await caller.send("GET", "/api/v1/me"))[0] == 401
        async with Caller(web_server, web_server.users["operator"]) as caller:
            status, _ = await caller.send("POST", f"/api/v1/runs/{started['id']}/stop")
            assert status == 200

    run(scenario())


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("via", "change"), [("token", "disable"), ("cookie", "disable"), ("token", "demote")]
)
def test_disabling_a_user_ends_their_open_event_streams(
    web_server: WebServer, via: str, change: str
) -> None:
    name = f"stream-leaver-{via}-{change}"
    store = open_team_store(database_path(web_server.state_dir))
    store.add_user(name, "operator", hash_password(f"{name}-password"))
    token, digest = new_api_token()
    store.add_token(name, "ci", digest, None)
    store.close()
    user = WebUser(name, f"{name}-password", "operator", token)

    async def scenario() -> None:
        async with Caller(web_server, user, via=via) as caller:
            status, started = await caller.send(
                "POST", "/api/v1/runs", {"filter": "ECS:Service-Name: web", "command": "sleep 25"}
            )
            assert status == 202, started
            async with caller.request("GET", started["events"]) as stream:
                assert stream.status == 200
                await stream.content.readuntil(b"event: run_started")
                changing = open_team_store(database_path(web_server.state_dir))
                if change == "disable":
                    changing.set_disabled(name, True)  # as `ecsexec server users disable`
                else:
                    changing.set_role(name, "no-such-role")  # a role that may view nothing
                changing.close()
                rest = await asyncio.wait_for(stream.content.read(), timeout=20)
                assert b"run_finished" not in rest  # closed for the user, not at the run's end
        async with Caller(web_server, web_server.users["admin"]) as admin:
            await admin.send("POST", f"/api/v1/runs/{started['id']}/stop")

    run(scenario())


def test_behind_a_trusted_proxy_each_client_is_throttled_and_audited_by_its_own_address(
    web_server: WebServer,
) -> None:
    # The fixture trusts 127.0.0.1 as a proxy and allows 3 failures per user and address.
    store = open_team_store(database_path(web_server.state_dir))
    store.add_user("proxied", "viewer", hash_password("proxied-password"))
    store.close()

    async def sign_in(client: str, password: str) -> int:
        async with Caller(web_server, None) as caller:
            caller.session.headers["X-Forwarded-For"] = f"{client}, 127.0.0.1"
            return (await caller.sign_in("proxied", password)).status

    async def scenario() -> None:
        for _ in range(3):
            assert await sign_in("198.51.100.7", "wrong") == 401
        assert await sign_in("198.51.100.7", "proxied-password") == 429  # locked there
        assert await sign_in("198.51.100.8", "proxied-password") == 302  # not elsewhere
        async with Caller(web_server, web_server.users["admin"]) as admin:
            entries = (await admin.get_json("/api/v1/audit?user=proxied&action=sign-in"))["entries"]
        assert {e["source"] for e in entries} == {"198.51.100.7", "198.51.100.8"}

    run(scenario())


def test_the_consoles_public_origin_behind_a_tls_proxy_is_accepted(web_server: WebServer) -> None:
    # The fixture's server is told its public origin is https://console.example.
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["viewer"], via="cookie") as browser:
            body = {"name": "through-the-proxy"}
            public = await browser.send_raw(
                "POST", "/api/v1/tokens", body, headers={"Origin": "https://console.example"}
            )
            assert public[0] == 201, public
            other = await browser.send_raw(
                "POST", "/api/v1/tokens", body, headers={"Origin": "https://other.example"}
            )
            assert other[0] == 403

    run(scenario())


def test_concurrent_guesses_cannot_outrun_the_sign_in_throttle(web_server: WebServer) -> None:
    # The fixture allows 3 failures per user and address; 12 guesses sent at once must
    # not all be checked (each check takes an argon2 hash's time, so they overlap).
    store = open_team_store(database_path(web_server.state_dir))
    store.add_user("rushed", "viewer", hash_password("rushed-password"))
    store.close()

    async def guess(caller: Caller, token: str, number: int) -> int:
        async with caller.session.post(
            web_server.url("/login"),
            data={"username": "rushed", "password": f"guess-{number}", "csrf_token": token},
            allow_redirects=False,
        ) as response:
            return response.status

    async def scenario() -> list[int]:
        async with Caller(web_server, None) as caller:
            caller.session.headers["X-Forwarded-For"] = "198.51.100.20"
            async with caller.session.get(web_server.url("/login")) as page:
                token = re.search(r'name="csrf_token" value="([^"]*)"', await page.text())
            assert token is not None
            return list(await asyncio.gather(*(guess(caller, token[1], n) for n in range(12))))

    statuses = run(scenario())
    assert statuses.count(401) <= 3, statuses
    assert statuses.count(429) >= 9, statuses


def test_behind_a_tls_proxy_the_session_cookie_is_secure(web_server: WebServer) -> None:
    # The fixture trusts 127.0.0.1 as a proxy; the proxy says the browser used HTTPS.
    async def scenario() -> None:
        async with Caller(web_server, None) as caller:
            # The test talks plain HTTP to the server, as the proxy does; its cookie jar
            # stands for the browser, which reached the proxy over HTTPS.
            await caller.session.close()
            caller.session = aiohttp.ClientSession(
                cookie_jar=aiohttp.CookieJar(
                    unsafe=True, treat_as_secure_origin=[web_server.base_url]
                ),
                headers={"X-Forwarded-Proto": "https"},
            )
            response = await caller.sign_in("viewer", web_server.users["viewer"].password)
            assert response.status == 302
            assert response.cookies[SESSION_COOKIE]["secure"]
            assert response.headers["Strict-Transport-Security"].startswith("max-age=")

    run(scenario())


def test_signing_out_of_the_console_leaves_the_users_scripts_streams_open(
    web_server: WebServer,
) -> None:
    # A CI job following a run with the user's API token must not break because the user
    # signed out of their browser: sign-out ends what that sign-in opened.
    async def scenario() -> None:
        operator = web_server.users["operator"]
        async with Caller(web_server, operator) as script:
            status, started = await script.send(
                "POST",
                "/api/v1/runs",
                {"filter": "ECS:Service-Name: web", "command": "sleep 3; echo done"},
            )
            assert status == 202, started
            async with script.request("GET", started["events"]) as stream:
                await stream.content.readuntil(b"event: run_started")
                async with (
                    Caller(web_server, operator, via="cookie") as browser,
                    browser.request("POST", "/logout") as out,
                ):
                    assert out.status == 302
                rest = await asyncio.wait_for(stream.content.read(), timeout=30)
                assert b"event: run_finished" in rest

    run(scenario())

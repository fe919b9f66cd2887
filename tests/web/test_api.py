"""The REST API against the sandbox: ACL on every route, validation, runs with SSE and resume,
stop, out-of-scope refusals, jobs with options, write-only keys, tokens, the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
import pytest

from ecsexec.store.team import database_path, open_team_store
from ecsexec.web.acl import Action
from ecsexec.web.keys import POLICY, RUNS
from ecsexec.web.openapi import document
from ecsexec.web.passwords import hash_password, new_api_token
from tests.web.conftest import WebServer, WebUser
from tests.web.web_client import Caller, run

pytestmark = pytest.mark.e2e

WEB = "ECS:Service-Name: web"

# What each route requires: an action, or None for any signed-in user. A route missing
# here fails test_every_route_is_in_the_acl_table: a new route must say who may use it.
ROUTE_ACTIONS: dict[tuple[str, str], Action | None] = {
    ("GET", "/api/v1/me"): None,
    ("GET", "/api/v1/nodes"): Action.VIEW_NODES,
    ("GET", "/api/v1/nodes/{name}"): Action.VIEW_NODES,
    ("POST", "/api/v1/runs"): Action.RUN_COMMAND,
    ("GET", "/api/v1/runs"): Action.VIEW_ACTIVITY,
    ("GET", "/api/v1/runs/{run_id}"): Action.VIEW_ACTIVITY,
    ("GET", "/api/v1/runs/{run_id}/events"): Action.VIEW_ACTIVITY,
    ("GET", "/api/v1/runs/{run_id}/nodes/{node}/log"): Action.VIEW_ACTIVITY,
    ("POST", "/api/v1/runs/{run_id}/stop"): Action.RUN_COMMAND,
    ("GET", "/api/v1/jobs"): Action.RUN_JOB,
    ("GET", "/api/v1/jobs/{name}"): Action.RUN_JOB,
    ("POST", "/api/v1/jobs/{name}/runs"): Action.RUN_JOB,
    ("GET", "/api/v1/keys"): Action.MANAGE_KEYS,
    ("PUT", "/api/v1/keys/{path}"): Action.MANAGE_KEYS,
    ("DELETE", "/api/v1/keys/{path}"): Action.MANAGE_KEYS,
    ("GET", "/api/v1/audit"): Action.ADMIN,
    ("GET", "/api/v1/tokens"): None,
    ("POST", "/api/v1/tokens"): None,
    ("DELETE", "/api/v1/tokens/{token_id}"): None,
    ("GET", "/api/v1/openapi.json"): None,
    # pages and the terminal
    ("GET", "/"): Action.VIEW_NODES,
    ("GET", "/nodes"): Action.VIEW_NODES,
    ("GET", "/nodes/preview"): Action.VIEW_NODES,
    ("GET", "/nodes/{name}"): Action.VIEW_NODES,
    ("GET", "/nodes/{name}/terminal"): Action.OPEN_TERMINAL,
    ("GET", "/nodes/{name}/terminal/ws"): Action.OPEN_TERMINAL,
    ("GET", "/commands"): Action.RUN_COMMAND,
    ("GET", "/jobs"): Action.RUN_JOB,
    ("GET", "/jobs/{path}"): Action.RUN_JOB,
    ("GET", "/activity"): Action.VIEW_ACTIVITY,
    ("GET", "/activity/{run_id}"): Action.VIEW_ACTIVITY,
    ("GET", "/keys"): Action.MANAGE_KEYS,
    ("GET", "/audit"): Action.ADMIN,
    ("GET", "/tokens"): None,  # every signed-in user manages their own tokens
}
# Reachable without signing in, on purpose.
PUBLIC = {("GET", "/login"), ("POST", "/login"), ("POST", "/logout")}
PATH_VALUES = {
    "run_id": "1",
    "name": "nobody",
    "node": "nobody",
    "path": "keys/project/p/k",
    "token_id": "none",
}


def routes(server: WebServer) -> list[tuple[str, str]]:
    """(method, canonical path) of every route the app serves, static files aside."""
    found = []
    for route in server.app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or canonical.startswith("/static"):
            continue
        found.append((route.method, canonical))
    return sorted(set(found))


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


def test_every_route_is_in_the_acl_table(web_server: WebServer) -> None:
    served = set(routes(web_server))
    unknown = served - set(ROUTE_ACTIONS) - PUBLIC
    assert not unknown, f"routes without an expected ACL in ROUTE_ACTIONS: {sorted(unknown)}"
    assert set(ROUTE_ACTIONS) - served <= {
        k for k in ROUTE_ACTIONS if not k[1].startswith("/api/")
    }  # every API route in the table exists


def test_no_route_answers_anyone_signed_out(web_server: WebServer) -> None:
    async def scenario() -> list[str]:
        wrong = []
        async with aiohttp.ClientSession() as session:
            for method, path in routes(web_server):
                if (method, path) in PUBLIC:
                    continue
                async with session.request(
                    method, web_server.url(concrete(path)), allow_redirects=False, json={}
                ) as response:
                    text = await response.text()
                    if path.startswith("/api/"):
                        ok = response.status == 401 and json.loads(text)["error"]["status"] == 401
                    else:
                        ok = response.status in (302, 401, 403) and (
                            response.status != 302
                            or response.headers["Location"].startswith("/login")
                        )
                    if not ok:
                        wrong.append(f"{method} {path}: {response.status}")
        return wrong

    assert run(scenario()) == []


@pytest.mark.parametrize("role", ["viewer", "webops"])
def test_every_route_a_role_lacks_is_refused_and_audited(web_server: WebServer, role: str) -> None:
    policy = web_server.app[POLICY]
    refused = [
        (method, path)
        for (method, path), action in ROUTE_ACTIONS.items()
        if action is not None
        and not policy.allows(role, action)
        and (method, path) in set(routes(web_server))
    ]
    assert refused  # the table means something for this role

    async def scenario() -> list[str]:
        wrong = []
        async with Caller(web_server, web_server.users[role]) as caller:
            for method, path in refused:
                async with caller.request(method, concrete(path), json={}) as response:
                    text = await response.text()
                    if response.status != 403 or "Traceback" in text:
                        wrong.append(f"{method} {path}: {response.status}")
            async with Caller(web_server, web_server.users["admin"]) as admin:
                audit = await admin.get_json(f"/api/v1/audit?user={role}&action=acl-deny&limit=500")
            targets = {entry["target"] for entry in audit["entries"]}
            for method, path in refused:
                if concrete(path) not in targets:
                    wrong.append(f"{method} {path}: refusal not audited")
        return wrong

    assert run(scenario()) == []


def test_the_openapi_document_lists_exactly_the_api_routes(web_server: WebServer) -> None:
    served = {
        (method.lower(), path.removeprefix("/api/v1"))
        for method, path in routes(web_server)
        if path.startswith("/api/v1/")
    }
    documented = {
        (method, path) for path, operations in document()["paths"].items() for method in operations
    }
    assert served == documented

    async def scenario() -> dict[str, Any]:
        async with Caller(web_server, web_server.users["viewer"]) as caller:
            result: dict[str, Any] = await caller.get_json("/api/v1/openapi.json")
            return result

    assert run(scenario())["openapi"].startswith("3.1")


@pytest.mark.parametrize(
    ("method", "path", "body", "says"),
    [
        ("POST", "/api/v1/runs", {"command": "true"}, "filter: is required"),
        ("POST", "/api/v1/runs", {"filter": WEB, "command": "  "}, "command: must not be blank"),
        ("POST", "/api/v1/runs", {"filter": WEB, "command": 3}, "command: must be a string"),
        ("POST", "/api/v1/runs", {"filter": WEB, "command": "x", "threads": 0}, "threads: must"),
        ("POST", "/api/v1/runs", {"filter": WEB, "command": "x", "threads": "4"}, "threads:"),
        ("POST", "/api/v1/runs", {"filter": WEB, "command": "x", "keepgoing": 1}, "keepgoing"),
        ("POST", "/api/v1/runs", {"filter": WEB, "command": "x", "shell": 1}, "unknown field"),
        ("POST", "/api/v1/runs", [1], "must be a JSON object"),
        ("POST", "/api/v1/runs", {"filter": 'name: "web', "command": "x"}, "unclosed quote"),
        ("POST", "/api/v1/runs", {"filter": "name: no-such-node", "command": "x"}, "no nodes"),
        ("GET", "/api/v1/runs?limit=abc", None, "limit: must be a whole number"),
        ("GET", "/api/v1/runs?limit=0", None, "limit: must be between 1 and 1000"),
        ("GET", "/api/v1/runs?status=happy", None, "status: must be one of"),
        ("GET", "/api/v1/audit?before=-1", None, "before: must be between"),
        ("GET", "/api/v1/runs/1/events?after=x", None, "Last-Event-ID"),
        ("POST", "/api/v1/jobs/test/greet/runs", {"options": {}}, "option 'who' is required"),
        ("POST", "/api/v1/jobs/test/greet/runs", {"options": {"who": "A1"}}, "does not match"),
        ("POST", "/api/v1/jobs/test/greet/runs", {"options": {"zz": "a"}}, "has no option"),
        ("POST", "/api/v1/jobs/test/greet/runs", {"options": {"who": 5}}, "options.who"),
        ("PUT", "/api/v1/keys/project/p/bad%20name", {"value": "x"}, "path: key path"),
        ("PUT", "/api/v1/keys/project/p/k", {"type": "gpg", "value": "x"}, "type: must be"),
        ("PUT", "/api/v1/keys/project/p/k", {"value": ""}, "value: must not be blank"),
        ("POST", "/api/v1/tokens", {"name": "t", "expires_in_days": 1000}, "expires_in_days"),
        # A lone surrogate is valid JSON but no text: it cannot be run, stored or logged.
        ("POST", "/api/v1/runs", {"filter": WEB, "command": "echo \ud800"}, "command: is not"),
        ("POST", "/api/v1/runs", {"filter": "name: \udfff", "command": "x"}, "filter: is not"),
        ("POST", "/api/v1/tokens", {"name": "\ud800"}, "name: is not valid Unicode"),
        ("PUT", "/api/v1/keys/project/p/k", {"value": "\ud800"}, "value: is not valid Unicode"),
        ("POST", "/api/v1/jobs/test/greet/runs", {"options": {"who": "\udc00"}}, "options.who"),
        ("POST", "/api/v1/jobs/test/greet/runs", {"options": {"\udc00": "a"}}, "options: "),
    ],
)
def test_bad_input_is_a_400_naming_what_was_wrong(
    web_server: WebServer, method: str, path: str, body: Any, says: str
) -> None:
    async def scenario() -> tuple[int, Any]:
        async with Caller(web_server, web_server.users["admin"]) as caller:
            if body is None:
                return await caller.send(method, path)
            return await caller.send(method, path, body)

    status, answer = run(scenario())
    assert status == 400, answer
    assert answer["error"]["code"] == "bad_request"
    assert says in answer["error"]["message"], answer
    assert "Traceback" not in json.dumps(answer)


def test_a_body_that_is_not_json_is_a_clear_400(web_server: WebServer) -> None:
    async def scenario() -> list[tuple[int, str]]:
        async with Caller(web_server, web_server.users["admin"]) as caller:
            answers = []
            for data, kind in ((b"{nope", "application/json"), (b"a=b", "text/plain")):
                async with caller.request(
                    "POST", "/api/v1/runs", data=data, headers={"Content-Type": kind}
                ) as response:
                    answers.append((response.status, (await response.json())["error"]["message"]))
            return answers

    (bad, _), (plain, says) = run(scenario())
    assert bad == plain == 400 and "Content-Type: application/json" in says


def test_a_body_nested_too_deeply_is_a_clear_400(web_server: WebServer) -> None:
    async def scenario() -> tuple[int, str]:
        async with (
            Caller(web_server, web_server.users["admin"]) as caller,
            caller.request(
                "POST",
                "/api/v1/runs",
                data=b"[" * 100_000,
                headers={"Content-Type": "application/json"},
            ) as response,
        ):
            return response.status, (await response.json())["error"]["message"]

    status, says = run(scenario())
    assert status == 400 and says.startswith("body: ") and "nested" in says


def test_404_and_405_are_json_under_the_api(web_server: WebServer) -> None:
    async def scenario() -> list[tuple[int, Any]]:
        async with Caller(web_server, web_server.users["admin"]) as caller:
            return [
                await caller.send("GET", "/api/v1/nowhere"),
                await caller.send("GET", "/api/v1/runs/999999"),
                await caller.send("DELETE", "/api/v1/nodes"),
                await caller.send("GET", "/api/v1/nodes/no-such-node"),
            ]

    for status, answer in run(scenario()):
        assert status in (404, 405) and answer["error"]["status"] == status


async def _events(
    caller: Caller, run_id: int, after: int | None = None
) -> list[tuple[int, str, Any]]:
    """Every event of a run's stream, as (id, type, data), until the stream ends."""
    headers = {"Last-Event-ID": str(after)} if after is not None else {}
    events = []
    async with caller.request("GET", f"/api/v1/runs/{run_id}/events", headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        body = (await asyncio.wait_for(response.content.read(), timeout=60)).decode()
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "id" in fields:
            events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return events


def test_a_run_streams_each_nodes_output_and_resumes_after_the_last_id(
    web_server: WebServer,
) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["operator"], via="cookie") as caller:
            status, started = await caller.send(
                "POST", "/api/v1/runs", {"filter": WEB, "command": 'echo "hi from $HOSTNAME"'}
            )
            assert status == 202 and started["href"] == f"/api/v1/runs/{started['id']}"
            events = await _events(caller, started["id"])
            assert [number for number, _, _ in events] == list(range(1, len(events) + 1))
            kinds = [kind for _, kind, _ in events]
            assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
            nodes = events[0][2]["nodes"]
            assert len(nodes) >= 3 and events[0][2]["user"] == "operator"
            finished = {data["node"]: data for _, kind, data in events if kind == "node_finished"}
            assert set(finished) == set(nodes)
            assert all(
                f["exit_code"] == 0 and f["status"] == "succeeded" for f in finished.values()
            )
            output = {n: "" for n in nodes}
            for _, kind, data in events:
                if kind == "output":
                    output[data["node"]] += data["text"]
            assert all(text.startswith("hi from ") for text in output.values())
            assert events[-1][2] == {"type": "run_finished", "status": "succeeded", "exit_code": 0}

            middle = len(events) // 2
            resumed = await _events(caller, started["id"], after=middle)
            assert resumed == events[middle:]

            record = await caller.get_json(f"/api/v1/runs/{started['id']}")
            assert record["user"] == "operator" and record["status"] == "succeeded"
            assert record["command"] == 'echo "hi from $HOSTNAME"'
            async with caller.request("GET", record["nodes"][0]["log_href"]) as log:
                assert log.headers["Content-Type"] == "application/octet-stream"
                assert (await log.read()).startswith(b"hi from ")
            listed = await caller.get_json("/api/v1/runs?user=operator&limit=5")
            assert started["id"] in [r["id"] for r in listed["runs"]]

    run(scenario())


def test_stop_terminates_every_session_of_a_run(web_server: WebServer) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["operator"]) as caller:
            _, started = await caller.send(
                "POST", "/api/v1/runs", {"filter": WEB, "command": "echo started; sleep 60"}
            )
            async with caller.request("GET", f"/api/v1/runs/{started['id']}/events") as stream:
                await stream.content.readuntil(b"event: output")
                async with Caller(web_server, web_server.users["viewer"]) as viewer:
                    refused, _ = await viewer.send("POST", f"/api/v1/runs/{started['id']}/stop")
                    assert refused == 403
                status, stopped = await caller.send("POST", f"/api/v1/runs/{started['id']}/stop")
                assert status == 200, stopped
                assert stopped["status"] == "interrupted" and not stopped["live"]
                assert all(n["status"] != "succeeded" for n in stopped["nodes"])
                rest = (await asyncio.wait_for(stream.content.read(), timeout=30)).decode()
                assert '"status":"interrupted"' in rest.split("event: run_finished")[1]
            again, _ = await caller.send("POST", f"/api/v1/runs/{started['id']}/stop")
            assert again == 409

    run(scenario())


def test_a_command_aimed_outside_the_roles_nodes_is_refused_before_it_runs(
    web_server: WebServer,
) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["webops"]) as caller:
            before = (await caller.get_json("/api/v1/runs?limit=1"))["runs"]
            status, answer = await caller.send(
                "POST", "/api/v1/runs", {"filter": "ECS:Service-Name: web,api", "command": "id"}
            )
            assert status == 403
            assert "may not run on" in answer["error"]["message"]
            after = (await caller.get_json("/api/v1/runs?limit=1"))["runs"]
            assert after == before  # nothing was recorded: nothing ran
            nodes = (await caller.get_json("/api/v1/nodes"))["nodes"]
            assert nodes and all(n["attributes"]["ECS:Service-Name"] == "web" for n in nodes)
        async with Caller(web_server, web_server.users["admin"]) as admin:
            entries = (await admin.get_json("/api/v1/audit?user=webops&action=acl-deny"))["entries"]
            assert any(
                e["target"] == "id" and e["detail"]["action"] == "run_command" for e in entries
            )

    run(scenario())


def test_a_job_runs_with_its_options_and_never_echoes_the_secure_one(
    web_server: WebServer,
) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["operator"]) as caller:
            jobs = (await caller.get_json("/api/v1/jobs"))["jobs"]
            assert {"test/greet", "diagnostics/java-thread-dump"} <= {j["name"] for j in jobs}
            job = await caller.get_json("/api/v1/jobs/test/greet")
            secret = next(o for o in job["options"] if o["name"] == "secret")
            assert secret["secure"] and secret["default"] is None
            assert "hunter2" not in json.dumps(job)
            status, started = await caller.send(
                "POST",
                "/api/v1/jobs/test/greet/runs",
                {"options": {"who": "ana", "colour": "green"}},
            )
            assert status == 202, started
            events = await _events(caller, started["id"])
            text = "".join(d["text"] for _, k, d in events if k == "output")
            assert "hello ana in green" in text
            assert events[-1][2]["status"] == "succeeded"
            record = await caller.get_json(f"/api/v1/runs/{started['id']}")
            assert record["kind"] == "job" and record["job"] == "test/greet"
            assert record["options"]["secret"] != "hunter2"
            assert "hunter2" not in json.dumps(record)

    run(scenario())


def test_keys_are_write_only(web_server: WebServer) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["admin"], via="cookie") as caller:
            status, created = await caller.send(
                "PUT", "/api/v1/keys/project/p/db-password", {"value": "s3cr3t-value"}
            )
            assert status == 201 and created["path"] == "keys/project/p/db-password"
            status, _ = await caller.send(
                "PUT", "/api/v1/keys/project/p/db-password", {"value": "s3cr3t-value-2"}
            )
            assert status == 200
            listing = await caller.get_json("/api/v1/keys")
            assert "s3cr3t" not in json.dumps(listing) and "s3cr3t" not in json.dumps(created)
            entry = next(k for k in listing["keys"] if k["path"] == "keys/project/p/db-password")
            assert entry["type"] == "password" and entry["size"] == len("s3cr3t-value-2")
            status, _ = await caller.send("GET", "/api/v1/keys/project/p/db-password")
            assert status == 405  # there is no reading a key back
            assert (await caller.send("DELETE", "/api/v1/keys/project/p/db-password"))[0] == 204
            assert (await caller.send("DELETE", "/api/v1/keys/project/p/db-password"))[0] == 404
            audit = await caller.get_json("/api/v1/audit?action=key-put")
            assert "s3cr3t" not in json.dumps(audit) and audit["entries"]

    run(scenario())


def test_tokens_are_shown_once_listed_without_the_secret_and_revocable(
    web_server: WebServer,
) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["viewer"]) as caller:
            status, created = await caller.send(
                "POST", "/api/v1/tokens", {"name": "laptop", "expires_in_days": 30}
            )
            assert status == 201 and created["expires_at"]
            listed = (await caller.get_json("/api/v1/tokens"))["tokens"]
            assert created["token"] not in json.dumps(listed)
            async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {created['token']}"}
            ) as fresh:
                async with fresh.get(web_server.url("/api/v1/me")) as me:
                    assert me.status == 200
                async with Caller(web_server, web_server.users["operator"]) as other:
                    status, _ = await other.send("DELETE", f"/api/v1/tokens/{created['id']}")
                    assert status == 404  # not the operator's
                status, _ = await caller.send("DELETE", f"/api/v1/tokens/{created['id']}")
                assert status == 204
                async with fresh.get(web_server.url("/api/v1/me")) as me:
                    assert me.status == 401

    run(scenario())


def test_every_response_carries_the_security_headers(web_server: WebServer) -> None:
    async def scenario() -> list[Any]:
        async with aiohttp.ClientSession() as session:
            headers = []
            for path in ("/login", "/api/v1/nodes", "/nowhere", "/static/app.js"):
                async with session.get(web_server.url(path), allow_redirects=False) as response:
                    headers.append(response.headers)
            return headers

    for headers in run(scenario()):
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert "aiohttp" not in headers.get("Server", "")  # no versions for an attacker


def test_an_event_stream_from_another_origin_is_refused(web_server: WebServer) -> None:
    async def scenario() -> int:
        async with Caller(web_server, web_server.users["viewer"], via="cookie") as caller:
            status, _ = await caller.send_raw(
                "GET", "/api/v1/runs/1/events", headers={"Origin": "https://evil.example"}
            )
            return status

    assert run(scenario()) == 403


def test_jobs_list_their_schedule_and_next_run_from_the_servers_scheduler(
    web_server: WebServer,
) -> None:
    async def scenario() -> dict[str, Any]:
        async with Caller(web_server, web_server.users["operator"]) as caller:
            jobs = (await caller.get_json("/api/v1/jobs"))["jobs"]
            return {job["name"]: job for job in jobs}

    jobs = run(scenario())
    nightly, greet = jobs["test/nightly"], jobs["test/greet"]
    assert nightly["schedule"] and nightly["schedule_enabled"]
    assert nightly["next_run"] is not None and "T03:00:00" in nightly["next_run"]
    assert greet["schedule"] is None and greet["next_run"] is None


def test_a_node_limited_role_sees_only_runs_wholly_on_its_nodes(web_server: WebServer) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["operator"]) as operator:
            _, on_api = await operator.send(
                "POST", "/api/v1/runs", {"filter": "ECS:Service-Name: api", "command": "true"}
            )
            await _events(operator, on_api["id"])
        async with Caller(web_server, web_server.users["webops"]) as webops:
            _, on_web = await webops.send(
                "POST", "/api/v1/runs", {"filter": WEB, "command": "true"}
            )
            await _events(webops, on_web["id"])
            listed = [r["id"] for r in (await webops.get_json("/api/v1/runs?limit=100"))["runs"]]
            assert on_web["id"] in listed and on_api["id"] not in listed
            record = await webops.get_json(f"/api/v1/runs/{on_api['id']}", status=404)
            assert record["error"]["status"] == 404
            for path in ("events", "nodes/x/log"):
                status, _ = await webops.send("GET", f"/api/v1/runs/{on_api['id']}/{path}")
                assert status == 404, path
        async with Caller(web_server, web_server.users["viewer"]) as viewer:
            listed = [r["id"] for r in (await viewer.get_json("/api/v1/runs?limit=100"))["runs"]]
            assert {on_web["id"], on_api["id"]} <= set(listed)  # viewer: every node

    run(scenario())


def test_a_role_limited_to_some_jobs_sees_only_their_runs_in_api_and_pages(
    web_server: WebServer,
) -> None:
    store = open_team_store(database_path(web_server.state_dir))
    store.add_user("greeter", "greeter", hash_password("greeter-password"))
    token, digest = new_api_token()
    store.add_token("greeter", "ci", digest, None)
    store.close()
    greeter = WebUser("greeter", "greeter-password", "greeter", token)

    async def finished_job(caller: Caller, job: str, options: dict[str, str]) -> int:
        status, started = await caller.send(
            "POST", f"/api/v1/jobs/{job}/runs", {"options": options}
        )
        assert status == 202, started
        await _events(caller, started["id"])
        return int(started["id"])

    async def scenario() -> None:
        async with Caller(web_server, web_server.users["admin"]) as admin:
            hidden = await finished_job(admin, "test/nightly", {})
        async with Caller(web_server, greeter, via="cookie") as caller:
            shown = await finished_job(caller, "test/greet", {"who": "ana"})
            listed = [r["id"] for r in (await caller.get_json("/api/v1/runs"))["runs"]]
            assert shown in listed and hidden not in listed
            for path in (
                f"/api/v1/runs/{hidden}",
                f"/api/v1/runs/{hidden}/events",
                f"/activity/{hidden}",
            ):
                async with caller.request("GET", path) as response:
                    assert response.status == 404, path
                    assert "nightly" not in await response.text(), path
            async with caller.request("GET", "/activity?job=test") as page:
                html = await page.text()
            assert f'href="/activity/{shown}"' in html and f'href="/activity/{hidden}"' not in html
            status, _ = await caller.send("POST", f"/api/v1/runs/{hidden}/stop")
            assert status == 404

    run(scenario())


def test_a_refusal_for_nodes_outside_the_role_does_not_name_them(web_server: WebServer) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["admin"]) as admin:
            hidden = await admin.get_json("/api/v1/nodes?filter=ECS:Service-Name:%20api")
        names = [n["name"] for n in hidden["nodes"]]
        assert names
        async with Caller(web_server, web_server.users["webops"]) as webops:
            status, answer = await webops.send(
                "POST", "/api/v1/runs", {"filter": "ECS:Service-Name: web,api", "command": "id"}
            )
        assert status == 403
        message = answer["error"]["message"]
        assert f"{len(names)} of the" in message and "nothing was run" in message
        assert not any(name in message for name in names), message

    run(scenario())


def test_asking_for_fresh_nodes_again_and_again_rediscovers_at_most_once_in_a_while(
    web_server: WebServer,
) -> None:
    # Each rediscovery is a round of AWS calls: a script (or anyone who may view nodes)
    # asking with refresh=1 in a loop must not turn into a loop of them.
    runs = web_server.app[RUNS]

    async def scenario() -> list[int]:
        generations = []
        async with Caller(web_server, web_server.users["viewer"]) as caller:
            for _ in range(3):
                await caller.get_json("/api/v1/nodes?refresh=1")
                generations.append(runs.generation)
        return generations

    first, second, third = run(scenario())
    assert second == first and third == first


def test_a_limited_role_gets_its_newest_runs_up_to_the_limit_whatever_came_after(
    web_server: WebServer,
) -> None:
    store = open_team_store(database_path(web_server.state_dir))
    store.add_user("greeter-2", "greeter", hash_password("greeter-2-password"))
    token, digest = new_api_token()
    store.add_token("greeter-2", "ci", digest, None)
    store.close()
    greeter = WebUser("greeter-2", "greeter-2-password", "greeter", token)

    async def scenario() -> None:
        async with Caller(web_server, greeter) as caller:
            _, mine = await caller.send(
                "POST", "/api/v1/jobs/test/greet/runs", {"options": {"who": "bo"}}
            )
            await _events(caller, mine["id"])
        async with Caller(web_server, web_server.users["admin"]) as admin:
            for _ in range(2):  # newer runs the greeter may not see
                _, hidden = await admin.send("POST", "/api/v1/jobs/test/nightly/runs", {})
                await _events(admin, hidden["id"])
        async with Caller(web_server, greeter) as caller:
            newest = (await caller.get_json("/api/v1/runs?limit=1"))["runs"]
            assert [r["id"] for r in newest] == [mine["id"]]

    run(scenario())

"""The console's pages: click-to-filter terms (unit), and every page over HTTP for each role."""

from __future__ import annotations

import dataclasses
import html
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, quote, urlsplit

import jinja2
import pytest

from ecsexec.app.selection import apply_filter
from ecsexec.jobs.model import Job
from ecsexec.jobs.schedule import Schedule
from ecsexec.nodes.node import Node
from ecsexec.store.history import NodeRecord, RunRecord
from ecsexec.store.team import ApiToken, database_path, open_team_store
from ecsexec.web.pages import (
    add_filter_term,
    readable_output,
    recent_commands,
    retry_failed_href,
    schedule_text,
    token_state,
)
from ecsexec.web.passwords import hash_password, token_digest
from tests.web.conftest import WebServer, WebUser
from tests.web.web_client import Caller, run

HTML = {"Accept": "text/html"}

NODES = [
    Node("web-1", {"ECS:Service-Name": "web", "ECS:Container-Image": "nginx:1.25"}),
    Node("web-2", {"ECS:Service-Name": "web", "ECS:Container-Image": "nginx:1.27"}),
    Node("db-1", {"ECS:Service-Name": "db two", "ECS:Container-Image": 'odd"image,x'}),
]


def selected(text: str) -> list[str]:
    chosen, _ = apply_filter(NODES, text)
    return sorted(node.name for node in chosen)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("ECS:Service-Name", "web", ["web-1", "web-2"]),
        ("ECS:Container-Image", "nginx:1.25", ["web-1"]),
        ("ECS:Service-Name", "db two", ["db-1"]),  # a space would split the token unquoted
        ("ECS:Container-Image", 'odd"image,x', ["db-1"]),  # a quote and a comma
        ("name", "web-2", ["web-2"]),
    ],
)
def test_a_clicked_value_selects_exactly_the_nodes_with_it(
    key: str, value: str, expected: list[str]
) -> None:
    assert selected(add_filter_term("", key, value)) == expected


def test_a_clicked_value_narrows_the_filter_already_typed() -> None:
    narrowed = add_filter_term("ECS:Service-Name: web", "ECS:Container-Image", "nginx:1.27")
    assert narrowed == "ECS:Service-Name: web ECS:Container-Image: nginx:1.27"
    assert selected(narrowed) == ["web-2"]


# --- every page over HTTP, for each role -------------------------------------------------------

# path (``{node}`` is a web node's name), the roles allowed, and labels the page must show.
PAGES = [
    (
        "/nodes",
        ROLES_ALL := ("admin", "operator", "viewer", "webops"),
        ["Node filter", "Exec agent"],
    ),
    ("/nodes/{node}", ROLES_ALL, ["Attributes", "ECS:Service-Name"]),
    ("/nodes/{node}/terminal", ("admin", "operator"), ["Terminal: ", "data-ws-path"]),
    ("/commands", ("admin", "operator", "webops"), ["Node filter", "Command", ">Run<", "Stop"]),
    ("/jobs", ("admin", "operator"), ["diagnostics/java-thread-dump", "test/greet"]),
    ("/jobs/test/greet", ("admin", "operator"), ["Run job", 'type="password"', "<select"]),
    ("/activity", ROLES_ALL, ["Activity", "Status"]),
    ("/keys", ("admin",), ["Add password", "Path"]),
    ("/tokens", ROLES_ALL, ["API tokens", "Token name", "Expires in days", "Create token"]),
    ("/audit", ("admin",), ["Audit", "sign-in"]),
]


@pytest.mark.e2e
def test_every_page_renders_for_the_roles_allowed_and_is_refused_to_the_others(
    web_server: WebServer,
) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["admin"]) as api:
            listed = await api.get_json("/api/v1/nodes?filter=" + quote("ECS:Service-Name: web"))
        node = listed["nodes"][0]["name"]
        for role in ("admin", "operator", "viewer", "webops"):
            async with Caller(web_server, web_server.users[role], via="cookie") as browser:
                for path, allowed, labels in PAGES:
                    url = path.format(node=node)
                    async with browser.request("GET", url, headers=HTML) as response:
                        html = await response.text()
                    where = f"{role} GET {url}"
                    if role in allowed:
                        assert response.status == 200, (where, html[:500])
                        for label in labels:
                            assert label in html, (where, label)
                        assert 'name="csrf-token" content="' + browser.csrf in html, where
                        assert ('href="/audit"' in html) == (role == "admin"), where
                        assert ('href="/keys"' in html) == (role == "admin"), where
                        assert ('href="/jobs"' in html) == (role in ("admin", "operator")), where
                    else:
                        assert response.status == 403, (where, html[:500])
                        assert "403" in html and "Traceback" not in html, where

    run(scenario())


@pytest.mark.e2e
def test_missing_things_get_the_404_page_and_a_bad_filter_a_clear_message(
    web_server: WebServer,
) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["operator"], via="cookie") as browser:
            for url in ("/nodes/no-such-node", "/jobs/no/such-job", "/activity/999999", "/nope"):
                async with browser.request("GET", url, headers=HTML) as response:
                    html = await response.text()
                assert response.status == 404, (url, html[:300])
                assert "Not Found" in html or "Not found" in html, url
            bad = "/nodes?filter=" + quote("name: /web[/")
            async with browser.request("GET", bad, headers=HTML) as response:
                html = await response.text()
            assert response.status == 200 and 'role="alert"' in html and "web[" in html
            preview = await browser.get_json(
                "/nodes/preview?filter=" + quote("ECS:Service-Name: web")
            )
            assert preview["count"] >= 2 and not preview["error"]

    run(scenario())


@pytest.mark.e2e
def test_pages_never_send_a_secret_back(web_server: WebServer) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["admin"], via="cookie") as browser:
            status, _ = await browser.send(
                "PUT", "/api/v1/keys/keys/pages/db", {"type": "password", "value": "s3cr3t-pages"}
            )
            assert status in (200, 201)
            for url in ("/keys", "/jobs/test/greet", "/jobs/test/greet?option.secret=leak-me"):
                async with browser.request("GET", url, headers=HTML) as response:
                    html = await response.text()
                assert response.status == 200
                assert (
                    "s3cr3t-pages" not in html and "hunter2" not in html and "leak-me" not in html
                )
            async with browser.request("GET", "/keys", headers=HTML) as response:
                assert "keys/pages/db" in await response.text()

    run(scenario())


def test_a_scheduled_job_shows_its_crontab_and_next_run() -> None:
    schedule = Schedule.parse({"crontab": "0 30 */4 ? * * *"}, "jobs.yaml:3")
    job = Job(name="nightly", group="ops", schedule=schedule)
    assert schedule_text(job) == schedule.expression
    assert schedule_text(dataclasses.replace(job, schedule_enabled=False)).endswith(", disabled")
    assert schedule_text(Job(name="adhoc")) == ""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ecsexec.web", "templates"), autoescape=True
    )
    moment = datetime(2030, 1, 2, 4, 30, tzinfo=UTC)
    html = env.get_template("jobs.html").render(
        rows=[{"job": job, "schedule": schedule_text(job), "next_run": moment}]
    )
    assert schedule.expression in html
    assert 'datetime="2030-01-02T04:30:00+00:00"' in html and "2030-01-02 04:30:00" in html
    assert 'href="/jobs/ops/nightly"' in html


def record(run_id: int, command: str, user: str, *nodes: tuple[str, str]) -> RunRecord:
    return RunRecord(
        id=run_id,
        kind="run",
        user=user,
        host="h",
        pid=1,
        command=command,
        job="",
        job_file="",
        filter="ECS:Service-Name: web",
        options={},
        status="failed" if any(s != "succeeded" for _, s in nodes) else "succeeded",
        exit_code=None,
        started_at=datetime(2030, 1, 1, tzinfo=UTC),
        finished_at=None,
        node_count=len(nodes),
        nodes=tuple(NodeRecord(name, i, status) for i, (name, status) in enumerate(nodes)),
    )


def test_recent_commands_are_the_users_own_distinct_ones_newest_first() -> None:
    records = [
        record(5, "uptime", "ann"),
        record(4, "df -h", "bob"),
        record(3, "uptime", "ann"),
        record(2, "echo hi", "ann"),
    ]
    assert recent_commands(records, "ann") == ["uptime", "echo hi"]
    assert recent_commands(records, "carol") == []


def test_re_run_on_failed_nodes_selects_exactly_the_nodes_that_did_not_succeed() -> None:
    run_record = record(
        7, "echo a b", "ann", ("web-1", "succeeded"), ("web-2", "failed"), ("db-1", "timeout")
    )
    href = retry_failed_href(run_record)
    query = parse_qs(urlsplit(href).query)
    assert query["command"] == ["echo a b"]
    assert selected(query["filter"][0]) == ["db-1", "web-2"]
    assert retry_failed_href(record(8, "true", "ann", ("web-1", "succeeded"))) == ""


@pytest.mark.e2e
def test_a_page_asked_for_before_signing_in_goes_to_sign_in_and_back(
    web_server: WebServer,
) -> None:
    async def scenario() -> None:
        async with Caller(web_server, None) as anonymous:
            response = await anonymous.request("GET", "/commands?filter=x", headers=HTML)
            response.release()
            assert response.status == 302
            location = urlsplit(response.headers["Location"])
            assert location.path == "/login"
            assert parse_qs(location.query)["next"] == ["/commands?filter=x"]

    run(scenario())


@pytest.mark.e2e
def test_a_run_page_shows_a_bounded_preview_of_a_long_log_and_links_the_download(
    web_server: WebServer,
) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["operator"], via="cookie") as browser:
            listed = await browser.get_json(
                "/api/v1/nodes?filter=" + quote("ECS:Service-Name: web")
            )
            node = listed["nodes"][0]["name"]
            # 100,000 bytes of output, and one line past the preview that the page must not show.
            command = "head -c 100000 /dev/zero | tr '\\0' x; echo; echo tail-$((20+22))"
            status, started = await browser.send(
                "POST", "/api/v1/runs", {"filter": f"name: {node}", "command": command}
            )
            assert status == 202, started
            events = browser.request(
                "GET", started["events"], headers={"Accept": "text/event-stream"}
            )
            async with events as stream:
                async for line in stream.content:
                    if line.startswith(b"event: run_finished"):
                        break
            async with browser.request("GET", f"/activity/{started['id']}", headers=HTML) as page:
                html = await page.text()
            assert page.status == 200
            assert "Showing the first 32 KiB" in html and "tail-42" not in html
            assert html.count("x" * 1000) == 32  # the preview is cut at 32 KiB
            download = f"/api/v1/runs/{started['id']}/nodes/{quote(node)}/log"
            assert f'href="{download}"' in html
            async with browser.request("GET", download) as log:
                body = await log.read()
            assert body.count(b"x") == 100_000 and b"tail-42" in body

    run(scenario())


async def finished(caller: Caller, node_filter: str, command: str) -> int:
    """Start a run through the API and read its event stream to the end; its id."""
    status, started = await caller.send(
        "POST", "/api/v1/runs", {"filter": node_filter, "command": command}
    )
    assert status == 202, started
    headers = {"Accept": "text/event-stream"}
    async with caller.request("GET", started["events"], headers=headers) as stream:
        async for line in stream.content:
            if line.startswith(b"event: run_finished"):
                break
    return int(started["id"])


@pytest.mark.e2e
def test_a_node_limited_role_sees_in_activity_only_runs_wholly_on_its_nodes(
    web_server: WebServer,
) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["operator"]) as operator:
            elsewhere = await finished(operator, "ECS:Service-Name: api", "echo api-only")
        async with Caller(web_server, web_server.users["webops"], via="cookie") as webops:
            own = await finished(webops, "ECS:Service-Name: web", "echo web-only")
            async with webops.request("GET", "/activity", headers=HTML) as response:
                html = await response.text()
            assert f'href="/activity/{own}"' in html
            assert f'href="/activity/{elsewhere}"' not in html and "api-only" not in html
            async with webops.request("GET", f"/activity/{elsewhere}", headers=HTML) as page:
                assert page.status == 404
                assert "api-only" not in await page.text()
        async with (
            Caller(web_server, web_server.users["operator"], via="cookie") as operator,
            operator.request("GET", f"/activity/{elsewhere}", headers=HTML) as page,
        ):
            assert page.status == 200 and "api-only" in await page.text()

    run(scenario())


@pytest.mark.e2e
def test_a_missing_thing_says_what_is_missing_once_not_a_page_inside_a_page(
    web_server: WebServer,
) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["operator"], via="cookie") as browser:
            for url, message in (
                ("/nodes/no-such-node", "No node is named &#39;no-such-node&#39;"),
                ("/jobs/no/such-job", "No job is named &#39;no/such-job&#39;"),
                ("/activity/999999", "There is no run #999999."),
            ):
                async with browser.request("GET", url, headers=HTML) as response:
                    html = await response.text()
                assert response.status == 404, url
                assert html.count("<html") == 1 and "&lt;html" not in html, url
                assert f'<p class="error-message">{message}' in html, (url, html[:2000])

    run(scenario())


@pytest.mark.e2e
def test_page_parameters_out_of_range_are_a_400_naming_them_never_a_500(
    web_server: WebServer,
) -> None:
    huge = "9" * 30

    async def scenario() -> None:
        async with Caller(web_server, web_server.users["admin"], via="cookie") as browser:
            for url, named in (
                (f"/audit?before={huge}", "before"),
                (f"/activity?before={huge}", "before"),
                ("/activity?before=abc", "before"),
                ("/audit?before=-3", "before"),
            ):
                async with browser.request("GET", url, headers=HTML) as response:
                    html = await response.text()
                assert response.status == 400, (url, html[:300])
                assert named in html and "Internal error" not in html, url
            async with browser.request("GET", f"/activity/{huge}", headers=HTML) as response:
                assert response.status == 404
                assert "Internal error" not in await response.text()

    run(scenario())


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[1;31mred\x1b[0m plain", "red plain"),
        ("\x1b]0;a window title\x07after", "after"),
        ("bell\x07 and back\x08space", "bell and backspace"),
        ("tabs\tand\nlines\r\n", "tabs\tand\nlines\r\n"),
        ("</script><b>bold</b>", "</script><b>bold</b>"),  # text: the template escapes it
        ("cut in the middle \x1b[3", "cut in the middle "),
    ],
)
def test_the_run_page_shows_output_without_terminal_escapes(raw: str, shown: str) -> None:
    assert readable_output(raw) == shown


@pytest.mark.e2e
def test_a_run_page_shows_html_in_output_as_text_and_drops_colour_codes(
    web_server: WebServer,
) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["operator"], via="cookie") as browser:
            command = r"printf '\033[31mred\033[0m </pre><script>alert(1)</script>\n'"
            run_id = await finished(browser, "ECS:Service-Name: web", command)
            async with browser.request("GET", f"/activity/{run_id}", headers=HTML) as page:
                html = await page.text()
            assert page.status == 200
            assert "\x1b" not in html and "<script>alert" not in html
            assert "red &lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html

    run(scenario())


@pytest.mark.e2e
def test_an_error_page_offers_only_the_pages_the_role_may_open(web_server: WebServer) -> None:
    async def scenario() -> None:
        async with Caller(web_server, web_server.users["viewer"], via="cookie") as browser:
            for url in ("/nodes/no-such-node", "/commands", "/nope"):
                async with browser.request("GET", url, headers=HTML) as response:
                    html = await response.text()
                assert response.status in (403, 404), url
                assert 'href="/activity"' in html and 'href="/nodes"' in html, url
                assert 'href="/commands"' not in html and 'href="/keys"' not in html, url

    run(scenario())


@pytest.mark.e2e
def test_a_job_whose_name_holds_url_characters_opens_and_runs_from_its_links(
    web_server: WebServer,
) -> None:
    name = "test/restart web? #1 (100%)"

    async def scenario() -> None:
        async with Caller(web_server, web_server.users["operator"], via="cookie") as browser:
            async with browser.request("GET", "/jobs", headers=HTML) as response:
                listing = await response.text()
            link = re.search(r'<a href="(/jobs/test/restart[^"]*)"', listing)
            assert link is not None, listing
            async with browser.request("GET", html.unescape(link[1]), headers=HTML) as page:
                text = await page.text()
            assert page.status == 200, text[:300]
            run_url = re.search(r'data-run-url="([^"]*)"', text)
            assert run_url is not None
            status, started = await browser.send("POST", html.unescape(run_url[1]), {})
            assert status == 202, started
            record = await browser.get_json(started["href"])
            assert record["job"] == name
            job = await browser.get_json("/api/v1/jobs")
            href = next(j["href"] for j in job["jobs"] if j["name"] == name)
            assert (await browser.get_json(href))["name"] == name

    run(scenario())


@pytest.mark.e2e
def test_the_front_page_leads_each_role_to_the_first_page_it_may_open(
    web_server: WebServer,
) -> None:
    # Signing in lands on "/": a role that may not view nodes (README's "auditor", or the
    # fixture's job-only "greeter") must land somewhere it may be, not on a refusal.
    store = open_team_store(database_path(web_server.state_dir))
    store.add_user("greeter-front", "greeter", hash_password("greeter-front-password"))
    store.close()
    greeter = WebUser("greeter-front", "greeter-front-password", "greeter", "")

    async def scenario() -> None:
        for user, expected in (
            (web_server.users["viewer"], "/nodes"),
            (greeter, "/jobs"),
        ):
            async with (
                Caller(web_server, user, via="cookie") as browser,
                browser.request("GET", "/", headers=HTML) as response,
            ):
                assert response.status == 302, user.name
                assert response.headers["Location"] == expected, user.name

    run(scenario())


def test_a_token_is_active_until_it_expires_or_is_revoked() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    token = ApiToken("t1", "ann", "ci", "2026-12-01T00:00:00.000+00:00", None, None, False)
    assert token_state(token, now) == "active"
    later = dataclasses.replace(token, expires_at="2026-12-06T12:00:01.000+00:00")
    assert token_state(later, now) == "active"
    past = dataclasses.replace(token, expires_at="2026-12-06T12:00:00.000+00:00")
    assert token_state(past, now) == "expired"
    assert token_state(dataclasses.replace(later, revoked=True), now) == "revoked"


@pytest.mark.e2e
def test_the_tokens_page_lists_only_the_users_own_tokens_and_never_a_token(
    web_server: WebServer,
) -> None:
    # Any role has the page, even one that may open no other (greeter may not view nodes).
    store = open_team_store(database_path(web_server.state_dir))
    store.add_user("greeter-tokens", "greeter", hash_password("greeter-tokens-password"))
    store.close()
    greeter = WebUser("greeter-tokens", "greeter-tokens-password", "greeter", "")
    users = [web_server.users[role] for role in ("admin", "operator", "viewer", "webops")]
    users.append(greeter)

    async def scenario() -> None:
        secrets: dict[str, str] = {}
        for user in users:
            async with Caller(web_server, user, via="cookie") as browser:
                status, created = await browser.send(
                    "POST", "/api/v1/tokens", {"name": f"page-{user.name}", "expires_in_days": 7}
                )
                assert status == 201, created
                secrets[user.name] = created["token"]
                status, revoked = await browser.send(
                    "POST", "/api/v1/tokens", {"name": f"gone-{user.name}"}
                )
                assert status == 201, revoked
                status, _ = await browser.send("DELETE", f"/api/v1/tokens/{revoked['id']}")
                assert status == 204
        for user in users:
            async with (
                Caller(web_server, user, via="cookie") as browser,
                browser.request("GET", "/tokens", headers=HTML) as response,
            ):
                page = await response.text()
            assert response.status == 200, (user.name, page[:500])
            assert 'href="/tokens" aria-current="page"' in page, user.name
            rows = re.findall(r'data-token-state="(\w+)">\s*<td>([^<]*)</td>', page)
            named = {name: state for state, name in rows}
            assert named.get(f"page-{user.name}") == "active", (user.name, rows)
            assert named.get(f"gone-{user.name}") == "revoked", (user.name, rows)
            for other in users:
                if other is not user:
                    assert f"page-{other.name}" not in page, (user.name, other.name)
            for token in [*secrets.values(), *(u.token for u in users if u.token)]:
                assert token not in page and token_digest(token) not in page, user.name

    run(scenario())

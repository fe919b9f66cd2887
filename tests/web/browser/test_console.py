"""The console in a real browser (Chromium through Playwright) against the sandbox.

Each test signs in as its own user in a fresh browser context, clicks through the pages
by their accessible names (the labels are a contract), and saves a screenshot of every
page it visits under tests/artifacts/screenshots/.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from ecsexec.sandbox import Sandbox
from ecsexec.web import pages
from tests.web.conftest import WebServer

pytestmark = pytest.mark.e2e

WEB_FILTER = "ECS:Service-Name: web"
# The README's picture; ECSEXEC_UPDATE_README_IMAGE=1 makes the Commands test rewrite it.
README_IMAGE = Path(__file__).resolve().parents[3] / "docs" / "images" / "commands-page.png"
LONG = 120_000  # ms: a job with JVM thread dumps, on a busy machine


def sign_in(context: Any, server: WebServer, role: str) -> Any:
    """A page signed in as the user of ``role`` through the sign-in form."""
    user = server.users[role]
    page = context.new_page()
    page.goto(server.url("/login"))
    page.get_by_label("Username").fill(user.name)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/nodes"))
    return page


def finished_run(page: Any, timeout: float = 60_000) -> Any:
    """The run view once its run has finished."""
    view = page.locator("[data-run-view][data-finished]")
    view.wait_for(timeout=timeout)
    return view


def test_sign_in_then_filter_nodes_by_typing_and_by_clicking_a_value(
    browser_context: Any, web_server: WebServer, screenshot: Any
) -> None:
    page = browser_context.new_page()
    page.goto(web_server.url("/login"))
    screenshot(page, "login")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").is_visible()
    page.close()

    page = sign_in(browser_context, web_server, "operator")
    everything = int(page.locator("[data-node-count]").get_attribute("data-node-count"))
    page.get_by_label("Node filter").fill(WEB_FILTER)
    count = page.locator("[data-node-count]")
    page.wait_for_function(
        "n => Number(document.querySelector('[data-node-count]').dataset.nodeCount) < n",
        arg=everything,
    )
    web_nodes = int(count.get_attribute("data-node-count"))
    assert 2 <= web_nodes < everything
    rows = page.locator("table.nodes-table tbody tr")
    assert rows.count() == web_nodes
    for service in page.locator("table.nodes-table tbody tr td:nth-child(3)").all_inner_texts():
        assert service == "web"
    assert "filter=ECS%3AService-Name%3A+web" in page.url or "filter=ECS" in page.url
    screenshot(page, "nodes")

    # Clicking a value adds it to the filter, as in Rundeck: one node's task ID column is
    # not shown, but its image is; clicking the first node's cluster keeps the web nodes.
    page.locator("table.nodes-table tbody tr").first.locator("a.attr-value").first.click()
    page.wait_for_function(
        "() => document.querySelector('[data-node-filter]').value.includes('ECS:Cluster-Name: ')"
    )
    assert page.get_by_label("Node filter").input_value().startswith(WEB_FILTER + " ")
    page.wait_for_function(
        "() => document.querySelectorAll('table.nodes-table tbody tr').length > 0"
    )

    first = page.locator("table.nodes-table tbody tr td:first-child a").first
    name = first.inner_text()
    first.click()
    page.wait_for_url(re.compile(r"/nodes/"))
    assert page.get_by_role("heading", name=name).is_visible()
    assert page.get_by_role("rowheader", name="ECS:Service-Name").is_visible()
    screenshot(page, "node")

    # When the session ends, the live filter goes to the sign-in page instead of the table.
    page.goto(web_server.url("/nodes"))
    browser_context.clear_cookies()
    page.get_by_label("Node filter").fill(WEB_FILTER)
    page.wait_for_url(re.compile(r"/login\?next="))
    assert page.get_by_role("button", name="Sign in").is_visible()


def test_echo_hi_on_the_web_service_then_the_thread_dump_job_and_both_in_activity(
    browser_context: Any, web_server: WebServer, sandbox: Sandbox, screenshot: Any
) -> None:
    page = sign_in(browser_context, web_server, "operator")
    page.get_by_role("link", name="Commands", exact=True).click()
    page.get_by_label("Node filter").fill(WEB_FILTER)
    page.get_by_label("Command", exact=True).fill("echo hi")
    page.get_by_role("button", name="Run", exact=True).click()
    view = finished_run(page)
    assert view.get_attribute("data-finished") == "succeeded"
    # Identical outputs are grouped: one card for every web node.
    cards = view.locator(".node-result")
    assert cards.count() == 1
    assert "hi" in cards.first.locator("pre.output").inner_text()
    screenshot(page, "commands")
    if os.environ.get("ECSEXEC_UPDATE_README_IMAGE") == "1":  # refresh the README's picture
        page.screenshot(path=str(README_IMAGE))
    # Ungrouped: each node's own output and exit 0.
    view.get_by_label("Group identical outputs").uncheck()
    page.wait_for_function("() => document.querySelectorAll('.node-result').length > 1")
    names = []
    for card in cards.all():
        assert card.get_attribute("data-status") == "succeeded"
        assert card.locator(".exit-code").inner_text() == "exit 0"
        assert card.locator("pre.output").inner_text().strip() == "hi"
        names.append(card.locator(".node-names").inner_text())
    assert len(names) >= 2 and len(set(names)) == len(names)
    run_link = view.get_by_role("link", name="View in Activity")
    command_run = run_link.get_attribute("href")
    assert re.fullmatch(r"/activity/[0-9]+", command_run or "")
    assert "run=" in page.url and "command=echo+hi" in page.url  # re-run from the URL

    wait_for_the_jvms(sandbox)
    page.get_by_role("link", name="Jobs", exact=True).click()
    screenshot(page, "jobs")
    page.get_by_role("link", name="diagnostics/java-thread-dump").click()
    page.get_by_label("container").fill("orders")
    page.get_by_label("count").fill("0")  # the job's regex is [1-9][0-9]?
    page.get_by_role("button", name="Run job").click()
    assert "count must match" in page.locator("[data-option=count] [data-field-error]").inner_text()
    page.get_by_label("count").fill("1")
    page.get_by_label("interval").fill("1")
    page.get_by_role("button", name="Run job").click()
    view = finished_run(page, timeout=LONG)
    assert view.get_attribute("data-finished") == "succeeded"
    view.get_by_label("Group identical outputs").uncheck()
    outputs = view.locator("pre.output").all_inner_texts()
    assert len(outputs) == 2 and all("Full thread dump" in text for text in outputs)
    screenshot(page, "job")
    job_run = view.get_by_role("link", name="View in Activity").get_attribute("href")

    page.get_by_role("link", name="Activity", exact=True).click()
    table = page.locator("table.activity-table")
    for href, what in ((command_run, "echo hi"), (job_run, "diagnostics/java-thread-dump")):
        row = table.locator(f"tr:has(a[href='{href}'])")
        assert what in row.inner_text() and "operator" in row.inner_text()
        assert "succeeded" in row.inner_text()
    screenshot(page, "activity")
    page.get_by_label("Job").fill("thread-dump")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"job=thread-dump"))
    assert table.locator(f"a[href='{command_run}']").count() == 0
    assert table.locator(f"a[href='{job_run}']").count() == 1

    page.goto(web_server.url(command_run or ""))
    assert page.locator("article.node-result").count() >= 2
    screenshot(page, "run")
    page.get_by_role("link", name="Re-run").click()
    page.wait_for_url(re.compile(r"/commands\?"))
    assert page.get_by_label("Command", exact=True).input_value() == "echo hi"
    assert page.get_by_label("Node filter").input_value() == WEB_FILTER


def wait_for_the_jvms(sb: Sandbox) -> None:
    """The orders JVMs start with the sandbox; a dump needs them up."""
    logs = list(sb.state_dir.glob("containers/*/demo/*/orders/main.log"))
    assert len(logs) == 2, "the demo/orders service needs java on PATH"
    deadline = time.monotonic() + 60
    while not all(b"orders service ready" in log.read_bytes() for log in logs):
        assert time.monotonic() < deadline, "the orders JVMs did not start"
        time.sleep(0.1)


def test_a_viewer_is_refused_a_run_and_the_refusal_is_audited(
    browser_context: Any, chromium: Any, web_server: WebServer, screenshot: Any
) -> None:
    page = sign_in(browser_context, web_server, "viewer")
    assert page.get_by_role("link", name="Audit", exact=True).count() == 0
    response = page.goto(web_server.url("/commands"))
    assert response is not None and response.status == 403
    assert page.get_by_role("heading", name="Forbidden").is_visible()
    screenshot(page, "forbidden")
    # The API refuses it too, before anything runs, with the page's own CSRF token.
    page.goto(web_server.url("/nodes"))
    answer = page.evaluate(
        """async (filter) => {
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch('/api/v1/runs', {method: 'POST', headers: {
                'Content-Type': 'application/json', 'X-CSRF-Token': token},
                body: JSON.stringify({filter: filter, command: 'touch /tmp/viewer-was-here'})});
            return {status: r.status, body: await r.json()};
        }""",
        WEB_FILTER,
    )
    assert answer["status"] == 403, answer

    admin_context = chromium.new_context(viewport={"width": 1280, "height": 860})
    try:
        admin = sign_in(admin_context, web_server, "admin")
        admin.get_by_role("link", name="Audit", exact=True).click()
        admin.get_by_label("User").fill("viewer")
        admin.get_by_label("Action").fill("acl-deny")
        admin.get_by_role("button", name="Filter").click()
        admin.wait_for_url(re.compile(r"action=acl-deny"))
        rows = admin.locator("table.audit-table tbody tr[data-audit-action='acl-deny']")
        assert rows.count() >= 2  # the Commands page and the API call
        texts = " ".join(rows.all_inner_texts())
        assert "/commands" in texts and "/api/v1/runs" in texts and "denied" in texts
        screenshot(admin, "audit")
    finally:
        admin_context.close()


def test_a_stored_password_never_comes_back(
    browser_context: Any, web_server: WebServer, screenshot: Any
) -> None:
    secret = "browser-s3cret-value"
    page = sign_in(browser_context, web_server, "admin")
    page.get_by_role("link", name="Keys", exact=True).click()
    page.get_by_label("Path").fill("keys/browser/db-password")
    page.get_by_label("Password", exact=True).fill(secret)
    page.get_by_role("button", name="Add password").click()
    row = page.locator("tr[data-key-path='keys/browser/db-password']")
    row.wait_for()
    assert "password" in row.inner_text() and f"{len(secret)} bytes" in row.inner_text()
    assert page.get_by_label("Password", exact=True).input_value() == ""
    screenshot(page, "keys")
    assert secret not in page.content()
    listed = page.evaluate("async () => (await fetch('/api/v1/keys')).text()")
    one = page.evaluate("async () => (await fetch('/api/v1/keys/keys/browser/db-password')).text()")
    assert secret not in listed and secret not in one

    row.get_by_role("button", name="Delete keys/browser/db-password").click()
    row.get_by_role("button", name="Delete keys/browser/db-password").click()
    row.wait_for(state="detached")


def test_the_terminal_echoes_a_typed_command(
    browser_context: Any, web_server: WebServer, screenshot: Any
) -> None:
    page = sign_in(browser_context, web_server, "operator")
    page.locator("table.nodes-table tbody tr td:first-child a").first.click()
    page.get_by_role("link", name="Open terminal").click()
    page.locator("[data-terminal][data-state='open']").wait_for()
    page.locator(".xterm").click()
    page.keyboard.type("echo typed-in-the-browser-$((40+2))")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('.xterm-rows').innerText.includes('typed-in-the-browser-42')"
    )
    screenshot(page, "terminal")


def test_a_run_on_many_nodes_asks_first_and_stop_ends_it_on_every_node(
    browser_context: Any, web_server: WebServer, screenshot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sandbox has fewer than 20 web nodes: lower the threshold (read on each request).
    monkeypatch.setattr(pages, "CONFIRM_ABOVE", 2)
    page = sign_in(browser_context, web_server, "operator")
    page.get_by_role("link", name="Commands", exact=True).click()
    page.get_by_label("Node filter").fill(WEB_FILTER)
    page.get_by_label("Command", exact=True).fill("echo started; sleep 600; echo never")
    page.get_by_role("button", name="Run", exact=True).click()
    confirm = page.locator("[data-confirm-text]")
    confirm.wait_for()
    assert re.fullmatch(r"Run this command on [0-9]+ nodes\?", confirm.inner_text())
    screenshot(page, "commands-confirm")
    page.get_by_role("button", name="Cancel").click()
    assert page.locator("[data-run-view]").is_hidden()

    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("button", name="Confirm run").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.node-result pre.output')]"
        ".some(pre => pre.innerText.includes('started'))"
    )
    assert page.get_by_role("button", name="Run", exact=True).is_disabled()
    # The run's page in Activity follows it live, then shows the recorded outcome.
    href = page.get_by_role("link", name="View in Activity").get_attribute("href")
    follower = browser_context.new_page()
    follower.goto(web_server.url(href or ""))
    follower.wait_for_function(
        "() => [...document.querySelectorAll('.node-result pre.output')]"
        ".some(pre => pre.innerText.includes('started'))"
    )
    screenshot(follower, "run-live")
    page.get_by_role("button", name="Stop").click()
    view = finished_run(page)
    follower.locator("section.node-results.static").wait_for()
    assert "started" in follower.locator("section.node-results.static").inner_text()
    assert view.get_attribute("data-finished") != "succeeded"
    assert "never" not in view.inner_text()
    statuses = {card.get_attribute("data-status") for card in view.locator(".node-result").all()}
    assert statuses and statuses <= {"cancelled", "interrupted", "error", "not started"}, statuses
    assert page.get_by_role("button", name="Run", exact=True).is_enabled()


def test_colour_codes_are_left_out_of_the_page_but_kept_in_the_download(
    browser_context: Any, web_server: WebServer
) -> None:
    page = sign_in(browser_context, web_server, "operator")
    page.goto(web_server.url("/commands?filter=" + quote(WEB_FILTER)))
    page.get_by_label("Command", exact=True).fill(r"printf '\033[1;31mred\033[0m plain\n'")
    page.get_by_role("button", name="Run", exact=True).click()
    view = finished_run(page)
    assert view.locator("pre.output").first.inner_text().strip() == "red plain"
    view.get_by_label("Group identical outputs").uncheck()
    link = view.get_by_role("link", name="Download log").first
    log = page.evaluate("async (href) => (await fetch(href)).text()", link.get_attribute("href"))
    assert "\x1b[1;31mred\x1b[0m plain" in log

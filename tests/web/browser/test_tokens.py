"""The Tokens page in a real browser: a token is created, shown once, works, and is revoked.

The token is used the way a script would use it (``Authorization: Bearer`` from a client
with no session cookie), so the 200 and then the 401 come from the token alone.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.web.browser.test_console import sign_in
from tests.web.conftest import WebServer

pytestmark = pytest.mark.e2e


def nodes_status(server: WebServer, token: str) -> int:
    """The status of ``GET /api/v1/nodes`` with only ``token`` (no cookie) to go by. Plain
    urllib: Playwright's sync API holds this thread's event loop, so no asyncio here."""
    request = urllib.request.Request(
        server.url("/api/v1/nodes"),
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return refused.code


def test_a_token_made_on_the_page_is_shown_once_works_and_stops_when_revoked(
    browser_context: Any, web_server: WebServer, screenshot: Any
) -> None:
    page = sign_in(browser_context, web_server, "viewer")
    page.get_by_role("link", name="API tokens").click()
    page.wait_for_url("**/tokens")

    # A bad expiry is refused by the API, and its message shows by the form.
    page.get_by_label("Token name").fill("browser-ci")
    page.get_by_label("Expires in days").fill("9999")
    page.get_by_role("button", name="Create token").click()
    error = page.locator("[data-token-form] [data-form-error]")
    error.wait_for()
    assert "expires_in_days" in error.inner_text()

    page.get_by_label("Expires in days").fill("30")
    page.get_by_role("button", name="Create token").click()
    field = page.get_by_label("Token", exact=True)
    field.wait_for()
    token = field.input_value()
    assert token and field.get_attribute("readonly") is not None
    assert "Shown once" in page.locator("[data-new-token]").inner_text()
    assert error.is_hidden()
    row = page.locator("tr[data-token-state='active']", has_text="browser-ci")
    assert row.count() == 1
    screenshot(page, "tokens")

    assert nodes_status(web_server, token) == 200

    # Shown once: the page, opened again, has the row but not the token.
    page.reload()
    assert token not in page.content()
    assert page.locator("[data-new-token]").is_hidden()
    row = page.locator("tr[data-token-id]", has_text="browser-ci")
    revoke = row.get_by_role("button", name="Revoke browser-ci")
    revoke.click()  # asks first: nothing is revoked yet
    assert row.get_attribute("data-token-state") == "active"
    assert nodes_status(web_server, token) == 200
    row.get_by_role("button", name="Revoke browser-ci").click()
    page.locator("tr[data-token-state='revoked']", has_text="browser-ci").wait_for()

    assert nodes_status(web_server, token) == 401

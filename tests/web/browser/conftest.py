"""Browser fixtures: Debian's Chromium driven by Python Playwright, and page screenshots.

Playwright cannot download its own browser here, so it launches the system's Chromium
(``/usr/bin/chromium``, or ``$ECSEXEC_CHROMIUM``); without one every browser test is
skipped with the reason. Screenshots go to ``tests/artifacts/screenshots/`` (not committed).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


def chromium_path() -> str | None:
    """The Chromium to drive: $ECSEXEC_CHROMIUM, /usr/bin/chromium, or one on PATH."""
    wanted = os.environ.get("ECSEXEC_CHROMIUM")
    if wanted:
        return wanted if Path(wanted).exists() else None
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Chromium for one module. Playwright's sync API keeps an event loop running in this
    thread while it is open, so it must close before other modules call asyncio.run()."""
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "no Chromium found (install Debian's chromium package, or set ECSEXEC_CHROMIUM "
            "to a Chromium binary): the browser tests need a real browser"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_context(chromium: Any) -> Iterator[Any]:
    """A fresh context per test: its own cookies, so each test signs in as its own user."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def screenshot() -> Any:
    """``screenshot(page, "commands")`` saves tests/artifacts/screenshots/commands.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take

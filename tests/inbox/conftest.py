"""Fixtures for the reviewer inbox's tests: the real API (uvicorn on a free
port, from tests/api/conftest.py) with its worker and the session's Temporal
dev server and simulator, on SQLite; one headless Debian Chromium per test
session driven by Playwright (never downloaded: `chromium` from PATH), a
fresh browser context per test, and a screenshot of every browser test in
tests/artifacts/inbox/.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from api.server import ApiServer
from tests.api.conftest import (  # noqa: F401 - fixtures used by the inbox's tests
    admin,
    api,
    api_overrides,
    api_task_queue,
    api_worker,
    database_url,
    db_engine,
    http,
    keys,
)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "inbox"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def backend() -> str:
    """The inbox's tests run on SQLite (the store's backends are covered by
    tests/store and tests/api)."""
    return "sqlite"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the whole session (Debian's package; nothing downloaded)."""
    executable = shutil.which("chromium")
    if executable is None:
        raise RuntimeError("chromium is not installed: `apt-get install chromium` (see .ci/run)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def context(
    browser: Browser,
    api: ApiServer,  # noqa: F811 - the fixture imported above
) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(base_url=api.url, viewport=DESKTOP)
    ctx.set_default_timeout(10_000)
    yield ctx
    await ctx.close()


@pytest.fixture
async def page(context: BrowserContext, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A page that fails the test on any script error or dialog, and leaves a
    screenshot of where it ended in tests/artifacts/inbox/<test>.png."""
    tab = await context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    tab.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
    tab.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    yield tab
    await screenshot(tab, request.node.name)
    assert not problems, problems


async def screenshot(tab: Page, name: str, *, full_page: bool = True) -> Path:
    """Save what the page shows to tests/artifacts/inbox/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png")
    if not tab.is_closed():
        await tab.screenshot(path=str(path), full_page=full_page)
    return path


async def sign_in(tab: Page, key: str) -> None:
    await tab.goto("/inbox/sign-in")
    await tab.get_by_label("API key").fill(key)
    await tab.get_by_role("button", name="Sign in").click()
    await tab.wait_for_url(re.compile(r"/inbox(\?.*)?$"))


async def publish(client: httpx.AsyncClient, chain: dict[str, Any]) -> None:
    """Publish a chain through the API (as the bootstrap admin)."""
    response = await client.put(f"/v1/chains/{chain['name']}", json=chain, headers=admin())
    assert response.status_code in (200, 201), response.text

"""Signing in to the inbox in a real browser."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.api.conftest import Keys
from tests.inbox.conftest import sign_in


async def test_a_reviewer_signs_in_and_out(page: Page, keys: Keys) -> None:
    await sign_in(page, keys.reviewer)
    await expect(page.get_by_role("heading", name="Pending approvals")).to_be_visible()
    await expect(page.locator(".who .name")).to_have_text(keys.names["reviewer"])
    stored = await page.evaluate(
        "() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie"
    )
    assert keys.reviewer not in stored and stored == "{}{}"
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/inbox/sign-in?signed_out=true")
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    await page.goto("/inbox")
    assert "/inbox/sign-in" in page.url


async def test_a_service_key_is_refused_with_a_clear_message(page: Page, keys: Keys) -> None:
    await page.goto("/inbox/sign-in")
    await page.get_by_label("API key").fill(keys.service)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("is a service key")
    assert page.url.endswith("/inbox/sign-in")

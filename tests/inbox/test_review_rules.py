"""The rules a reviewer meets in the browser: someone else deciding first,
text that changed underneath, a two-reviewer quorum, roles, and CSRF."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from api.server import ApiServer
from simulator.control import SimulatorControl
from tests.api.conftest import Keys, bearer
from tests.inbox.conftest import DESKTOP, screenshot, sign_in
from tests.inbox.helpers import closed, draft_run, open_item, publish_review_chain

pytestmark = pytest.mark.usefixtures("api_worker")

DRAFT = "We have refunded the 42.00 EUR to your card; it shows within 5 working days."


async def second_page(browser: Browser, api: ApiServer) -> Page:
    context = await browser.new_context(base_url=api.url, viewport=DESKTOP)
    context.set_default_timeout(10_000)
    return await context.new_page()


async def test_two_reviewers_deciding_at_once_one_wins_the_other_sees_already_decided(
    page: Page,
    browser: Browser,
    api: ApiServer,
    http: httpx.AsyncClient,
    keys: Keys,
    sim: SimulatorControl,
) -> None:
    run_id, _ = await draft_run(http, keys, sim, draft=DRAFT)
    other = await second_page(browser, api)
    try:
        await sign_in(page, keys.reviewer)
        await sign_in(other, keys.reviewer2)
        await open_item(page, run_id)
        await open_item(other, run_id)
        await page.get_by_role("button", name="Approve").click()
        await expect(page.locator("#notice")).to_contain_text("You approved")
        await other.get_by_role("button", name="Approve").click()
        await expect(other.locator("#refusal")).to_contain_text("Already decided")
        # The refreshed item: decided, by whom, and no buttons left to press.
        await expect(other.get_by_role("heading", name="Decided", exact=True)).to_be_visible()
        await expect(other.locator("main")).to_contain_text(keys.names["reviewer"])
        await expect(other.get_by_role("button", name="Approve")).to_have_count(0)
        await screenshot(other, "already_decided_second_reviewer")
    finally:
        await other.context.close()
    done = await closed(http, run_id)
    assert done["status"] == "completed" and done["output"] == DRAFT


async def test_a_two_reviewer_quorum_is_completed_by_the_second_reviewer(
    page: Page,
    browser: Browser,
    api: ApiServer,
    http: httpx.AsyncClient,
    keys: Keys,
    sim: SimulatorControl,
) -> None:
    await publish_review_chain(http, "inbox_quorum", required_approvals=2)
    run_id, _ = await draft_run(http, keys, sim, draft=DRAFT, chain="inbox_quorum")
    await sign_in(page, keys.reviewer)
    await open_item(page, run_id)
    await expect(page.locator(".facts")).to_contain_text("0 of 2")
    await page.get_by_role("button", name="Approve (1 of 2)").click()
    await expect(page.locator("#notice")).to_contain_text("recorded: 1 of 2")
    row = page.locator(f'.item[data-key^="{run_id}/"]')
    await expect(row.locator(".quorum")).to_have_text("1 of 2")
    await expect(row).to_contain_text("you approved · waiting")

    other = await second_page(browser, api)
    try:
        await sign_in(other, keys.reviewer2)
        await open_item(other, run_id)
        await other.get_by_role("button", name="Approve (2 of 2)").click()
        await expect(other.locator("#notice")).to_contain_text("You approved")
    finally:
        await other.context.close()
    # The first reviewer's list drops the item without a reload.
    await expect(row).to_have_count(0, timeout=8_000)
    done = await closed(http, run_id)
    assert done["status"] == "completed" and done["output"] == DRAFT


async def test_text_edited_underneath_is_refused_and_the_new_text_shown(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    await publish_review_chain(http, "inbox_quorum_edit", required_approvals=2)
    run_id, item = await draft_run(http, keys, sim, draft=DRAFT, chain="inbox_quorum_edit")
    await sign_in(page, keys.reviewer)
    await open_item(page, run_id)
    changed = DRAFT.replace("42.00", "24.00")
    edit = await http.post(
        f"/v1/runs/{run_id}/approvals/review",
        json={"decision": "edit", "payload_hash": item["payload_hash"], "edited_output": changed},
        headers=bearer(keys.reviewer2),
    )
    assert edit.status_code == 200, edit.text
    await page.get_by_role("button", name="Approve (1 of 2)").click()
    await expect(page.locator("#refusal")).to_contain_text("The text changed")
    await expect(page.locator("#text")).to_contain_text("24.00 EUR")
    await expect(page.locator("main")).to_contain_text(keys.names["reviewer2"])
    # Approving what is now shown goes through.
    await page.get_by_role("button", name="Approve").click()
    await expect(page.locator("#notice")).to_contain_text("You approved")
    done = await closed(http, run_id)
    assert done["status"] == "completed" and done["output"] == changed


async def test_a_role_without_the_required_role_does_not_see_the_approval(
    page: Page,
    browser: Browser,
    api: ApiServer,
    http: httpx.AsyncClient,
    keys: Keys,
    sim: SimulatorControl,
) -> None:
    await publish_review_chain(http, "inbox_supervised", required_role="supervisor")
    run_id, item = await draft_run(http, keys, sim, draft=DRAFT, chain="inbox_supervised")
    ordinary_id, _ = await draft_run(http, keys, sim, draft=DRAFT)
    await sign_in(page, keys.reviewer)
    await expect(page.locator(f'.item[data-key^="{ordinary_id}/"]')).to_be_visible()
    await expect(page.locator(f'.item[data-key^="{run_id}/"]')).to_have_count(0)
    response = await page.goto(f"/inbox/runs/{run_id}/approvals/review")
    assert response is not None and response.status == 404
    await expect(page.locator("main")).not_to_contain_text(DRAFT)

    supervisor = await second_page(browser, api)
    try:
        await sign_in(supervisor, keys.supervisor)
        await open_item(supervisor, run_id)
        await supervisor.get_by_role("button", name="Approve").click()
        await expect(supervisor.locator("#notice")).to_contain_text("You approved")
        await open_item(supervisor, ordinary_id)
        await supervisor.get_by_role("button", name="Approve").click()
    finally:
        await supervisor.context.close()
    assert (await closed(http, run_id))["status"] == "completed"
    assert (await closed(http, ordinary_id))["status"] == "completed"
    assert item["required_role"] == "supervisor"


async def test_a_form_post_without_the_csrf_token_is_refused(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    run_id, item = await draft_run(http, keys, sim, draft=DRAFT)
    await sign_in(page, keys.reviewer)
    url = f"/inbox/runs/{run_id}/approvals/review/decide"
    form = {"decision": "approve", "payload_hash": item["payload_hash"]}
    for token in (None, "", "not-the-token-" + uuid.uuid4().hex):
        fields = form if token is None else {**form, "csrf_token": token}
        response = await page.request.post(url, form=fields)
        assert response.status == 403, await response.text()
        assert "security token" in await response.text()
    # The page's own form (same cookie, real token) still works.
    await open_item(page, run_id)
    await page.get_by_role("button", name="Approve").click()
    await expect(page.locator("#notice")).to_contain_text("You approved")
    assert (await closed(http, run_id))["status"] == "completed"

"""Deciding approvals in the browser: approve, reject with a reason, edit with
the diff shown first; each run then ends with the decided output."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page, expect

from simulator.control import SimulatorControl
from tests.api.conftest import Keys
from tests.inbox.conftest import sign_in
from tests.inbox.helpers import closed, draft_run, open_item

pytestmark = pytest.mark.usefixtures("api_worker")

DRAFT = "Thanks for writing in: your parcel **left our warehouse** this morning."


async def test_approve_completes_the_run_with_the_text(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    run_id, _ = await draft_run(http, keys, sim, draft=DRAFT)
    await sign_in(page, keys.reviewer)
    await open_item(page, run_id)
    await expect(page.locator("#text strong")).to_have_text("left our warehouse")
    await expect(page.locator("#ticket")).to_contain_text("Where is my parcel?")
    await expect(page.locator("table.steps")).to_contain_text("draft")
    await page.get_by_role("button", name="Approve").click()
    await expect(page.locator("#notice")).to_contain_text("You approved review on run")
    done = await closed(http, run_id)
    assert done["status"] == "completed" and done["output"] == DRAFT


async def test_reject_needs_a_reason_and_ends_the_run_rejected(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    run_id, _ = await draft_run(http, keys, sim, draft=DRAFT)
    await sign_in(page, keys.reviewer)
    await open_item(page, run_id)
    reason = page.get_by_label("Reason for rejecting (required)")
    await reason.fill("   ")
    # The browser's own check is bypassed so that the server's is seen.
    await page.evaluate("document.querySelector('.reject-form').noValidate = true")
    await page.get_by_role("button", name="Reject").click()
    await expect(page.locator("#refusal")).to_contain_text("A reason is required")
    await page.get_by_label("Reason for rejecting (required)").fill("Wrong order number")
    await page.get_by_role("button", name="Reject").click()
    await expect(page.locator("#notice")).to_contain_text("You rejected review")
    done = await closed(http, run_id)
    assert done["status"] == "rejected", done
    assert "Wrong order number" in done["error"]["message"]


async def test_edit_shows_the_diff_before_it_is_sent(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    run_id, _ = await draft_run(http, keys, sim, draft=DRAFT)
    await sign_in(page, keys.reviewer)
    await open_item(page, run_id)
    await page.locator("#edit-panel summary").click()
    edited = DRAFT.replace("this morning", "yesterday evening")
    await page.get_by_label("Edited text (Markdown)").fill(edited)
    await page.get_by_role("button", name="Preview changes").click()
    await expect(page.locator("#diff del")).to_have_text("this morning.")
    await expect(page.locator("#diff ins")).to_have_text("yesterday evening.")
    await expect(page.locator("#preview-title")).to_contain_text("2 added")
    done_before = await http.get(f"/v1/runs/{run_id}", headers={"Authorization": ""})
    assert done_before.status_code == 401  # nothing sent yet; the run still waits
    await page.get_by_role("button", name="Send edited text").click()
    await expect(page.locator("#notice")).to_contain_text("You edited and approved review")
    done = await closed(http, run_id)
    assert done["status"] == "completed" and done["output"] == edited

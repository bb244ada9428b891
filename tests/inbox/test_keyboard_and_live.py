"""The whole flow by keyboard alone, and a list that updates itself."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page, expect

from simulator.control import SimulatorControl
from tests.api.conftest import Keys
from tests.inbox.conftest import sign_in
from tests.inbox.helpers import closed, draft_run

pytestmark = pytest.mark.usefixtures("api_worker")

DRAFT = "Your parcel is with the carrier and arrives on Thursday."


async def test_the_keyboard_alone_signs_in_moves_and_decides(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    first, _ = await draft_run(http, keys, sim, draft=DRAFT)
    second, _ = await draft_run(http, keys, sim, draft=DRAFT + " Tracking: NW-77.")
    await page.goto("/inbox/sign-in")
    await page.keyboard.type(keys.reviewer)  # the key field has focus on arrival
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/inbox")
    await expect(page.locator(".item")).to_have_count(2)

    await page.keyboard.press("?")
    await expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog")).to_be_hidden()

    await page.keyboard.press("j")
    await expect(page.locator(".item.selected")).to_have_count(1)
    selected = await page.locator(".item.selected").get_attribute("data-key")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Your decision")).to_be_visible()
    assert selected is not None and selected.split("/")[0] in page.url

    # j goes to the next item, k comes back.
    await page.keyboard.press("j")
    await page.wait_for_url(lambda url: selected.split("/")[0] not in url)
    await page.keyboard.press("k")
    await page.wait_for_url(lambda url: selected.split("/")[0] in url)

    # r: a reason, then Tab to Reject and Enter.
    await page.keyboard.press("r")
    await expect(page.get_by_label("Reason for rejecting (required)")).to_be_focused()
    await page.keyboard.type("Wrong carrier named")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Reject")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#notice")).to_contain_text("You rejected")

    # e: edit, preview by keyboard, send.
    await expect(page.locator(".item")).to_have_count(1)
    await page.keyboard.press("j")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Your decision")).to_be_visible()
    await page.keyboard.press("e")
    editor = page.get_by_label("Edited text (Markdown)")
    await expect(editor).to_be_focused()
    await page.keyboard.press("End")
    await page.keyboard.type(" Thanks!")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")  # Preview changes
    await expect(page.locator("#diff ins")).to_contain_text("Thanks!")
    await page.keyboard.press("Tab")  # the optional note
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Send edited text")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#notice")).to_contain_text("You edited and approved")

    outcomes = {run: await closed(http, run) for run in (first, second)}
    assert sorted(o["status"] for o in outcomes.values()) == ["completed", "rejected"]
    [done] = [o for o in outcomes.values() if o["status"] == "completed"]
    assert done["output"].endswith(" Thanks!")


async def test_a_keypress_of_a_then_enter_approves(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    run_id, _ = await draft_run(http, keys, sim, draft=DRAFT)
    await sign_in(page, keys.reviewer)
    await page.keyboard.press("j")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Your decision")).to_be_visible()
    await page.keyboard.press("a")
    await expect(page.get_by_role("button", name="Approve")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#notice")).to_contain_text("You approved")
    assert (await closed(http, run_id))["status"] == "completed"


async def test_a_new_approval_appears_without_a_reload(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    await sign_in(page, keys.reviewer)
    before = await page.locator(".item").count()
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    run_id, _ = await draft_run(http, keys, sim, draft=DRAFT)
    row = page.locator(f'.item[data-key^="{run_id}/"]')
    await expect(row).to_be_visible(timeout=5_000)
    await expect(page.locator(".item")).to_have_count(before + 1)
    assert (await page.title()).startswith(f"({before + 1}) Inbox")
    assert navigations == []
    # A decision by someone else takes it away again, still without a reload.
    item = await http.get("/v1/approvals", headers={"Authorization": f"Bearer {keys.reviewer2}"})
    [mine] = [i for i in item.json()["items"] if i["run_id"] == run_id]
    answer = await http.post(
        f"/v1/runs/{run_id}/approvals/review",
        json={"decision": "approve", "payload_hash": mine["payload_hash"]},
        headers={"Authorization": f"Bearer {keys.reviewer2}"},
    )
    assert answer.status_code == 200, answer.text
    await expect(row).to_have_count(0, timeout=5_000)
    assert navigations == []
    assert (await closed(http, run_id))["status"] == "completed"

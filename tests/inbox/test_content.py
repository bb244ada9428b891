"""What the detail page shows, in the browser: hostile ticket text rendered
inert, an agent's tool call decided from the inbox, and the flagship chain's
grounded reply with its citations linked to the passages retrieved (whose
screenshots, list and detail, are the README's: set
CHORUS_UPDATE_DOCS_SCREENSHOTS=1 to refresh docs/inbox-*.png)."""

from __future__ import annotations

import os
import re
import shutil

import httpx
import pytest
from playwright.async_api import Page, expect

from simulator.control import SimulatorControl
from simulator.models import Rule, ToolCallSpec
from tests.api.conftest import Keys, admin, bearer
from tests.api.test_flagship_e2e import ingest_over_http
from tests.inbox.conftest import ROOT, publish, screenshot, sign_in
from tests.inbox.helpers import closed, draft_run, open_item, pending, start
from tests.integration.test_support_triage import classified

pytestmark = pytest.mark.usefixtures("api_worker")

HOSTILE_TICKET = (
    'Hi <script>window.__pwned = 1; alert("ticket")</script>'
    '<img src=x onerror="window.__pwned = 2; alert(2)"> where is order NW-1001?'
)
HOSTILE_DRAFT = (
    "Sorry! <script>window.__pwned = 3</script> <img src=x onerror=window.__pwned=4> "
    "[click](javascript:window.__pwned=5)"
)


async def test_a_ticket_with_script_and_img_onerror_renders_inert(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    run_id, _ = await draft_run(http, keys, sim, draft=HOSTILE_DRAFT, message=HOSTILE_TICKET)
    await sign_in(page, keys.reviewer)
    row = page.locator(f'.item[data-key^="{run_id}/"]')
    await expect(row).to_contain_text("<script>window.__pwned = 1;")
    await open_item(page, run_id)
    await expect(page.locator("#ticket")).to_have_text(HOSTILE_TICKET)
    await expect(page.locator("#text")).to_contain_text("<script>window.__pwned = 3</script>")
    await expect(page.locator("#text")).to_contain_text("<img src=x onerror=window.__pwned=4>")
    assert await page.locator("main img, main script, #text a").count() == 0
    assert await page.evaluate("() => window.__pwned") is None
    # The fixture fails the test on any dialog or page error.
    await page.get_by_label("Reason for rejecting (required)").fill("Looks like an attack")
    await page.get_by_role("button", name="Reject").click()
    await expect(page.locator("#notice")).to_contain_text("You rejected")
    assert (await closed(http, run_id))["status"] == "rejected"


REFUND_AGENT = {
    "name": "inbox_refund_agent",
    "steps": [
        {
            "name": "helper",
            "kind": "agent",
            "model": "strong",
            "prompt": "{{ input.message }}",
            "tools": ["issue_refund"],
            "max_turns": 3,
        }
    ],
}


async def refund_rules(sim: SimulatorControl) -> None:
    await sim.add_rules(
        Rule(after_tool="issue_refund", reply="Refund issued."),
        Rule(
            match="refund my order",
            tool_calls=[
                ToolCallSpec(
                    name="issue_refund",
                    arguments={"order_id": "NW-1003", "amount": 10, "reason": "late parcel"},
                )
            ],
        ),
    )


async def test_an_agents_refund_tool_call_is_approved_from_the_inbox(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    await publish(http, REFUND_AGENT)
    await refund_rules(sim)
    run_id = await start(http, keys, REFUND_AGENT["name"], {"message": "Please refund my order"})
    child_id = f"{run_id}--helper"
    await pending(http, child_id)
    await sign_in(page, keys.reviewer)
    row = page.locator(f'.item[data-key^="{child_id}/"]')
    await expect(row).to_contain_text("Run tool issue_refund")
    await expect(row.locator(".tag.tool")).to_have_text("tool call")
    await open_item(page, child_id)
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Tool call: issue_refund")
    await expect(page.locator("#text")).to_contain_text('"order_id": "NW-1003"')
    await expect(page.locator(".sub")).to_contain_text("agent helper")
    await expect(page.locator("#ticket")).to_have_text("Please refund my order")
    await page.get_by_role("button", name="Approve").click()
    await expect(page.locator("#notice")).to_contain_text("You approved")
    done = await closed(http, run_id)
    assert done["status"] == "completed" and done["output"]["answer"] == "Refund issued."


REFUND_TICKET = (
    "I returned the Ridgeline hiking boots two weeks ago and still have no refund. "
    "Order NW-1003. Can you check where it is?"
)
WRITTEN_REPLY = (
    "Hi Dana, thanks for your patience, and sorry the wait has dragged on.\n\n"
    "We issue a refund as soon as your return is checked in at our returns center; "
    "check-in usually happens within **3 business days** of the parcel arriving "
    "[refunds.md#1]. If you used our prepaid label, $6.95 is taken off the refund "
    "[refunds.md#3].\n\n"
    "I have asked the returns team to look up order NW-1003 today, and we will email "
    "you the moment the refund is on its way.\n\nWarmly,\nThe Larkspur team"
)
UNSURE_TICKET = "My tent pole snapped on the first night, is that covered or do I pay?"


async def test_the_flagship_reply_links_its_citations_to_the_passages(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    await ingest_over_http(http, keys)
    await sim.add_rules(
        Rule(model="sim-writer", match="Customer: Dana", reply=WRITTEN_REPLY),
        classified(REFUND_TICKET, "refund", "complex"),
        classified(UNSURE_TICKET, "product", "complex", confidence=0.55),
    )
    await publish(http, REFUND_AGENT)
    await refund_rules(sim)
    refund_id = await start(
        http, keys, "support_triage", {"message": REFUND_TICKET, "customer_name": "Dana"}
    )
    unsure_id = await start(http, keys, "support_triage", {"message": UNSURE_TICKET})
    agent_id = await start(http, keys, REFUND_AGENT["name"], {"message": "Please refund my order"})
    for run_id in (refund_id, unsure_id, f"{agent_id}--helper"):
        await pending(http, run_id)

    await sign_in(page, keys.reviewer)
    await expect(page.locator(".item")).to_have_count(3, timeout=15_000)
    assert re.match(r"^\(3\) Inbox", await page.title())
    list_shot = await screenshot(page, "docs_inbox_list")

    await open_item(page, refund_id)
    citations = page.locator("#text a.cite")
    assert await citations.count() >= 1
    first = citations.first
    target = await first.get_attribute("href")
    assert target and target.startswith("#passage-")
    cited = (await first.inner_text()).strip()
    await expect(page.locator(f"{target} summary")).to_contain_text(cited)
    await expect(page.locator("table.steps")).to_contain_text("grounded_answer")
    await expect(page.locator("table.steps")).to_contain_text("strong")
    await expect(page.locator("#sources-title")).to_be_visible()
    await page.set_viewport_size({"width": 1280, "height": 1000})
    detail_shot = await screenshot(page, "docs_inbox_detail", full_page=False)
    await first.click()
    await expect(page.locator(f"{target} .ptext")).to_be_in_viewport()

    # Readable at 375 px: nothing wider than the screen, every action reachable.
    await page.set_viewport_size({"width": 375, "height": 812})
    for url in ("/inbox", page.url.split("#")[0]):
        await page.goto(url)
        width = await page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 375, f"{url} is {width} px wide at 375 px"
    await expect(page.get_by_role("button", name="Approve")).to_be_visible()
    await screenshot(page, "narrow_375_detail")

    if os.environ.get("CHORUS_UPDATE_DOCS_SCREENSHOTS"):
        shutil.copyfile(list_shot, ROOT / "docs" / "inbox-list.png")
        shutil.copyfile(detail_shot, ROOT / "docs" / "inbox-detail.png")

    for run_id in (refund_id, unsure_id, f"{agent_id}--helper"):
        item = await pending(http, run_id)
        answer = await http.post(
            f"/v1/runs/{run_id}/approvals/{item['approval_id']}",
            json={"decision": "approve", "payload_hash": item["payload_hash"]},
            headers=bearer(keys.reviewer),
        )
        assert answer.status_code == 200, answer.text
    for run_id in (refund_id, unsure_id, agent_id):
        assert (await closed(http, run_id))["status"] == "completed"
    assert admin()

"""What the list and the approval show about an approval's state, in the
browser: the chain and status filters (and the title's count) through the
live refresh, an agent's tool call priced at its chain run's cost, a guard's
violations when it escalated, an approval escalated at its deadline, and rows
that stay put when a new approval arrives."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from api.inbox.templating import usd
from api.server import ApiServer
from simulator.control import SimulatorControl
from simulator.models import Rule, ToolCallSpec
from tests.api.conftest import Keys, admin, bearer, wait_for
from tests.inbox.conftest import DESKTOP, publish, sign_in
from tests.inbox.helpers import closed, draft_run, open_item, pending, publish_review_chain, start

pytestmark = pytest.mark.usefixtures("api_worker")

DRAFT = "Your parcel left our warehouse today and arrives on Friday."


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


def row(page: Page, run_id: str) -> Any:
    return page.locator(f'.item[data-key^="{run_id}/"]')


async def approve_over_http(http: httpx.AsyncClient, key: str, run_id: str) -> None:
    item = await pending(http, run_id)
    answer = await http.post(
        f"/v1/runs/{run_id}/approvals/{item['approval_id']}",
        json={"decision": "approve", "payload_hash": item["payload_hash"]},
        headers=bearer(key),
    )
    assert answer.status_code == 200, answer.text


async def filter_by(page: Page, *, chain: str, status: str) -> None:
    await page.get_by_label("Chain").select_option(chain)
    await page.get_by_label("Status").select_option(status)
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(re.compile(r"/inbox\?chain="))


async def test_the_chain_and_status_filters_narrow_the_list_through_the_live_refresh(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    plain, quorum = unique("inbox_filter_plain"), unique("inbox_filter_quorum")
    await publish_review_chain(http, plain)
    await publish_review_chain(http, quorum, required_approvals=2)
    plain_1, _ = await draft_run(http, keys, sim, draft=DRAFT, chain=plain)
    quorum_1, _ = await draft_run(http, keys, sim, draft=DRAFT, chain=quorum)
    await approve_over_http(http, keys.reviewer2, quorum_1)  # 1 of 2

    await sign_in(page, keys.reviewer)
    await expect(row(page, plain_1)).to_be_visible()
    await expect(row(page, quorum_1)).to_be_visible()

    # By chain: only that chain's rows, and the title counts them.
    await filter_by(page, chain=plain, status="all")
    await expect(page.locator(".item")).to_have_count(1)
    await expect(row(page, plain_1)).to_be_visible()
    assert (await page.title()).startswith("(1) Inbox")
    # A run of the other chain arrives first, then one of this chain: when the
    # poll brings the second, it has already left the first out.
    quorum_2, _ = await draft_run(http, keys, sim, draft=DRAFT, chain=quorum)
    plain_2, _ = await draft_run(http, keys, sim, draft=DRAFT, chain=plain)
    await expect(row(page, plain_2)).to_be_visible(timeout=5_000)
    await expect(row(page, quorum_2)).to_have_count(0)
    await expect(page.locator(".item")).to_have_count(2)
    await expect(page.locator("#count")).to_have_text("2")
    await expect(page).to_have_title(re.compile(r"^\(2\) Inbox"))
    await expect(page.get_by_label("Chain")).to_have_value(plain)

    # By status: quorum in progress is the run one reviewer has approved.
    await filter_by(page, chain="", status="quorum")
    shown = {await r.get_attribute("data-key") for r in await page.locator(".item").all()}
    assert {k.split("/")[0] for k in shown if k} & {plain_1, plain_2, quorum_2} == set()
    await expect(row(page, quorum_1)).to_be_visible()
    count = len(shown)
    assert (await page.title()).startswith(f"({count}) Inbox")
    # The second quorum run joins the filter when someone approves it, live.
    await approve_over_http(http, keys.reviewer2, quorum_2)
    await expect(row(page, quorum_2)).to_be_visible(timeout=5_000)
    await expect(row(page, quorum_2).locator(".quorum")).to_have_text("1 of 2")
    await expect(page.locator(".item")).to_have_count(count + 1)
    await expect(page).to_have_title(re.compile(rf"^\({count + 1}\) Inbox"))
    await expect(page.get_by_label("Status")).to_have_value("quorum")
    await expect(row(page, plain_2)).to_have_count(0)

    for run_id in (plain_1, plain_2):
        await approve_over_http(http, keys.reviewer, run_id)
    for run_id in (quorum_1, quorum_2):
        await approve_over_http(http, keys.supervisor, run_id)  # 2 of 2
    await expect(page.locator(".item")).to_have_count(count - 1, timeout=5_000)
    for run_id in (plain_1, plain_2, quorum_1, quorum_2):
        assert (await closed(http, run_id))["status"] == "completed"


async def test_an_agents_tool_approval_shows_its_chain_runs_cost(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    chain = {
        "name": unique("inbox_costed_agent"),
        "steps": [
            {"name": "triage", "kind": "model", "model": "cheap", "prompt": "{{ input.note }}"},
            {
                "name": "helper",
                "kind": "agent",
                "model": "strong",
                "prompt": "{{ input.message }}",
                "tools": ["issue_refund"],
                "max_turns": 3,
            },
        ],
    }
    await publish(http, chain)
    await sim.add_rules(
        Rule(after_tool="issue_refund", reply="Refund issued."),
        Rule(
            match="refund my order",
            tool_calls=[
                ToolCallSpec(
                    name="issue_refund",
                    arguments={"order_id": "NW-1004", "amount": 12, "reason": "damaged"},
                )
            ],
        ),
    )
    run_id = await start(
        http, keys, chain["name"], {"message": "Please refund my order", "note": "Triage NW-1004"}
    )
    child_id = f"{run_id}--helper"
    await pending(http, child_id)
    run = (await http.get(f"/v1/runs/{run_id}", headers=admin())).json()
    assert run["cost_usd"] > 0, run  # the triage call
    cost = usd(run["cost_usd"])
    assert cost != usd(0.0), cost  # a small spend still reads as one

    await sign_in(page, keys.reviewer)
    listed = row(page, child_id)
    await expect(listed).to_contain_text("Run tool issue_refund")
    await expect(listed.locator(".meta")).to_contain_text(cost)
    await open_item(page, child_id)
    facts = page.locator(".facts div", has_text="Run cost so far")
    await expect(facts.locator("dd")).to_have_text(cost)
    await page.get_by_role("button", name="Approve").click()
    await expect(page.locator("#notice")).to_contain_text("You approved")
    assert (await closed(http, run_id))["status"] == "completed"


async def test_a_guards_violations_are_shown_when_it_escalated(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    chain = {
        "name": unique("inbox_guarded"),
        "steps": [
            {"name": "draft", "kind": "model", "model": "writer", "prompt": "{{ input.message }}"},
            {
                "name": "check",
                "kind": "guard",
                "target": "draft",
                "rules": {"pii": ["email"], "max_length": 60},
                "on_fail": "escalate",
                "required_role": "reviewer",
            },
        ],
        "output": "check",
    }
    await publish(http, chain)
    leaky = "Write to our returns desk at returns.desk@larkspur.example and they will sort it out."
    run_id, item = await draft_run(http, keys, sim, draft=leaky, chain=chain["name"])
    assert item["approval_id"] == "check"

    await sign_in(page, keys.reviewer)
    await expect(row(page, run_id).locator(".tag.checks")).to_have_text("failed checks")
    await open_item(page, run_id)
    section = page.get_by_role("region", name="Automatic checks failed on draft")
    await expect(section).to_be_visible()
    await expect(section.locator("li")).to_have_count(2)
    await expect(section).to_contain_text("pii_email")
    await expect(section).to_contain_text("max_length")
    # The guard names where, never the data it caught.
    await expect(section).not_to_contain_text("returns.desk@")
    await expect(page.locator("#text")).to_contain_text("returns.desk@larkspur.example")
    await page.get_by_label("Reason for rejecting (required)").fill("Leaks an address")
    await page.get_by_role("button", name="Reject").click()
    await expect(page.locator("#notice")).to_contain_text("You rejected")
    assert (await closed(http, run_id))["status"] == "rejected"


async def test_an_approval_escalated_at_its_deadline_shows_its_new_role_and_deadline(
    page: Page,
    browser: Browser,
    api: ApiServer,
    http: httpx.AsyncClient,
    keys: Keys,
    sim: SimulatorControl,
) -> None:
    name = unique("inbox_escalating")
    await publish_review_chain(
        http,
        name,
        timeout_s=1.5,
        on_timeout="escalate",
        escalate_to_role="supervisor",
        escalation_timeout_s=3600,
    )
    run_id, first = await draft_run(http, keys, sim, draft=DRAFT, chain=name)

    async def escalated() -> dict[str, Any] | None:
        items = (await http.get("/v1/approvals", headers=admin())).json()["items"]
        return next((i for i in items if i["run_id"] == run_id and i["escalated"]), None)

    item = await wait_for(escalated, timeout_s=20)
    assert item["required_role"] == "supervisor" and item["deadline"] > first["deadline"]

    await sign_in(page, keys.supervisor)
    await page.goto(f"/inbox?chain={name}&status=escalated")
    listed = row(page, run_id)
    await expect(listed).to_have_class(re.compile(r"\bescalated\b"))
    await expect(listed.locator(".tag.esc")).to_have_text("escalated to supervisor")
    deadline = listed.locator(".countdown")
    await expect(deadline).to_have_text(re.compile(r"^in 59m$"))
    shown = await deadline.get_attribute("data-deadline")
    assert shown is not None and shown[:19] == item["deadline"][:19]
    await open_item(page, run_id)
    await expect(page.locator(".facts")).to_contain_text("supervisor")
    await expect(page.locator(".facts .tag.esc")).to_have_text("escalated")
    await expect(page.locator(".audit")).to_contain_text("escalate")

    # A reviewer without the new role no longer sees it.
    other = await (await browser.new_context(base_url=api.url, viewport=DESKTOP)).new_page()
    try:
        await sign_in(other, keys.reviewer)
        await expect(row(other, run_id)).to_have_count(0)
    finally:
        await other.context.close()

    await page.get_by_role("button", name="Approve").click()
    await expect(page.locator("#notice")).to_contain_text("You approved")
    assert (await closed(http, run_id))["status"] == "completed"


OBSERVE_SHIFTS = """() => {
  window.__shifts = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      window.__shifts.push({
        value: entry.value,
        rows: (entry.sources || [])
          .map((s) => s.node && s.node.closest && s.node.closest(".item"))
          .filter(Boolean)
          .map((r) => r.getAttribute("data-key")),
      });
    }
  }).observe({ type: "layout-shift", buffered: true });
  document.querySelectorAll(".item").forEach((r) => { r.__shown = true; });
}"""

AFTER_TWO_FRAMES = """() => new Promise((done) =>
  requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 100))))"""


async def test_rows_already_shown_do_not_move_when_a_new_approval_arrives(
    page: Page, http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    name, sooner = unique("inbox_steady"), unique("inbox_sooner")
    await publish_review_chain(http, name)
    await publish_review_chain(http, sooner, timeout_s=3600)
    runs = [(await draft_run(http, keys, sim, draft=DRAFT, chain=name))[0] for _ in range(3)]
    await sign_in(page, keys.reviewer)
    await page.goto(f"/inbox?chain={name}")
    await expect(page.locator(".item")).to_have_count(3)
    await page.keyboard.press("j")  # a selected row must stay selected
    await page.evaluate(OBSERVE_SHIFTS)
    boxes = [await row(page, r).bounding_box() for r in runs]

    async def still(count: int, shown: int) -> None:
        """Nothing shown before has moved, and the observer saw the same
        elements (a list re-rendered whole would shift nothing it could see)."""
        await page.evaluate(AFTER_TWO_FRAMES)
        shifts: list[dict[str, Any]] = await page.evaluate("() => window.__shifts")
        assert sum(s["value"] for s in shifts) < 0.01, shifts
        kept = "() => [...document.querySelectorAll('.item')].filter((r) => r.__shown).length"
        assert await page.evaluate(kept) == shown
        assert [await row(page, r).bounding_box() for r in runs] == boxes
        await expect(page.locator(".item.selected")).to_have_count(1)
        await expect(page.locator(".item")).to_have_count(count)

    # Due later than the rows shown: it goes below them.
    later, _ = await draft_run(http, keys, sim, draft=DRAFT, chain=name)
    await expect(row(page, later)).to_be_visible(timeout=5_000)
    await expect(page.locator("#announce")).to_have_text("1 new approval")
    await still(4, shown=3)

    # Due sooner: it would push them down, so it waits behind a button that
    # was laid out all along (the count and the title have it already).
    await page.goto("/inbox")
    total = await page.locator(".item").count()
    await page.keyboard.press("j")
    await page.evaluate(OBSERVE_SHIFTS)
    boxes = [await row(page, r).bounding_box() for r in runs]
    urgent, _ = await draft_run(http, keys, sim, draft=DRAFT, chain=sooner)
    show = page.get_by_role("button", name="Show 1 new approval due sooner")
    await expect(show).to_be_visible(timeout=5_000)
    await expect(page).to_have_title(re.compile(rf"^\({total + 1}\) Inbox"))
    await expect(page.locator("#announce")).to_contain_text("1 due sooner")
    await expect(row(page, urgent)).to_have_count(0)
    await still(total, shown=total)
    await show.click()
    await expect(page.locator(".item").first).to_have_attribute("data-key", re.compile(urgent))
    await expect(page.locator(".item.selected")).to_have_attribute("data-key", re.compile(urgent))
    await expect(show).to_be_hidden()
    for run_id in [*runs, later, urgent]:
        await approve_over_http(http, keys.reviewer, run_id)

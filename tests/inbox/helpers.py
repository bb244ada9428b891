"""Runs for the inbox's tests: start one over the API, wait for its approval,
read how it ended."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from playwright.async_api import Page, expect

from simulator.control import SimulatorControl
from simulator.models import Rule
from tests.api.conftest import Keys, admin, bearer, wait_for
from tests.inbox.conftest import publish


async def start(http: httpx.AsyncClient, keys: Keys, chain: str, value: Any) -> str:
    response = await http.post(
        "/v1/runs", json={"chain": chain, "input": value}, headers=bearer(keys.service)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["run_id"])


async def pending(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    """The run's first pending approval, once the API lists it."""

    async def listed() -> dict[str, Any] | None:
        response = await http.get("/v1/approvals", headers=admin())
        for item in response.json()["items"]:
            if item["run_id"] == run_id:
                return item  # type: ignore[no-any-return]
        return None

    return await wait_for(listed, timeout_s=30)  # type: ignore[no-any-return]


async def closed(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = (await http.get(f"/v1/runs/{run_id}", headers=admin())).json()
        return body if body["source"] == "result" else None

    return await wait_for(done, timeout_s=30)  # type: ignore[no-any-return]


async def draft_run(
    http: httpx.AsyncClient,
    keys: Keys,
    sim: SimulatorControl,
    *,
    draft: str,
    message: str | None = None,
    chain: str = "review_reply",
) -> tuple[str, dict[str, Any]]:
    """A run of a drafting chain whose writer replies `draft`, waiting for its
    approval; returns the run id and the approval as GET /v1/approvals lists it."""
    message = message or f"Where is my parcel? (ticket {uuid.uuid4().hex[:6]})"
    await sim.add_rules(Rule(match=re.escape(message), reply=draft))
    run_id = await start(http, keys, chain, {"message": message})
    return run_id, await pending(http, run_id)


def review_chain(name: str, **approval: Any) -> dict[str, Any]:
    """`review_reply` with other approval settings (role, quorum)."""
    return {
        "name": name,
        "steps": [
            {"name": "draft", "kind": "model", "model": "writer", "prompt": "{{ input.message }}"},
            {
                "name": "review",
                "kind": "approval",
                "text": "{{ steps.draft.output }}",
                "context": {"message": "{{ input.message }}"},
                "required_role": "reviewer",
                **approval,
            },
        ],
        "output": "review",
    }


async def publish_review_chain(http: httpx.AsyncClient, name: str, **approval: Any) -> None:
    await publish(http, review_chain(name, **approval))


async def open_item(page: Page, run_id: str) -> None:
    """From the list, open the row of `run_id` (waiting for the poll to bring it)."""
    if "/inbox" not in page.url or "/runs/" in page.url:
        await page.goto("/inbox")
    row = page.locator(f'.item[data-key^="{run_id}/"]')
    await expect(row).to_be_visible(timeout=15_000)
    await row.locator("a.open").click()
    await expect(page.get_by_role("heading", name="Your decision")).to_be_visible()

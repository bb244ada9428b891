"""An agent's tool call that needs approval is listed by GET /v1/approvals and
decided over HTTP like any other approval."""

from __future__ import annotations

import httpx
import pytest

from simulator.control import SimulatorControl
from simulator.models import Rule, ToolCallSpec
from tests.api.conftest import Keys, admin, bearer
from tests.api.test_approvals_e2e import closed_run, decide, pending_for, start

pytestmark = pytest.mark.usefixtures("api_worker")

CHAIN = {
    "name": "refund_agent",
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


async def test_an_agent_tool_approval_is_listed_and_decided_over_http(
    http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    published = await http.put("/v1/chains/refund_agent", json=CHAIN, headers=admin())
    assert published.status_code in (200, 201), published.text
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
    run_id = await start(http, keys, "refund_agent", {"message": "Please refund my order"})
    child_id = f"{run_id}--helper"

    item = await pending_for(http, keys.reviewer, child_id)
    assert item["context"]["tool"] == "issue_refund" and '"amount": 10' in item["text"]
    answer = await decide(
        http, keys.reviewer, child_id, item["approval_id"],
        decision="approve", payload_hash=item["payload_hash"],
    )  # fmt: skip
    assert answer.status_code == 200, answer.text

    done = await closed_run(http, run_id)
    assert done["status"] == "completed"
    assert done["output"]["answer"] == "Refund issued."
    listed = await http.get(
        "/v1/approvals", params={"status": "pending"}, headers=bearer(keys.reviewer)
    )
    assert all(i["run_id"] != child_id for i in listed.json()["items"])

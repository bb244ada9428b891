"""A chain run shows its agents' tool approvals: GET /v1/runs/{id} lists them
in `pending_approvals` (with the child run to decide them on), a reviewer
sees only those of its roles, and a decision posted on the chain run's id is
taken on the agent's child run."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from simulator.control import SimulatorControl
from simulator.models import Rule, ToolCallSpec
from tests.api.conftest import Keys, admin, assert_error, bearer, wait_for
from tests.api.test_approvals_e2e import closed_run, decide, pending_for, start

pytestmark = [
    pytest.mark.usefixtures("api_worker"),
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True, scope="module"),
]


def agent_chain(name: str, approval_role: str) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [
            {
                "name": "helper",
                "kind": "agent",
                "model": "strong",
                "prompt": "{{ input.message }}",
                "tools": ["issue_refund"],
                "max_turns": 3,
                "approval_role": approval_role,
            }
        ],
    }


async def refund_run(
    http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl, chain: str, role: str
) -> str:
    """A run of an agent chain whose agent asks to run `issue_refund`."""
    published = await http.put(
        f"/v1/chains/{chain}", json=agent_chain(chain, role), headers=admin()
    )
    assert published.status_code in (200, 201), published.text
    marker = f"order {uuid.uuid4().hex[:10]}"
    await sim.add_rules(
        Rule(after_tool="issue_refund", reply="Refund issued."),
        Rule(
            match=marker,
            tool_calls=[
                ToolCallSpec(
                    name="issue_refund",
                    arguments={"order_id": "NW-1003", "amount": 10, "reason": "late parcel"},
                )
            ],
        ),
    )
    return await start(http, keys, chain, {"message": f"Please pay back {marker}"})


async def run_pending(http: httpx.AsyncClient, key: str, run_id: str) -> list[dict[str, Any]]:
    """The run's pending approvals once it lists one (as `key` sees the run)."""

    async def listed() -> list[dict[str, Any]] | None:
        response = await http.get(f"/v1/runs/{run_id}", headers=bearer(key))
        assert response.status_code == 200, response.text
        return response.json()["pending_approvals"] or None  # type: ignore[no-any-return]

    return await wait_for(listed)  # type: ignore[no-any-return]


async def test_a_run_lists_its_agents_approval_and_decides_it_on_the_child(
    http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    run_id = await refund_run(http, keys, sim, "refund_agent_in_run", "reviewer")
    child_id = f"{run_id}--helper"

    [item] = await run_pending(http, keys.service, run_id)
    assert item["run_id"] == child_id and item["parent_run_id"] == run_id
    assert item["step"] == "helper" and item["chain"] == "refund_agent_in_run"
    assert item["context"]["tool"] == "issue_refund" and '"amount": 10' in item["text"]
    assert item["required_role"] == "reviewer" and item["status"] == "pending"
    # The reviewer reads the run while the agent's approval waits for it.
    [seen] = await run_pending(http, keys.reviewer, run_id)
    assert seen == item
    # The cross-run listing names the parent of the agent's approval too.
    listed = await pending_for(http, keys.reviewer, child_id)
    assert listed["parent_run_id"] == run_id
    assert listed["approval_id"] == item["approval_id"]

    unknown = await decide(
        http, keys.reviewer, run_id, "helper-no-such-call",
        decision="approve", payload_hash=item["payload_hash"],
    )  # fmt: skip
    assert_error(unknown, 404, "approval_not_found")

    # Posted on the chain run's id: taken on the agent's child run.
    answer = await decide(
        http, keys.reviewer, run_id, item["approval_id"],
        decision="approve", payload_hash=item["payload_hash"],
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["run_id"] == child_id and answer.json()["status"] == "approved"
    again = await decide(
        http, keys.reviewer2, run_id, item["approval_id"],
        decision="approve", payload_hash=item["payload_hash"],
    )  # fmt: skip
    assert_error(again, 404, "approval_not_found")  # gone from the running agents

    done = await closed_run(http, run_id)
    assert done["status"] == "completed" and done["pending_approvals"] == []
    assert done["output"]["answer"] == "Refund issued."
    # The reviewer who decided the agent's approval still reads the run.
    after = await http.get(f"/v1/runs/{run_id}", headers=bearer(keys.reviewer))
    assert after.status_code == 200, after.text
    assert_error(
        await http.get(f"/v1/runs/{run_id}", headers=bearer(keys.reviewer2)), 404, "run_not_found"
    )


async def test_a_reviewer_sees_a_runs_agent_approvals_of_its_roles_only(
    http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    run_id = await refund_run(http, keys, sim, "refund_agent_supervised", "supervisor")
    child_id = f"{run_id}--helper"

    [item] = await run_pending(http, keys.supervisor, run_id)
    assert item["run_id"] == child_id and item["required_role"] == "supervisor"
    # A reviewer without the role sees neither the approval nor the run.
    assert_error(
        await http.get(f"/v1/runs/{run_id}", headers=bearer(keys.reviewer)), 404, "run_not_found"
    )
    refused = await decide(
        http, keys.reviewer, run_id, item["approval_id"],
        decision="approve", payload_hash=item["payload_hash"],
    )  # fmt: skip
    assert_error(refused, 403, "reviewer_role_missing")

    answer = await decide(
        http, keys.supervisor, child_id, item["approval_id"],
        decision="reject", payload_hash=item["payload_hash"], comment="not this one",
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["run_id"] == child_id
    done = await closed_run(http, run_id)
    assert done["pending_approvals"] == []

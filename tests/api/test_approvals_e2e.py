"""Human approvals end to end over HTTP: a real uvicorn server, the session's
Temporal dev server, a worker (model calls answered by the simulator, audit
rows written by the record activities) and the API's database, on SQLite and
on PostgreSQL.

A run of `review_reply` drafts a reply and waits for a reviewer; the reviewer
finds it in GET /v1/approvals and decides through the API, which sends the
`decide` Update with the key's name as the reviewer. Every refusal of the
Update's validator comes back with its status and reason, and leaves the run
unchanged (no event added to its history).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from simulator.control import SimulatorControl
from simulator.models import Rule
from store import list_approval_audit, session_scope
from tests.api.conftest import Keys, admin, assert_error, bearer, wait_for

DRAFT = "Thanks for writing in: your parcel left our warehouse this morning."
MESSAGE = "Where is my parcel?"
DRAFT_STEP = {
    "name": "draft",
    "kind": "model",
    "model": "writer",
    "prompt": "Reply to: {{ input }}",
}

pytestmark = pytest.mark.usefixtures("api_worker")


async def start(http: httpx.AsyncClient, keys: Keys, chain: str, value: Any) -> str:
    response = await http.post(
        "/v1/runs", json={"chain": chain, "input": value}, headers=bearer(keys.service)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["run_id"])


async def pending_for(
    http: httpx.AsyncClient, key: str, run_id: str, approval_id: str | None = None
) -> dict[str, Any]:
    """Wait until GET /v1/approvals lists an approval of `run_id`."""

    async def listed() -> dict[str, Any] | None:
        response = await http.get(
            "/v1/approvals", params={"status": "pending"}, headers=bearer(key)
        )
        assert response.status_code == 200, response.text
        for item in response.json()["items"]:
            if item["run_id"] == run_id and approval_id in (None, item["approval_id"]):
                return item  # type: ignore[no-any-return]
        return None

    return await wait_for(listed)  # type: ignore[no-any-return]


async def decide(
    http: httpx.AsyncClient, key: str, run_id: str, approval_id: str, **body: Any
) -> httpx.Response:
    return await http.post(
        f"/v1/runs/{run_id}/approvals/{approval_id}", json=body, headers=bearer(key)
    )


async def closed_run(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    async def closed() -> dict[str, Any] | None:
        body = (await http.get(f"/v1/runs/{run_id}", headers=admin())).json()
        return body if body["source"] == "result" else None

    return await wait_for(closed)  # type: ignore[no-any-return]


def audit_rows(engine: Engine, run_id: str) -> list[Any]:
    with session_scope(engine) as session:
        return list_approval_audit(session, run_id=run_id)


async def stable_history_length(env: WorkflowEnvironment, run_id: str) -> int:
    """The run's history length once it has stopped growing (the index write
    that follows a new approval lands just after the approval is listed)."""
    handle = env.client.get_workflow_handle(run_id)
    previous = -1
    while True:
        length = (await handle.describe()).history_length
        if length == previous:
            return length
        previous = length
        await asyncio.sleep(0.3)


async def test_approve_over_http_completes_the_run_and_is_audited(
    http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl, db_engine: Engine
) -> None:
    await sim.add_rules(Rule(model="sim-writer", reply=DRAFT))
    run_id = await start(http, keys, "review_reply", {"message": MESSAGE})

    approval = await pending_for(http, keys.reviewer, run_id)
    assert approval["chain"] == "review_reply" and approval["approval_id"] == "review"
    assert approval["step"] == "review" and approval["status"] == "pending"
    assert approval["text"] == DRAFT and approval["context"] == {"message": MESSAGE}
    assert approval["instructions"].startswith("Approve the draft")
    assert approval["required_role"] == "reviewer" and approval["required_approvals"] == 1
    assert approval["approvals"] == [] and approval["payload_hash"]
    assert approval["deadline"] > approval["requested_at"]

    run = (await http.get(f"/v1/runs/{run_id}", headers=bearer(keys.reviewer))).json()
    assert run["status"] == "awaiting_approval" and run["source"] == "workflow"
    assert run["current_steps"] == ["review"]
    assert [a["approval_id"] for a in run["pending_approvals"]] == ["review"]
    assert run["steps"]["draft"]["output"] == DRAFT and run["cost_usd"] > 0

    response = await decide(
        http,
        keys.reviewer,
        run_id,
        "review",
        decision="approve",
        payload_hash=approval["payload_hash"],
        comment="good to send",
    )
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["status"] == "approved" and outcome["approvals"] == 1
    assert outcome["reviewer"] == keys.names["reviewer"] and outcome["run_id"] == run_id

    done = await closed_run(http, run_id)
    assert done["status"] == "completed" and done["output"] == DRAFT
    assert done["error"] is None and done["pending_approvals"] == []

    [row] = audit_rows(db_engine, run_id)
    assert row.reviewer == keys.names["reviewer"] and row.decision == "approve"
    assert row.step == "review" and row.comment == "good to send"
    assert row.before_text == DRAFT and row.payload_hash == approval["payload_hash"]

    listing = await http.get("/v1/approvals", headers=bearer(keys.reviewer))
    assert run_id not in {item["run_id"] for item in listing.json()["items"]}
    late = await decide(http, keys.reviewer, run_id, "review", decision="approve", payload_hash="x")
    assert "not running" in assert_error(late, 409, "run_not_running")["message"]


async def test_reject_ends_the_run_as_rejected_not_failed(
    http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl, db_engine: Engine
) -> None:
    await sim.add_rules(Rule(model="sim-writer", reply=DRAFT))
    run_id = await start(http, keys, "review_reply", {"message": MESSAGE})
    approval = await pending_for(http, keys.reviewer, run_id)

    response = await decide(
        http,
        keys.admin,
        run_id,
        "review",
        decision="reject",
        payload_hash=approval["payload_hash"],
        comment="we do not promise dates",
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "rejected"

    done = await closed_run(http, run_id)
    assert done["status"] == "rejected" and done["output"] is None
    assert done["steps"]["review"]["status"] == "rejected"

    [row] = audit_rows(db_engine, run_id)
    assert row.decision == "reject" and row.reviewer == keys.names["admin"]
    assert row.comment == "we do not promise dates"

    async def indexed_as_rejected() -> bool:
        listing = await http.get(
            "/v1/runs", params={"chain": "review_reply", "status": "rejected"}, headers=admin()
        )
        return run_id in {item["run_id"] for item in listing.json()["items"]}

    await wait_for(indexed_as_rejected)


async def test_edit_replaces_the_output_later_steps_see(
    http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl, db_engine: Engine
) -> None:
    chain = f"review_then_send_{uuid.uuid4().hex[:8]}"
    spec = {
        "name": chain,
        "steps": [
            {
                "name": "draft",
                "kind": "model",
                "model": "writer",
                "prompt": "Reply to: {{ input }}",
            },
            {"name": "review", "kind": "approval", "text": "{{ steps.draft.output }}"},
            {
                "name": "send",
                "kind": "model",
                "model": "cheap",
                "prompt": "Send this reply: {{ steps.review.output }}",
            },
        ],
    }
    assert (await http.put(f"/v1/chains/{chain}", json=spec, headers=admin())).status_code == 201
    edited = "Your parcel ships today; tracking follows by email."
    await sim.add_rules(
        Rule(model="sim-writer", reply=DRAFT),
        Rule(model="sim-mini", match="tracking follows by email", reply="sent: edited"),
        Rule(model="sim-mini", reply="sent: original"),
    )
    run_id = await start(http, keys, chain, MESSAGE)
    approval = await pending_for(http, keys.reviewer, run_id)

    response = await decide(
        http,
        keys.reviewer,
        run_id,
        "review",
        decision="edit",
        payload_hash=approval["payload_hash"],
        edited_output=edited,
    )
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["status"] == "approved" and outcome["payload_hash"] != approval["payload_hash"]

    done = await closed_run(http, run_id)
    assert done["status"] == "completed"
    assert done["steps"]["review"]["output"] == edited
    assert done["output"] == "sent: edited"

    [row] = audit_rows(db_engine, run_id)
    assert row.decision == "edit" and row.before_text == DRAFT and row.after_text == edited


async def test_every_validator_refusal_has_its_status_and_leaves_the_run_unchanged(
    http: httpx.AsyncClient,
    keys: Keys,
    sim: SimulatorControl,
    temporal_env: WorkflowEnvironment,
    db_engine: Engine,
) -> None:
    chain = f"two_reviews_{uuid.uuid4().hex[:8]}"
    spec = {
        "name": chain,
        "steps": [
            {
                "name": "draft",
                "kind": "model",
                "model": "writer",
                "prompt": "Reply to: {{ input }}",
            },
            {
                "name": "first",
                "kind": "approval",
                "text": "{{ steps.draft.output }}",
                "required_approvals": 2,
            },
            {
                "name": "second",
                "kind": "approval",
                "text": "{{ steps.first.output }}",
                "required_role": "supervisor",
            },
        ],
    }
    assert (await http.put(f"/v1/chains/{chain}", json=spec, headers=admin())).status_code == 201
    await sim.add_rules(Rule(model="sim-writer", reply=DRAFT))
    run_id = await start(http, keys, chain, MESSAGE)
    first = await pending_for(http, keys.reviewer, run_id, "first")
    good_hash = first["payload_hash"]
    before = await stable_history_length(temporal_env, run_id)

    refusals: list[tuple[str, str, dict[str, Any], int, str]] = [
        (keys.reviewer, "nope", {"decision": "approve"}, 404, "approval_not_found"),
        (
            keys.reviewer,
            "first",
            {"decision": "approve", "payload_hash": "0" * 32},
            409,
            "stale_payload",
        ),
        (keys.reviewer, "first", {"decision": "edit"}, 422, "malformed_decision"),
        (keys.reviewer, "first", {"decision": "reject"}, 422, "malformed_decision"),
        (
            keys.reviewer,
            "first",
            {"decision": "approve", "edited_output": "x"},
            422,
            "malformed_decision",
        ),
    ]
    for key, approval_id, body, status, code in refusals:
        response = await decide(
            http, key, run_id, approval_id, **{"payload_hash": good_hash, **body}
        )
        error = assert_error(response, status, code)
        assert error["details"]["run_id"] == run_id and error["details"]["reason"]
    assert (
        "no approval 'nope'"
        in assert_error(
            await decide(http, keys.reviewer, run_id, "nope", decision="approve", payload_hash="x"),
            404,
        )["message"]
    )

    assert await stable_history_length(temporal_env, run_id) == before
    unchanged = await pending_for(http, keys.reviewer, run_id, "first")
    assert unchanged["approvals"] == [] and unchanged["payload_hash"] == good_hash

    # One of two approvals; the same reviewer again is refused.
    ok = await decide(
        http, keys.reviewer, run_id, "first", decision="approve", payload_hash=good_hash
    )
    assert ok.status_code == 200 and ok.json()["status"] == "pending", ok.text
    assert ok.json()["approvals"] == 1 and ok.json()["required_approvals"] == 2
    after_one = await stable_history_length(temporal_env, run_id)
    twice = await decide(
        http, keys.reviewer, run_id, "first", decision="approve", payload_hash=good_hash
    )
    assert keys.names["reviewer"] in assert_error(twice, 409, "reviewer_already_decided")["message"]
    assert await stable_history_length(temporal_env, run_id) == after_one

    # A second reviewer completes `first`; `second` needs the supervisor role.
    done_first = await decide(
        http, keys.reviewer2, run_id, "first", decision="approve", payload_hash=good_hash
    )
    assert done_first.json()["status"] == "approved"
    second = await pending_for(http, keys.supervisor, run_id, "second")
    assert second["required_role"] == "supervisor"
    by_chain = await http.get("/v1/approvals", params={"chain": chain}, headers=admin())
    assert {item["run_id"] for item in by_chain.json()["items"]} == {run_id}

    settled = await stable_history_length(temporal_env, run_id)
    no_role = await decide(
        http,
        keys.reviewer,
        run_id,
        "second",
        decision="approve",
        payload_hash=second["payload_hash"],
    )
    assert "supervisor" in assert_error(no_role, 403, "reviewer_role_missing")["message"]
    decided = await decide(
        http, keys.reviewer2, run_id, "first", decision="approve", payload_hash=good_hash
    )
    assert "already approved" in assert_error(decided, 409, "approval_already_decided")["message"]
    assert await stable_history_length(temporal_env, run_id) == settled

    final = await decide(
        http,
        keys.supervisor,
        run_id,
        "second",
        decision="approve",
        payload_hash=second["payload_hash"],
    )
    assert final.status_code == 200, final.text
    done = await closed_run(http, run_id)
    assert done["status"] == "completed" and done["output"] == DRAFT
    reviewers = [(row.step, row.reviewer) for row in audit_rows(db_engine, run_id)]
    assert reviewers == [
        ("first", keys.names["reviewer"]),
        ("first", keys.names["reviewer2"]),
        ("second", keys.names["supervisor"]),
    ]

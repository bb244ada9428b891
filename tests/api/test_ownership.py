"""The role matrix extended with ownership, over HTTP on SQLite and PostgreSQL.

A service key sees, lists and cancels only the runs it started, and lists
only their approvals; a run it may not see answers 404 exactly like a run
that does not exist. A key created with scope `all` sees them all. A
reviewer lists the approvals of its roles and reads a run while it has one
of them pending or after deciding on it. Admins see everything.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from api.deps import Principal
from api.ownership import owned_runs, reviewer_view
from core.records import RunRecordInput
from runs.views import ApprovalView, RunDetail
from simulator.control import SimulatorControl
from simulator.models import Rule
from store import create_run_stub, session_scope, upsert_run_record
from tests.api.conftest import Keys, admin, assert_error, bearer, wait_for

DRAFT = "Your parcel left our warehouse this morning."

pytestmark = pytest.mark.usefixtures("api_worker")


async def create_key(http: httpx.AsyncClient, label: str, **body: Any) -> tuple[str, str]:
    name = f"{label}-{uuid.uuid4().hex[:6]}"
    response = await http.post("/v1/keys", json={"name": name, **body}, headers=admin())
    assert response.status_code == 201, response.text
    return name, response.json()["key"]


async def approval_chain(http: httpx.AsyncClient, role: str) -> str:
    """A chain that drafts a reply and waits for an approval needing `role`."""
    chain = f"owned_{role}_{uuid.uuid4().hex[:8]}"
    spec = {
        "name": chain,
        "steps": [
            {"name": "draft", "kind": "model", "model": "writer", "prompt": "Reply: {{ input }}"},
            {
                "name": "review",
                "kind": "approval",
                "text": "{{ steps.draft.output }}",
                "required_role": role,
            },
        ],
    }
    response = await http.put(f"/v1/chains/{chain}", json=spec, headers=admin())
    assert response.status_code == 201, response.text
    return chain


async def start(http: httpx.AsyncClient, key: str, chain: str) -> str:
    response = await http.post(
        "/v1/runs", json={"chain": chain, "input": "Where is my parcel?"}, headers=bearer(key)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["run_id"])


async def approvals_of(http: httpx.AsyncClient, key: str, chain: str) -> list[dict[str, Any]]:
    response = await http.get("/v1/approvals", params={"chain": chain}, headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


async def listed_ids(http: httpx.AsyncClient, key: str, chain: str) -> set[str]:
    response = await http.get("/v1/runs", params={"chain": chain}, headers=bearer(key))
    assert response.status_code == 200, response.text
    return {item["run_id"] for item in response.json()["items"]}


async def awaiting(http: httpx.AsyncClient, key: str, chain: str, run_id: str) -> dict[str, Any]:
    async def listed() -> dict[str, Any] | None:
        return next(
            (a for a in await approvals_of(http, key, chain) if a["run_id"] == run_id), None
        )

    return await wait_for(listed)  # type: ignore[no-any-return]


def same_as_missing(response: httpx.Response, run_id: str) -> None:
    """The answer a run that does not exist gets: nothing tells the caller it exists."""
    error = assert_error(response, 404, "run_not_found")
    assert error == {
        "code": "run_not_found",
        "message": f"no run with id {run_id!r}",
        "details": {"run_id": run_id},
    }


async def test_a_service_key_sees_and_cancels_only_the_runs_it_started(
    http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    await sim.add_rules(Rule(model="sim-writer", reply=DRAFT))
    _, other = await create_key(http, "other-service", role="service")
    _, wide = await create_key(http, "wide-service", role="service", scope="all")
    chain = await approval_chain(http, "reviewer")
    run_id = await start(http, keys.service, chain)
    await awaiting(http, keys.service, chain, run_id)

    # The starter sees its run everywhere.
    mine = await http.get(f"/v1/runs/{run_id}", headers=bearer(keys.service))
    assert mine.status_code == 200 and mine.json()["status"] == "awaiting_approval"
    assert await listed_ids(http, keys.service, chain) == {run_id}

    # Another service key: 404 as for a missing run, on read and cancel; absent from listings.
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    same_as_missing(await http.get(f"/v1/runs/{missing}", headers=bearer(other)), missing)
    same_as_missing(await http.get(f"/v1/runs/{run_id}", headers=bearer(other)), run_id)
    same_as_missing(await http.post(f"/v1/runs/{run_id}/cancel", headers=bearer(other)), run_id)
    assert await listed_ids(http, other, chain) == set()
    everything = await http.get("/v1/runs", params={"limit": 500}, headers=bearer(other))
    assert run_id not in {item["run_id"] for item in everything.json()["items"]}
    assert await approvals_of(http, other, chain) == []
    all_approvals = await http.get("/v1/approvals", headers=bearer(other))
    assert run_id not in all_approvals.text

    # The refused cancel changed nothing.
    still = (await http.get(f"/v1/runs/{run_id}", headers=admin())).json()
    assert still["status"] == "awaiting_approval"

    # A key of scope `all` sees it, lists it, lists its approval, and may cancel it.
    seen = await http.get(f"/v1/runs/{run_id}", headers=bearer(wide))
    assert seen.status_code == 200 and seen.json()["created_by"] == keys.names["service"]
    assert await listed_ids(http, wide, chain) == {run_id}
    assert [a["run_id"] for a in await approvals_of(http, wide, chain)] == [run_id]
    assert await listed_ids(http, keys.admin, chain) == {run_id}

    cancel = await http.post(f"/v1/runs/{run_id}/cancel", headers=bearer(wide))
    assert cancel.status_code == 202, cancel.text

    async def cancelled() -> bool:
        run = (await http.get(f"/v1/runs/{run_id}", headers=bearer(keys.service))).json()
        return run["status"] == "cancelled"

    await wait_for(cancelled)


async def test_a_reviewer_sees_only_approvals_and_runs_of_its_roles(
    http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    await sim.add_rules(Rule(model="sim-writer", reply=DRAFT))
    chain = await approval_chain(http, "supervisor")
    run_id = await start(http, keys.service, chain)
    approval = await awaiting(http, keys.supervisor, chain, run_id)
    assert approval["required_role"] == "supervisor" and approval["text"] == DRAFT

    # A plain reviewer: not in its approvals, its run a 404, not in its listing.
    assert await approvals_of(http, keys.reviewer, chain) == []
    assert run_id not in (await http.get("/v1/approvals", headers=bearer(keys.reviewer))).text
    same_as_missing(await http.get(f"/v1/runs/{run_id}", headers=bearer(keys.reviewer)), run_id)
    assert await listed_ids(http, keys.reviewer, chain) == set()
    # The supervisor reads the run it is asked to decide, its context included.
    run = (await http.get(f"/v1/runs/{run_id}", headers=bearer(keys.supervisor))).json()
    assert run["steps"]["draft"]["output"] == DRAFT
    assert [a["approval_id"] for a in run["pending_approvals"]] == ["review"]
    # Admins see everything.
    assert [a["run_id"] for a in await approvals_of(http, keys.admin, chain)] == [run_id]

    decided = await http.post(
        f"/v1/runs/{run_id}/approvals/review",
        json={"decision": "approve", "payload_hash": approval["payload_hash"]},
        headers=bearer(keys.supervisor),
    )
    assert decided.status_code == 200, decided.text

    # Closed, the run stays readable by the reviewer that decided on it (the
    # audit log says so) and listed for it; still not for the other reviewer.
    async def closed_for_supervisor() -> dict[str, Any] | None:
        response = await http.get(f"/v1/runs/{run_id}", headers=bearer(keys.supervisor))
        body = response.json()
        return body if response.status_code == 200 and body["status"] == "completed" else None

    done = await wait_for(closed_for_supervisor)
    assert done["output"] == DRAFT and done["pending_approvals"] == []
    assert await listed_ids(http, keys.supervisor, chain) == {run_id}
    same_as_missing(await http.get(f"/v1/runs/{run_id}", headers=bearer(keys.reviewer)), run_id)
    assert await listed_ids(http, keys.reviewer, chain) == set()


def test_child_runs_belong_to_the_starter_of_their_parent(db_engine: Engine) -> None:
    tag = uuid.uuid4().hex[:8]
    parent, child, grandchild = f"p-{tag}", f"p-{tag}--helper", f"p-{tag}--helper--deep"
    theirs = f"p-{tag}--theirs"
    with session_scope(db_engine) as session:
        for run_id, creator in ((parent, "svc-a"), (theirs, "svc-b")):
            create_run_stub(
                session, run_id=run_id, chain="c", version=1, input_hash="h", created_by=creator
            )
        # A workflow's own index write: no creator.
        record = RunRecordInput(
            run_id=child,
            temporal_run_id="t",
            chain="c",
            version=1,
            status="running",
            revision=1,
            started_at=datetime.now(UTC),
        )
        upsert_run_record(session, record=record)
    with session_scope(db_engine) as session:
        every = [parent, child, grandchild, theirs, f"q-{tag}--x"]
        assert owned_runs(session, owner="svc-a", run_ids=every) == {parent, child, grandchild}
        # A run's own creator decides, whoever started the run its id names.
        assert owned_runs(session, owner="svc-b", run_ids=every) == {theirs}


def _approval(approval_id: str, role: str) -> ApprovalView:
    return ApprovalView(
        run_id="r",
        approval_id=approval_id,
        step=approval_id,
        status="pending",
        text="t",
        payload_hash="h",
        required_role=role,
        required_approvals=1,
    )


def test_a_reviewer_sees_only_the_pending_approvals_of_its_roles() -> None:
    detail = RunDetail(
        run_id="r",
        status="awaiting_approval",
        source="workflow",
        pending_approvals=[_approval("legal", "legal"), _approval("review", "reviewer")],
    )
    reviewer = Principal("alice", "reviewer")
    lawyer = Principal("lee", "reviewer", ["legal"])
    assert [a.approval_id for a in reviewer_view(reviewer, detail).pending_approvals] == ["review"]
    assert [a.approval_id for a in reviewer_view(lawyer, detail).pending_approvals] == [
        "legal",
        "review",
    ]
    for everything in (
        Principal("wanda", "reviewer", scope="all"),
        Principal("root", "admin", scope="all"),
        Principal("svc", "service"),
    ):
        assert reviewer_view(everything, detail) is detail

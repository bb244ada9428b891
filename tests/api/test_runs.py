"""/v1/runs end to end over HTTP: a real uvicorn server, the session's Temporal
dev server and a worker, and the API's database (SQLite and PostgreSQL).

Nothing a rejected request asks for is started: counted in Temporal's
visibility and in the run index.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from api.schemas import RunCreate
from core.chain_errors import ChainErrorType
from core.chain_spec import ChainSpec
from runs.client import RunClient, input_hash_of
from runs.results import UNRECORDED_ERROR_TYPE
from simulator.control import SimulatorControl
from simulator.models import Fault, Rule
from store import RunRecord, create_run_stub, get_run, session_scope
from tests.api.conftest import (
    Keys,
    admin,
    assert_error,
    bearer,
    count_workflows,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("api_worker")

GREETING = "Hello Ada, nice to meet you."


async def publish_greet(http: httpx.AsyncClient, name: str | None = None) -> str:
    name = name or f"greet_{uuid.uuid4().hex[:8]}"
    spec = {
        "name": name,
        "input_schema": {
            "type": "object",
            "properties": {"name": {"type": "string", "minLength": 1}},
            "required": ["name"],
            "additionalProperties": False,
        },
        "steps": [
            {
                "name": "hello",
                "kind": "model",
                "model": "cheap",
                "prompt": "Say hello to {{ input.name }}.",
                "retry": {"max_attempts": 1},
            }
        ],
    }
    response = await http.put(f"/v1/chains/{name}", json=spec, headers=admin())
    assert response.status_code == 201, response.text
    return name


async def run_until_closed(http: httpx.AsyncClient, run_id: str, key: str) -> dict[str, Any]:
    async def closed() -> dict[str, Any] | None:
        response = await http.get(f"/v1/runs/{run_id}", headers=bearer(key))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["source"] == "result" else None

    return await wait_for(closed)  # type: ignore[no-any-return]


async def test_start_run_and_read_its_result(
    http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    await sim.add_rules(Rule(model="sim-mini", reply=GREETING))
    chain = await publish_greet(http)

    started = await http.post(
        "/v1/runs", json={"chain": chain, "input": {"name": "Ada"}}, headers=bearer(keys.service)
    )
    assert started.status_code == 201, started.text
    accepted = started.json()
    assert accepted["chain"] == chain and accepted["version"] == 1
    assert accepted["status"] == "running" and accepted["created"] is True
    uuid.UUID(accepted["run_id"])

    run = await run_until_closed(http, accepted["run_id"], keys.service)
    assert run["status"] == "completed" and run["output"] == GREETING
    assert run["chain"] == chain and run["version"] == 1
    assert run["steps"]["hello"]["status"] == "completed"
    assert run["usage"]["per_model"]["cheap"]["calls"] == 1
    assert run["cost_usd"] > 0 and run["error"] is None
    assert run["created_by"].startswith("service-")
    assert run["finished_at"] is not None and run["pending_approvals"] == []

    async def indexed() -> list[dict[str, Any]]:
        listing = await http.get(
            "/v1/runs", params={"chain": chain, "status": "completed"}, headers=admin()
        )
        return listing.json()["items"]  # type: ignore[no-any-return]

    [row] = await wait_for(indexed)
    assert row["run_id"] == accepted["run_id"] and row["cost_usd"] == pytest.approx(run["cost_usd"])
    assert row["input_tokens"] > 0 and row["created_by"] == run["created_by"]


async def test_failed_run_reports_error_type_and_partial_result(
    http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    await sim.add_faults(
        Fault(kind="status", status=401, model="sim-mini", message="bad key", times=5)
    )
    chain = await publish_greet(http)
    started = await http.post(
        "/v1/runs", json={"chain": chain, "input": {"name": "Ada"}}, headers=bearer(keys.service)
    )
    assert started.status_code == 201

    run = await run_until_closed(http, started.json()["run_id"], keys.service)
    assert run["status"] == "failed" and run["output"] is None
    assert run["error"]["type"] and "bad key" in run["error"]["message"]
    assert run["steps"]["hello"]["status"] == "failed"
    assert run["usage"] is not None


async def test_unknown_chain_is_404_and_starts_nothing(
    http: httpx.AsyncClient, keys: Keys, temporal_env: WorkflowEnvironment
) -> None:
    run_id = f"ghost-{uuid.uuid4().hex}"
    response = await http.post(
        "/v1/runs",
        json={"chain": "no_such_chain", "input": {}, "run_id": run_id},
        headers=bearer(keys.service),
    )
    assert "'no_such_chain'" in assert_error(response, 404, "chain_not_found")["message"]
    assert_error(await http.get(f"/v1/runs/{run_id}", headers=admin()), 404, "run_not_found")
    assert (await temporal_env.client.count_workflows(f"WorkflowId = '{run_id}'")).count == 0


async def test_bad_input_is_422_with_paths_and_starts_nothing(
    http: httpx.AsyncClient, keys: Keys, temporal_env: WorkflowEnvironment, api_task_queue: str
) -> None:
    chain = await publish_greet(http)
    before = await count_workflows(temporal_env.client, api_task_queue, f"ChorusChain = '{chain}'")
    for bad in ({}, {"name": ""}, {"name": "Ada", "age": 3}, "Ada"):
        response = await http.post(
            "/v1/runs", json={"chain": chain, "input": bad}, headers=bearer(keys.service)
        )
        error = assert_error(response, 422, "invalid_input")
        assert error["details"] and all(p["path"].startswith("input") for p in error["details"])
    missing = await http.post(
        "/v1/runs", json={"chain": chain, "input": {}}, headers=bearer(keys.service)
    )
    assert assert_error(missing, 422)["details"] == [
        {"path": "input", "message": "'name' is a required property"}
    ]
    after = await count_workflows(temporal_env.client, api_task_queue, f"ChorusChain = '{chain}'")
    assert before == after == 0
    listing = await http.get("/v1/runs", params={"chain": chain}, headers=admin())
    assert listing.json()["items"] == []


async def test_run_id_makes_start_idempotent(
    http: httpx.AsyncClient,
    keys: Keys,
    sim: SimulatorControl,
    temporal_env: WorkflowEnvironment,
    db_engine: Engine,
) -> None:
    await sim.add_rules(Rule(model="sim-mini", reply=GREETING))
    chain = await publish_greet(http)
    run_id = f"order-{uuid.uuid4().hex}"
    body = {"chain": chain, "input": {"name": "Ada"}, "run_id": run_id}
    service = bearer(keys.service)

    first = await http.post("/v1/runs", json=body, headers=service)
    assert first.status_code == 201 and first.json()["run_id"] == run_id
    again = await http.post("/v1/runs", json=body, headers=service)
    assert again.status_code == 200, again.text
    assert again.json()["run_id"] == run_id and again.json()["created"] is False

    for conflicting in (
        {**body, "input": {"name": "Bob"}},
        {**body, "max_cost_usd": 0.5},
        {**body, "chain": "review_reply", "input": {"message": "hi"}},
        {**body, "version": 9},
    ):
        response = await http.post("/v1/runs", json=conflicting, headers=service)
        error = assert_error(response, 409, "run_id_conflict")
        assert run_id in error["message"] and error["details"]["chain"] == chain

    handle = temporal_env.client.get_workflow_handle(run_id)
    await handle.result()
    executions = [e async for e in temporal_env.client.list_workflows(f"WorkflowId = '{run_id}'")]
    assert len(executions) <= 1
    history = await handle.fetch_history()
    assert history.events[0].workflow_execution_started_event_attributes is not None
    with session_scope(db_engine) as session:
        record = get_run(session, run_id=run_id)
        assert record is not None and record.input_hash is not None

    # The same request after the run finished still answers with that run.
    late = await http.post("/v1/runs", json=body, headers=service)
    assert late.status_code == 200 and late.json()["status"] == "completed"


async def test_retry_completes_a_start_interrupted_after_the_stub(
    http: httpx.AsyncClient,
    keys: Keys,
    sim: SimulatorControl,
    temporal_env: WorkflowEnvironment,
    db_engine: Engine,
) -> None:
    """A crash between writing the stub and starting the workflow leaves a
    `starting` row; the client's retry with the same run_id starts the run."""
    await sim.add_rules(Rule(model="sim-mini", reply=GREETING))
    chain = await publish_greet(http)
    run_id = f"crashed-{uuid.uuid4().hex}"
    body = RunCreate(chain=chain, input={"name": "Ada"}, run_id=run_id)
    with session_scope(db_engine) as session:
        create_run_stub(
            session,
            run_id=run_id,
            chain=chain,
            version=1,
            input_hash=input_hash_of(body.input, body.max_cost_usd),
            created_by="crashed-api",
        )

    retry = await http.post(
        "/v1/runs", json=body.model_dump(exclude_none=True), headers=bearer(keys.service)
    )
    assert retry.status_code == 200, retry.text
    assert retry.json() == {
        "run_id": run_id,
        "chain": chain,
        "version": 1,
        "status": "running",
        "created": False,
    }
    result = await temporal_env.client.get_workflow_handle(run_id).result()
    assert result["output"] == GREETING


async def test_cancel_a_waiting_run(
    http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl
) -> None:
    await sim.add_rules(Rule(model="sim-writer", reply="A draft."))
    started = await http.post(
        "/v1/runs",
        json={"chain": "review_reply", "input": {"message": "Where is my parcel?"}},
        headers=bearer(keys.service),
    )
    run_id = started.json()["run_id"]

    async def waiting() -> bool:
        run = (await http.get(f"/v1/runs/{run_id}", headers=admin())).json()
        return run["status"] == "awaiting_approval"

    await wait_for(waiting)
    assert_error(await http.post(f"/v1/runs/{run_id}/cancel", headers=bearer(keys.reviewer)), 403)
    cancel = await http.post(f"/v1/runs/{run_id}/cancel", headers=bearer(keys.service))
    assert cancel.status_code == 202 and cancel.json() == {
        "run_id": run_id,
        "status": "cancel_requested",
    }

    async def cancelled() -> bool:
        run = (await http.get(f"/v1/runs/{run_id}", headers=admin())).json()
        return run["status"] == "cancelled"

    await wait_for(cancelled)
    again = await http.post(f"/v1/runs/{run_id}/cancel", headers=bearer(keys.service))
    assert "not running" in assert_error(again, 409, "run_not_running")["message"]


async def test_unknown_run_is_404(http: httpx.AsyncClient, keys: Keys) -> None:
    for response in (
        await http.get("/v1/runs/nothing-here", headers=bearer(keys.service)),
        await http.post("/v1/runs/nothing-here/cancel", headers=bearer(keys.service)),
        await http.post(
            "/v1/runs/nothing-here/approvals/review",
            json={"decision": "approve", "payload_hash": "x"},
            headers=bearer(keys.reviewer),
        ),
    ):
        assert "'nothing-here'" in assert_error(response, 404, "run_not_found")["message"]


async def test_list_runs_is_validated(http: httpx.AsyncClient, keys: Keys) -> None:
    bad = await http.get("/v1/runs", params={"status": "exploded"}, headers=bearer(keys.service))
    assert assert_error(bad, 422, "invalid_request")["details"][0]["path"] == "query.status"
    too_many = await http.get("/v1/runs", params={"limit": 10_000}, headers=admin())
    assert_error(too_many, 422)
    ok = await http.get("/v1/runs", params={"limit": 2, "offset": 0}, headers=admin())
    assert ok.status_code == 200 and len(ok.json()["items"]) <= 2


async def test_workflow_status_of_started_run_is_running(
    http: httpx.AsyncClient, keys: Keys, temporal_env: WorkflowEnvironment, sim: SimulatorControl
) -> None:
    await sim.add_rules(Rule(model="sim-writer", reply="A draft."))
    started = await http.post(
        "/v1/runs",
        json={"chain": "review_reply", "input": {"message": "hi"}},
        headers=bearer(keys.service),
    )
    run_id = started.json()["run_id"]
    description = await temporal_env.client.get_workflow_handle(run_id).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    assert await description.memo_value("chorus_input_hash") is not None
    await temporal_env.client.get_workflow_handle(run_id).terminate("test done")


async def test_workflow_id_taken_outside_the_api(
    http: httpx.AsyncClient,
    keys: Keys,
    temporal_env: WorkflowEnvironment,
    db_engine: Engine,
) -> None:
    """A workflow started with the same id by another request (the CLI,
    another client, with another input) is a conflict, and the stub is
    dropped; one started by this very request (a concurrent retry: the memo's
    input hash matches) is adopted."""
    chain = await publish_greet(http)
    spec = ChainSpec.model_validate(
        (await http.get(f"/v1/chains/{chain}", headers=admin())).json()["spec"]
    )
    body = RunCreate(chain=chain, input={"name": "Ada"}, run_id=f"taken-{uuid.uuid4().hex}")
    # No worker polls this queue: the run writes no index row of its own.
    elsewhere = RunClient(temporal_env.client, task_queue=f"nobody-{uuid.uuid4()}")
    for other_input, expected in (({"name": "Bob"}, 409), (body.input, 201)):
        run_id = f"taken-{uuid.uuid4().hex}"
        await elsewhere.start(spec, other_input, run_id=run_id)
        response = await http.post(
            "/v1/runs",
            json={**body.model_dump(exclude_none=True), "run_id": run_id},
            headers=bearer(keys.service),
        )
        assert response.status_code == expected, response.text
        with session_scope(db_engine) as session:
            record = get_run(session, run_id=run_id)
        if expected == 409:
            assert_error(response, 409, "run_id_conflict")
            assert record is None
        else:
            assert record is not None and (record.created_by or "").startswith("service-")
            assert record.status == "running" and response.json()["created"] is True
        await temporal_env.client.get_workflow_handle(run_id).terminate("test done")


async def test_a_failed_run_names_its_error_type_live_closed_and_from_the_index(
    http: httpx.AsyncClient, keys: Keys, sim: SimulatorControl, db_engine: Engine
) -> None:
    """Every answer that says `failed` says why: while the run closes, once
    it has closed, and from the run index alone once Temporal has forgotten
    it (the index row the workflow wrote, read under an id Temporal never
    knew)."""
    await sim.add_faults(Fault(kind="status", status=401, model="sim-mini", message="bad key"))
    chain = await publish_greet(http)
    started = await http.post(
        "/v1/runs", json={"chain": chain, "input": {"name": "Ada"}}, headers=admin()
    )
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]

    seen: list[dict[str, Any]] = []

    async def closed() -> dict[str, Any] | None:
        response = await http.get(f"/v1/runs/{run_id}", headers=admin())
        assert response.status_code == 200, response.text
        seen.append(response.json())
        return seen[-1] if seen[-1]["source"] == "result" else None

    final = await wait_for(closed, interval_s=0.01)
    failed = [body for body in seen if body["status"] == "failed"]
    assert failed and all(body["error"] and body["error"]["type"] for body in failed), failed
    error = final["error"]
    assert final["status"] == "failed" and error["type"] == ChainErrorType.ALL_MODELS_FAILED, error

    async def indexed() -> RunRecord | None:
        with session_scope(db_engine) as session:
            record = get_run(session, run_id=run_id)
            return record if record and record.status == "failed" else None

    record = await wait_for(indexed)
    assert (record.error_type, record.error) == (error["type"], error["message"])
    forgotten = f"forgotten-{uuid.uuid4().hex[:8]}"
    with session_scope(db_engine) as session:
        session.add(RunRecord.model_validate({**record.model_dump(), "run_id": forgotten}))
    from_index = (await http.get(f"/v1/runs/{forgotten}", headers=admin())).json()
    assert (from_index["source"], from_index["status"]) == ("index", "failed")
    assert from_index["error"] == error
    listed = await http.get("/v1/runs", params={"chain": chain}, headers=admin())
    assert {row["error_type"] for row in listed.json()["items"]} == {error["type"]}


async def test_an_index_row_older_than_error_types_still_names_one(
    http: httpx.AsyncClient, db_engine: Engine
) -> None:
    old = f"old-{uuid.uuid4().hex[:8]}"
    with session_scope(db_engine) as session:
        session.add(RunRecord(run_id=old, chain="greet", version=1, status="failed", error="boom"))

    body = (await http.get(f"/v1/runs/{old}", headers=admin())).json()

    assert (body["source"], body["status"]) == ("index", "failed")
    assert body["error"] == {"type": UNRECORDED_ERROR_TYPE, "message": "boom"}

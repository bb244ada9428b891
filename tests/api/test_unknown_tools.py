"""A chain naming a tool this deployment does not host is refused before
anything starts, naming the tool: when it is published, and when a run of a
version stored before (or behind the API's back) is requested."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from core.chain_spec import ChainSpec
from store import get_chain_version, get_run, publish_chain, session_scope
from tests.api.conftest import Keys, admin, assert_error, bearer, count_workflows


def tool_chain(name: str, tool: str) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [
            {"name": "look", "kind": "tool", "tool": tool, "arguments": {"order_id": "A-1001"}},
        ],
    }


async def test_publishing_a_chain_with_an_unknown_tool_is_422_naming_it(
    http: httpx.AsyncClient, db_engine: Engine
) -> None:
    name = f"tools_{uuid.uuid4().hex[:8]}"
    response = await http.put(
        f"/v1/chains/{name}", json=tool_chain(name, "lookup_ordr"), headers=admin()
    )
    body = assert_error(response, 422, "invalid_chain_spec")
    assert any("lookup_ordr" in problem["message"] for problem in body["details"]), body
    with session_scope(db_engine) as session:
        assert get_chain_version(session, name=name) is None


async def test_a_known_tool_publishes(http: httpx.AsyncClient) -> None:
    """The control: the same chain with a tool the worker hosts is accepted."""
    name = f"tools_{uuid.uuid4().hex[:8]}"
    response = await http.put(
        f"/v1/chains/{name}", json=tool_chain(name, "lookup_order"), headers=admin()
    )
    assert response.status_code == 201, response.text


async def test_starting_a_stored_chain_with_an_unknown_tool_starts_nothing(
    http: httpx.AsyncClient,
    keys: Keys,
    db_engine: Engine,
    temporal_env: WorkflowEnvironment,
    api_task_queue: str,
) -> None:
    name = f"tools_{uuid.uuid4().hex[:8]}"
    # Stored behind the API's back (an older deployment had the tool).
    with session_scope(db_engine) as session:
        publish_chain(
            session,
            spec=ChainSpec.model_validate(tool_chain(name, "retired_tool")),
            created_by="test",
        )
    run_id = f"retired-{uuid.uuid4().hex}"

    response = await http.post(
        "/v1/runs",
        json={"chain": name, "input": {}, "run_id": run_id},
        headers=bearer(keys.service),
    )

    body = assert_error(response, 422, "invalid_chain_spec")
    assert "retired_tool" in body["message"], body
    assert (
        await count_workflows(temporal_env.client, api_task_queue, f"WorkflowId = '{run_id}'") == 0
    )
    with session_scope(db_engine) as session:
        assert get_run(session, run_id=run_id) is None

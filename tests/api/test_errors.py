"""The one error shape, request validation, and the body size limit (413
before the body is read, and nothing started)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.server import ApiServer
from tests.api.conftest import MAX_BODY_BYTES, Keys, admin, assert_error, bearer

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True, scope="module")


async def test_unknown_route_and_method_use_the_error_shape(http: httpx.AsyncClient) -> None:
    assert_error(await http.get("/v1/nothing"), 404, "not_found")
    assert_error(await http.delete("/v1/chains", headers=admin()), 405, "method_not_allowed")


async def test_request_validation_errors_name_each_path(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    service = bearer(keys.service)
    typo = await http.post(
        "/v1/runs", json={"chain": "review_reply", "runid": "x", "input": {}}, headers=service
    )
    error = assert_error(typo, 422, "invalid_request")
    assert {"path": "body.runid", "message": "Extra inputs are not permitted"}.items() <= error[
        "details"
    ][0].items()

    not_json = await http.post(
        "/v1/runs", content=b"{chain:", headers={**service, "Content-Type": "application/json"}
    )
    assert_error(not_json, 422, "invalid_request")

    bad_id = await http.post(
        "/v1/runs",
        json={"chain": "review_reply", "input": {"message": "x"}, "run_id": "has space"},
        headers=service,
    )
    assert assert_error(bad_id, 422)["details"][0]["path"] == "body.run_id"

    bad_decision = await http.post(
        "/v1/runs/r1/approvals/a1",
        json={"decision": "maybe", "payload_hash": "x"},
        headers=bearer(keys.reviewer),
    )
    assert assert_error(bad_decision, 422)["details"][0]["path"] == "body.decision"


async def test_body_over_the_limit_is_413_and_starts_nothing(
    http: httpx.AsyncClient, keys: Keys, temporal_env: WorkflowEnvironment
) -> None:
    run_id = f"big-{uuid.uuid4().hex}"
    body = {
        "chain": "review_reply",
        "input": {"message": "x" * (MAX_BODY_BYTES + 10)},
        "run_id": run_id,
    }
    response = await http.post("/v1/runs", json=body, headers=bearer(keys.service))
    error = assert_error(response, 413, "body_too_large")
    assert error["details"]["max_body_bytes"] == MAX_BODY_BYTES
    assert str(MAX_BODY_BYTES) in error["message"]

    async def chunks() -> AsyncIterator[bytes]:
        payload = json.dumps(body).encode()
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    chunked = await http.post(
        "/v1/runs",
        content=chunks(),
        headers={**bearer(keys.service), "Content-Type": "application/json"},
    )
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    assert_error(chunked, 413, "body_too_large")

    big_chain = await http.put(
        "/v1/chains/huge", content=b"x" * (MAX_BODY_BYTES + 1), headers=admin()
    )
    assert_error(big_chain, 413, "body_too_large")

    assert_error(await http.get(f"/v1/runs/{run_id}", headers=admin()), 404, "run_not_found")
    count = await temporal_env.client.count_workflows(f"WorkflowId = '{run_id}'")
    assert count.count == 0


async def test_declared_oversize_body_is_refused_without_reading_it(api: ApiServer) -> None:
    """Only the headers are sent: the 413 must come before any body byte."""
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    try:
        writer.write(
            b"POST /v1/runs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413 ")

"""Property-based fuzz of the published OpenAPI schema (schemathesis): every
operation, requests generated from the schema (valid and not), sent with an
admin key to the real server. No request may get a 5xx, and every refusal
uses the one error shape. Bounded: a few examples per operation, derandomized
so a failure reproduces.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.server import ApiServer
from core.settings import Settings
from tests.api.conftest import admin, api_settings, temporal_address

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
async def fuzz_api(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    state = tmp_path_factory.mktemp("fuzz")
    server = ApiServer(
        api_settings(
            temporal=temporal_address(temporal_env),
            database_url=f"sqlite:///{state / 'chorus.db'}",
            state_dir=state,
            task_queue=f"fuzz-{uuid.uuid4()}",
        )
    )
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


# The schema the server publishes at /openapi.json (the same app builds it;
# the test below checks the served one matches), loaded at collection time so
# that each operation is a test of its own.
# The coverage phase enumerates schema-boundary cases exhaustively (thousands
# for the recursive chain spec): the bound here is random examples per operation.
FUZZ_CONFIG = SchemathesisConfig.from_dict(
    {
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "generation": {"max-examples": MAX_EXAMPLES},
    }
)
schema = schemathesis.openapi.from_dict(
    create_app(Settings(_env_file=None)).openapi(), config=FUZZ_CONFIG
)


async def test_served_schema_is_the_fuzzed_one(fuzz_api: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=fuzz_api.url) as http:
        served = (await http.get("/openapi.json")).json()
    assert served == create_app(Settings(_env_file=None)).openapi()
    assert len(served["paths"]) >= 10


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=timedelta(seconds=10),
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: Any, fuzz_api: ApiServer) -> None:
    response = case.call(base_url=fuzz_api.url, headers=admin(), timeout=30)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and {"code", "message", "details"} == set(body["error"]), (
            f"{case.method} {case.formatted_path}: not the error shape: {response.text[:500]}"
        )

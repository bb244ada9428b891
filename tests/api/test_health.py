"""/healthz and /readyz, including an outage of Temporal or of the database:
the API still starts and answers, and says what is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.server import ApiServer
from tests.api.conftest import admin, api_settings, assert_error, free_port, temporal_address


async def test_healthz_and_readyz(http: httpx.AsyncClient) -> None:
    health = await http.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["temporal"]["ok"] is True and checks["database"]["ok"] is True


async def _serve(**settings_kwargs: object) -> AsyncIterator[httpx.AsyncClient]:
    server = ApiServer(api_settings(**settings_kwargs))  # type: ignore[arg-type]
    await asyncio.to_thread(server.start)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def temporal_down(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An API whose Temporal address is a closed port."""
    async for client in _serve(
        temporal=f"127.0.0.1:{free_port()}",
        database_url=f"sqlite:///{tmp_path / 'chorus.db'}",
        state_dir=tmp_path,
        task_queue="unused",
    ):
        yield client


@pytest.fixture
async def database_down(
    tmp_path: Path, temporal_env: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    """An API whose PostgreSQL is a closed port."""
    async for client in _serve(
        temporal=temporal_address(temporal_env),
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/test?connect_timeout=2",
        state_dir=tmp_path,
        task_queue="unused",
    ):
        yield client


async def test_temporal_outage_is_reported_and_refuses_runs(
    temporal_down: httpx.AsyncClient,
) -> None:
    assert (await temporal_down.get("/healthz")).status_code == 200
    ready = await temporal_down.get("/readyz")
    error = assert_error(ready, 503, "not_ready")
    assert "temporal" in error["message"] and "database" not in error["message"].split("(")[0]
    assert error["details"]["temporal"]["ok"] is False
    assert error["details"]["database"]["ok"] is True

    start = await temporal_down.post(
        "/v1/runs", json={"chain": "review_reply", "input": {"message": "hi"}}, headers=admin()
    )
    assert (
        "cannot connect to Temporal" in assert_error(start, 503, "temporal_unavailable")["message"]
    )
    # The database still answers: chains are readable, and nothing was recorded.
    assert (await temporal_down.get("/v1/chains", headers=admin())).status_code == 200
    runs = await temporal_down.get("/v1/runs", headers=admin())
    assert runs.status_code == 200 and runs.json()["items"] == []


async def test_database_outage_is_reported(database_down: httpx.AsyncClient) -> None:
    assert (await database_down.get("/healthz")).status_code == 200
    ready = await database_down.get("/readyz")
    error = assert_error(ready, 503, "not_ready")
    assert error["message"].startswith("not ready: database unavailable")
    assert error["details"]["database"]["ok"] is False
    assert error["details"]["temporal"]["ok"] is True

    chains = await database_down.get("/v1/chains", headers=admin())
    assert "database" in assert_error(chains, 503, "database_unavailable")["message"]

"""The embedded dev stack: real Temporal dev server, simulator and worker
processes on free ports in a temporary state directory."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import WorkflowExecutionStatus

from cli.devstack import DevStack, DevStackError
from core.settings import Settings
from runs.catalog import load_chain
from workflows.types import WORKFLOW_NAME, ChainInput, ChainResult

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "devstack-admin-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_settings(state_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "temporal_address": f"127.0.0.1:{free_port()}",
        "temporal_ui_port": free_port(),
        "simulator_port": free_port(),
        "api_port": free_port(),
        "admin_key": ADMIN_KEY,
        "state_dir": state_dir,
        "models_file": ROOT / "chains" / "models.yaml",
        "chains_dir": ROOT / "chains",
        "task_queue": f"devstack-{uuid.uuid4()}",
        "log_format": "json",
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
async def foreign_listener() -> AsyncIterator[int]:
    """A TCP server that accepts connections and speaks no gRPC."""

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.slow
async def test_stack_starts_runs_a_chain_stops_and_keeps_state(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path / "state")
    stack = DevStack(settings, startup_timeout=60)
    await stack.start()
    try:
        assert set(stack.started) == {"temporal", "simulator", "worker", "api"}
        assert stack.is_running
        assert await stack.check() == {
            "temporal": True,
            "simulator": True,
            "worker": True,
            "api": True,
        }

        client = await stack.client()
        attributes = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=settings.temporal_namespace)
        )
        assert dict(attributes.custom_attributes) == {
            "ChorusChain": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
            "ChorusStatus": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
            "ChorusCostUsd": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
        }
        async with httpx.AsyncClient() as http:
            models = await http.get(f"{settings.simulator_base_url}/models")
        assert models.status_code == 200

        # The worker child process (`python -m worker`) runs a real chain.
        spec = load_chain("classify_then_answer", settings)
        workflow_id = f"devstack-{uuid.uuid4()}"
        result = await client.execute_workflow(
            WORKFLOW_NAME,
            ChainInput(spec=spec, input={"question": "What is 2 + 2?"}),
            id=workflow_id,
            task_queue=settings.task_queue,
            result_type=ChainResult,
        )
        assert result.status == "completed"
        assert result.usage.cost_usd > 0

        # The API child serves the same Temporal and the same database.
        async with httpx.AsyncClient(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        ) as http:
            assert (await http.get("/readyz")).status_code == 200
            run = (await http.get(f"/v1/runs/{workflow_id}")).json()
            assert run["status"] == "completed" and run["output"] == result.output
            chains = (await http.get("/v1/chains")).json()["items"]
            assert "classify_then_answer" in {chain["name"] for chain in chains}

        # A second stack on the same settings reuses everything and starts nothing.
        again = DevStack(settings)
        await again.start()
        assert again.started == {}
        assert again.reused == ["temporal", "simulator", "worker", "api"]
        await again.stop()
        assert all((await stack.check()).values())
    finally:
        pids = stack.pids
        await stack.stop()

    assert set(pids) == {"temporal", "simulator", "worker", "api"}
    assert all(gone(pid) for pid in pids.values()), pids
    assert not stack.is_running
    assert not await stack.temporal_reachable()
    assert not await stack.simulator_reachable()
    assert not await stack.api_reachable()
    assert (tmp_path / "state" / "logs" / "temporal.log").is_file()
    assert (tmp_path / "state" / "temporal.db").is_file()

    # Restarted on the same SQLite file, Temporal still knows the finished run.
    restarted = DevStack(settings, simulator=False, worker=False, api=False)
    await restarted.start()
    try:
        client = await restarted.client()
        description = await client.get_workflow_handle(workflow_id).describe()
        assert description.status == WorkflowExecutionStatus.COMPLETED
    finally:
        await restarted.stop()


async def test_foreign_process_on_the_temporal_port_is_reported(
    tmp_path: Path, foreign_listener: int
) -> None:
    settings = stack_settings(tmp_path, temporal_address=f"127.0.0.1:{foreign_listener}")
    stack = DevStack(settings, simulator=False, worker=False, api=False)
    stack.port_busy_wait_s = 0.3
    with pytest.raises(DevStackError, match=f"port {foreign_listener} on 127.0.0.1 is in use"):
        await stack.start()
    assert stack.started == {}


async def test_server_that_dies_while_starting_is_reported_with_its_log(tmp_path: Path) -> None:
    # A directory where the SQLite file should be makes the server exit at once.
    (tmp_path / "temporal.db").mkdir()
    stack = DevStack(stack_settings(tmp_path), simulator=False, worker=False, api=False)
    with pytest.raises(DevStackError) as caught:
        await stack.start()
    message = str(caught.value)
    assert "Temporal dev server exited with code" in message
    assert "unable to open database file" in message
    assert stack.started == {}

"""Fixtures for the API tests: the real API served by uvicorn on a free port,
against the session's Temporal dev server, a worker on the API's task queue
(model calls answered by the session simulator, run index and audit rows
written by the record activities), and a database that is a SQLite file or a
fresh PostgreSQL schema.

Every module that uses `api` runs once per database backend (module-scoped
parameter); a module can narrow that with
`pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True, scope="module")`.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.gateway.registry import ModelRegistry
from api.server import ApiServer
from core.settings import Settings
from simulator.control import SimulatorControl
from store import make_engine
from tests.conftest import activity_host
from tests.pg import BACKENDS, empty_database
from worker.assembly import hosted_worker

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "test-bootstrap-admin-key-0123456789"
MAX_BODY_BYTES = 64 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def temporal_address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


def api_settings(
    *, temporal: str, database_url: str, state_dir: Path, task_queue: str, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "temporal_address": temporal,
        "task_queue": task_queue,
        "database_url": database_url,
        "state_dir": state_dir,
        "models_file": ROOT / "chains" / "models.yaml",
        "chains_dir": ROOT / "chains",
        "admin_key": ADMIN_KEY,
        "api_max_body_bytes": MAX_BODY_BYTES,
        "log_format": "json",
        "log_level": "warning",
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


def admin() -> dict[str, str]:
    return bearer(ADMIN_KEY)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is `status` with the API's one error shape; returns `error`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error  # type: ignore[no-any-return]


# -- databases -------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def database_url(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """An empty database for the module: a SQLite file, or a fresh PostgreSQL schema."""
    with empty_database(
        request,
        backend,
        sqlite_file=tmp_path_factory.mktemp("api-db") / "chorus.db",
        schema_prefix="chorus_api_test_",
    ) as url:
        yield url


@pytest.fixture(scope="module")
def db_engine(database_url: str) -> Iterator[Engine]:
    """An engine on the API's database, for tests that read rows directly."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


# -- the API, its worker, its clients -------------------------------------------------


@pytest.fixture(scope="module")
def api_task_queue() -> str:
    return f"api-test-{uuid.uuid4()}"


@pytest.fixture(scope="module")
def api_overrides() -> dict[str, Any]:
    """Settings a module's API has besides `api_settings`' (a module overrides this)."""
    return {}


@pytest.fixture(scope="module")
async def api(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    api_task_queue: str,
    api_overrides: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ApiServer]:
    """The API served by uvicorn on a free port (its own thread and event loop)."""
    settings = api_settings(
        temporal=temporal_address(temporal_env),
        database_url=database_url,
        state_dir=tmp_path_factory.mktemp("api-state"),
        task_queue=api_task_queue,
        **api_overrides,
    )
    server = ApiServer(settings)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture(scope="module")
async def api_worker(
    temporal_env: WorkflowEnvironment,
    registry: ModelRegistry,
    api: ApiServer,
    api_task_queue: str,
) -> AsyncIterator[None]:
    """A worker on the API's task queue writing to the API's database."""
    engine = make_engine(api.settings.effective_database_url)
    host = activity_host(registry, engine)
    async with hosted_worker(temporal_env.client, host, task_queue=api_task_queue):
        yield
    engine.dispose()


@pytest.fixture(autouse=True)
async def _fresh_simulator(sim: SimulatorControl) -> None:
    """Every API test starts with the session's simulator reset: a rule or a
    fault that another module's test left behind (a refusal, say) must not
    answer this test's runs (tests that script the simulator ask for `sim`
    and get the same reset client)."""


@pytest.fixture(scope="module")
async def http(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
        yield client


@dataclass(frozen=True)
class Keys:
    service: str
    reviewer: str
    admin: str
    supervisor: str
    """A reviewer key that may also decide approvals requiring role `supervisor`."""
    reviewer2: str
    names: dict[str, str]
    """Key label (`reviewer`, ...) → the key's name, the identity the audit log records."""


@pytest.fixture(scope="module")
async def keys(http: httpx.AsyncClient) -> Keys:
    """One key per role, created through the API by the bootstrap admin."""
    made: dict[str, str] = {}
    names: dict[str, str] = {}
    specs: dict[str, dict[str, Any]] = {
        "service": {"role": "service"},
        "reviewer": {"role": "reviewer"},
        "admin": {"role": "admin"},
        "supervisor": {"role": "reviewer", "approval_roles": ["supervisor"]},
        "reviewer2": {"role": "reviewer"},
    }
    for label, body in specs.items():
        names[label] = f"{label}-{uuid.uuid4().hex[:6]}"
        response = await http.post("/v1/keys", json={"name": names[label], **body}, headers=admin())
        assert response.status_code == 201, response.text
        made[label] = response.json()["key"]
    return Keys(**made, names=names)


async def count_workflows(client: Client, task_queue: str, extra: str = "") -> int:
    query = f"TaskQueue = '{task_queue}'" + (f" AND {extra}" if extra else "")
    return (await client.count_workflows(query)).count


async def wait_for(probe: Any, *, timeout_s: float = 15.0, interval_s: float = 0.05) -> Any:
    """Poll an async probe until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (last: {value!r})")
        await asyncio.sleep(interval_s)


async def run_completed(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    """The run once it has completed, so that no run is left in flight when the
    module's worker shuts down."""

    async def done() -> dict[str, Any] | None:
        run = (await http.get(f"/v1/runs/{run_id}", headers=admin())).json()
        return run if run["status"] == "completed" else None

    return await wait_for(done, timeout_s=30)  # type: ignore[no-any-return]

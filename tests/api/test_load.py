"""The API under concurrent load (issue 8), on SQLite and PostgreSQL: a real
uvicorn server, the session's Temporal dev server, a worker and the simulator.

Not timed: these tests assert what every answer is, never how fast it came.
Under load a request is served (2xx) or refused with 503 and `Retry-After`;
never a 500, never "database is locked". Concurrent starts of one run id
create one run. A second API on the same database, with a capacity of a few
requests, shows the shedding itself: a queue, fast 503s, health checks
exempt, and a body that does not arrive in time answered with 408.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func
from sqlmodel import col, select
from temporalio.testing import WorkflowEnvironment

from api.server import ApiServer
from simulator.control import SimulatorControl
from simulator.models import Rule
from store import RunRecord, session_scope
from tests.api.conftest import (
    Keys,
    admin,
    api_settings,
    bearer,
    count_workflows,
    temporal_address,
    wait_for,
)
from tests.api.test_runs import publish_greet

pytestmark = pytest.mark.usefixtures("api_worker")

GREETING = "Hello, nice to meet you."
TIGHT_IN_FLIGHT = 2
TIGHT_QUEUED = 2
TIGHT_QUEUE_TIMEOUT_S = 1.0
TIGHT_BODY_TIMEOUT_S = 4.0


async def closed(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    """The run once Temporal has closed it (its result read from the workflow:
    a run's state may say `completed` a moment before the workflow closes)."""

    async def result() -> dict[str, Any] | None:
        run: dict[str, Any] = (await http.get(f"/v1/runs/{run_id}", headers=admin())).json()
        return run if run.get("source") == "result" else None

    return await wait_for(result, timeout_s=60)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
async def chain(http: httpx.AsyncClient) -> str:
    return await publish_greet(http)


@pytest.fixture
async def greeting(sim: SimulatorControl) -> None:
    await sim.add_rules(Rule(model="sim-mini", reply=GREETING))


@pytest.fixture
async def burst(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client that really sends 200 requests at once (httpx's default pool
    would queue them on its side)."""
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    async with httpx.AsyncClient(base_url=api.url, timeout=120, limits=limits) as client:
        yield client


def assert_served_or_shed(responses: list[httpx.Response], served: int) -> Counter[int]:
    """Every answer is `served` or 503 with Retry-After, in the API's error shape."""
    statuses = Counter(r.status_code for r in responses)
    for response in responses:
        if response.status_code == 503:
            assert response.headers.get("retry-after", "").isdigit(), response.headers
            assert set(response.json()) == {"error"}, response.text
        else:
            assert response.status_code == served, response.text
    return statuses


async def test_200_concurrent_reads_are_served_or_shed_never_500(
    http: httpx.AsyncClient,
    burst: httpx.AsyncClient,
    keys: Keys,
    chain: str,
    greeting: None,
) -> None:
    run_id = f"load-read-{uuid.uuid4()}"
    started = await http.post(
        "/v1/runs",
        json={"chain": chain, "input": {"name": "Ada"}, "run_id": run_id},
        headers=bearer(keys.service),
    )
    assert started.status_code == 201, started.text
    await closed(http, run_id)

    # A service key: every request also checks the key in the database.
    reads = await asyncio.gather(
        *(burst.get(f"/v1/runs/{run_id}", headers=bearer(keys.service)) for _ in range(200))
    )
    statuses = assert_served_or_shed(list(reads), served=200)
    assert statuses[200] > 0, statuses
    for response in reads:
        if response.status_code == 200:
            body = response.json()
            assert body["run_id"] == run_id and body["status"] == "completed", body

    lists = await asyncio.gather(
        *(burst.get("/v1/runs?limit=20", headers=bearer(keys.service)) for _ in range(200))
    )
    statuses = assert_served_or_shed(list(lists), served=200)
    assert statuses[200] > 0, statuses
    for response in lists:
        if response.status_code == 200:
            assert run_id in {item["run_id"] for item in response.json()["items"]}


async def test_50_concurrent_starts_of_one_run_id_create_one_run(
    http: httpx.AsyncClient,
    burst: httpx.AsyncClient,
    keys: Keys,
    chain: str,
    greeting: None,
    db_engine: Engine,
    temporal_env: WorkflowEnvironment,
    api_task_queue: str,
) -> None:
    run_id = f"load-same-{uuid.uuid4()}"
    body = {"chain": chain, "input": {"name": "Grace"}, "run_id": run_id}
    responses = await asyncio.gather(
        *(burst.post("/v1/runs", json=body, headers=bearer(keys.service)) for _ in range(50))
    )

    statuses = Counter(r.status_code for r in responses)
    assert statuses[201] == 1, statuses
    assert set(statuses) <= {200, 201, 503}, statuses
    for response in responses:
        if response.status_code == 503:
            assert response.headers.get("retry-after", "").isdigit(), response.headers
        else:
            accepted = response.json()
            assert accepted["run_id"] == run_id, accepted
            assert accepted["created"] is (response.status_code == 201), accepted
    with session_scope(db_engine) as session:
        rows = session.exec(
            select(func.count()).select_from(RunRecord).where(col(RunRecord.run_id) == run_id)
        ).one()
    assert rows == 1
    assert (await closed(http, run_id))["output"] == GREETING
    same_id = f"WorkflowId = '{run_id}'"
    assert await count_workflows(temporal_env.client, api_task_queue, same_id) == 1


async def test_100_concurrent_starts_with_distinct_ids_each_start_once(
    http: httpx.AsyncClient,
    burst: httpx.AsyncClient,
    keys: Keys,
    chain: str,
    greeting: None,
    db_engine: Engine,
) -> None:
    run_ids = [f"load-many-{uuid.uuid4()}" for _ in range(100)]
    responses = await asyncio.gather(
        *(
            burst.post(
                "/v1/runs",
                json={"chain": chain, "input": {"name": "Lin"}, "run_id": run_id},
                headers=bearer(keys.service),
            )
            for run_id in run_ids
        )
    )

    statuses = assert_served_or_shed(list(responses), served=201)
    created = [run_id for run_id, r in zip(run_ids, responses, strict=True) if r.status_code == 201]
    assert len(created) == statuses[201] > 0, statuses
    with session_scope(db_engine) as session:
        stored = set(
            session.exec(select(RunRecord.run_id).where(col(RunRecord.run_id).in_(run_ids))).all()
        )
    # A refused start left nothing behind; every created one is in the index.
    assert stored == set(created)
    for run_id in created:
        await closed(http, run_id)


# -- a small API: the shedding itself --------------------------------------------------


@pytest.fixture(scope="module")
async def small_api(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    api_task_queue: str,
    api: ApiServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ApiServer]:
    """A second API on the same database with room for two requests at once,
    two more waiting half a second, and 3 s to receive a body."""
    settings = api_settings(
        temporal=temporal_address(temporal_env),
        database_url=database_url,
        state_dir=tmp_path_factory.mktemp("small-api-state"),
        task_queue=api_task_queue,
        api_max_in_flight=TIGHT_IN_FLIGHT,
        api_max_queued=TIGHT_QUEUED,
        api_queue_timeout_s=TIGHT_QUEUE_TIMEOUT_S,
        api_body_read_timeout_s=TIGHT_BODY_TIMEOUT_S,
    )
    server = ApiServer(settings)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def slow_body(url: str, path: str = "/v1/runs") -> bytes:
    """Send a request whose body never finishes (4 of 100 bytes); returns
    what the server answered once it gave up."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: 100\r\nAuthorization: Bearer {admin()['Authorization'][7:]}\r\n"
        '\r\n{"ch'.encode()
    )
    await writer.drain()
    try:
        # read() returns at EOF: the server closed the connection after answering.
        return await asyncio.wait_for(reader.read(), timeout=TIGHT_BODY_TIMEOUT_S + 10)
    finally:
        writer.close()


async def test_beyond_capacity_a_fast_503_with_retry_after_health_exempt_slow_body_408(
    small_api: ApiServer, keys: Keys
) -> None:
    async with httpx.AsyncClient(base_url=small_api.url, timeout=30) as client:
        assert (await client.get("/v1/runs", headers=bearer(keys.service))).status_code == 200

        # Two clients that send their bodies slowly hold both slots.
        slow = [asyncio.create_task(slow_body(small_api.url)) for _ in range(TIGHT_IN_FLIGHT)]
        await asyncio.sleep(0.5)

        # Two requests wait in the queue, then give up; the rest are refused at once.
        waiting = [
            asyncio.create_task(client.get("/v1/runs", headers=bearer(keys.service)))
            for _ in range(TIGHT_QUEUED)
        ]
        await asyncio.sleep(0.1)
        refused = await asyncio.gather(
            *(client.get("/v1/runs", headers=bearer(keys.service)) for _ in range(10))
        )
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        # All answered while the slow bodies still held every slot: refusing
        # waited for nothing.
        assert not any(task.done() for task in slow)
        queued = await asyncio.gather(*waiting)

        for response in [*refused, *queued]:
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
            assert response.json()["error"]["code"] == "overloaded"
        assert health.status_code == 200 and ready.status_code == 200, ready.text

        for answer in await asyncio.gather(*slow):
            status_line, _, rest = answer.partition(b"\r\n")
            assert status_line.startswith(b"HTTP/1.1 408"), answer[:300]
            assert b'"request_timeout"' in rest, answer[:500]
            assert b"connection: close" in rest.lower()

        # The slots are free again.
        async def served() -> bool:
            response = await client.get("/v1/runs", headers=bearer(keys.service))
            return response.status_code == 200

        await wait_for(served, timeout_s=10)


async def test_every_503_carries_retry_after(small_api: ApiServer, tmp_path: Path) -> None:
    """A 503 the app itself answers (here: no Temporal at the configured
    address) gets a Retry-After from the shedding middleware too."""
    settings = small_api.settings.model_copy(
        update={"temporal_address": "127.0.0.1:1", "state_dir": tmp_path}
    )
    async with ApiServer(settings) as server, httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{server.url}/v1/runs", json={"chain": "anything", "input": {}}, headers=admin()
        )
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "temporal_unavailable"
    assert response.headers["retry-after"].isdigit()


async def test_no_free_connection_in_time_is_a_503_with_retry_after(
    small_api: ApiServer, tmp_path: Path
) -> None:
    """The pool has one connection per API thread; a request that finds none
    free within the pool timeout gets 503 `database_busy`, not a 500."""
    settings = small_api.settings.model_copy(
        update={
            "state_dir": tmp_path,
            "api_threads": 4,
            "database_pool_size": None,
            "database_max_overflow": 0,
            "database_pool_timeout_s": 0.3,
        }
    )
    async with ApiServer(settings) as server, httpx.AsyncClient(base_url=server.url) as client:
        engine = server.app.state.chorus.database.engine
        assert engine.pool.size() == 4
        held = [engine.connect() for _ in range(4)]
        try:
            busy = await client.get("/v1/runs", headers=admin())
        finally:
            for connection in held:
                connection.close()
        served = await client.get("/v1/runs", headers=admin())
    assert busy.status_code == 503, busy.text
    assert busy.json()["error"]["code"] == "database_busy"
    assert busy.headers["retry-after"].isdigit()
    assert served.status_code == 200, served.text

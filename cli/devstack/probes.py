"""Whether each dev-stack service answers on the configured addresses.

A probe answers True or False and never raises for a service that is down,
still starting or something else entirely: the stack decides from the
answers whether to reuse, start, wait or give up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, ListNamespacesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from core.settings import Settings
from core.temporal import TemporalConnectError, connect

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
PROBE_INTERVAL_S = 0.1
"""How often a service that does not answer yet is asked again."""


async def port_open(host: str, port: int, connect_timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), connect_timeout_s
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wait_until(probe: Callable[[], Awaitable[bool]], within_s: float) -> bool:
    """Ask `probe` until it answers True (True) or `within_s` has passed (False)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await probe():
            return True
        await asyncio.sleep(PROBE_INTERVAL_S)
    return False


async def _answers_ok(url: str) -> bool:
    """GET `url` answers 200."""
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            response = await http.get(url)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def api_url(settings: Settings) -> str:
    """Where the API is reached: on loopback when it listens everywhere."""
    host = settings.api_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{settings.api_port}"


class ServiceProbes:
    """The probes of one stack's settings. Keeps the Temporal client of the
    last successful Temporal probe, so the stack connects once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Client | None = None

    async def client(self) -> Client:
        """A client for the stack's Temporal (cached)."""
        if self._client is None:
            self._client = await connect(self.settings)
        return self._client

    def forget_client(self) -> None:
        """Drop the cached client (the stack stopped; its Temporal may be gone)."""
        self._client = None

    async def temporal(self) -> bool:
        """Temporal answers a namespace listing on the configured address."""
        if self.settings.temporal_host in LOCAL_HOSTS and not await port_open(
            self.settings.temporal_host, self.settings.temporal_port
        ):
            return False
        try:
            client = self._client or await asyncio.wait_for(connect(self.settings), 5)
            await client.workflow_service.list_namespaces(
                ListNamespacesRequest(), timeout=timedelta(seconds=3)
            )
        except (TemporalConnectError, RPCError, RuntimeError, TimeoutError):
            return False
        self._client = client
        return True

    async def simulator(self) -> bool:
        """The simulator answers GET /v1/models with 200."""
        return await _answers_ok(f"{self.settings.simulator_base_url}/models")

    async def api(self) -> bool:
        """The API answers GET /healthz with 200 (it starts before its
        database and Temporal are ready; /readyz is for load balancers)."""
        return await _answers_ok(f"{api_url(self.settings)}/healthz")

    async def worker_polling(self, pid: int) -> bool:
        """A worker process polls the task queue (the SDK's default identity
        is `<pid>@<host>`)."""
        try:
            identities = await self._poller_identities()
        except (TemporalConnectError, RPCError, RuntimeError):
            return False
        return any(identity.startswith(f"{pid}@") for identity in identities)

    async def _poller_identities(self) -> list[str]:
        client = await self.client()
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self.settings.temporal_namespace,
                task_queue=TaskQueue(name=self.settings.task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            ),
            timeout=timedelta(seconds=3),
        )
        return [poller.identity for poller in response.pollers]

"""The worker process: the activity host (every activity, built once per
process from the settings), a worker over it, and running it until a signal.

Which workflows, sandbox and data converter a worker uses is `ChorusPlugin`'s
business (worker/plugin.py), shared with the tests and the Replayer.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from temporalio.client import Client
from temporalio.worker import Worker

from worker.plugin import ChorusPlugin

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from activities.gateway.rate_limits import RateLimiter
    from activities.gateway.registry import ModelRegistry
    from activities.tools.registry import ToolRegistry
    from core.settings import Settings


def create_worker(
    client: Client,
    *,
    task_queue: str,
    activities: Sequence[Callable[..., Any]],
    max_cached_workflows: int = 1000,
    max_concurrent_activities: int = 200,
    sandboxed: bool = True,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        plugins=[ChorusPlugin(activities, sandboxed=sandboxed)],
        max_cached_workflows=max_cached_workflows,
        max_concurrent_activities=max_concurrent_activities,
    )


class ActivityHost:
    """Every activity a Chorus worker hosts, built once per process: model
    calls, run records and audit rows, tools, and retrieval."""

    def __init__(
        self,
        *,
        registry: ModelRegistry,
        engine: Engine,
        tools: ToolRegistry,
        limiter: RateLimiter | None = None,
    ) -> None:
        """`limiter`: the shared rate-limit state (default: the application
        database, `engine`)."""
        from activities.evals.activities import EvalActivities
        from activities.gateway.activities import ModelGateway
        from activities.gateway.journal import ReplyJournal
        from activities.gateway.pacing import CallPacing
        from activities.gateway.rate_limits import DatabaseLimiter
        from activities.records.activities import RecordActivities
        from activities.retrieval.activities import RetrievalActivities
        from activities.retrieval.embeddings import RegistryEmbedder
        from activities.tools.activities import ToolActivities

        self.gateway = ModelGateway(
            registry,
            journal=ReplyJournal(engine),
            pacing=CallPacing(limiter or DatabaseLimiter(engine)),
        )
        self.records = RecordActivities(engine)
        self.embedder = RegistryEmbedder(registry)
        self.retrieval = RetrievalActivities(engine, self.embedder)
        self.tools = ToolActivities(tools)
        self.evals = EvalActivities(engine)

    @classmethod
    def from_settings(cls, settings: Settings) -> ActivityHost:
        """Check the configuration now (registry, database, tools file), not
        when the first run meets it. A database whose schema is behind
        raises SchemaNotCurrent, naming `chorus db upgrade`."""
        from activities.gateway.registry import ModelRegistry
        from activities.tools.defaults import default_registry
        from store.engine import make_engine
        from store.schema import check_schema

        registry = ModelRegistry.from_file(
            settings.models_file, simulator_base_url=settings.simulator_base_url
        )
        engine = make_engine(settings.effective_database_url)
        check_schema(engine)
        limiter: RateLimiter | None = None
        if settings.rate_limiter == "redis" and settings.redis_url:
            from activities.gateway.redis_limiter import RedisLimiter

            limiter = RedisLimiter(settings.redis_url, prefix=settings.redis_key_prefix)
        return cls(
            registry=registry, engine=engine, tools=default_registry(settings), limiter=limiter
        )

    @property
    def activities(self) -> list[Callable[..., Any]]:
        return [
            *self.gateway.activities,
            *self.records.activities,
            *self.retrieval.activities,
            *self.tools.activities,
            *self.evals.activities,
        ]

    async def aclose(self) -> None:
        await self.gateway.aclose()
        await self.gateway.pacing.aclose()
        await self.embedder.aclose()
        await self.tools.aclose()


@asynccontextmanager
async def hosted_worker(
    client: Client,
    host: ActivityHost,
    *,
    task_queue: str,
    max_cached_workflows: int = 1000,
    max_concurrent_activities: int = 200,
    sandboxed: bool = True,
) -> AsyncIterator[Worker]:
    """A running worker over `host`'s activities; closes the host after."""
    try:
        async with create_worker(
            client,
            task_queue=task_queue,
            activities=host.activities,
            max_cached_workflows=max_cached_workflows,
            max_concurrent_activities=max_concurrent_activities,
            sandboxed=sandboxed,
        ) as worker:
            yield worker
    finally:
        await host.aclose()


async def run_worker(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM, then drain and close cleanly (an
    abrupt exit with SDK threads alive can abort the interpreter)."""
    from core import tracing
    from core.temporal import connect
    from worker.metrics import start_worker_metrics

    metrics = start_worker_metrics(settings)  # before the client: its runtime
    tracing.configure(settings, "chorus-worker")  # before the client: its interceptor
    try:
        client = await connect(settings, runtime=metrics.runtime if metrics else None)
        host = ActivityHost.from_settings(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with hosted_worker(
            client,
            host,
            task_queue=settings.task_queue,
            max_cached_workflows=settings.max_cached_workflows,
            max_concurrent_activities=settings.max_concurrent_activities,
            sandboxed=settings.workflow_sandbox,
        ):
            await stop.wait()
    finally:
        if metrics is not None:
            metrics.close()
        tracing.shutdown()  # the last spans leave before the process does

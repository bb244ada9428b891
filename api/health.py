"""Readiness: can this API serve requests right now?

Liveness (`/healthz`) only says the process answers. Readiness (`/readyz`)
asks each dependency something cheap with a short deadline, so a load
balancer stops routing to an API whose Temporal or database is gone, and the
answer names what is down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import text
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.service import RPCError

from api.schemas import CheckResult
from api.state import ApiState
from core.problems import ApiProblem

CHECK_TIMEOUT_S = 3.0


async def _timed(probe: Callable[[], Awaitable[None]]) -> CheckResult:
    started = time.perf_counter()
    error: str | None
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
    except TimeoutError:
        error = f"no answer within {CHECK_TIMEOUT_S:.0f} s"
    except ApiProblem as problem:
        error = problem.message
    except (RPCError, OSError, RuntimeError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a database driver's own errors: report, never crash
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    else:
        error = None
    latency = (time.perf_counter() - started) * 1000
    return CheckResult(ok=error is None, latency_ms=round(latency, 2), error=error)


async def check_temporal(state: ApiState) -> CheckResult:
    async def probe() -> None:
        client = await state.temporal.get()
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=state.settings.temporal_namespace),
            timeout=timedelta(seconds=CHECK_TIMEOUT_S),
        )

    return await _timed(probe)


async def check_database(state: ApiState) -> CheckResult:
    def select_one() -> None:
        state.database.prepare()
        with state.database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    async def probe() -> None:
        await asyncio.to_thread(select_one)

    return await _timed(probe)


async def readiness(state: ApiState) -> dict[str, CheckResult]:
    temporal, database = await asyncio.gather(check_temporal(state), check_database(state))
    return {"temporal": temporal, "database": database}

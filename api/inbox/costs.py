"""What a chain run has cost so far, for the rows of its agents' tool calls.

The run index is written when a run's status changes, so a chain run whose
agent step waits on a tool approval is still `running` there, at the cost it
had when it started: its live state (the workflow's state query) has what its
steps have spent since. One query per such run, a few at a time; a run no
worker answers for keeps its index cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError

from core.names import STATE_QUERY
from runs.client import QUERY_CONCURRENCY, QUERY_TIMEOUT, RunClient
from workflows.types import RunState


async def live_costs(runs: RunClient, run_ids: Collection[str]) -> dict[str, float]:
    """The cost so far of each of these running runs that answered."""
    gate = asyncio.Semaphore(QUERY_CONCURRENCY)

    async def cost_of(run_id: str) -> float | None:
        async with gate:
            try:
                state = await runs.handle(run_id).query(
                    STATE_QUERY, result_type=RunState, rpc_timeout=QUERY_TIMEOUT
                )
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
                return None
        return state.usage.cost_usd

    ids = sorted(set(run_ids))
    answers = await asyncio.gather(*(cost_of(run_id) for run_id in ids))
    return {run_id: cost for run_id, cost in zip(ids, answers, strict=True) if cost is not None}

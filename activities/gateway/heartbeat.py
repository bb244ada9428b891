"""Heartbeat while a slow call is in flight.

A model can take a minute to answer. Without heartbeats, a worker killed
mid-call is only noticed when the activity's start-to-close timeout expires;
with them, Temporal retries elsewhere within the heartbeat timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from temporalio import activity


def heartbeat_interval(entry_timeout_s: float) -> float:
    """A third of the heartbeat timeout in force (the one the workflow set,
    else the registry's), so two beats may be lost before Temporal gives up."""
    configured = activity.info().heartbeat_timeout
    timeout_s = configured.total_seconds() if configured else entry_timeout_s
    return max(timeout_s / 3, 0.05)


@asynccontextmanager
async def heartbeating(interval_s: float, *details: Any) -> AsyncIterator[None]:
    """Heartbeat every `interval_s` until the block exits, with `details`
    (what a workflow reads from a timed-out attempt's last heartbeat).

    The first beat waits one interval: the heartbeat timeout runs from the
    activity's start, and a beat at once would add a server round trip to
    every call, most of which finish long before the first one is due.
    With details, the first beat goes at once: they must outlive a worker
    that dies before the first interval ends."""

    async def beat() -> None:
        if details:
            activity.heartbeat(*details)
        while True:
            await asyncio.sleep(interval_s)
            activity.heartbeat(*details)

    task = asyncio.create_task(beat(), name="chorus-heartbeat")
    try:
        yield
    finally:
        task.cancel()
        # wait() never raises the task's CancelledError, but does propagate a
        # cancellation of this activity itself.
        await asyncio.wait([task])

"""Running an activity the way a worker runs it, without one: temporalio's
`ActivityEnvironment` with the identity, attempt and heartbeat timeout a test
gives, and a record of the heartbeats the activity sent.

Activities that read `activity.info()` (request ids, idempotency keys, the
journal on a retry, log fields) see exactly these values; the others run
with `run_activity`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

T = TypeVar("T")


def _workflow_id() -> str:
    return f"wf-{uuid.uuid4()}"


@dataclass
class ActivityEnv:
    """One activity's identity, as `activity.info()` reports it. Each
    instance has a workflow id of its own, so request ids and keys derived
    from it are unique to the test; change `attempt` to run a retry."""

    activity_type: str = "unknown"
    activity_id: str = "1"
    attempt: int = 1
    heartbeat_timeout: timedelta | None = None
    workflow_id: str = field(default_factory=_workflow_id)
    workflow_run_id: str = "run-1"
    heartbeats: list[tuple[Any, ...]] = field(default_factory=list, init=False)
    """The details of every heartbeat, in order."""

    def info(self) -> activity.Info:
        return dataclasses.replace(
            ActivityEnvironment.default_info(),
            activity_type=self.activity_type,
            activity_id=self.activity_id,
            attempt=self.attempt,
            heartbeat_timeout=self.heartbeat_timeout,
            workflow_id=self.workflow_id,
            workflow_run_id=self.workflow_run_id,
        )

    async def execute(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run the activity `fn` on `args`, as this activity."""
        env = ActivityEnvironment()
        env.info = self.info()
        env.on_heartbeat = lambda *details: self.heartbeats.append(details)
        return await env.run(fn, *args)

    async def raised(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> ApplicationError:
        """The ApplicationError the activity `fn` raises on `args`."""
        with pytest.raises(ApplicationError) as caught:
            await self.execute(fn, *args)
        return caught.value


async def run_activity(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run the activity `fn` on `args` once, under a fresh identity."""
    return await ActivityEnv().execute(fn, *args)

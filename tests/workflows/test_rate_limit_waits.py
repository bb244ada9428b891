"""A model call the gateway answers with `RateLimitWait` is waited out by the
run on a timer, as a new call that spends none of the step's provider
attempts, with the reserved ticket sent back; the wait shows in the run's
state while it lasts. Stub activities under the real names (no simulator)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.gateway.types import (
    ModelCallInput,
    ModelCallResult,
    ProviderErrorType,
    RateLimitWaitDetails,
)
from core.names import CALL_MODEL
from tests.workflows.stubs import RUN_TIMEOUT_S, Harness, Stubs, model, purposes
from worker.assembly import create_worker
from workflows.model_calls import WAIT_OUT_RATE_LIMITS
from workflows.patches import ABSORBED, BASELINE

THROTTLED = "throttled"


class ThrottledStubs(Stubs):
    """`throttled` is over its limits for its first `waits` calls."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 2
        self.wait_s = 0.3

    @activity.defn(name=CALL_MODEL)
    async def call_model(self, inp: ModelCallInput) -> ModelCallResult:
        if inp.alias == THROTTLED and self.waits > 0 and inp.defer_rate_limits:
            self.model_calls.append(inp)
            self.waits -= 1
            until = datetime.now(UTC) + timedelta(seconds=self.wait_s)
            raise ApplicationError(
                f"alias {THROTTLED!r} is rate limited",
                RateLimitWaitDetails(
                    alias=inp.alias,
                    retry_in_s=self.wait_s,
                    until=until.isoformat(),
                    reason="this deployment's limit of 1 requests per 60 s",
                    ticket=f"ticket-{self.waits}",
                ).model_dump(mode="json"),
                type=ProviderErrorType.RATE_LIMIT_WAIT,
                non_retryable=True,
            )
        return await Stubs.call_model(self, inp)


@pytest.fixture
async def chains(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    harness = Harness(temporal_env, task_queue)
    harness.stubs = ThrottledStubs()
    async with create_worker(
        temporal_env.client, task_queue=task_queue, activities=harness.stubs.activities
    ):
        yield harness


async def test_a_rate_limit_wait_is_waited_out_without_spending_an_attempt(
    chains: Harness,
) -> None:
    # max_attempts is 1 (stubs.RETRY): had the waits been attempts, the step
    # would have failed over to its fallback.
    started = await chains.start([model("ask", THROTTLED, fallbacks=["cheap"])])
    result = await chains.finish(started)

    assert result.status == "completed"
    assert result.output == f"{THROTTLED}: Hi"
    # One call in the result: the waits are not calls and cost nothing.
    assert purposes(result, "ask") == [(THROTTLED, "answer", "ok")]
    calls = chains.stubs.model_calls
    assert [c.alias for c in calls] == [THROTTLED] * 3
    assert all(c.defer_rate_limits for c in calls)
    assert [c.rate_limit_ticket for c in calls] == [None, "ticket-1", "ticket-0"]

    events = [e async for e in started.handle.fetch_history_events()]
    kinds = [e.event_type for e in events]
    assert kinds.count(EventType.EVENT_TYPE_TIMER_STARTED) == 2
    markers = [e for e in events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    # The change is part of the run's baseline patch (workflows/patches.py).
    assert WAIT_OUT_RATE_LIMITS in ABSORBED
    assert any(BASELINE in str(m.marker_recorded_event_attributes) for m in markers)
    state = await chains.runs.read(started.run_id)
    assert state is not None and state.waits == []


async def test_the_wait_shows_in_the_runs_state(chains: Harness) -> None:
    stubs = chains.stubs
    assert isinstance(stubs, ThrottledStubs)
    stubs.waits, stubs.wait_s = 1, 3.0
    started = await chains.start([model("ask", THROTTLED)])
    async with asyncio.timeout(RUN_TIMEOUT_S):
        while True:
            detail = await chains.runs.read(started.run_id)
            assert detail is not None
            if detail.waits:
                break
            await asyncio.sleep(0.05)
    [wait] = detail.waits
    assert (wait.kind, wait.step, wait.alias) == ("rate_limit", "ask", THROTTLED)
    assert wait.reason == "this deployment's limit of 1 requests per 60 s"
    assert wait.until is not None
    assert timedelta(0) < wait.until - datetime.now(UTC) <= timedelta(seconds=3.5)
    assert detail.waiting is not None
    assert detail.waiting.startswith(f"waiting for provider ({THROTTLED}) until ")
    assert detail.model_dump(mode="json")["waiting"] == detail.waiting
    result = await chains.finish(started)
    assert result.status == "completed"

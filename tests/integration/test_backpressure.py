"""Providers' back-pressure respected, end to end on the session's Temporal
dev server and simulator (its provider-side limits and fault injection):
jittered retries get six runs through a provider that takes three requests
per window, a Retry-After longer than the alias waits moves to the fallback
at once, and the wait for a provider shows in the run's state."""

from __future__ import annotations

import asyncio
from typing import Any

from activities.gateway.types import ProviderErrorType
from runs.client import RunClient
from simulator.control import SimulatorControl
from simulator.models import Fault, ProviderLimit
from tests.integration.conftest import ChainRunner, load_spec

WINDOW_S = 3.0


def one_step(name: str, registry: Any, **step: Any) -> Any:
    return load_spec(
        {
            "name": name,
            "steps": [
                {
                    "name": "answer",
                    "kind": "model",
                    "model": "cheap",
                    "prompt": "Answer briefly: {{ input.q }}",
                    "max_tokens": 40,
                    **step,
                }
            ],
        },
        registry,
    )


async def test_six_runs_against_a_provider_limit_of_three_per_window_all_complete(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    """Issue 9, item 5: with 3 requests per window at the provider and 6 runs
    at once, every waiting call used to retry at the same instant and 4 of 6
    runs failed. Retry-After plus jitter: all six complete."""
    await sim.set_limits(ProviderLimit(model="sim-mini", rpm=3, window_s=WINDOW_S))
    spec = one_step("six_at_once", registry)
    handles = await asyncio.gather(*(runner.start(spec, {"q": f"question {i}"}) for i in range(6)))
    results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 60)

    assert [r.status for r in results] == ["completed"] * 6
    calls = await sim.calls(model="sim-mini")
    completed = [c for c in calls if c.status == 200]
    refused = [c for c in calls if c.status == 429]
    assert len(completed) == 6
    assert len(refused) >= 3  # the provider did push back
    # Every refused call came back no sooner than its Retry-After asked
    # (whole seconds), and the retries did not all come back at one instant.
    retries = []
    for refusal in refused:
        later = [
            c.started_at
            for c in calls
            if c.request_id == refusal.request_id and c.started_at > refusal.started_at
        ]
        assert later, f"{refusal.request_id} was never retried"
        retries.append(min(later))
        assert min(later) - refusal.started_at >= 1.0
    assert max(retries) - min(retries) > 0.05, retries
    # No window at the provider ever held more than its three.
    starts = sorted(c.started_at for c in completed)
    for i in range(len(starts) - 3):
        assert starts[i + 3] - starts[i] >= WINDOW_S - 0.05


async def test_a_retry_after_over_max_retry_after_s_moves_to_the_fallback_at_once(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    """A 600 s Retry-After (over `cheap`'s default max_retry_after_s of 60)
    makes `cheap` unavailable for now: `cheap_b` answers at once, instead of
    the run waiting ten minutes showing only `running`."""
    await sim.add_faults(Fault(kind="status", status=429, retry_after="600", model="sim-mini"))
    spec = one_step("too_long_a_wait", registry, fallbacks=["cheap_b"])
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await asyncio.wait_for(runner.run(spec, {"q": "now please"}), 30)
    elapsed = loop.time() - started

    assert result.status == "completed"
    assert elapsed < 10
    calls = result.steps["answer"].calls
    assert [(c.alias, c.outcome) for c in calls] == [("cheap", "failed"), ("cheap_b", "ok")]
    assert calls[0].error is not None
    assert ProviderErrorType.UNAVAILABLE in calls[0].error
    assert "asked to wait 600 s" in calls[0].error
    assert [c.status for c in await sim.calls(model="sim-mini")] == [429]  # asked once, not retried
    assert [c.status for c in await sim.calls(model="sim-mini-b")] == [200]


async def test_the_wait_for_a_provider_shows_in_the_runs_state(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    """While Temporal waits out a Retry-After before the next attempt, GET
    /v1/runs/{id} (RunClient.read) says `waiting for provider until T`,
    naming the alias, the step and the provider's answer."""
    await sim.add_faults(Fault(kind="status", status=429, retry_after="4", model="sim-mini"))
    spec = one_step("visible_wait", registry)
    handle = await runner.start(spec, {"q": "patience"})
    client = RunClient(runner.client, task_queue=runner.task_queue)
    async with asyncio.timeout(20):
        while True:
            detail = await client.read(handle.id)
            assert detail is not None
            if detail.waits:
                break
            await asyncio.sleep(0.1)
    [wait] = detail.waits
    assert wait.kind == "provider_retry"
    assert (wait.alias, wait.step, wait.attempt) == ("cheap", "answer", 2)
    assert wait.until is not None and detail.started_at is not None
    # Retry-After 4 s plus at most 0.9 s of jitter, from the first attempt.
    first_attempt = (await sim.calls(model="sim-mini"))[0].started_at
    assert 4.0 <= wait.until.timestamp() - first_attempt <= 5.5
    assert "RateLimited" in wait.reason and "HTTP 429" in wait.reason
    assert detail.waiting is not None
    assert detail.waiting.startswith("waiting for provider (cheap) until ")
    result = await asyncio.wait_for(handle.result(), 20)
    assert result.status == "completed"
    after = await client.read(handle.id)
    assert after is not None and after.waits == [] and after.waiting is None


async def test_the_live_table_shows_the_wait(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    """`chorus run`'s live table: a row saying what the call waits for."""
    from rich.console import Console

    from cli.run_view import render_state
    from core.names import STATE_QUERY
    from workflows.types import RunState

    await sim.add_faults(Fault(kind="status", status=503, retry_after="3", model="sim-mini"))
    handle = await runner.start(one_step("live_table", registry), {"q": "x"})
    client = RunClient(runner.client, task_queue=runner.task_queue)
    async with asyncio.timeout(20):
        while True:
            state = await handle.query(STATE_QUERY, result_type=RunState)
            waits = await client.waits(handle.id, state)
            if waits:
                break
            await asyncio.sleep(0.1)
    console = Console(width=200, record=True)
    console.print(render_state(state, waits))
    text = console.export_text()
    assert "waiting for provider (cheap) until" in text
    assert "ProviderOverloaded" in text
    await asyncio.wait_for(handle.result(), 20)

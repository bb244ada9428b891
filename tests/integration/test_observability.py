"""What ops see: search attributes, activity summaries, the live state query,
and no secret anywhere in history."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.gateway.registry import ModelRegistry
from runs.client import RunClient
from simulator.control import SimulatorControl
from simulator.models import Fault
from tests.conftest import activity_host
from tests.integration.conftest import FAST_RETRY, ChainRunner, load_spec
from worker.assembly import hosted_worker
from workflows.types import RunState


def two_steps(registry: Any, name: str, alias: str = "cheap"):
    return load_spec(
        {
            "name": name,
            "defaults": FAST_RETRY,
            "steps": [
                {"name": "first", "kind": "model", "model": alias, "prompt": "First {{ input.x }}"},
                {"name": "second", "kind": "model", "model": "strong", "prompt": "Second"},
            ],
        },
        registry,
    )


async def visible(client: Client, query: str, expected: int) -> list[Any]:
    """Visibility is eventually consistent: poll briefly."""
    for _ in range(100):
        found = [w async for w in client.list_workflows(query)]
        if len(found) >= expected:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{query!r} matched {len(found)} runs, expected {expected}")


async def test_search_attributes_track_chain_status_and_cost(
    runner: ChainRunner, sim: SimulatorControl, registry
) -> None:
    chain = f"obs_{uuid.uuid4().hex[:8]}"
    result = await runner.run(two_steps(registry, chain), {"x": 1})

    found = await visible(
        runner.client, f"ChorusChain = '{chain}' AND ChorusStatus = 'completed'", 1
    )
    attributes = found[0].typed_search_attributes
    cost = next(p.value for p in attributes if p.key.name == "ChorusCostUsd")
    assert cost == result.usage.cost_usd > 0

    await sim.add_faults(Fault(kind="status", status=400, model="sim-large", times=3))
    await runner.run_failing(two_steps(registry, chain), {"x": 2})
    failed = await visible(runner.client, f"ChorusChain = '{chain}' AND ChorusStatus = 'failed'", 1)
    assert len(failed) == 1


async def test_every_model_call_carries_a_summary_naming_step_and_model(
    runner: ChainRunner, sim, registry
) -> None:
    handle = await runner.start(two_steps(registry, "summaries"), {"x": 1})
    await handle.result()

    summaries = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            payload = event.user_metadata.summary
            summaries.append(pydantic_data_converter.payload_converter.from_payload(payload, str))
    assert summaries == ["first · cheap (sim-mini)", "second · strong (sim-large)"]


async def test_state_query_shows_the_live_step(runner: ChainRunner, sim, registry) -> None:
    await sim.add_faults(Fault(kind="slow", match="Second", delay_s=1.5, times=1))
    handle = await runner.start(two_steps(registry, "live"), {"x": 1})
    await sim.wait_for_calls(2, request_id_prefix=handle.id, include_pending=True)

    state = await handle.query("state", result_type=RunState)

    assert state.status == "running"
    assert state.current_steps == ["second"] and state.finished_steps == ["first"]
    assert state.usage.per_model["cheap"].calls == 1 and "strong" not in state.usage.per_model
    assert state.budget.steps_executed == 2
    assert (await handle.result()).status == "completed"


async def test_api_keys_never_enter_history(
    temporal_env: Any, simulator: Any, sim, task_queue: str, monkeypatch, store_engine: Any
) -> None:
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("CHORUS_TEST_OPENAI_KEY", secret)
    monkeypatch.setenv("CHORUS_TEST_ANTHROPIC_KEY", secret)
    registry = ModelRegistry.from_dict(
        {
            "models": {
                "oa": {
                    "provider": "openai",
                    "model": "sim-mini",
                    "base_url": simulator.openai_base_url,
                    "api_key_env": "CHORUS_TEST_OPENAI_KEY",
                    "prices": {"input_per_mtok": 1, "output_per_mtok": 2},
                },
                "strong": {
                    "provider": "anthropic",
                    "model": "sim-large",
                    "base_url": f"{simulator.url}/v1",  # registry URLs end in /v1
                    "api_key_env": "CHORUS_TEST_ANTHROPIC_KEY",
                    "prices": {"input_per_mtok": 3, "output_per_mtok": 15},
                },
            }
        },
        simulator_base_url=simulator.openai_base_url,
    )
    spec = two_steps(registry, "secrets", alias="oa")
    host = activity_host(registry, store_engine)
    async with hosted_worker(temporal_env.client, host, task_queue=task_queue):
        handle = (
            await RunClient(temporal_env.client, task_queue=task_queue).start(
                spec, {"x": "y"}, run_id=f"secrets-{uuid.uuid4()}"
            )
        ).handle
        result = await handle.result()
        history = (await handle.fetch_history()).to_json()

    assert result.steps["first"].model == "oa" and result.steps["second"].model == "strong"
    assert [c.endpoint for c in await sim.calls(handle.id)] == ["chat", "messages"]
    assert "CHORUS_TEST_OPENAI_KEY" not in history  # not even the variable's name
    assert secret not in history


@pytest.mark.slow
async def test_cost_search_attribute_is_refreshed_while_the_run_goes_on(
    runner: ChainRunner, sim, registry
) -> None:
    spec = load_spec(
        {
            "name": f"cost_live_{uuid.uuid4().hex[:8]}",
            "defaults": FAST_RETRY,
            "steps": [
                {"name": n, "kind": "model", "model": "strong", "prompt": f"{n} please"}
                for n in ("one", "two", "three")
            ],
        },
        registry,
    )
    await sim.add_faults(
        Fault(kind="slow", match="two please", delay_s=2.5, times=1),
        Fault(kind="slow", match="three please", delay_s=3, times=1),
    )
    handle = await runner.start(spec, {})
    # While `three` is in flight, ops already see what `one` and `two` cost.
    await sim.wait_for_calls(3, request_id_prefix=handle.id, include_pending=True)
    state = await handle.query("state", result_type=RunState)
    spent = state.usage.per_step["one"].cost_usd + state.usage.per_step["two"].cost_usd

    found = await visible(runner.client, f"ChorusChain = '{spec.name}' AND ChorusCostUsd > 0", 1)

    cost = next(p.value for p in found[0].typed_search_attributes if p.key.name == "ChorusCostUsd")
    assert cost == pytest.approx(spent)
    assert state.current_steps == ["three"]
    assert (await handle.result()).usage.cost_usd > cost

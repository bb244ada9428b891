"""Rate limits across workers, end to end: two `python -m worker` processes
share one alias's `rpm` (or `tpm`) from models.yaml through the application
database (PostgreSQL) or Redis, 30 runs go through them, and the simulator,
enforcing the same limit as a provider would, never has to refuse one: zero
429s, and no window of its call log over the limit. While runs wait their
turn, the run's state says so.

Short windows (2 s) keep each test to about 15 s; the limits are "per
window" exactly as a per-minute quota is per 60 s window."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.gateway.rate_limits import window_margin_s
from core.chain_spec import ChainSpec
from runs.client import RunClient
from runs.views import RunDetail
from simulator.control import SimulatorControl
from simulator.models import CallRecord, ProviderLimit
from tests.integration.conftest import MODELS_FILE, load_spec
from tests.integration.worker_process import WorkerProcess
from tests.pg import postgres_schema

pytestmark = pytest.mark.timeout(240)

RUNS = 30
WINDOW_S = 2.0
RPM = 5
TPM = 240
MAX_TOKENS = 40
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["postgresql", "redis"])
def shared_state(request: pytest.FixtureRequest, postgres_admin: Any) -> Iterator[dict[str, str]]:
    """Where the two workers keep their limiter state (and their database)."""
    with postgres_schema(postgres_admin, "chorus_rl_e2e_") as url:
        env = {"CHORUS_DATABASE_URL": url}
        if request.param == "redis":
            env |= {
                "CHORUS_RATE_LIMITER": "redis",
                "CHORUS_REDIS_URL": REDIS_URL,
                "CHORUS_REDIS_KEY_PREFIX": f"test-e2e:{uuid.uuid4().hex}",
            }
        yield env


async def two_workers(
    temporal_env: Any,
    simulator: Any,
    task_queue: str,
    tmp_path: Path,
    shared_state: dict[str, str],
    limits: dict[str, Any],
) -> AsyncIterator[Path]:
    registry = yaml.safe_load(MODELS_FILE.read_text())
    registry["models"]["cheap"] |= {**limits, "rate_window_s": WINDOW_S}
    models = tmp_path / "models.yaml"
    models.write_text(yaml.safe_dump(registry))
    env = {
        **os.environ,
        "CHORUS_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "CHORUS_TASK_QUEUE": task_queue,
        "CHORUS_SIMULATOR_HOST": "127.0.0.1",
        "CHORUS_SIMULATOR_PORT": str(simulator.port),
        "CHORUS_MODELS_FILE": str(models),
        "CHORUS_LOG_FORMAT": "json",
        "CHORUS_LOG_LEVEL": "warning",
        **shared_state,
    }
    log = tmp_path / "workers.log"
    workers = [await WorkerProcess(env, log).start() for _ in range(2)]
    try:
        yield log
    finally:
        for worker in workers:
            await worker.stop()


def spec(registry: Any) -> ChainSpec:
    return load_spec(
        {
            "name": "limited",
            "steps": [
                {
                    "name": "answer",
                    "kind": "model",
                    "model": "cheap",
                    "prompt": "Answer briefly: {{ input.q }}",
                    "max_tokens": MAX_TOKENS,
                }
            ],
        },
        registry,
    )


async def run_all(
    temporal_env: Any, task_queue: str, registry: Any, log: Path
) -> tuple[list[Any], list[RunDetail]]:
    """Start RUNS runs at once; return their results and every limiter wait
    seen in their state while they ran."""
    client = RunClient(temporal_env.client, task_queue=task_queue)
    chain = spec(registry)
    started = await asyncio.gather(
        *(
            client.start(chain, {"q": f"question {i}"}, run_id=f"rl-{uuid.uuid4()}")
            for i in range(RUNS)
        )
    )
    seen: list[RunDetail] = []

    async def watch() -> None:
        while True:
            for run in started[-5:]:
                detail = await client.read(run.run_id)
                if detail is not None and detail.waits:
                    seen.append(detail)
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(run.handle.result() for run in started)), 150
        )
    except TimeoutError:
        raise AssertionError(log.read_text()[-4000:]) from None
    finally:
        watcher.cancel()
    return results, seen


def windows(calls: list[CallRecord], weight: Any) -> list[float]:
    """The total weight of calls started in each window [start, start + W)
    beginning at a call's start (every window's worst case is one of these)."""
    starts = sorted((c.started_at, weight(c)) for c in calls)
    return [sum(w for t, w in starts if s <= t < s + WINDOW_S) for s, _ in starts]


def assert_waits_shown(seen: list[RunDetail]) -> None:
    waits = [w for detail in seen for w in detail.waits]
    assert waits, "no run ever showed a limiter wait in its state"
    assert all(w.kind == "rate_limit" and w.alias == "cheap" for w in waits)
    waiting = [d.waiting for d in seen if d.waiting]
    assert any(w.startswith("waiting for provider (cheap) until") for w in waiting)


# Each limiter backend once here (two worker processes cost ~20 s a test);
# tests/activities/test_rate_limits.py runs every rule on all three backends.
@pytest.mark.parametrize("shared_state", ["redis"], indirect=True)
async def test_an_rpm_limit_holds_across_two_worker_processes(
    temporal_env: Any, simulator: Any, sim: SimulatorControl, registry: Any,
    task_queue: str, tmp_path: Path, shared_state: dict[str, str],
) -> None:  # fmt: skip
    await sim.set_limits(ProviderLimit(model="sim-mini", rpm=RPM, window_s=WINDOW_S))
    async for log in two_workers(
        temporal_env, simulator, task_queue, tmp_path, shared_state, {"rpm": RPM}
    ):
        results, seen = await run_all(temporal_env, task_queue, registry, log)

    assert [r.status for r in results] == ["completed"] * RUNS
    calls = await sim.calls(model="sim-mini")
    assert [c for c in calls if c.status == 429] == []  # the provider never had to refuse
    assert len(calls) == RUNS
    busiest = max(windows(calls, lambda _: 1))
    assert busiest <= RPM
    # Not much slower than it must be: 30 calls at 5 per window is 6 windows
    # (each widened by the limiter's margin, 1 s here).
    span = max(c.started_at for c in calls) - min(c.started_at for c in calls)
    assert span < (RUNS / RPM) * (WINDOW_S + window_margin_s(WINDOW_S)) * 2, span
    assert_waits_shown(seen)
    print(f"rpm {RPM}/{WINDOW_S:g}s: {RUNS} runs, busiest window {busiest}, span {span:.1f} s")


@pytest.mark.parametrize("shared_state", ["postgresql"], indirect=True)
async def test_a_tpm_limit_holds_across_two_worker_processes(
    temporal_env: Any, simulator: Any, sim: SimulatorControl, registry: Any,
    task_queue: str, tmp_path: Path, shared_state: dict[str, str],
) -> None:  # fmt: skip
    await sim.set_limits(ProviderLimit(model="sim-mini", tpm=TPM, window_s=WINDOW_S))
    async for log in two_workers(
        temporal_env, simulator, task_queue, tmp_path, shared_state, {"tpm": TPM}
    ):
        results, seen = await run_all(temporal_env, task_queue, registry, log)

    assert [r.status for r in results] == ["completed"] * RUNS
    calls = await sim.calls(model="sim-mini")
    assert [c for c in calls if c.status == 429] == []
    assert len(calls) == RUNS

    def used(call: CallRecord) -> int:
        usage = call.usage or {}
        return usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)

    busiest = max(windows(calls, used))
    assert busiest <= TPM
    assert_waits_shown(seen)
    print(f"tpm {TPM}/{WINDOW_S:g}s: {RUNS} runs, busiest window {busiest} tokens")

"""A worker killed with SIGKILL mid-call and between steps loses no run and
pays for no completed model call twice."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.api.enums.v1 import EventType

from runs.client import RunClient
from simulator.control import SimulatorControl
from simulator.models import Fault
from tests.integration.conftest import FAST_RETRY, MODELS_FILE, load_spec
from tests.integration.worker_process import WorkerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]


@pytest.fixture
def worker_env(
    temporal_env: Any, simulator: Any, task_queue: str, tmp_path: Path
) -> dict[str, str]:
    registry = yaml.safe_load(MODELS_FILE.read_text())
    for entry in registry["models"].values():
        entry["heartbeat_timeout_s"] = 2  # notice the dead worker within 2 s
    models = tmp_path / "models.yaml"
    models.write_text(yaml.safe_dump(registry))
    return {
        **os.environ,
        "CHORUS_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "CHORUS_TASK_QUEUE": task_queue,
        "CHORUS_SIMULATOR_HOST": "127.0.0.1",
        "CHORUS_SIMULATOR_PORT": str(simulator.port),
        "CHORUS_MODELS_FILE": str(models),
        "CHORUS_LOG_FORMAT": "json",
        "CHORUS_DATABASE_URL": f"sqlite:///{tmp_path / 'chorus.db'}",
    }


async def models_completed(handle: Any) -> int:
    """Model calls Temporal has recorded as completed for this run."""
    count = 0
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            count += 1
    return count


async def test_sigkilled_workers_lose_nothing_and_pay_nothing_twice(
    temporal_env: Any, sim: SimulatorControl, registry: Any, worker_env: dict[str, str],
    task_queue: str, tmp_path: Path,
) -> None:  # fmt: skip
    spec = load_spec(
        {
            "name": "crash",
            "defaults": FAST_RETRY,
            "steps": [
                {"name": name, "kind": "model", "model": "cheap", "prompt": prompt}
                for name, prompt in (
                    ("s1", "Step one {{ input.x }}"),
                    ("s2", "Step two {{ steps.s1.output[:30] }}"),
                    ("s3", "Step three {{ steps.s2.output[:30] }}"),
                )
            ],
        },
        registry,
    )
    # The first attempts of s2 and s3 hang in the provider, so each kill lands
    # while a call is outstanding (the provider has not answered) or after
    # Temporal recorded the step, never in the instant between a provider's
    # answer and the worker recording it: that window is what the gateway's
    # reply journal narrows (tests/activities/test_reply_journal.py), and no
    # client can close it without the provider's help.
    await sim.add_faults(
        Fault(kind="slow", match="Step two", delay_s=60, times=1),
        Fault(kind="slow", match="Step three", delay_s=60, times=1),
    )
    workflow_id = f"crash-{uuid.uuid4()}"
    log = tmp_path / "workers.log"
    first = await WorkerProcess(worker_env, log).start()
    workers = [first]
    try:
        handle = (
            await RunClient(temporal_env.client, task_queue=task_queue).start(
                spec, {"x": "crash me"}, run_id=workflow_id
            )
        ).handle
        in_flight = await sim.wait_for_calls(
            2, request_id_prefix=workflow_id, include_pending=True, timeout_s=90
        )
        assert in_flight[1].outcome == "pending" and "Step two" in in_flight[1].prompt
        await first.kill()

        second = await WorkerProcess(worker_env, log).start()
        workers.append(second)
        # Kill the replacement too once Temporal has recorded s2 and moved on:
        # the run is between s2 and s3 (s3's first call is outstanding).
        deadline = asyncio.get_running_loop().time() + 90
        while not (
            await models_completed(handle) >= 2
            and any(
                "Step three" in c.prompt for c in await sim.calls(workflow_id, include_pending=True)
            )
        ):
            assert asyncio.get_running_loop().time() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.05)
        await second.kill()

        third = await WorkerProcess(worker_env, log).start()
        workers.append(third)
        result = await asyncio.wait_for(handle.result(), 120)
    finally:
        for process in workers:
            await process.stop()

    assert result.status == "completed"
    assert [result.steps[n].status for n in ("s1", "s2", "s3")] == ["completed"] * 3
    calls = await sim.calls(workflow_id, include_pending=True)
    completed = Counter(c.request_id for c in calls if c.outcome == "completed")
    assert len(completed) == 3, calls
    assert set(completed.values()) == {1}, f"a completed call was made twice: {completed}"
    # The calls cut off by the kills were never billed: the simulator saw the
    # client go away before it answered.
    assert next(c.outcome for c in calls if "Step two" in c.prompt) == "aborted"
    assert next(c.outcome for c in calls if "Step three" in c.prompt) == "aborted"
    assert result.usage.per_model["cheap"].calls == 3

"""A run waiting for approval survives its worker being SIGKILLed and the
Temporal dev server restarting: the approval still completes it."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from cli.devstack.stack import DevStack
from runs.catalog import load_chain
from runs.client import RunClient
from simulator.control import SimulatorControl
from simulator.models import Rule
from tests.cli.test_devstack import gone, stack_settings
from tests.integration.test_approvals import DRAFT, decide, wait_pending
from workflows.types import ChainResult

pytestmark = pytest.mark.slow


async def test_approval_survives_worker_kill_and_server_restart(
    simulator: Any, sim: SimulatorControl, tmp_path: Path
) -> None:
    await sim.add_rules(Rule(model="sim-writer", reply=DRAFT))
    settings = stack_settings(tmp_path / "state", simulator_port=simulator.port)
    first = DevStack(settings, simulator=False, api=False)
    await first.start()
    try:
        client = await first.client()
        handle = (
            await RunClient(client, task_queue=settings.task_queue).start(
                load_chain("review_reply", settings), {"message": "Hi"}, run_id="durable-approval"
            )
        ).handle
        [approval] = await wait_pending(handle)
        worker_pid = first.pids["worker"]
        os.kill(worker_pid, signal.SIGKILL)
    finally:
        await first.stop()  # the dev server goes down too, with the run parked
    assert gone(worker_pid) and not await first.temporal_reachable()

    second = DevStack(settings, simulator=False, api=False)
    await second.start()
    try:
        assert set(second.started) == {"temporal", "worker"}
        client = await second.client()
        handle = client.get_workflow_handle("durable-approval", result_type=ChainResult)
        [still] = await wait_pending(handle)
        assert still.payload_hash == approval.payload_hash

        outcome = await decide(handle, still)
        result = await handle.result()
    finally:
        await second.stop()

    assert outcome.status == "approved"
    assert result.status == "completed" and result.output == DRAFT
    # The draft was written once, before the crash; nothing was paid for twice.
    assert [c.outcome for c in await sim.calls("durable-approval")] == ["completed"]

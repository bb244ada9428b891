"""An evaluation whose worker process is SIGKILLed mid-way completes on a new
worker with every case scored exactly once, and no model call of any case
made twice (the simulator's call log: one completed reply per call key)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.evals.spec import EvalSet
from runs.evals import EvalClient, new_eval_id
from simulator.control import SimulatorControl
from simulator.models import Fault, Rule
from store.engine import make_engine
from store.evals import case_scores
from tests.evals.conftest import variant
from tests.integration.worker_process import WorkerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
CASES = 8
HUNG = ("c3", "c4")
"""Cases whose first model calls hang in the provider: the kill lands while
all four slots wait on them, never between a reply and its recording."""


@pytest.fixture
def worker_env(
    temporal_env: Any, simulator: Any, task_queue: str, tmp_path: Path
) -> dict[str, str]:
    registry = yaml.safe_load((ROOT / "chains" / "models.yaml").read_text())
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


def crash_set(marker: str) -> EvalSet:
    return EvalSet(
        name="crash_set",
        cases=[
            {
                "id": f"c{i}",
                "input": {"message": f"{marker} case c{i}: how long is shipping?"},
                "labels": {"category": "shipping"},
                "checks": [{"kind": "contains", "text": "5 business days"}],
            }
            for i in range(1, CASES + 1)
        ],
    )


async def wait_until(condition: Any, what: str, log: Path, timeout_s: float = 90) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"waited {timeout_s}s for {what}; worker log: "
                f"{log.read_text()[-3000:] if log.exists() else ''}"
            )
        await asyncio.sleep(0.05)


async def test_sigkilled_worker_mid_evaluation_loses_no_case_and_runs_none_twice(
    temporal_env: Any,
    sim: SimulatorControl,
    registry: Any,
    worker_env: dict[str, str],
    task_queue: str,
    tmp_path: Path,
) -> None:
    marker = f"K{new_eval_id()[5:]}"
    await sim.add_rules(Rule(match=marker, reply="Shipping takes 5 business days."))
    await sim.add_faults(
        *(Fault(kind="slow", match=f"{marker} case {c}:", delay_s=60, times=2) for c in HUNG)
    )
    evals = EvalClient(temporal_env.client, task_queue=task_queue)
    inp = evals.prepare(
        crash_set(marker),
        [variant("qa_quick", registry), variant("qa_careful", registry)],
        concurrency=4,
    )
    engine = make_engine(worker_env["CHORUS_DATABASE_URL"])
    log = tmp_path / "workers.log"
    first = await WorkerProcess(worker_env, log).start()
    workers = [first]
    try:
        await evals.start(inp)

        async def hung_with_four_scored() -> bool:
            pending = await sim.calls(inp.eval_id, include_pending=True)
            hanging = [c for c in pending if c.outcome == "pending"]
            return len(hanging) == 4 and len(case_scores(engine, inp.eval_id)) == 4

        await wait_until(hung_with_four_scored, "four scored cases and four hung calls", log)
        await first.kill()
        second = await WorkerProcess(worker_env, log).start()
        workers.append(second)
        report = await asyncio.wait_for(evals.result(inp.eval_id), 180)
    finally:
        for process in workers:
            await process.stop()

    rows = case_scores(engine, inp.eval_id)
    engine.dispose()
    scored = Counter((r.variant, r.case_id) for r in rows)
    expected = {(v, f"c{i}"): 1 for v in ("qa_quick", "qa_careful") for i in range(1, CASES + 1)}
    assert scored == expected, f"cases scored other than once: {scored - Counter(expected)}"
    assert all(r.passed for r in rows)
    assert (report.cases_scored, report.cases_total, report.stopped_reason) == (16, 16, None)
    calls = await sim.calls(inp.eval_id, include_pending=True)
    completed = Counter(c.request_id for c in calls if c.outcome == "completed")
    assert len(completed) == 16, "one model call per case and variant"
    assert set(completed.values()) == {1}, f"a completed call was made twice: {completed}"
    # The four calls the kill cut off were never answered, so never billed.
    assert sum(1 for c in calls if c.outcome == "aborted") == 4

"""Record an EvalWorkflow history for tests/evals/test_replay.py.

    .venv/bin/python -m tests.evals.record_history --tag TAG

The tiny eval set through both test variants, with a judge, on a continue-as-
new threshold of 2 cases so that the carried state is in the recording too;
every run of the evaluation is saved (`eval__tiny__TAG__runN.json`). Run it
when a change to workflows/evals/ is meant to alter the commands an
evaluation issues, after guarding the change with `workflow.patched`; keep
the old files (they stand for evaluations in flight during a deploy).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.gateway.registry import ModelRegistry
from cli.devstack.temporal_server import (
    dynamic_config_args,
    find_temporal_binary,
    search_attribute_args,
)
from core.settings import DEFAULT_DEV_DYNAMIC_CONFIG
from runs.evals import EvalClient
from simulator.control import SimulatorControl
from simulator.models import Rule
from simulator.server import SimulatorServer
from store.engine import make_engine
from store.schema import upgrade
from tests.conftest import activity_host
from tests.evals.conftest import scripted_replies, tiny_set, variant
from worker.assembly import hosted_worker

HERE = Path(__file__).resolve().parent / "histories"
ROOT = HERE.parents[2]


async def record(tag: str) -> list[Path]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_temporal_binary(),
        data_converter=pydantic_data_converter,
        dev_server_extra_args=[
            *search_attribute_args(),
            *dynamic_config_args(DEFAULT_DEV_DYNAMIC_CONFIG),
        ],
    )
    try:
        with SimulatorServer() as simulator, tempfile.TemporaryDirectory() as tmp:
            registry = ModelRegistry.from_file(
                ROOT / "chains" / "models.yaml", simulator_base_url=simulator.openai_base_url
            )
            engine = make_engine(f"sqlite:///{tmp}/chorus.db")
            upgrade(engine)
            marker = "Trecorded01"
            async with SimulatorControl(simulator.url) as sim:
                await sim.add_rules(
                    *scripted_replies(marker),
                    Rule(match="You grade a customer-support answer", json={"score": 1}),
                )
            queue = f"record-{uuid.uuid4()}"
            async with hosted_worker(env.client, activity_host(registry, engine), task_queue=queue):
                evals = EvalClient(env.client, task_queue=queue)
                inp = evals.prepare(
                    tiny_set(marker),
                    [variant("qa_quick", registry), variant("qa_careful", registry)],
                    eval_id="eval-recorded",
                    concurrency=2,
                    judge_alias="judge",
                    cases_per_run=2,
                )
                await evals.start(inp)
                await evals.result(inp.eval_id)
            engine.dispose()
        return await _save(env, "eval-recorded", tag)
    finally:
        await env.shutdown()


async def _save(env: WorkflowEnvironment, eval_id: str, tag: str) -> list[Path]:
    HERE.mkdir(exist_ok=True)
    runs = [
        execution.run_id
        async for execution in env.client.list_workflows(f"WorkflowId = '{eval_id}'")
    ]
    saved = []
    for number, run_id in enumerate(reversed(runs), start=1):
        history = await env.client.get_workflow_handle(eval_id, run_id=run_id).fetch_history()
        path = HERE / f"eval__tiny__{tag}__run{number}.json"
        path.write_text(history.to_json())
        saved.append(path)
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True)
    for path in asyncio.run(record(parser.parse_args().tag)):
        print(path)


if __name__ == "__main__":
    main()

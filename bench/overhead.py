"""Per-step overhead of Chorus over raw Temporal and over direct HTTP calls.

Runs, on one Temporal dev server and in one process, side by side:
  1. a minimal hand-written Temporal workflow calling the simulator N times,
  2. the same N calls as a Chorus chain of N model steps,
  3. the same N calls made directly with httpx, without Temporal.
The simulator answers with zero latency so the figures are pure overhead.
Prints per-step medians and ratios; the last line is one JSON object.

    .venv/bin/python bench/overhead.py --steps 20 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as `python bench/overhead.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from temporalio.worker import Worker

from activities.gateway.registry import ModelRegistry
from activities.tools.defaults import builtin_registry
from bench.harness import (
    ROOT,
    SIM_MODEL,
    model_chain_spec,
    start_dev_server,
    zero_latency_simulator_config,
)
from bench.raw_activities import RawActivities
from bench.raw_workflow import RawInput, RawWorkflow
from core.logging import configure_logging
from core.settings import DEFAULT_DEV_DYNAMIC_CONFIG, Settings
from runs.client import RunClient
from simulator.server import SimulatorServer
from store.engine import make_engine
from store.schema import create_all
from worker.assembly import ActivityHost, create_worker
from worker.plugin import workflow_runner

SANDBOXED = Settings().workflow_sandbox
"""Both sides run workflow code in the sandbox unless CHORUS_WORKFLOW_SANDBOX=false."""


async def direct_per_step(base_url: str, steps: int) -> float:
    async with httpx.AsyncClient(timeout=30) as http:
        text = ""
        started = time.perf_counter()
        for i in range(steps):
            response = await http.post(
                f"{base_url}/chat/completions",
                json={
                    "model": SIM_MODEL,
                    "messages": [{"role": "user", "content": f"Step {i}: {text[:40]}"}],
                    "max_tokens": 64,
                },
            )
            response.raise_for_status()
            text = response.json()["choices"][0]["message"]["content"]
        return (time.perf_counter() - started) * 1000 / steps


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    # Per-call info logs would be part of what is measured and drown the figures.
    configure_logging(Settings(log_level="warning"), force=True)

    with SimulatorServer(config=zero_latency_simulator_config()) as sim:
        env = await start_dev_server()
        registry = ModelRegistry.from_file(
            ROOT / "chains" / "models.yaml", simulator_base_url=sim.openai_base_url
        )
        # The run index and audit log go to a throwaway SQLite file.
        store_dir = Path(tempfile.mkdtemp(prefix="chorus-"))
        engine = make_engine(f"sqlite:///{store_dir / 'chorus.db'}")
        create_all(engine)
        # The production assembly: model calls (with the reply journal), run
        # index and audit writes, tools and retrieval.
        host = ActivityHost(registry=registry, engine=engine, tools=builtin_registry())
        raw = RawActivities()
        queue_chorus, queue_raw = f"bench-chorus-{uuid.uuid4()}", f"bench-raw-{uuid.uuid4()}"
        chorus_worker = create_worker(
            env.client,
            task_queue=queue_chorus,
            activities=host.activities,
            sandboxed=SANDBOXED,
        )
        raw_worker = Worker(
            env.client,
            task_queue=queue_raw,
            workflows=[RawWorkflow],
            activities=[raw.raw_call],
            workflow_runner=workflow_runner(SANDBOXED),
        )
        spec = model_chain_spec(args.steps)
        raw_ms: list[float] = []
        chorus_ms: list[float] = []
        direct_ms: list[float] = []
        try:
            async with chorus_worker, raw_worker:
                for repeat in range(args.repeat + 1):  # the first round warms up
                    started = time.perf_counter()
                    await env.client.execute_workflow(
                        RawWorkflow.run,
                        RawInput(base_url=sim.openai_base_url, model=SIM_MODEL, steps=args.steps),
                        id=f"bench-raw-{uuid.uuid4()}",
                        task_queue=queue_raw,
                    )
                    raw_step = (time.perf_counter() - started) * 1000 / args.steps

                    started = time.perf_counter()
                    result = await (
                        await RunClient(env.client, task_queue=queue_chorus).start(
                            spec, {}, run_id=f"bench-chorus-{uuid.uuid4()}"
                        )
                    ).handle.result()
                    chorus_step = (time.perf_counter() - started) * 1000 / args.steps
                    assert result.status == "completed" and len(result.steps) == args.steps

                    direct_step = await direct_per_step(sim.openai_base_url, args.steps)
                    if repeat == 0:
                        continue
                    raw_ms.append(raw_step)
                    chorus_ms.append(chorus_step)
                    direct_ms.append(direct_step)
                    print(
                        f"round {repeat}: raw {raw_step:.1f} ms/step, "
                        f"chorus {chorus_step:.1f} ms/step, direct {direct_step:.2f} ms/step"
                    )
        finally:
            await host.aclose()
            await raw.aclose()
            await env.shutdown()

    figures = {
        "steps": args.steps,
        "repeat": args.repeat,
        "temporal_dynamic_config": DEFAULT_DEV_DYNAMIC_CONFIG,
        "workflow_sandbox": SANDBOXED,
        "raw_temporal_ms": round(statistics.median(raw_ms), 2),
        "chorus_ms": round(statistics.median(chorus_ms), 2),
        "direct_ms": round(statistics.median(direct_ms), 3),
    }
    figures["chorus_over_raw"] = round(figures["chorus_ms"] / figures["raw_temporal_ms"], 3)
    figures["chorus_over_direct"] = round(figures["chorus_ms"] / figures["direct_ms"], 1)
    print(
        f"per step (median of {args.repeat}): raw Temporal {figures['raw_temporal_ms']} ms, "
        f"Chorus {figures['chorus_ms']} ms, direct httpx {figures['direct_ms']} ms; "
        f"Chorus/raw {figures['chorus_over_raw']}, Chorus/direct {figures['chorus_over_direct']} "
        f"(dev server dynamic config: {DEFAULT_DEV_DYNAMIC_CONFIG})"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())

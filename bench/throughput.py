"""Chain steps per second at concurrency, Chorus beside raw Temporal.

On one Temporal dev server that it starts itself, with the simulator
answering at zero latency, the benchmark runs K chains of S model steps at
once on Chorus workers (`python -m worker`), and K hand-written workflows of
S activities making the same HTTP call (bench/raw_workflow.py, hosted by
bench/waiting_worker.py) at once on raw workers, `--workers` processes of
each kind on one task queue per kind. Both kinds of worker are up for the
whole run; the sides take turns (the order alternates by round) so each
round is measured alone on the machine. A warm-up round comes first; then
`--rounds` rounds, and the figures are their medians.

Per side and round: steps per second (K * S over the time from the first
start to the last result), the worker processes' CPU per step, and the step
latency: from the run's start (first step) or the previous step's
completion to the step's completion, read from each run's history (so it
includes the workflow task that schedules the step), pooled over the
measured rounds for p50/p99.

Prints human lines; the last line is one JSON object with, among others,
`chorus_steps_per_s`, `raw_steps_per_s`, `ratio` (Chorus / raw, the median of
the rounds' ratios) and `workers`.

    .venv/bin/python bench/throughput.py --workers 1      # make bench-throughput
    .venv/bin/python bench/throughput.py --workers 2 --chains 50 --steps 5 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/throughput.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from bench.harness import (
    SIM_MODEL,
    BenchError,
    WorkerProcess,
    bounded,
    chorus_worker,
    model_chain_spec,
    percentile,
    ratio,
    raw_worker,
    run_bench,
    start_dev_server,
    worker_env,
    zero_latency_simulator_config,
)
from bench.raw_signal_workflow import RAW_CALL_ACTIVITY
from bench.raw_workflow import RawInput
from core.names import CALL_MODEL
from core.settings import DEFAULT_DEV_DYNAMIC_CONFIG, Settings
from runs.client import RunClient
from simulator.server import SimulatorServer
from workflows.types import ChainResult

RAW_WORKFLOW = "BenchRawWorkflow"
DEFAULT_MAX_CACHED: int = Settings.model_fields["max_cached_workflows"].default
WARMUP_CHAINS = 10


@dataclass
class RoundFigures:
    """One side's figures in one round."""

    steps: int
    wall_s: float
    cpu_s: float
    step_ms: list[float]

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.wall_s

    @property
    def cpu_ms_per_step(self) -> float:
        return self.cpu_s * 1000 / self.steps


def cpu_s(workers: Sequence[WorkerProcess]) -> float:
    return sum(worker.cpu_s() for worker in workers)


async def step_latencies(handle: WorkflowHandle[Any, Any], activity_type: str) -> list[float]:
    """Milliseconds from the run's start, or the previous step's completion,
    to each step's completion (the step's activity `activity_type`)."""
    latencies: list[float] = []
    scheduled: dict[int, str] = {}
    previous: float | None = None
    async for event in handle.fetch_history_events():
        at = event.event_time.ToDatetime().timestamp()
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            previous = at
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attrs.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            if scheduled.get(attrs.scheduled_event_id) == activity_type and previous is not None:
                latencies.append((at - previous) * 1000)
                previous = at
    return latencies


async def run_side(
    client: Client,
    workers: Sequence[WorkerProcess],
    starts: Sequence[Any],
    steps: int,
    concurrency: int,
    activity_type: str,
    check: Any,
) -> RoundFigures:
    """Start every run (`starts`: coroutine factories returning handles), wait
    for all results, then read the step latencies from their histories."""
    cpu_before = cpu_s(workers)
    started = time.perf_counter()

    # At most `concurrency` starts in flight; every started run is waited
    # for at once, and the clock stops at the last result.
    gate = asyncio.Semaphore(concurrency)
    handles: list[WorkflowHandle[Any, Any]] = []

    async def start_and_finish(start: Any) -> None:
        async with gate:
            handle = await start()
        handles.append(handle)
        check(handle.id, await handle.result())

    async with asyncio.TaskGroup() as group:
        for start in starts:
            group.create_task(start_and_finish(start))
    wall_s = time.perf_counter() - started
    cpu_used = cpu_s(workers) - cpu_before
    for worker in workers:
        worker.check_alive()
    step_ms: list[float] = []
    for latencies in await bounded(
        handles, 20, lambda handle: step_latencies(handle, activity_type)
    ):
        if len(latencies) != steps:
            raise BenchError(f"a run's history shows {len(latencies)} steps, not {steps}")
        step_ms.extend(latencies)
    return RoundFigures(steps * len(handles), wall_s, cpu_used, step_ms)


def check_chorus(run_id: str, result: ChainResult) -> None:
    if result.status != "completed":
        raise BenchError(f"{run_id}: ended {result.status}: {result.error}")


def check_raw(run_id: str, result: str) -> None:
    if not result:
        raise BenchError(f"{run_id}: empty result")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=50, help="runs at once per side (K)")
    parser.add_argument("--steps", type=int, default=5, help="model steps per run (S)")
    parser.add_argument(
        "--workers", type=int, choices=(1, 2), default=1, help="worker processes per side"
    )
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (median)")
    parser.add_argument(
        "--concurrency", type=int, default=50, help="workflow starts in flight at once"
    )
    parser.add_argument(
        "--max-cached",
        type=int,
        default=DEFAULT_MAX_CACHED,
        help="workflow cache of every worker (CHORUS_MAX_CACHED_WORKFLOWS for Chorus)",
    )
    parser.add_argument(
        "--no-bytecode-cache",
        dest="bytecode_cache",
        action="store_false",
        help="keep this environment's PYTHONDONTWRITEBYTECODE for the workers",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the workers' log files afterwards"
    )
    args = parser.parse_args(argv)
    if min(args.chains, args.steps, args.rounds, args.concurrency) < 1:
        parser.error("--chains, --steps, --rounds and --concurrency must be at least 1")
    return args


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    # SIGTERM stops the benchmark as Ctrl-C does: the task is cancelled and
    # the cleanup below stops the workers and the dev server.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    dynamic_config = dict(DEFAULT_DEV_DYNAMIC_CONFIG)
    tmp = Path(tempfile.mkdtemp(prefix="chorus-bench-throughput-"))
    env_vars = worker_env(tmp, bytecode_cache=args.bytecode_cache)
    spec = model_chain_spec(args.steps, name="bench_throughput")
    chorus_workers: list[WorkerProcess] = []
    raw_workers: list[WorkerProcess] = []
    env: WorkflowEnvironment | None = None
    sim = SimulatorServer(config=zero_latency_simulator_config())
    chorus_rounds: list[RoundFigures] = []
    raw_rounds: list[RoundFigures] = []
    load_1m: list[float] = []
    try:
        sim.start()
        env = await start_dev_server(quiet=True)
        client = env.client
        address = client.service_client.config.target_host
        print(
            f"{args.chains} runs x {args.steps} steps per side and round, {args.workers} "
            f"worker process(es) per side, {args.rounds} rounds after a warm-up; workflow "
            f"cache {args.max_cached}; bytecode cache {'on' if args.bytecode_cache else 'off'}; "
            f"dev server at {address} ({dynamic_config}); logs in {tmp}",
            flush=True,
        )
        queue_chorus = f"bench-tp-chorus-{uuid.uuid4().hex[:8]}"
        queue_raw = f"bench-tp-raw-{uuid.uuid4().hex[:8]}"
        for n in range(args.workers):
            worker = chorus_worker(
                address, queue_chorus, sim.port, args.max_cached, tmp, env_vars, f"chorus{n}"
            )
            chorus_workers.append(worker)
            await worker.start(client, queue_chorus)
            worker = raw_worker(address, queue_raw, args.max_cached, tmp, env_vars, f"raw{n}")
            raw_workers.append(worker)
            await worker.start(client, queue_raw)
        runs = RunClient(client, task_queue=queue_chorus)

        def chorus_starts(count: int) -> list[Any]:
            prefix = f"bench-tp-chorus-{uuid.uuid4().hex[:8]}"

            async def start(i: int) -> WorkflowHandle[Any, ChainResult]:
                return (await runs.start(spec, {}, run_id=f"{prefix}-{i}")).handle

            return [lambda i=i: start(i) for i in range(count)]

        def raw_starts(count: int) -> list[Any]:
            prefix = f"bench-tp-raw-{uuid.uuid4().hex[:8]}"
            inp = RawInput(base_url=sim.openai_base_url, model=SIM_MODEL, steps=args.steps)

            async def start(i: int) -> WorkflowHandle[Any, str]:
                return await client.start_workflow(
                    RAW_WORKFLOW,
                    inp,
                    id=f"{prefix}-{i}",
                    task_queue=queue_raw,
                    result_type=str,
                )

            return [lambda i=i: start(i) for i in range(count)]

        async def chorus_round(count: int) -> RoundFigures:
            return await run_side(
                client,
                chorus_workers,
                chorus_starts(count),
                args.steps,
                args.concurrency,
                CALL_MODEL,
                check_chorus,
            )

        async def raw_round(count: int) -> RoundFigures:
            return await run_side(
                client,
                raw_workers,
                raw_starts(count),
                args.steps,
                args.concurrency,
                RAW_CALL_ACTIVITY,
                check_raw,
            )

        # Warm-up: imports, the sandbox's module cache, connections.
        await raw_round(min(WARMUP_CHAINS, args.chains))
        await chorus_round(min(WARMUP_CHAINS, args.chains))
        for n in range(1, args.rounds + 1):
            load_1m.append(os.getloadavg()[0])
            if n % 2:
                raw, chorus = await raw_round(args.chains), await chorus_round(args.chains)
            else:
                chorus, raw = await chorus_round(args.chains), await raw_round(args.chains)
            raw_rounds.append(raw)
            chorus_rounds.append(chorus)
            print(
                f"round {n}: raw {raw.steps_per_s:.1f} steps/s ({raw.wall_s:.1f} s, worker CPU "
                f"{raw.cpu_ms_per_step:.1f} ms/step), chorus {chorus.steps_per_s:.1f} steps/s "
                f"({chorus.wall_s:.1f} s, worker CPU {chorus.cpu_ms_per_step:.1f} ms/step); "
                f"chorus/raw {chorus.steps_per_s / raw.steps_per_s:.3f} "
                f"(load {load_1m[-1]:.1f})",
                flush=True,
            )
    finally:
        for worker in [*reversed(chorus_workers), *reversed(raw_workers)]:
            await worker.stop()
        if env is not None:
            await env.shutdown()
        sim.stop()

    def median(values: Sequence[float]) -> float:
        return statistics.median(values)

    chorus_ms = [ms for figures in chorus_rounds for ms in figures.step_ms]
    raw_ms = [ms for figures in raw_rounds for ms in figures.step_ms]
    chorus_cpu = median([r.cpu_ms_per_step for r in chorus_rounds])
    raw_cpu = median([r.cpu_ms_per_step for r in raw_rounds])
    figures: dict[str, Any] = {
        "chains": args.chains,
        "steps": args.steps,
        "rounds": args.rounds,
        "max_cached_workflows": args.max_cached,
        "temporal_dynamic_config": dynamic_config,
        "bytecode_cache": args.bytecode_cache,
        "workflow_sandbox": Settings().workflow_sandbox,
        "cpus": os.cpu_count(),
        "load_1m": round(median(load_1m), 2),
        "chorus_steps_per_s": round(median([r.steps_per_s for r in chorus_rounds]), 1),
        "raw_steps_per_s": round(median([r.steps_per_s for r in raw_rounds]), 1),
        "ratio": round(
            median(
                [
                    c.steps_per_s / r.steps_per_s
                    for c, r in zip(chorus_rounds, raw_rounds, strict=True)
                ]
            ),
            3,
        ),
        "chorus_step_p50_ms": round(percentile(chorus_ms, 50), 1),
        "chorus_step_p99_ms": round(percentile(chorus_ms, 99), 1),
        "raw_step_p50_ms": round(percentile(raw_ms, 50), 1),
        "raw_step_p99_ms": round(percentile(raw_ms, 99), 1),
        "chorus_cpu_ms_per_step": round(chorus_cpu, 2),
        "raw_cpu_ms_per_step": round(raw_cpu, 2),
        "cpu_per_step_over_raw": ratio(chorus_cpu, raw_cpu),
        "workers": args.workers,
    }
    print(
        f"median of {args.rounds} rounds, {args.workers} worker(s) per side: Chorus "
        f"{figures['chorus_steps_per_s']} steps/s, raw Temporal {figures['raw_steps_per_s']} "
        f"activities/s, Chorus/raw {figures['ratio']}; step latency p50/p99 Chorus "
        f"{figures['chorus_step_p50_ms']}/{figures['chorus_step_p99_ms']} ms, raw "
        f"{figures['raw_step_p50_ms']}/{figures['raw_step_p99_ms']} ms; worker CPU per step "
        f"Chorus {figures['chorus_cpu_ms_per_step']} ms, raw {figures['raw_cpu_ms_per_step']} ms "
        f"({figures['cpu_per_step_over_raw']}x)"
    )
    if args.keep_logs:
        print(f"worker logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


if __name__ == "__main__":
    run_bench(main, "bench/throughput.py")

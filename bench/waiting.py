"""How Chorus holds many runs parked on a human approval, beside raw Temporal.

On one Temporal dev server that it starts itself, with the simulator
answering at zero latency, the benchmark runs two phases one after the other:
  1. Chorus: a worker process (`python -m worker`) and N runs of a
     chain that drafts with one model call, then parks on an approval. It
     measures the time from the first start until all N are parked
     (`ChorusStatus='awaiting_approval'` counted through visibility), the
     worker's resident memory before and after, then approves all N with the
     `decide` Update and measures the time until every result is in.
  2. Raw: the same with a minimal hand-written workflow that makes one bare
     httpx call through an activity, then waits for a signal
     (bench/raw_signal_workflow.py), in its own worker process
     (bench/waiting_worker.py) on another task queue.
Prints human lines; the last line is one JSON object.

    .venv/bin/python bench/waiting.py --runs 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/waiting.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from bench.harness import (
    ALIAS,
    SIM_MODEL,
    BenchError,
    WorkerProcess,
    bounded,
    chorus_worker,
    ratio,
    raw_worker,
    run_bench,
    start_dev_server,
    worker_env,
    zero_latency_simulator_config,
)
from bench.raw_signal_workflow import (
    PARKED_VALUE,
    RAW_DECIDE_SIGNAL,
    RAW_SIGNAL_WORKFLOW,
    RawDecision,
    RawSignalInput,
)
from core.chain_spec import ChainSpec
from core.names import DECIDE, PENDING_APPROVALS_QUERY
from core.settings import DEFAULT_DEV_DYNAMIC_CONFIG, Settings
from runs.client import RunClient
from simulator.server import SimulatorServer
from workflows.types import ApprovalDecision, ApprovalState, ChainResult, DecisionOutcome

APPROVAL_ID = "review"
MAX_TOKENS = 64
DEFAULT_MAX_CACHED: int = Settings.model_fields["max_cached_workflows"].default
PROGRESS_EVERY_S = 5.0


def chain_spec() -> ChainSpec:
    """chains/review_reply.yaml's shape on the `cheap` alias: one model call
    drafts, an approval shows the draft and parks the run."""
    return ChainSpec.model_validate(
        {
            "name": "bench_waiting",
            "steps": [
                {
                    "name": "draft",
                    "kind": "model",
                    "model": ALIAS,
                    "max_tokens": MAX_TOKENS,
                    "prompt": "Draft a reply to this customer message: {{ input.message }}",
                },
                {
                    "name": APPROVAL_ID,
                    "kind": "approval",
                    "text": "{{ steps.draft.output }}",
                    "required_role": "reviewer",
                    "timeout_s": 3 * 24 * 3600,
                    "on_timeout": "reject",
                },
            ],
            "output": APPROVAL_ID,
        }
    )


def message(i: int) -> str:
    return f"Order {i} arrived damaged; can I get a replacement?"


# ------------------------------------------------------------------ measuring


RESULT_WAITS = 500
"""Result long polls open at once, on both sides: 10,000 at once exceed the
dev server's limit on concurrent long polls per namespace ("namespace
concurrent poller limit exceeded"), and the waits then retry instead of
measuring."""


async def wait_parked(
    client: Client, task_queue: str, runs: int, worker: WorkerProcess, timeout_s: float
) -> None:
    """Poll the visibility count of parked runs on `task_queue` until it is `runs`."""
    query = f"TaskQueue = '{task_queue}' AND ChorusStatus = '{PARKED_VALUE}'"
    deadline = time.monotonic() + timeout_s
    last_report = time.monotonic()
    while True:
        count = (await client.count_workflows(query)).count
        if count >= runs:
            return
        worker.check_alive()
        now = time.monotonic()
        if now > deadline:
            raise BenchError(f"only {count} of {runs} runs parked after {timeout_s:.0f} s")
        if now - last_report > PROGRESS_EVERY_S:
            print(f"  {worker.name}: {count}/{runs} parked", flush=True)
            last_report = now
        await asyncio.sleep(0.25)


@dataclass(frozen=True)
class DecisionEvents:
    """History events of one run from its decision on: all of them, its
    workflow tasks, and its (local) activities."""

    events: int
    workflow_tasks: int
    activities: int
    local_activities: int
    kinds: dict[str, int]


async def decision_events(handle: WorkflowHandle[Any, Any], first: str) -> DecisionEvents:
    """Count the events of `handle`'s history from the first `first` event
    (the Update's acceptance, or the signal) to the end. An Update is
    accepted by a workflow task whose events the server writes just before
    the acceptance: they are counted too."""
    kinds: dict[str, int] = {}
    counting = False
    task_events: list[str] = []  # the workflow task events just before this one
    async for event in handle.fetch_history_events():
        name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
        if name == "MARKER_RECORDED":
            name = f"MARKER_{event.marker_recorded_event_attributes.marker_name}"
        if not counting and name == first.removeprefix("EVENT_TYPE_"):
            counting = True
            if name == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED":
                for earlier in task_events:
                    kinds[earlier] = kinds.get(earlier, 0) + 1
        if counting:
            kinds[name] = kinds.get(name, 0) + 1
        elif name.startswith("WORKFLOW_TASK_"):
            task_events.append(name)
        else:
            task_events.clear()
    if not counting:
        raise BenchError(f"{handle.id}: no {first} event in its history")
    return DecisionEvents(
        events=sum(kinds.values()),
        workflow_tasks=kinds.get("WORKFLOW_TASK_COMPLETED", 0),
        activities=kinds.get("ACTIVITY_TASK_SCHEDULED", 0),
        local_activities=kinds.get("MARKER_core_local_activity", 0),
        kinds=kinds,
    )


async def start_profiler(worker: WorkerProcess, output: Path) -> asyncio.subprocess.Process:
    """py-spy sampling the worker process into `output` (a speedscope file
    when it ends in .json, collapsed stacks when .txt, else a flame graph)."""
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        raise BenchError("--profile needs py-spy (pip install py-spy)")
    fmt = {".json": "speedscope", ".txt": "raw"}.get(output.suffix, "flamegraph")
    process = await asyncio.create_subprocess_exec(
        py_spy, "record", "--pid", str(worker.pid), "--rate", "200", "--format", fmt,
        "--output", str(output), "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(1.0)  # py-spy attaches before the first decision
    if process.returncode is not None:
        raise BenchError(f"py-spy exited with code {process.returncode} (ptrace allowed?)")
    return process


async def stop_profiler(process: asyncio.subprocess.Process) -> None:
    """SIGINT makes py-spy write its output and exit."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()


@dataclass
class PhaseFigures:
    start_s: float
    rss_before_mb: float
    rss_after_mb: float
    to_done_s: float
    rss_done_mb: float
    park_cpu_s: float
    """Worker CPU from the first start until every run is parked."""
    done_cpu_s: float
    """Worker CPU from the first decision until every result is in."""
    load_1m: float
    """The machine's 1-minute load average when the phase began (noise gauge)."""
    query_s: float | None = None
    """Chorus only: time to read every run's pending approval (its payload hash)."""
    decision_events: DecisionEvents | None = None
    """What one run's history holds from its decision (or signal) to its end."""

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_after_mb - self.rss_before_mb


async def chorus_phase(
    client: Client,
    worker: WorkerProcess,
    task_queue: str,
    runs: int,
    concurrency: int,
    profile: Path | None = None,
) -> PhaseFigures:
    spec = chain_spec()
    prefix = f"bench-wait-chorus-{uuid.uuid4().hex[:8]}"
    load = os.getloadavg()[0]
    rss_before, cpu_start = worker.rss_mb(), worker.cpu_s()

    async def start(i: int) -> WorkflowHandle[Any, ChainResult]:
        return (
            await RunClient(client, task_queue=task_queue).start(
                spec, {"message": message(i)}, run_id=f"{prefix}-{i}"
            )
        ).handle

    started = time.perf_counter()
    handles: list[WorkflowHandle[Any, ChainResult]] = await bounded(range(runs), concurrency, start)
    await wait_parked(client, task_queue, runs, worker, timeout_s=max(120.0, runs * 0.5))
    start_s = time.perf_counter() - started
    rss_after, cpu_parked = worker.rss_mb(), worker.cpu_s()
    print(
        f"chorus: {runs} runs parked in {start_s:.1f} s; worker RSS "
        f"{rss_before:.0f} -> {rss_after:.0f} MiB",
        flush=True,
    )

    # A reviewer decides on what they saw: each decision carries the hash of
    # the payload, read here from the run's pending approvals.
    async def payload_hash(handle: WorkflowHandle[Any, ChainResult]) -> str:
        pending = await handle.query(PENDING_APPROVALS_QUERY, result_type=list[ApprovalState])
        (approval,) = [a for a in pending if a.approval_id == APPROVAL_ID]
        return approval.payload_hash

    queried = time.perf_counter()
    hashes = await bounded(handles, concurrency, payload_hash)
    query_s = time.perf_counter() - queried

    gate = asyncio.Semaphore(concurrency)
    results = asyncio.Semaphore(RESULT_WAITS)

    async def approve_and_wait(handle: WorkflowHandle[Any, ChainResult], digest: str) -> None:
        async with gate:
            outcome = await handle.execute_update(
                DECIDE,
                ApprovalDecision(
                    approval_id=APPROVAL_ID,
                    decision="approve",
                    reviewer="bench",
                    reviewer_roles=["reviewer"],
                    payload_hash=digest,
                ),
                result_type=DecisionOutcome,
            )
        if outcome.status != "approved":
            raise BenchError(f"{handle.id}: approval is {outcome.status} after approving")
        async with results:
            result = await handle.result()
        if result.status != "completed":
            raise BenchError(f"{handle.id}: ended {result.status}: {result.error}")

    profiler = await start_profiler(worker, profile) if profile else None
    decided, cpu_decided = time.perf_counter(), worker.cpu_s()
    try:
        async with asyncio.TaskGroup() as group:
            for handle, digest in zip(handles, hashes, strict=True):
                group.create_task(approve_and_wait(handle, digest))
        to_done_s = time.perf_counter() - decided
        rss_done, cpu_done = worker.rss_mb(), worker.cpu_s()
    finally:
        if profiler is not None:
            await stop_profiler(profiler)
    events = await decision_events(handles[0], "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED")
    print(
        f"chorus: read {runs} payload hashes in {query_s:.1f} s; approved all, "
        f"all completed {to_done_s:.1f} s after the first decision "
        f"(worker CPU {cpu_parked - cpu_start:.1f} s parking, {cpu_done - cpu_decided:.1f} s "
        "approve-to-done)",
        flush=True,
    )
    return PhaseFigures(
        start_s,
        rss_before,
        rss_after,
        to_done_s,
        rss_done,
        cpu_parked - cpu_start,
        cpu_done - cpu_decided,
        load,
        query_s,
        events,
    )


async def raw_phase(
    client: Client,
    worker: WorkerProcess,
    task_queue: str,
    runs: int,
    concurrency: int,
    sim_base_url: str,
) -> PhaseFigures:
    prefix = f"bench-wait-raw-{uuid.uuid4().hex[:8]}"
    load = os.getloadavg()[0]
    rss_before, cpu_start = worker.rss_mb(), worker.cpu_s()

    async def start(i: int) -> WorkflowHandle[Any, str]:
        return await client.start_workflow(
            RAW_SIGNAL_WORKFLOW,
            RawSignalInput(
                base_url=sim_base_url,
                model=SIM_MODEL,
                prompt=f"Draft a reply to this customer message: {message(i)}",
            ),
            id=f"{prefix}-{i}",
            task_queue=task_queue,
            result_type=str,
        )

    started = time.perf_counter()
    handles: list[WorkflowHandle[Any, str]] = await bounded(range(runs), concurrency, start)
    await wait_parked(client, task_queue, runs, worker, timeout_s=max(120.0, runs * 0.5))
    start_s = time.perf_counter() - started
    rss_after, cpu_parked = worker.rss_mb(), worker.cpu_s()
    print(
        f"raw:    {runs} runs parked in {start_s:.1f} s; worker RSS "
        f"{rss_before:.0f} -> {rss_after:.0f} MiB",
        flush=True,
    )

    gate = asyncio.Semaphore(concurrency)
    results = asyncio.Semaphore(RESULT_WAITS)

    async def signal_and_wait(handle: WorkflowHandle[Any, str]) -> None:
        async with gate:
            await handle.signal(
                RAW_DECIDE_SIGNAL, RawDecision(decision="approve", reviewer="bench")
            )
        async with results:
            if not await handle.result():
                raise BenchError(f"{handle.id}: empty result")

    signalled, cpu_decided = time.perf_counter(), worker.cpu_s()
    async with asyncio.TaskGroup() as group:
        for handle in handles:
            group.create_task(signal_and_wait(handle))
    to_done_s = time.perf_counter() - signalled
    rss_done, cpu_done = worker.rss_mb(), worker.cpu_s()
    events = await decision_events(handles[0], "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED")
    print(
        f"raw:    signalled all, all completed {to_done_s:.1f} s after the first signal "
        f"(worker CPU {cpu_parked - cpu_start:.1f} s parking, {cpu_done - cpu_decided:.1f} s "
        "signal-to-done)",
        flush=True,
    )
    return PhaseFigures(
        start_s,
        rss_before,
        rss_after,
        to_done_s,
        rss_done,
        cpu_parked - cpu_start,
        cpu_done - cpu_decided,
        load,
        None,
        events,
    )


# ----------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs parked per phase")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=50,
        help="starts, queries, decisions and signals in flight at once",
    )
    parser.add_argument(
        "--max-cached",
        type=int,
        default=DEFAULT_MAX_CACHED,
        help="workflow cache of both workers (CHORUS_MAX_CACHED_WORKFLOWS for Chorus)",
    )
    parser.add_argument(
        "--no-bytecode-cache",
        dest="bytecode_cache",
        action="store_false",
        help="keep this environment's PYTHONDONTWRITEBYTECODE for the workers (the "
        "sandbox then compiles each new run's workflow module from source)",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the workers' log files afterwards"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="sample the Chorus worker with py-spy from the first decision to the last "
        "result into this file (.json: speedscope, .txt: collapsed stacks, else SVG)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.concurrency < 1 or args.max_cached < 0:
        parser.error("--runs and --concurrency must be at least 1, --max-cached at least 0")
    return args


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    # SIGTERM stops the benchmark as Ctrl-C does: the task is cancelled and
    # the cleanup below stops the workers and the dev server.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    config = zero_latency_simulator_config()
    dynamic_config = dict(DEFAULT_DEV_DYNAMIC_CONFIG)
    tmp = Path(tempfile.mkdtemp(prefix="chorus-bench-waiting-"))
    env_vars = worker_env(tmp, bytecode_cache=args.bytecode_cache)
    workers: list[WorkerProcess] = []
    env: WorkflowEnvironment | None = None
    sim = SimulatorServer(config=config)
    try:
        sim.start()
        # Warnings about slow calls under load would drown the figures.
        env = await start_dev_server(quiet=True)
        client = env.client
        address = client.service_client.config.target_host
        print(
            f"{args.runs} runs per phase, {args.concurrency} in flight, workflow cache "
            f"{args.max_cached}; bytecode cache {'on' if args.bytecode_cache else 'off'}; "
            f"dev server at {address} ({dynamic_config}); logs in {tmp}",
            flush=True,
        )

        queue = f"bench-wait-chorus-{uuid.uuid4().hex[:8]}"
        worker = chorus_worker(address, queue, sim.port, args.max_cached, tmp, env_vars)
        workers.append(worker)
        await worker.start(client, queue)
        chorus = await chorus_phase(
            client, worker, queue, args.runs, args.concurrency, args.profile
        )
        await worker.stop()

        queue = f"bench-wait-raw-{uuid.uuid4().hex[:8]}"
        worker = raw_worker(address, queue, args.max_cached, tmp, env_vars)
        workers.append(worker)
        await worker.start(client, queue)
        raw = await raw_phase(
            client, worker, queue, args.runs, args.concurrency, sim.openai_base_url
        )
        await worker.stop()
    finally:
        for worker in reversed(workers):
            await worker.stop()
        if env is not None:
            await env.shutdown()
        sim.stop()

    figures: dict[str, Any] = {
        "runs": args.runs,
        "concurrency": args.concurrency,
        "max_cached_workflows": args.max_cached,
        "temporal_dynamic_config": dynamic_config,
        "bytecode_cache": args.bytecode_cache,
        "workflow_sandbox": Settings().workflow_sandbox,
        "cpus": os.cpu_count(),
        "load_1m_chorus": round(chorus.load_1m, 2),
        "load_1m_raw": round(raw.load_1m, 2),
        "start_s": round(chorus.start_s, 2),
        "rss_before_mb": round(chorus.rss_before_mb, 1),
        "rss_after_mb": round(chorus.rss_after_mb, 1),
        "rss_growth_mb": round(chorus.rss_growth_mb, 1),
        "rss_done_mb": round(chorus.rss_done_mb, 1),
        "query_s": round(chorus.query_s or 0.0, 2),
        "approve_to_done_s": round(chorus.to_done_s, 2),
        "raw_start_s": round(raw.start_s, 2),
        "raw_rss_before_mb": round(raw.rss_before_mb, 1),
        "raw_rss_after_mb": round(raw.rss_after_mb, 1),
        "raw_rss_growth_mb": round(raw.rss_growth_mb, 1),
        "raw_rss_done_mb": round(raw.rss_done_mb, 1),
        "raw_signal_to_done_s": round(raw.to_done_s, 2),
        "park_cpu_s": round(chorus.park_cpu_s, 2),
        "approve_cpu_s": round(chorus.done_cpu_s, 2),
        "raw_park_cpu_s": round(raw.park_cpu_s, 2),
        "raw_signal_cpu_s": round(raw.done_cpu_s, 2),
        "park_cpu_over_raw": ratio(chorus.park_cpu_s, raw.park_cpu_s),
        "done_cpu_over_raw": ratio(chorus.done_cpu_s, raw.done_cpu_s),
        "start_over_raw": ratio(chorus.start_s, raw.start_s),
        "rss_growth_over_raw": ratio(chorus.rss_growth_mb, raw.rss_growth_mb),
        "done_over_raw": ratio(chorus.to_done_s, raw.to_done_s),
        "events_per_decision": chorus.decision_events and chorus.decision_events.events,
        "workflow_tasks_per_decision": chorus.decision_events
        and chorus.decision_events.workflow_tasks,
        "raw_events_per_signal": raw.decision_events and raw.decision_events.events,
        "raw_workflow_tasks_per_signal": raw.decision_events and raw.decision_events.workflow_tasks,
    }
    print(
        f"Chorus/raw: parking {figures['start_over_raw']}, worker memory growth "
        f"{figures['rss_growth_over_raw']} (+{figures['rss_growth_mb']} vs "
        f"+{figures['raw_rss_growth_mb']} MiB), approve-to-done {figures['done_over_raw']}; "
        f"worker CPU parking {figures['park_cpu_over_raw']}, "
        f"approve-to-done {figures['done_cpu_over_raw']}"
    )
    for name, counted in (("chorus", chorus.decision_events), ("raw", raw.decision_events)):
        if counted is not None:
            kinds = ", ".join(f"{kind} {n}" for kind, n in counted.kinds.items())
            print(f"{name} history from the decision on: {counted.events} events ({kinds})")
    if args.profile:
        print(f"worker profile of the decisions in {args.profile}")
    if args.keep_logs:
        print(f"worker logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


if __name__ == "__main__":
    run_bench(main, "bench/waiting.py")

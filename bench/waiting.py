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
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import psutil

if __package__ in (None, ""):  # run as `python bench/waiting.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from bench.raw_signal_workflow import (
    PARKED_VALUE,
    RAW_DECIDE_SIGNAL,
    RAW_SIGNAL_WORKFLOW,
    RawDecision,
    RawSignalInput,
)
from cli.devstack.temporal_server import (
    dynamic_config_args,
    find_temporal_binary,
    search_attribute_args,
)
from core.chain_spec import ChainSpec
from core.names import DECIDE, PENDING_APPROVALS_QUERY
from core.settings import DEFAULT_DEV_DYNAMIC_CONFIG, Settings
from runs.client import RunClient
from simulator.models import default_simulator_config
from simulator.server import SimulatorServer
from workflows.types import ApprovalDecision, ApprovalState, ChainResult, DecisionOutcome

ROOT = Path(__file__).resolve().parents[1]
SIM_MODEL = "sim-mini"
"""The simulator model behind the `cheap` alias in chains/models.yaml."""
ALIAS = "cheap"
APPROVAL_ID = "review"
MAX_TOKENS = 64
DEFAULT_MAX_CACHED: int = Settings.model_fields["max_cached_workflows"].default
WORKER_READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0
PROGRESS_EVERY_S = 5.0

T = TypeVar("T")


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to measure."""


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


# ------------------------------------------------------------- worker processes


class WorkerProcess:
    """A worker in its own process (its own session, so Ctrl-C reaches only
    the benchmark, which then stops it), its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError(f"{self.name} worker is not started")
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def cpu_s(self) -> float:
        """CPU time (user + system) the worker process has used, in seconds:
        less sensitive than wall time to other load on a shared machine."""
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system

    def rss_mb(self) -> float:
        """Resident memory of the worker process, in MiB."""
        return psutil.Process(self.pid).memory_info().rss / 2**20

    async def start(self, client: Client, task_queue: str) -> None:
        """Start the process and wait until it polls `task_queue`."""
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                cwd=ROOT,
                start_new_session=True,
            )
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        while not await polls(client, task_queue, self.pid):
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.name} worker did not poll {task_queue} within "
                    f"{WORKER_READY_TIMEOUT_S:.0f} s; last lines of {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            await asyncio.sleep(0.1)

    def check_alive(self) -> None:
        if self.process is not None and not self.alive:
            raise BenchError(
                f"{self.name} worker exited with code {self.process.returncode}; "
                f"last lines of {self.log_path}:\n{self.log_tail()}"
            )

    async def stop(self) -> None:
        """SIGTERM (the worker drains and closes), SIGKILL after a grace period."""
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def polls(client: Client, task_queue: str, pid: int) -> bool:
    """Whether process `pid` polls the workflow task queue (the SDK's default
    worker identity is `<pid>@<host>`)."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        ),
        timeout=timedelta(seconds=5),
    )
    return any(poller.identity.startswith(f"{pid}@") for poller in response.pollers)


def worker_env(tmp: Path, *, bytecode_cache: bool) -> dict[str, str]:
    """The benchmark's environment for a worker process.

    The sandbox imports each run's workflow module afresh; with
    PYTHONDONTWRITEBYTECODE set (as on these machines) and an editable
    install, that means compiling workflows/chain.py from source for every
    new run, a cost an installed package (compiled by pip) never pays. With
    `bytecode_cache`, both workers write and reuse bytecode under `tmp`."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    return env


def chorus_worker(
    address: str, task_queue: str, sim_port: int, max_cached: int, tmp: Path, env: dict[str, str]
) -> WorkerProcess:
    env = dict(env)
    env.update(
        {
            "CHORUS_TEMPORAL_ADDRESS": address,
            "CHORUS_TASK_QUEUE": task_queue,
            "CHORUS_SIMULATOR_HOST": "127.0.0.1",
            "CHORUS_SIMULATOR_PORT": str(sim_port),
            "CHORUS_MODELS_FILE": str(ROOT / "chains" / "models.yaml"),
            "CHORUS_STATE_DIR": str(tmp / "state"),
            "CHORUS_DATABASE_URL": f"sqlite:///{tmp / 'chorus.db'}",
            "CHORUS_MAX_CACHED_WORKFLOWS": str(max_cached),
            "CHORUS_LOG_LEVEL": "warning",
            "CHORUS_LOG_FORMAT": "json",
        }
    )
    env.pop("DATABASE_URL", None)
    argv = [sys.executable, "-m", "worker"]
    return WorkerProcess("chorus", argv, env, tmp / "chorus-worker.log")


def raw_worker(
    address: str, task_queue: str, max_cached: int, tmp: Path, env: dict[str, str]
) -> WorkerProcess:
    argv = [
        sys.executable,
        "-m",
        "bench.waiting_worker",
        "--address",
        address,
        "--task-queue",
        task_queue,
        "--max-cached",
        str(max_cached),
    ]
    return WorkerProcess("raw", argv, env, tmp / "raw-worker.log")


# ------------------------------------------------------------------ measuring


async def bounded(
    items: Sequence[T], concurrency: int, work: Callable[[T], Awaitable[Any]]
) -> list[Any]:
    """`work(item)` for every item, at most `concurrency` at a time; the first
    failure cancels the rest and propagates."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: T) -> Any:
        async with gate:
            return await work(item)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(item)) for item in items]
    return [task.result() for task in tasks]


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

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_after_mb - self.rss_before_mb


async def chorus_phase(
    client: Client, worker: WorkerProcess, task_queue: str, runs: int, concurrency: int
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
        result = await handle.result()
        if result.status != "completed":
            raise BenchError(f"{handle.id}: ended {result.status}: {result.error}")

    decided, cpu_decided = time.perf_counter(), worker.cpu_s()
    async with asyncio.TaskGroup() as group:
        for handle, digest in zip(handles, hashes, strict=True):
            group.create_task(approve_and_wait(handle, digest))
    to_done_s = time.perf_counter() - decided
    rss_done, cpu_done = worker.rss_mb(), worker.cpu_s()
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

    async def signal_and_wait(handle: WorkflowHandle[Any, str]) -> None:
        async with gate:
            await handle.signal(
                RAW_DECIDE_SIGNAL, RawDecision(decision="approve", reviewer="bench")
            )
        if not await handle.result():
            raise BenchError(f"{handle.id}: empty result")

    signalled, cpu_decided = time.perf_counter(), worker.cpu_s()
    async with asyncio.TaskGroup() as group:
        for handle in handles:
            group.create_task(signal_and_wait(handle))
    to_done_s = time.perf_counter() - signalled
    rss_done, cpu_done = worker.rss_mb(), worker.cpu_s()
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
    args = parser.parse_args(argv)
    if args.runs < 1 or args.concurrency < 1 or args.max_cached < 0:
        parser.error("--runs and --concurrency must be at least 1, --max-cached at least 0")
    return args


def leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    """The exceptions inside a (nested) exception group."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b > 0 else None


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    # SIGTERM stops the benchmark as Ctrl-C does: the task is cancelled and
    # the cleanup below stops the workers and the dev server.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    config = default_simulator_config()
    config.models = {
        name: model.model_copy(update={"latency_ms": 0}) for name, model in config.models.items()
    }
    if SIM_MODEL not in config.models:
        raise BenchError(f"the simulator has no model {SIM_MODEL!r}")
    dynamic_config = dict(DEFAULT_DEV_DYNAMIC_CONFIG)
    extra_args = [*search_attribute_args(), *dynamic_config_args(dynamic_config)]
    tmp = Path(tempfile.mkdtemp(prefix="chorus-bench-waiting-"))
    env_vars = worker_env(tmp, bytecode_cache=args.bytecode_cache)
    workers: list[WorkerProcess] = []
    env: WorkflowEnvironment | None = None
    sim = SimulatorServer(config=config)
    try:
        sim.start()
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=find_temporal_binary(),
            data_converter=pydantic_data_converter,
            dev_server_extra_args=extra_args,
            # Warnings about slow calls under load would drown the figures.
            dev_server_log_level="error",
        )
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
        chorus = await chorus_phase(client, worker, queue, args.runs, args.concurrency)
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
    }
    print(
        f"Chorus/raw: parking {figures['start_over_raw']}, worker memory growth "
        f"{figures['rss_growth_over_raw']} (+{figures['rss_growth_mb']} vs "
        f"+{figures['raw_rss_growth_mb']} MiB), approve-to-done {figures['done_over_raw']}; "
        f"worker CPU parking {figures['park_cpu_over_raw']}, "
        f"approve-to-done {figures['done_cpu_over_raw']}"
    )
    if args.keep_logs:
        print(f"worker logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


if __name__ == "__main__":
    try:
        result = asyncio.run(main())
    except KeyboardInterrupt:
        print("interrupted; everything the benchmark started is stopped", file=sys.stderr)
        sys.exit(130)
    except asyncio.CancelledError:
        print("terminated; everything the benchmark started is stopped", file=sys.stderr)
        sys.exit(143)
    except BenchError as exc:
        print(f"bench/waiting.py: {exc}", file=sys.stderr)
        sys.exit(1)
    except ExceptionGroup as group:  # from the task groups that start and decide runs
        failures, others = group.split(BenchError)
        if failures is None or others is not None:
            raise
        for failure in leaves(failures):
            print(f"bench/waiting.py: {failure}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))

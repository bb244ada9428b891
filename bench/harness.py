"""What the benchmarks share: the zero-latency simulator, the Temporal dev
server they start themselves, the chain of N model steps, worker processes
(Chorus's `python -m worker` and the raw baseline's bench/waiting_worker.py)
and small measuring helpers.

Every benchmark runs Chorus and its raw-Temporal baseline on one dev server
in one process tree, with the dev server settings printed, so their ratio is
measured under the same load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import psutil
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from cli.devstack.temporal_server import (
    dynamic_config_args,
    find_temporal_binary,
    search_attribute_args,
)
from core.chain_spec import ChainSpec
from core.settings import DEFAULT_DEV_DYNAMIC_CONFIG
from simulator.models import SimulatorConfig, default_simulator_config

ROOT = Path(__file__).resolve().parents[1]
SIM_MODEL = "sim-mini"
"""The simulator model behind the `cheap` alias in chains/models.yaml."""
ALIAS = "cheap"
WORKER_READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0

T = TypeVar("T")


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to measure."""


# ------------------------------------------------------------------ the stack


def zero_latency_simulator_config() -> SimulatorConfig:
    """The default simulator models answering at once: what the benchmarks
    measure is then pure orchestration overhead."""
    config = default_simulator_config()
    config.models = {
        name: model.model_copy(update={"latency_ms": 0}) for name, model in config.models.items()
    }
    if SIM_MODEL not in config.models:
        raise BenchError(f"the simulator has no model {SIM_MODEL!r}")
    return config


async def start_dev_server(*, quiet: bool = False) -> WorkflowEnvironment:
    """A Temporal dev server with Chorus' search attributes and the dev
    stack's dynamic config (`DEFAULT_DEV_DYNAMIC_CONFIG`, which the
    benchmarks print)."""
    extra_args = [*search_attribute_args(), *dynamic_config_args(DEFAULT_DEV_DYNAMIC_CONFIG)]
    kwargs: dict[str, Any] = {"dev_server_log_level": "error"} if quiet else {}
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_temporal_binary(),
        data_converter=pydantic_data_converter,
        dev_server_extra_args=extra_args,
        **kwargs,
    )


def model_chain_spec(steps: int, name: str = "bench_overhead", max_tokens: int = 64) -> ChainSpec:
    """A chain of `steps` model steps on the `cheap` alias, each prompt
    quoting the previous output (as bench/raw_workflow.py does)."""
    previous = "{{ steps.s%d.output[:40] }}"
    return ChainSpec.model_validate(
        {
            "name": name,
            "steps": [
                {
                    "name": f"s{i}",
                    "kind": "model",
                    "model": ALIAS,
                    "prompt": f"Step {i}: " + (previous % (i - 1) if i else ""),
                    "max_tokens": max_tokens,
                }
                for i in range(steps)
            ],
        }
    )


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
    address: str,
    task_queue: str,
    sim_port: int,
    max_cached: int,
    tmp: Path,
    env: dict[str, str],
    name: str = "chorus",
) -> WorkerProcess:
    """`python -m worker` on `task_queue`; workers of one benchmark share its
    application database (a throwaway SQLite file under `tmp`)."""
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
    # A metrics endpoint per worker would be measured too (and two would
    # compete for one port).
    env.pop("CHORUS_METRICS_PORT", None)
    argv = [sys.executable, "-m", "worker"]
    return WorkerProcess(name, argv, env, tmp / f"{name}-worker.log")


def raw_worker(
    address: str,
    task_queue: str,
    max_cached: int,
    tmp: Path,
    env: dict[str, str],
    name: str = "raw",
) -> WorkerProcess:
    """bench/waiting_worker.py on `task_queue`: the raw baselines' workflows
    and their one httpx activity."""
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
    return WorkerProcess(name, argv, env, tmp / f"{name}-worker.log")


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


def leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    """The exceptions inside a (nested) exception group."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b > 0 else None


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def run_bench(main: Callable[[], Awaitable[dict[str, Any]]], name: str) -> None:
    """Run a benchmark's `main` and print its figures as the last line (one
    JSON object); a BenchError (alone or from a task group) is one line on
    stderr and exit 1, Ctrl-C exit 130, a termination exit 143, each after
    `main` stopped what it started."""
    try:
        result = asyncio.run(main())
    except KeyboardInterrupt:
        print("interrupted; everything the benchmark started is stopped", file=sys.stderr)
        sys.exit(130)
    except asyncio.CancelledError:
        print("terminated; everything the benchmark started is stopped", file=sys.stderr)
        sys.exit(143)
    except BenchError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(1)
    except ExceptionGroup as group:  # from the task groups that start and wait for runs
        failures, others = group.split(BenchError)
        if failures is None or others is not None:
            raise
        for failure in leaves(failures):
            print(f"{name}: {failure}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))

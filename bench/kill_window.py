"""SIGKILL a worker the instant a provider's reply has been sent, and count
what that costs: calls made twice, and calls missing from the run's cost.

On a Temporal dev server and a simulator that it starts itself (the simulator
in this process, so its `reply_listeners` hook fires on the simulator's thread
the moment a completed call's last byte is handed to the connection), the
benchmark runs the flagship chain (chains/support_triage.yaml; the classifier
scripted to alternate simple and complex tickets that need no approval) once
per kill, with one worker process (`python -m worker`, SQLite application
database) at a time. Each run's kill aims at one of its model steps in turn
(classify, answer, reply): when the simulator has sent that step's reply, the
worker is SIGKILLed (after `--delay-ms`, cycled: 0 is the instant itself), a
new worker is started, and the run must complete.

Per run, from the simulator's call log and the run's result:
  duplicate_calls  completed provider calls made again (same request id)
  uncounted_calls  completed provider calls the run's cost does not account
                   for: more completed calls than the run counts (confirmed
                   replies plus unconfirmed attempts), or less cost counted
                   than the calls' actual cost
Prints a line per kill; the last line is one JSON object.

    .venv/bin/python bench/kill_window.py --kills 24
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
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

if __package__ in (None, ""):  # run as `python bench/kill_window.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.gateway.registry import ModelRegistry
from activities.gateway.types import ModelPrices, TokenUsage
from bench.waiting import WorkerProcess, worker_env
from cli.devstack.temporal_server import (
    dynamic_config_args,
    find_temporal_binary,
    search_attribute_args,
)
from core.chain_spec import ChainSpec
from core.settings import DEFAULT_DEV_DYNAMIC_CONFIG
from runs.client import RunClient
from simulator.models import CallRecord, Rule
from simulator.server import SimulatorServer
from simulator.state import SimulatorState
from store.engine import make_engine
from store.sample_knowledge import ingest_sample_knowledge
from store.schema import create_all
from workflows.types import ChainResult
from workflows.validate import check_chain, parse_chain_yaml

ROOT = Path(__file__).resolve().parents[1]
CHAIN_FILE = ROOT / "chains" / "support_triage.yaml"
MODELS_FILE = ROOT / "chains" / "models.yaml"
HEARTBEAT_TIMEOUT_S = 2.0
"""How soon Temporal notices the dead worker mid-call (models.yaml copy)."""
KILL_WAIT_S = 90.0
RUN_TIMEOUT_S = 180.0

TARGETS: dict[str, Callable[[CallRecord], bool]] = {
    "classify": lambda c: "Classify this ticket" in c.prompt,
    "answer": lambda c: (
        "Answer this customer's question" in c.prompt or "Help Center passages" in c.prompt
    ),
    "reply": lambda c: "Rewrite the answer below" in c.prompt,
}
"""The flagship's model steps, told apart by their prompts ("answer" is
quick_answer or grounded_answer, whichever branch the ticket takes)."""


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to measure."""


# ------------------------------------------------------------------ the kill


class KillSwitch:
    """Armed for one run and one step: SIGKILLs the worker, on the
    simulator's thread, when the simulator has sent that step's reply."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: tuple[str, Callable[[CallRecord], bool], int, float] | None = None
        self.fired = threading.Event()
        self.killed: CallRecord | None = None

    def arm(self, prefix: str, target: Callable[[CallRecord], bool], pid: int, delay_s: float):
        with self._lock:
            self._armed = (prefix, target, pid, delay_s)
            self.fired.clear()
            self.killed = None

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    def __call__(self, record: CallRecord) -> None:
        with self._lock:
            armed = self._armed
            if armed is None or record.endpoint == "embeddings":
                return
            prefix, target, pid, delay_s = armed
            if not (record.request_id or "").startswith(prefix) or not target(record):
                return
            self._armed = None
            self.killed = record
        if delay_s > 0:
            time.sleep(delay_s)  # on the simulator's thread: nothing else is sent meanwhile
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.fired.set()


# ------------------------------------------------------------------ one run


@dataclass
class Kill:
    index: int
    step: str
    delay_ms: float
    run_id: str
    status: str = "not run"
    completed_calls: int = 0
    duplicate_calls: int = 0
    uncounted_calls: int = 0
    reused: bool = False
    """The killed call's reply was journaled before the kill: the retry reused it."""
    unconfirmed_attempts: int = 0
    unconfirmed_usd: float = 0.0
    actual_usd: float = 0.0
    counted_usd: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def ticket(i: int) -> tuple[str, str]:
    """The i-th ticket and its scripted complexity (alternating)."""
    if i % 2 == 0:
        return f"Ticket {i}: do you ship to Canada, and how long does it take?", "simple"
    return (
        f"Ticket {i}: my tent pole snapped on the second trip, is that covered "
        "and what do I send you?",
        "complex",
    )


def classified(text: str, complexity: str) -> Rule:
    """The classifier's verdict for one ticket, for every attempt (a killed
    classification is asked again): never a refund, confident, so no run
    waits for a person."""
    return Rule(
        model="sim-mini",
        match=f"Classify this ticket(?s:.*){text[:12]}",
        json={
            "category": "product" if complexity == "complex" else "shipping",
            "complexity": complexity,
            "urgency": "normal",
            "confidence": 0.93,
        },
    )


def prices_by_model(registry: ModelRegistry) -> dict[str, ModelPrices]:
    prices: dict[str, ModelPrices] = {}
    for alias in registry.aliases:
        entry = registry.entry(alias)
        prices.setdefault(entry.model, entry.prices)
    return prices


def actual_cost(call: CallRecord, prices: dict[str, ModelPrices]) -> float:
    raw = call.usage or {}
    usage = TokenUsage(
        input_tokens=raw.get("prompt_tokens", 0),
        output_tokens=raw.get("completion_tokens", 0),
        cached_input_tokens=raw.get("cached_tokens", 0),
        reasoning_tokens=raw.get("reasoning_tokens", 0),
        cache_write_tokens=raw.get("cache_creation_tokens", 0),
    )
    return prices[call.model].cost(usage)


def account(kill: Kill, result: ChainResult, calls: list[CallRecord], prices: Any) -> None:
    """Fill in what the run's provider calls were and what the run counted."""
    chat = [c for c in calls if c.endpoint != "embeddings" and c.outcome == "completed"]
    per_request = Counter(c.request_id for c in chat)
    kill.completed_calls = len(chat)
    kill.duplicate_calls = sum(n - 1 for n in per_request.values())
    killed = kill.notes and kill.notes[0]
    kill.reused = bool(killed) and per_request.get(killed, 0) == 1
    records = [call for step in result.steps.values() for call in step.calls]
    confirmed = sum(
        1
        for call in records
        if call.outcome != "failed" or call.cost_usd - getattr(call, "unconfirmed_usd", 0.0) > 0
    )
    # getattr: the benchmark also measures versions before unconfirmed attempts.
    kill.unconfirmed_attempts = sum(getattr(c, "unconfirmed_attempts", 0) for c in records)
    kill.unconfirmed_usd = sum(getattr(c, "unconfirmed_usd", 0.0) for c in records)
    kill.actual_usd = sum(actual_cost(c, prices) for c in chat)
    kill.counted_usd = result.usage.cost_usd
    missing = max(0, len(chat) - confirmed - kill.unconfirmed_attempts)
    short = kill.actual_usd > kill.counted_usd + 1e-12
    kill.uncounted_calls = max(missing, 1 if short else 0)


async def one_kill(
    kill: Kill,
    *,
    client: Client,
    runs: RunClient,
    spec: ChainSpec,
    switch: KillSwitch,
    state: SimulatorState,
    worker: WorkerProcess,
    new_worker: Callable[[], WorkerProcess],
    task_queue: str,
    prices: dict[str, ModelPrices],
) -> WorkerProcess:
    """Run the chain once, kill `worker` at the step's reply, start another;
    returns the worker now running."""
    text, complexity = ticket(kill.index)
    state.add_rules([classified(text, complexity)])
    switch.arm(f"{kill.run_id}/", TARGETS[kill.step], worker.pid, kill.delay_ms / 1000)
    started = await runs.start(spec, {"message": text}, run_id=kill.run_id)
    fired = await asyncio.to_thread(switch.fired.wait, KILL_WAIT_S)
    switch.disarm()
    if not fired:
        kill.error = f"the {kill.step} reply was never sent within {KILL_WAIT_S:.0f} s"
    else:
        assert switch.killed is not None
        kill.notes.append(switch.killed.request_id or "")
        assert worker.process is not None
        await worker.process.wait()
        worker = new_worker()
        await worker.start(client, task_queue)
    try:
        result = await asyncio.wait_for(started.handle.result(), RUN_TIMEOUT_S)
    except Exception as exc:  # a failed run is a figure, not a crash
        kill.status = "failed"
        kill.error = kill.error or f"{type(exc).__name__}: {exc}"[:300]
        return worker
    kill.status = result.status
    account(kill, result, state.calls(request_id_prefix=f"{kill.run_id}/"), prices)
    return worker


# ------------------------------------------------------------------ main


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="chorus-bench-kill-"))
    models = yaml.safe_load(MODELS_FILE.read_text())
    for entry in models["models"].values():
        entry["heartbeat_timeout_s"] = HEARTBEAT_TIMEOUT_S
    models_file = tmp / "models.yaml"
    models_file.write_text(yaml.safe_dump(models))
    database_url = f"sqlite:///{tmp / 'chorus.db'}"
    engine = make_engine(database_url)
    create_all(engine)
    ingest_sample_knowledge(engine)
    engine.dispose()

    sim = SimulatorServer()
    state: SimulatorState = sim.app.state.sim_state
    switch = KillSwitch()
    state.reply_listeners.append(switch)
    env: WorkflowEnvironment | None = None
    worker: WorkerProcess | None = None
    kills: list[Kill] = []
    started_at = time.monotonic()
    try:
        sim.start()
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=find_temporal_binary(),
            data_converter=pydantic_data_converter,
            dev_server_extra_args=[
                *search_attribute_args(),
                *dynamic_config_args(DEFAULT_DEV_DYNAMIC_CONFIG),
            ],
            dev_server_log_level="error",
        )
        client = env.client
        address = client.service_client.config.target_host
        registry = ModelRegistry.from_file(models_file, simulator_base_url=sim.openai_base_url)
        spec = parse_chain_yaml(CHAIN_FILE.read_text())
        check_chain(spec, registry.aliases)
        prices = prices_by_model(registry)
        task_queue = f"bench-kill-{uuid.uuid4().hex[:8]}"
        base_env = worker_env(tmp, bytecode_cache=True)
        base_env.update(
            {
                "CHORUS_TEMPORAL_ADDRESS": address,
                "CHORUS_TASK_QUEUE": task_queue,
                "CHORUS_SIMULATOR_HOST": "127.0.0.1",
                "CHORUS_SIMULATOR_PORT": str(sim.port),
                "CHORUS_MODELS_FILE": str(models_file),
                "CHORUS_STATE_DIR": str(tmp / "state"),
                "CHORUS_DATABASE_URL": database_url,
                "CHORUS_LOG_LEVEL": "warning",
                "CHORUS_LOG_FORMAT": "json",
            }
        )
        base_env.pop("DATABASE_URL", None)
        generation = 0

        def new_worker() -> WorkerProcess:
            nonlocal generation
            generation += 1
            argv = [sys.executable, "-m", "worker"]
            return WorkerProcess(f"chorus-{generation}", argv, base_env, tmp / "workers.log")

        runs = RunClient(client, task_queue=task_queue)
        print(
            f"{args.kills} kills across {', '.join(TARGETS)}; delays {args.delays_ms} ms; "
            f"dev server at {address}; logs in {tmp}",
            flush=True,
        )
        worker = new_worker()
        await worker.start(client, task_queue)
        steps = list(TARGETS)
        for i in range(args.kills):
            kill = Kill(
                index=i,
                step=steps[i % len(steps)],
                delay_ms=args.delays_ms[(i // len(steps)) % len(args.delays_ms)],
                run_id=f"kill-{i}-{uuid.uuid4().hex[:8]}",
            )
            kills.append(kill)
            worker = await one_kill(
                kill,
                client=client,
                runs=runs,
                spec=spec,
                switch=switch,
                state=state,
                worker=worker,
                new_worker=new_worker,
                task_queue=task_queue,
                prices=prices,
            )
            print(
                f"kill {i + 1:>2}: {kill.step:<8} +{kill.delay_ms:g} ms  {kill.status:<9} "
                f"provider calls {kill.completed_calls}, duplicates {kill.duplicate_calls}, "
                f"uncounted {kill.uncounted_calls}, "
                f"{'reply reused' if kill.reused else 'asked again'}, "
                f"unconfirmed {kill.unconfirmed_attempts} (${kill.unconfirmed_usd:.6f})"
                + (f"  ERROR {kill.error}" if kill.error else ""),
                flush=True,
            )
    finally:
        if worker is not None:
            await worker.stop()
        if env is not None:
            await env.shutdown()
        sim.stop()

    by_delay: dict[str, dict[str, int]] = {}
    for kill in kills:
        bucket = by_delay.setdefault(
            f"{kill.delay_ms:g}", {"kills": 0, "reused": 0, "asked_again": 0, "uncounted": 0}
        )
        bucket["kills"] += 1
        bucket["reused" if kill.reused else "asked_again"] += 1
        bucket["uncounted"] += kill.uncounted_calls
    figures: dict[str, Any] = {
        "kills": sum(1 for k in kills if k.notes),
        "completed": sum(1 for k in kills if k.notes and k.status == "completed"),
        "duplicate_calls": sum(k.duplicate_calls for k in kills),
        "uncounted_calls": sum(k.uncounted_calls for k in kills),
        "runs": len(kills),
        "provider_calls": sum(k.completed_calls for k in kills),
        "replies_reused": sum(1 for k in kills if k.reused),
        "unconfirmed_attempts": sum(k.unconfirmed_attempts for k in kills),
        "unconfirmed_usd": round(sum(k.unconfirmed_usd for k in kills), 8),
        "actual_usd": round(sum(k.actual_usd for k in kills), 8),
        "counted_usd": round(sum(k.counted_usd for k in kills), 8),
        "by_step": {step: sum(1 for k in kills if k.step == step and k.notes) for step in TARGETS},
        "by_delay_ms": by_delay,
        "errors": [f"kill {k.index + 1}: {k.error}" for k in kills if k.error],
        "seconds": round(time.monotonic() - started_at, 1),
    }
    if args.keep_logs:
        print(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=24, help="runs, one kill each (default 24)")
    parser.add_argument(
        "--delays-ms",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[0.0, 1.0, 3.0, 10.0],
        help="how long after the reply was sent each kill lands, cycled per round of "
        "steps (default 0,1,3,10)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the workers' logs")
    return parser.parse_args(argv)


def main() -> None:
    figures = asyncio.run(bench(parse_args()))
    print(json.dumps(figures, sort_keys=True))
    if figures["completed"] != figures["kills"] or figures["uncounted_calls"]:
        sys.exit(1)


if __name__ == "__main__":
    main()

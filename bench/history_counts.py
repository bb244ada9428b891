"""What one run leaves in history, Chorus beside raw Temporal.

Runs one Chorus chain of N model steps and the raw workflow of N activities
(bench/raw_workflow.py) on a dev server it starts, with the zero-latency
simulator, then fetches both histories and prints, per side: events by
type, events per step, and the payloads history holds (count and bytes, what
the SDK's payload visitor and codec chain touch). With `--events` it lists
the Chorus run's events one by one (markers by name, search-attribute
upserts by key, activities by type). The last line is one JSON object.

    .venv/bin/python bench/history_counts.py --steps 5 --events
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/history_counts.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
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
from core.settings import Settings
from runs.client import RunClient
from simulator.server import SimulatorServer
from store.engine import make_engine
from store.schema import create_all
from worker.assembly import ActivityHost, create_worker
from worker.plugin import workflow_runner


def payloads(message: Message) -> tuple[int, int]:
    """How many payloads `message` holds, and their bytes."""
    if isinstance(message, Payload):
        return 1, message.ByteSize()
    count = size = 0
    for _field, value in message.ListFields():
        if isinstance(value, Message):
            items: Any = [value]
        elif hasattr(value, "keys"):  # a map: its values
            items = [value[key] for key in value]
        elif isinstance(value, (str, bytes, int, float, bool)):
            continue
        else:
            items = list(value)
        for item in items:
            if isinstance(item, Message):
                n, s = payloads(item)
                count, size = count + n, size + s
    return count, size


def describe(event: HistoryEvent) -> str:
    name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    if event.HasField("marker_recorded_event_attributes"):
        attrs = event.marker_recorded_event_attributes
        data = attrs.details.get("data") or attrs.details.get("patch_data")
        what = data.payloads[0].data[:80].decode(errors="replace") if data else ""
        return f"{name} {attrs.marker_name} {what}"
    if event.HasField("upsert_workflow_search_attributes_event_attributes"):
        fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
        return f"{name} {','.join(fields.indexed_fields)}"
    if event.HasField("activity_task_scheduled_event_attributes"):
        return f"{name} {event.activity_task_scheduled_event_attributes.activity_type.name}"
    return name


async def summarize(client: Client, workflow_id: str, steps: int, events: bool) -> dict[str, Any]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    kinds = Counter(
        EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events
    )
    count = size = 0
    for event in history.events:
        n, s = payloads(event)
        count, size = count + n, size + s
        if events:
            print(f"  {event.event_id:3d} payloads {n} ({s:5d} B) {describe(event)}")
    return {
        "events": len(history.events),
        "events_per_step": round(len(history.events) / steps, 2),
        "payloads": count,
        "payload_bytes": size,
        "by_type": dict(sorted(kinds.items())),
    }


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--events", action="store_true", help="list the Chorus run's events")
    args = parser.parse_args()
    configure_logging(Settings(log_level="warning"), force=True)
    with SimulatorServer(config=zero_latency_simulator_config()) as sim:
        env = await start_dev_server(quiet=True)
        registry = ModelRegistry.from_file(
            ROOT / "chains" / "models.yaml", simulator_base_url=sim.openai_base_url
        )
        engine = make_engine(f"sqlite:///{Path(tempfile.mkdtemp(prefix='chorus-')) / 'c.db'}")
        create_all(engine)
        host = ActivityHost(registry=registry, engine=engine, tools=builtin_registry())
        raw = RawActivities()
        queue_chorus, queue_raw = f"hc-chorus-{uuid.uuid4()}", f"hc-raw-{uuid.uuid4()}"
        chorus_worker = create_worker(
            env.client,
            task_queue=queue_chorus,
            activities=host.activities,
            sandboxed=Settings().workflow_sandbox,
        )
        raw_worker = Worker(
            env.client,
            task_queue=queue_raw,
            workflows=[RawWorkflow],
            activities=[raw.raw_call],
            workflow_runner=workflow_runner(Settings().workflow_sandbox),
        )
        try:
            async with chorus_worker, raw_worker:
                raw_id, chorus_id = f"hc-raw-{uuid.uuid4()}", f"hc-chorus-{uuid.uuid4()}"
                await env.client.execute_workflow(
                    RawWorkflow.run,
                    RawInput(base_url=sim.openai_base_url, model=SIM_MODEL, steps=args.steps),
                    id=raw_id,
                    task_queue=queue_raw,
                )
                run = await RunClient(env.client, task_queue=queue_chorus).start(
                    model_chain_spec(args.steps), {}, run_id=chorus_id
                )
                await run.handle.result()
                raw_figures = await summarize(env.client, raw_id, args.steps, False)
                if args.events:
                    print(f"Chorus run {chorus_id}, {args.steps} steps:")
                chorus_figures = await summarize(env.client, chorus_id, args.steps, args.events)
        finally:
            await host.aclose()
            await raw.aclose()
            await env.shutdown()
    for side, figures in (("raw Temporal", raw_figures), ("Chorus", chorus_figures)):
        kinds = ", ".join(f"{n} {kind}" for kind, n in figures["by_type"].items())
        print(
            f"{side}: {figures['events']} events ({figures['events_per_step']} a step), "
            f"{figures['payloads']} payloads ({figures['payload_bytes']} B): {kinds}"
        )
    return {"steps": args.steps, "raw": raw_figures, "chorus": chorus_figures}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

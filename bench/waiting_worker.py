"""One worker process hosting the raw baselines of bench/waiting.py
(RawSignalWorkflow) and bench/throughput.py (RawWorkflow), with their one
httpx activity, so a benchmark can read its resident memory and CPU on its
own, as it does for the Chorus worker.

    python -m bench.waiting_worker --address 127.0.0.1:7233 --task-queue Q

Runs until SIGTERM or SIGINT, then drains and closes cleanly (an abrupt exit
with the SDK's threads alive can abort the interpreter). It uses the same
sandbox settings and the same worker tuning as a Chorus worker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/waiting_worker.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from bench.raw_activities import RawActivities
from bench.raw_signal_workflow import RawSignalWorkflow
from bench.raw_workflow import RawWorkflow
from core.settings import Settings
from worker.plugin import workflow_runner

_DEFAULTS = Settings.model_fields


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="Temporal HOST:PORT")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--max-cached", type=int, default=_DEFAULTS["max_cached_workflows"].default)
    parser.add_argument(
        "--max-activities", type=int, default=_DEFAULTS["max_concurrent_activities"].default
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Poll `args.task_queue` until SIGTERM/SIGINT."""
    client = await Client.connect(
        args.address, namespace=args.namespace, data_converter=pydantic_data_converter
    )
    raw = RawActivities()
    worker = Worker(
        client,
        task_queue=args.task_queue,
        workflows=[RawSignalWorkflow, RawWorkflow],
        activities=[raw.raw_call],
        max_cached_workflows=args.max_cached,
        max_concurrent_activities=args.max_activities,
        workflow_runner=workflow_runner(Settings().workflow_sandbox),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with worker:
            await stop.wait()
    finally:
        await raw.aclose()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()

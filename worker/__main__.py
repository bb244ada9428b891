"""`python -m worker`: one Chorus worker process, until SIGINT or SIGTERM.

The dev stack, the crash tests and the benchmarks start workers this way;
`chorus worker` is the same thing behind the CLI.
"""

from __future__ import annotations

import asyncio
import sys

from core.logging import configure_logging
from core.metrics import MetricsStartError
from core.settings import get_settings
from core.temporal import TemporalConnectError
from store.schema import SchemaNotCurrent
from worker.assembly import run_worker


def main() -> int:
    try:
        settings = get_settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    try:
        asyncio.run(run_worker(settings))
    except (TemporalConnectError, MetricsStartError, SchemaNotCurrent) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

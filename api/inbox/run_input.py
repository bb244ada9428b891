"""The input a run was started with (the customer's ticket), read from the
first event of the run's Temporal history: the workflow keeps its input in
no query, and the database stores only its hash."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError

from core.logging import get_logger
from workflows.types import ChainInput

log = get_logger(__name__)


async def run_input(client: Client, run_id: str) -> Any:
    """The chain run's input, or None when Temporal cannot say (history gone,
    not a chain run, Temporal down): the page then shows the approval's context."""
    try:
        async for event in client.get_workflow_handle(run_id).fetch_history_events(page_size=1):
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            if not payloads:
                return None
            [started] = await client.data_converter.decode(payloads[:1], [ChainInput])
            return started.input if isinstance(started, ChainInput) else None
    except (RPCError, ValueError, TypeError) as exc:
        log.info("run input not readable", run_id=run_id, error=type(exc).__name__)
    return None

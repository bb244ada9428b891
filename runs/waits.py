"""What a running run's model calls are waiting for, from Temporal itself.

A call waiting out a provider's Retry-After (or a jittered backoff) is an
activity Temporal will retry at a known time: its description lists the call
as pending, with the attempt due, when it is due and why the last one failed.
That needs no workflow change and no worker (the run's `state` query adds the
waits a workflow does on its own timers: the deployment's rate limits).
"""

from __future__ import annotations

from datetime import UTC

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowExecutionDescription
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError

from core.names import CALL_MODEL
from workflows.types import ProviderWait

MAX_REASON_CHARS = 300


async def provider_retry_waits(
    description: WorkflowExecutionDescription, converter: DataConverter
) -> list[ProviderWait]:
    """One `provider_retry` wait per model call Temporal is about to retry."""
    waits: list[ProviderWait] = []
    for pending in description.raw_description.pending_activities:
        if (
            pending.activity_type.name != CALL_MODEL
            or pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
            or pending.attempt <= 1
            or not pending.HasField("next_attempt_schedule_time")
        ):
            continue
        alias = step = None
        reason = "the last attempt failed"
        if pending.HasField("last_failure"):
            failure = await converter.decode_failure(pending.last_failure)
            reason = failure.message if isinstance(failure, ApplicationError) else str(failure)
            if isinstance(failure, ApplicationError):
                reason = f"{failure.type}: {reason}" if failure.type else reason
                first = failure.details[0] if failure.details else None
                if isinstance(first, dict):
                    alias = first.get("alias") if isinstance(first.get("alias"), str) else None
                    step = first.get("step") if isinstance(first.get("step"), str) else None
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[: MAX_REASON_CHARS - 1] + "…"
        waits.append(
            ProviderWait(
                kind="provider_retry",
                step=step,
                alias=alias,
                until=pending.next_attempt_schedule_time.ToDatetime(tzinfo=UTC),
                reason=reason,
                attempt=pending.attempt,
            )
        )
    return waits

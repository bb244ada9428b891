"""A tiny workflow that runs one tool the way chains do: it snapshots the
tool's `ToolInfo` (the `describe_tools` local activity), then schedules
`run_tool` with the retry policy the chain engine derives from it
(`workflows.tool_calls.tool_retry_policy`), only with short intervals so
the tests stay fast. It reports the outcome instead of failing, so tests
can read the typed error. Kept in an importable module: the sandbox cannot
validate workflows defined in a test file's `__main__`."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.tools.types import ToolCallInput, ToolCallResult
    from core.names import RUN_TOOL
    from workflows.tool_calls import describe_tools, tool_retry_policy


class ToolRunInput(BaseModel):
    tool: str
    arguments: dict[str, Any] = {}
    idempotency_key: str | None = None


class ToolRunReport(BaseModel):
    ok: bool
    output: Any = None
    max_attempts: int = 0
    """What the retry policy allowed."""
    error_type: str | None = None
    message: str | None = None
    non_retryable: bool | None = None
    retry_state: str | None = None


@workflow.defn(name="ToolRetryTestWorkflow")
class ToolRetryTestWorkflow:
    @workflow.run
    async def run(self, inp: ToolRunInput) -> ToolRunReport:
        described = await describe_tools([inp.tool])
        info = described.tools[inp.tool]
        policy = dataclasses.replace(
            tool_retry_policy(info, inp.idempotency_key),
            initial_interval=timedelta(milliseconds=50),
            backoff_coefficient=1.0,
        )
        try:
            result = await workflow.execute_activity(
                RUN_TOOL,
                ToolCallInput(
                    tool=inp.tool,
                    arguments=inp.arguments,
                    idempotency_key=inp.idempotency_key,
                    step="test",
                ),
                result_type=ToolCallResult,
                start_to_close_timeout=timedelta(seconds=info.timeout_s + 5),
                retry_policy=policy,
            )
        except ActivityError as exc:
            cause = exc.cause
            assert isinstance(cause, ApplicationError), cause
            return ToolRunReport(
                ok=False,
                max_attempts=policy.maximum_attempts,
                error_type=cause.type,
                message=cause.message,
                non_retryable=cause.non_retryable,
                retry_state=exc.retry_state.name if exc.retry_state else None,
            )
        return ToolRunReport(ok=True, output=result.output, max_attempts=policy.maximum_attempts)

"""Running a registered tool from workflow code, with the retry policy its
registry entry asks for."""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.tools.types import (
        DescribeToolsInput,
        DescribeToolsResult,
        ToolCallInput,
        ToolCallResult,
        ToolInfo,
    )
    from core.names import DESCRIBE_TOOLS, RUN_TOOL
    from workflows.activity_options import DEFAULT_ACTIVITY_OPTIONS, ActivityOptions


def tool_retry_policy(
    info: ToolInfo,
    idempotency_key: str | None,
    options: ActivityOptions = DEFAULT_ACTIVITY_OPTIONS,
) -> RetryPolicy:
    """A tool that is not idempotent runs at most once, unless the caller gives
    it an idempotency key to deduplicate on: then a retry is safe."""
    attempts = info.max_attempts if (info.idempotent or idempotency_key) else 1
    return RetryPolicy(
        maximum_attempts=attempts,
        initial_interval=options.tool_retry_initial_interval,
        maximum_interval=options.tool_retry_maximum_interval,
    )


async def run_tool(
    info: ToolInfo,
    arguments: dict[str, Any],
    *,
    idempotency_key: str | None,
    step: str,
    options: ActivityOptions = DEFAULT_ACTIVITY_OPTIONS,
) -> ToolCallResult:
    """Raises ActivityError (cause: ApplicationError typed by ToolErrorType)."""
    return await workflow.execute_activity(
        RUN_TOOL,
        ToolCallInput(
            tool=info.name, arguments=arguments, idempotency_key=idempotency_key, step=step
        ),
        result_type=ToolCallResult,
        start_to_close_timeout=options.tool_call_timeout(info),
        retry_policy=tool_retry_policy(info, idempotency_key, options),
        summary=f"{step} · tool {info.name}",
    )


async def describe_tools(
    names: list[str], options: ActivityOptions = DEFAULT_ACTIVITY_OPTIONS
) -> DescribeToolsResult:
    """Snapshot the tools' schemas and policies into history (local activity)."""
    return await workflow.execute_local_activity(
        DESCRIBE_TOOLS,
        DescribeToolsInput(names=sorted(names)),
        result_type=DescribeToolsResult,
        start_to_close_timeout=options.describe_timeout,
        summary="describe tools",
    )

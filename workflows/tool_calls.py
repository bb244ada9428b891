"""Running a registered tool from workflow code, with the retry policy its
registry entry asks for."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.tools.types import (
        DESCRIBE_TOOLS,
        RUN_TOOL,
        DescribeToolsInput,
        DescribeToolsResult,
        ToolCallInput,
        ToolCallResult,
        ToolInfo,
    )

_TOOL_TIMEOUT_MARGIN_S = 5.0


def tool_retry_policy(info: ToolInfo, idempotency_key: str | None) -> RetryPolicy:
    """A tool that is not idempotent runs at most once, unless the caller gives
    it an idempotency key to deduplicate on: then a retry is safe."""
    attempts = info.max_attempts if (info.idempotent or idempotency_key) else 1
    return RetryPolicy(
        maximum_attempts=attempts,
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=30),
    )


async def run_tool(
    info: ToolInfo, arguments: dict[str, Any], *, idempotency_key: str | None, step: str
) -> ToolCallResult:
    """Raises ActivityError (cause: ApplicationError typed by ToolErrorType)."""
    return await workflow.execute_activity(
        RUN_TOOL,
        ToolCallInput(
            tool=info.name, arguments=arguments, idempotency_key=idempotency_key, step=step
        ),
        result_type=ToolCallResult,
        start_to_close_timeout=timedelta(seconds=info.timeout_s + _TOOL_TIMEOUT_MARGIN_S),
        retry_policy=tool_retry_policy(info, idempotency_key),
        summary=f"{step} · tool {info.name}",
    )


async def describe_tools(names: list[str]) -> DescribeToolsResult:
    """Snapshot the tools' schemas and policies into history (local activity)."""
    return await workflow.execute_local_activity(
        DESCRIBE_TOOLS,
        DescribeToolsInput(names=sorted(names)),
        result_type=DescribeToolsResult,
        start_to_close_timeout=timedelta(seconds=10),
        summary="describe tools",
    )

"""The tool activities: `run_tool` and `describe_tools`.

`ToolActivities` holds what a worker process shares across calls (the
registry and one pooled httpx client for HTTP tools) and exposes its
activities as bound methods, as `ModelGateway` does.

Retry policy is the workflow's to choose, from `ToolInfo`: an idempotent
tool, or any tool given an idempotency key, gets `max_attempts`; a
non-idempotent tool without a key gets one attempt. This activity only
reports failures precisely enough for that policy to act on them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from pydantic_core import PydanticSerializationError, to_jsonable_python
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import metrics
from activities.gateway.heartbeat import heartbeat_interval, heartbeating
from activities.http_client import OwnsHttpClient
from activities.logging import activity_logger
from activities.tools.base import Tool
from activities.tools.errors import (
    InvalidToolArguments,
    bad_output,
    invalid_arguments,
    tool_failed,
    tool_timeout,
    unknown_tool,
)
from activities.tools.registry import ToolRegistry
from activities.tools.types import (
    DescribeToolsInput,
    DescribeToolsResult,
    ToolCallInput,
    ToolCallResult,
    ToolErrorType,
)
from core.names import DESCRIBE_TOOLS, RUN_TOOL

LOGGER_NAME = "chorus.tools"

DEFAULT_HEARTBEAT_TIMEOUT_S = 10.0
"""Beat interval basis when the workflow set no heartbeat timeout."""

MAX_OUTPUT_BYTES = 256 * 1024
"""Temporal warns at 256 KB payloads and fails at 2 MB: a tool result larger
than this belongs in storage, passed by reference."""

_OWN_ERROR_TYPES = frozenset(
    {
        ToolErrorType.HTTP_ERROR,
        ToolErrorType.CONFIG,
        ToolErrorType.TIMEOUT,
        ToolErrorType.FAILED,
        ToolErrorType.INVALID_ARGUMENTS,
    }
)


class ToolActivities(OwnsHttpClient):
    """Runs tools by name. One instance per worker process."""

    def __init__(self, registry: ToolRegistry, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(http)
        self.registry = registry

    @property
    def activities(self) -> Sequence[Callable[..., Any]]:
        """The bound activity methods to register on a worker."""
        return [self.run_tool, self.describe_tools]

    # -- activities -------------------------------------------------------

    @activity.defn(name=RUN_TOOL)
    async def run_tool(self, req: ToolCallInput) -> ToolCallResult:
        """`_run_tool`, counted in Chorus' metrics (activities/metrics.py)."""
        tool = req.tool if req.tool in self.registry else metrics.UNKNOWN
        with metrics.counted(metrics.TOOL_CALLS, metrics.TOOL_DURATION, tool):
            return await self._run_tool(req)

    async def _run_tool(self, req: ToolCallInput) -> ToolCallResult:
        """Run one tool once. Raises `ApplicationError` typed by `ToolErrorType`:
        whatever the tool does, the worker survives and the chain sees why."""
        log = activity_logger(LOGGER_NAME, step=req.step, tool=req.tool)
        if req.tool not in self.registry:
            log.warning("tool_call.unknown")
            raise unknown_tool(req.tool, self.registry.names)
        tool = self.registry.get(req.tool)
        try:
            arguments = tool.validate(req.arguments)
        except InvalidToolArguments as exc:
            # Argument values stay out of logs: they can be personal data.
            log.warning("tool_call.invalid_arguments", problems=exc.problems)
            raise invalid_arguments(exc) from None

        started = time.perf_counter()
        try:
            output = await self._invoke(tool, arguments, req.idempotency_key)
        except ApplicationError as exc:
            log.warning(
                "tool_call.failed",
                error_type=exc.type,
                retryable=not exc.non_retryable,
                retry_in_s=exc.next_retry_delay.total_seconds() if exc.next_retry_delay else None,
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
                message=exc.message,
                keyed=req.idempotency_key is not None,
            )
            raise
        latency_ms = (time.perf_counter() - started) * 1000
        log.info(
            "tool_call.done",
            latency_ms=round(latency_ms, 1),
            keyed=req.idempotency_key is not None,
        )
        return ToolCallResult(tool=tool.name, output=output, latency_ms=latency_ms)

    @activity.defn(name=DESCRIBE_TOOLS)
    async def describe_tools(self, req: DescribeToolsInput) -> DescribeToolsResult:
        """Schemas and policies of the tools a run will use (run as a local
        activity so the snapshot lands in history and replays identically)."""
        tools = {n: self.registry.describe(n) for n in req.names if n in self.registry}
        unknown = sorted({n for n in req.names if n not in self.registry})
        return DescribeToolsResult(tools=tools, unknown=unknown)

    # -- helpers ------------------------------------------------------------

    async def _invoke(self, tool: Tool, arguments: dict[str, Any], key: str | None) -> Any:
        """Run the tool under its timeout and a heartbeat; every way it can
        fail comes out as an `ApplicationError` typed by `ToolErrorType`."""
        timeout_s = tool.info.timeout_s
        try:
            async with heartbeating(heartbeat_interval(DEFAULT_HEARTBEAT_TIMEOUT_S)):
                async with asyncio.timeout(timeout_s) as deadline:
                    try:
                        result = await tool.invoke(
                            arguments,
                            idempotency_key=key or self._activity_key(tool),
                            http=self._http,
                        )
                    except asyncio.CancelledError:
                        raise
                    except ApplicationError as exc:
                        if exc.type in _OWN_ERROR_TYPES:
                            raise
                        raise tool_failed(tool.name, _as_tool_error(exc)) from None
                    except Exception as exc:
                        raise tool_failed(tool.name, exc) from None
        except TimeoutError:
            if deadline.expired():
                raise tool_timeout(tool.name, timeout_s) from None
            raise
        return _jsonable(tool.name, result)

    @staticmethod
    def _activity_key(tool: Tool) -> str | None:
        """A key stable across this activity's retries (workflow, run and
        activity id), so a tool that deduplicates on its key is safe on retry
        even when the workflow gave none. Only tools that take a key and are
        not idempotent get one: an HTTP GET needs no Idempotency-Key header."""
        if not tool.accepts_idempotency_key or tool.info.idempotent:
            return None
        info = activity.info()
        return f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"


def _as_tool_error(exc: ApplicationError) -> Exception:
    """An `ApplicationError` a tool raised itself keeps its retryability."""
    from activities.tools.errors import ToolError

    return ToolError(
        exc.message,
        non_retryable=exc.non_retryable,
        retry_after=exc.next_retry_delay,
        details={"type": exc.type} if exc.type else None,
    )


def _jsonable(name: str, result: Any) -> Any:
    """The result as plain JSON values (pydantic models dumped), within size."""
    try:
        value = to_jsonable_python(result)
        size = len(json.dumps(value, separators=(",", ":"), allow_nan=False))
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise bad_output(name, f"not JSON-serialisable ({exc})") from None
    if size > MAX_OUTPUT_BYTES:
        raise bad_output(
            name,
            f"{size} bytes of JSON, over the {MAX_OUTPUT_BYTES}-byte limit "
            "(store large results and return a reference)",
        )
    return value

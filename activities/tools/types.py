"""Payloads of the tool activities. Tools are named by registry name; their
code and any secret (HTTP headers from env vars) stay on the worker."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from core.chain_errors import ChainErrorType
from core.names import DESCRIBE_TOOLS as DESCRIBE_TOOLS


class ToolInfo(BaseModel):
    """What a workflow may know about a tool: enough to offer it to a model
    and to schedule it with the right timeout and retry policy."""

    name: str
    description: str
    parameters: dict[str, Any]
    """JSON Schema of the arguments (derived from the function signature)."""
    idempotent: bool = True
    requires_approval: bool = False
    timeout_s: float = 30.0
    max_attempts: int = Field(default=3, ge=1)
    """Attempts for an idempotent tool (or any tool given an idempotency key);
    a non-idempotent tool without a key gets exactly one."""


class DescribeToolsInput(BaseModel):
    names: list[str]


class DescribeToolsResult(BaseModel):
    tools: dict[str, ToolInfo]
    unknown: list[str] = []


class ToolCallInput(BaseModel):
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    step: str = ""


class ToolCallResult(BaseModel):
    tool: str
    output: Any = None
    latency_ms: float = 0.0


class ToolErrorType:
    """`ApplicationError.type` values `run_tool` raises: a tool's failure
    reaches the chain as one of these, never as a crashed worker."""

    # The chain reports these three as they are (core.chain_errors).
    UNKNOWN = ChainErrorType.UNKNOWN_TOOL  # not retryable
    INVALID_ARGUMENTS = ChainErrorType.TOOL_INVALID_ARGUMENTS  # not retryable; details: the errors
    FAILED = ChainErrorType.TOOL_FAILED  # the tool raised; retryable unless it said otherwise
    TIMEOUT = "ToolTimeout"  # retryable
    HTTP_ERROR = "ToolHttpError"  # HTTP tools: 5xx/429 retryable, other 4xx not
    CONFIG = "ToolConfigError"  # e.g. a header's env var is missing; not retryable

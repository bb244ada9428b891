"""What every tool is to the registry and to `run_tool`, whatever runs it.

A tool validates its arguments against the JSON Schema it publishes, then
runs. Python function tools and declarative HTTP tools implement this one
interface, so the activity handles timeouts, retries, idempotency keys and
error reporting in one place.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import httpx

from activities.tools.errors import ToolDefinitionError
from activities.tools.types import ToolInfo

TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""The function-name rule of the OpenAI and Anthropic tool APIs, so any tool
in the registry can be offered to any model."""

IDEMPOTENCY_KEY_PARAM = "idempotency_key"
"""A Python tool with a parameter of this name receives the call's key; the
parameter is not part of the schema a model sees."""


def check_tool_name(name: str) -> str:
    if not re.match(TOOL_NAME_PATTERN, name):
        raise ToolDefinitionError(
            f"tool name {name!r} must be 1-64 letters, digits, '_' or '-' "
            "(the tool-name rule of the model APIs)"
        )
    return name


def check_policy(name: str, *, timeout_s: float, max_attempts: int) -> None:
    if not timeout_s > 0:
        raise ToolDefinitionError(f"tool {name!r}: timeout_s must be > 0, got {timeout_s!r}")
    if max_attempts < 1:
        raise ToolDefinitionError(f"tool {name!r}: max_attempts must be >= 1, got {max_attempts!r}")


class Tool(ABC):
    """A registered tool: its public description and a way to run it."""

    info: ToolInfo

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def accepts_idempotency_key(self) -> bool:
        """Whether the tool can deduplicate on a key (and so be retried safely)."""
        return False

    @abstractmethod
    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments, checked and converted; `InvalidToolArguments`
        listing every problem with its path otherwise."""

    @abstractmethod
    async def invoke(
        self,
        arguments: dict[str, Any],
        *,
        idempotency_key: str | None,
        http: httpx.AsyncClient,
    ) -> Any:
        """Run once with validated arguments. Raise `ToolError` (or anything)
        on failure, or an `ApplicationError` already typed by `ToolErrorType`."""

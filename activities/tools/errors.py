"""Tool failures: the exceptions tool code and tool definitions raise, and the
one place where they become Temporal `ApplicationError`s.

A tool's failure must reach the chain as a typed error (`ToolErrorType`)
whose `non_retryable` flag tells the activity's retry policy what to do; it
must never crash the worker, and its message must never carry a secret (a
header value read from the environment) into workflow history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.gateway.errors import redact
from activities.tools.types import ToolErrorType

MAX_MESSAGE_CHARS = 500
"""A tool's message (an exception text, an HTTP body) lands in history and the
Temporal UI: the gist is enough, a whole response body is not."""


class ToolError(Exception):
    """Raised by tool authors to report a failure the chain should see.

    `non_retryable=True` says asking again cannot help (a refund above the
    order total, an unknown order); otherwise Temporal retries the call,
    after `retry_after` when the tool knows how long to wait. Any other
    exception a tool raises is reported the same way, as retryable.
    """

    def __init__(
        self,
        message: str,
        *,
        non_retryable: bool = False,
        retry_after: timedelta | float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.non_retryable = non_retryable
        if isinstance(retry_after, int | float):
            retry_after = timedelta(seconds=retry_after)
        self.retry_after: timedelta | None = retry_after
        self.details: dict[str, Any] = dict(details or {})


class ToolDefinitionError(ValueError):
    """A tool cannot be registered (unsupported signature, bad name, invalid
    HTTP tools file); the message names the tool, the file and the field. Raised
    when the registry is built, so a bad tool stops the worker at start-up."""


class InvalidToolArguments(ValueError):
    """Arguments do not match a tool's schema; `problems` lists each one with
    its path (`items.0.quantity: Input should be greater than 0`)."""

    def __init__(self, tool: str, problems: list[str]) -> None:
        self.tool = tool
        self.problems = problems
        super().__init__(f"invalid arguments for tool {tool!r}: " + "; ".join(problems))


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Shorten `text` and remove every known secret value and anything that
    looks like a key or bearer token."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = redact(" ".join(text.split()))
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def unknown_tool(name: str, known: Iterable[str]) -> ApplicationError:
    listing = ", ".join(sorted(known)) or "none"
    return ApplicationError(
        f"unknown tool {name!r}: this worker's registry knows {listing}",
        {"tool": name},
        type=ToolErrorType.UNKNOWN,
        non_retryable=True,
    )


def invalid_arguments(exc: InvalidToolArguments) -> ApplicationError:
    return ApplicationError(
        str(exc),
        {"tool": exc.tool, "problems": exc.problems},
        type=ToolErrorType.INVALID_ARGUMENTS,
        non_retryable=True,
    )


def tool_timeout(name: str, timeout_s: float) -> ApplicationError:
    """The tool did not finish in time: retryable (the next attempt may)."""
    return ApplicationError(
        f"tool {name!r} did not finish within {timeout_s:g} s",
        {"tool": name, "timeout_s": timeout_s},
        type=ToolErrorType.TIMEOUT,
    )


def tool_failed(name: str, exc: BaseException, secrets: Iterable[str] = ()) -> ApplicationError:
    """What a tool raised, as `ToolFailed`: a `ToolError` keeps its own
    retryability and delay; anything else is retryable and names its class."""
    if isinstance(exc, ToolError):
        return ApplicationError(
            f"tool {name!r} failed: {scrub(exc.message, secrets)}",
            {"tool": name, **exc.details},
            type=ToolErrorType.FAILED,
            non_retryable=exc.non_retryable,
            next_retry_delay=exc.retry_after,
        )
    detail = scrub(str(exc), secrets) or "no message"
    return ApplicationError(
        f"tool {name!r} failed: {type(exc).__name__}: {detail}",
        {"tool": name, "exception": type(exc).__name__},
        type=ToolErrorType.FAILED,
    )


def bad_output(name: str, problem: str) -> ApplicationError:
    """The tool ran but its result cannot travel (not JSON, too large): the
    same call would return the same thing, so it is not retried."""
    return ApplicationError(
        f"tool {name!r} returned an unusable result: {problem}",
        {"tool": name},
        type=ToolErrorType.FAILED,
        non_retryable=True,
    )


def config_error(message: str, tool: str) -> ApplicationError:
    """Worker configuration is wrong (a header's variable is missing): every
    retry would fail the same way until an operator fixes it."""
    return ApplicationError(message, {"tool": tool}, type=ToolErrorType.CONFIG, non_retryable=True)

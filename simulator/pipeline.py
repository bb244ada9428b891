"""The life of one simulated provider call, shared by every endpoint.

Order: log the call, reject an unknown model, apply a pending fault, reject a
prompt over the context window, refuse a call over the model's rate limit
(429 with Retry-After), pick a scripted rule, wait the model's latency
(watching for the client to go away), then answer with the rate-limit
headers of the dialect. The call log entry
is created first so that tests can see calls in flight.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import Request, Response
from pydantic import BaseModel, ValidationError

from simulator.errors import ProviderError, default_message
from simulator.models import (
    CallRecord,
    Fault,
    SimModel,
    SimulatorConfig,
    ToolCallSpec,
    ToolResultSeen,
)
from simulator.rate_limits import LimitSnapshot, retry_after_header
from simulator.state import Endpoint, RuleUse, SimulatorState

REQUEST_ID_HEADER = "x-chorus-request-id"
CLIENT_CLOSED_STATUS = 499
"""Logged as the status of an aborted call (nginx's "client closed request")."""
_DISCONNECT_POLL_S = 0.01


class Dialect(Protocol):
    """How one provider API shapes errors and odd bodies."""

    def error_response(self, error: ProviderError) -> Response: ...

    def unknown_model(self, model: str) -> ProviderError: ...

    def context_exceeded(self, prompt_tokens: int, window: int) -> ProviderError: ...

    def malformed_response(self) -> Response: ...

    def rate_limit_headers(self, snapshot: LimitSnapshot) -> dict[str, str]: ...


@dataclass
class Completion:
    """A successful answer and what the call log should remember of it."""

    response: Response
    usage: dict[str, int] | None
    reply: str | None
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    tool_call_ids: list[str] = field(default_factory=list)


@dataclass
class CallSpec:
    endpoint: Endpoint
    model: str
    prompt: str
    prompt_tokens: int
    """Compared with the model's context window."""
    uses_rules: bool
    answer: Callable[[SimModel, RuleUse | None], Completion]
    tool_results: list[ToolResultSeen] = field(default_factory=list)
    """Tool results that end the conversation: logged, and matched by `Rule.after_tool`."""
    max_output_tokens: int = 0
    """The request's max_tokens: counted against a token limit while in flight."""


def simulator_state(request: Request) -> SimulatorState:
    return request.app.state.sim_state


def simulator_config(request: Request) -> SimulatorConfig:
    return request.app.state.sim_config


async def pause(request: Request, seconds: float) -> bool:
    """Sleep `seconds` unless the client disconnects first.

    Returns False when the client went away, so the call can be logged as
    aborted: that is how tests tell a call a crashed worker never received
    from one it was billed for.
    """
    deadline = time.monotonic() + seconds
    while True:
        if await request.is_disconnected():
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        await asyncio.sleep(min(_DISCONNECT_POLL_S, remaining))


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()
    )


async def parse_body(request: Request, model_cls: type[BaseModel]) -> Any:
    """Validate a JSON body; a bad body is a 400 in the caller's provider shape."""
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProviderError(400, f"The request body is not valid JSON: {exc}") from exc
    try:
        return model_cls.model_validate(raw)
    except ValidationError as exc:
        raise ProviderError(400, _validation_message(exc)) from exc


def _fault_error(fault: Fault) -> ProviderError:
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = str(fault.retry_after_ms)
    return ProviderError(
        fault.status,
        fault.message or default_message(fault.status),
        error_type=fault.error_type,
        code=fault.error_code,
        headers=headers,
    )


async def serve_call(request: Request, dialect: Dialect, spec: CallSpec) -> Response:
    state = simulator_state(request)
    request_id = request.headers.get(REQUEST_ID_HEADER)
    record = state.start_call(
        endpoint=spec.endpoint, model=spec.model, request_id=request_id, prompt=spec.prompt
    )
    record.tool_results = list(spec.tool_results) or None

    def reject(error: ProviderError, outcome: str = "rejected") -> Response:
        state.finish_call(record, outcome=outcome, status=error.status, error=error.message)  # type: ignore[arg-type]
        return dialect.error_response(error)

    def aborted(use: RuleUse | None = None) -> Response:
        if use is not None:
            state.give_back(use)
        state.finish_call(
            record, outcome="aborted", status=CLIENT_CLOSED_STATUS, error="client disconnected"
        )
        return Response(status_code=CLIENT_CLOSED_STATUS)

    model = simulator_config(request).models.get(spec.model)
    if model is None:
        return reject(dialect.unknown_model(spec.model))

    latency_s = model.latency_ms / 1000
    fault = state.take_fault(model=spec.model, request_id=request_id, prompt=spec.prompt)
    if fault is not None and fault.kind == "status":
        if not await pause(request, fault.delay_s):
            return aborted()
        return reject(_fault_error(fault), outcome="fault")
    if fault is not None and fault.kind == "malformed":
        if not await pause(request, fault.delay_s + latency_s):
            return aborted()
        state.finish_call(record, outcome="fault", status=200, error="malformed body (simulated)")
        return dialect.malformed_response()
    extra_delay_s = fault.delay_s if fault is not None else 0.0

    if spec.prompt_tokens > model.context_window:
        return reject(dialect.context_exceeded(spec.prompt_tokens, model.context_window))

    limit_headers: dict[str, str] = {}
    limit = state.limit_for(spec.model, simulator_config(request).limits)
    if limit is not None:
        verdict = state.usage_windows.check(
            limit,
            record=record,
            prompt_tokens=spec.prompt_tokens,
            max_tokens=spec.max_output_tokens,
            now=time.time(),
        )
        limit_headers = dialect.rate_limit_headers(verdict.snapshot)
        if not verdict.admitted:
            return reject(
                ProviderError(
                    429,
                    f"Rate limit reached for {spec.model} on {verdict.reason}; "
                    f"retry after {verdict.retry_after_s:.2f} s (simulated)",
                    code="rate_limit_exceeded",
                    headers={
                        **limit_headers,
                        "Retry-After": retry_after_header(verdict.retry_after_s),
                    },
                )
            )

    use = (
        state.take_rule(
            model=spec.model,
            request_id=request_id,
            prompt=spec.prompt,
            tool_results={seen.name for seen in spec.tool_results},
        )
        if spec.uses_rules
        else None
    )
    completion = spec.answer(model, use)
    if not await pause(request, latency_s + extra_delay_s):
        return aborted(use)
    _complete(state, record, completion)
    completion.response.headers.update(limit_headers)
    return completion.response


def _complete(state: SimulatorState, record: CallRecord, completion: Completion) -> None:
    state.finish_call(
        record,
        outcome="completed",
        status=completion.response.status_code,
        usage=completion.usage,
        reply=completion.reply,
    )
    record.tool_calls = completion.tool_calls or None
    record.tool_call_ids = completion.tool_call_ids or None

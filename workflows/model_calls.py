"""Model calls from workflow code: one call (budget reservation, the activity
with its retry policy, the bookkeeping of what it cost) and the one loop over
fallback aliases, with re-asks of invalid structured output and a budget
fallback. Shared by chain model steps and agent turns, so both enforce
budgets, fall back and count usage the same way."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.gateway.types import (
        ChatMessage,
        ModelCallInput,
        ModelCallResult,
        ModelInfo,
        ProviderErrorType,
        RateLimitWaitDetails,
        ToolSpec,
        estimate_prompt_tokens,
        prompt_tokens_bound,
    )
    from core.chain_errors import ChainErrorType
    from core.chain_spec import RetrySpec
    from core.names import CALL_MODEL
    from workflows import metrics
    from workflows.activity_options import (
        DEFAULT_ACTIVITY_OPTIONS,
        ActivityOptions,
        retry_policy,
    )
    from workflows.budget import Budget, BudgetExceededError
    from workflows.failures import (
        ChainFailure,
        billed_usage,
        describe_activity_error,
        unconfirmed_cost,
    )
    from workflows.patches import applies
    from workflows.types import ModelCallRecord, ProviderWait, StepRecord


REASK_PROMPT = (
    "Your reply did not match the required JSON schema: {errors}. "
    "Reply again with only a JSON value that matches the schema."
)


@dataclass(frozen=True)
class CallOptions:
    """How one step asks its models (the same for each alias it tries)."""

    step: str
    max_tokens: int
    retry: RetrySpec
    temperature: float | None = None
    json_schema: dict[str, Any] | None = None
    tools: list[ToolSpec] | None = None
    max_reasks: int = 0
    """With a `json_schema`: how many times an alias is asked again, with the
    schema errors, while its output does not match."""
    budget_fallback: str | None = None
    """The alias to ask instead of one whose worst case does not fit the
    run's budget."""


class ModelCaller:
    def __init__(
        self,
        *,
        budget: Budget,
        models: dict[str, ModelInfo],
        max_calls: int,
        on_spend: Callable[[], None] = lambda: None,
        options: ActivityOptions = DEFAULT_ACTIVITY_OPTIONS,
    ) -> None:
        self.budget = budget
        self.options = options
        self.models = models
        self.max_calls = max_calls
        self.calls_made = 0
        self._on_spend = on_spend
        self.waits: dict[int, ProviderWait] = {}
        """Calls waiting out a rate limit now, for the run's state."""
        self._waits_started = 0

    async def call(
        self,
        alias: str,
        messages: Sequence[ChatMessage],
        options: CallOptions,
        record: StepRecord,
        purpose: str,
    ) -> ModelCallResult:
        """One call. Raises ChainFailure at the call limit, BudgetExceededError
        when its worst case does not fit (nothing is called), ActivityError
        when the provider failed for good."""
        if self.calls_made >= self.max_calls:
            raise ChainFailure(
                ChainErrorType.STEP_LIMIT_EXCEEDED,
                f"step {options.step}: the run reached its limit of {self.max_calls} model calls",
            )
        info = self.models[alias]
        request = ModelCallInput(
            alias=alias,
            messages=list(messages),
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            json_schema=options.json_schema,
            tools=options.tools,
            step=options.step,
        )
        worst_case = info.prices.worst_case(_prompt_tokens(request), options.max_tokens)
        reservation = self.budget.reserve(worst_case, f"{options.step} on {alias}")
        self.calls_made += 1
        try:
            result = await self._execute_call(
                CALL_MODEL,
                request,
                result_type=ModelCallResult,
                start_to_close_timeout=self.options.model_call_timeout(info),
                heartbeat_timeout=self.options.model_heartbeat_timeout(info),
                retry_policy=retry_policy(options.retry),
                summary=f"{options.step} · {alias} ({info.model})",
            )
        except ActivityError as err:
            usage, cost = billed_usage(err)
            # Most failures are not billed; a refusal is, and says so. An
            # attempt whose reply was never seen may have been: counted.
            unconfirmed, attempts = _counted(*unconfirmed_cost(err, worst_case))
            self.budget.settle(reservation, cost, unconfirmed)
            record.calls.append(
                ModelCallRecord(
                    alias=alias,
                    outcome="failed",
                    usage=usage,
                    cost_usd=cost + unconfirmed,
                    error=describe_activity_error(err),
                    purpose=purpose,  # type: ignore[arg-type]
                    unconfirmed_usd=unconfirmed,
                    unconfirmed_attempts=attempts,
                )
            )
            if cost or attempts:
                record.usage = record.usage + usage
                _add_cost(record, cost, unconfirmed, attempts)
            raise
        # A cancelled call keeps its reservation: the provider may still bill it.
        unconfirmed, attempts = _counted(result.unconfirmed_usd, result.unconfirmed_attempts)
        self.budget.settle(reservation, result.cost_usd, unconfirmed)
        record.calls.append(
            ModelCallRecord(
                alias=alias,
                model=result.model,
                outcome="ok" if result.valid else "invalid_output",
                usage=result.usage,
                cost_usd=result.cost_usd + unconfirmed,
                latency_ms=result.latency_ms,
                error=None if result.valid else "; ".join(result.schema_errors or []),
                purpose=purpose,  # type: ignore[arg-type]
                unconfirmed_usd=unconfirmed,
                unconfirmed_attempts=attempts,
            )
        )
        record.usage = record.usage + result.usage
        _add_cost(record, result.cost_usd, unconfirmed, attempts)
        self._on_spend()
        return result

    async def _execute_call(
        self, activity: str, arg: ModelCallInput, **options: Any
    ) -> ModelCallResult:
        """`workflow.execute_activity` of one model call, waiting out the
        gateway's `RateLimitWait` answers on a durable timer: the wait uses no
        provider attempt (each new call gets the step's retries afresh) and
        holds no worker slot. Runs recorded before this (no marker) replay
        as they ran: their calls never asked the gateway to defer."""
        defer = applies(WAIT_OUT_RATE_LIMITS)
        arg = arg.model_copy(update={"defer_rate_limits": defer})
        while True:
            try:
                return await workflow.execute_activity(activity, arg, **options)  # type: ignore[no-any-return]
            except ActivityError as err:
                wait = rate_limit_wait(err) if defer else None
                if wait is None:
                    raise
            self._waits_started += 1
            key = self._waits_started
            delay = _wait_delay(wait)
            self.waits[key] = ProviderWait(
                kind="rate_limit",
                step=arg.step,
                alias=arg.alias,
                until=workflow.now() + delay,
                reason=wait.reason,
            )
            try:
                await workflow.sleep(delay, summary=f"rate limit: {arg.alias}")
            finally:
                del self.waits[key]
            arg = arg.model_copy(update={"rate_limit_ticket": wait.ticket})

    async def call_with_fallbacks(
        self,
        aliases: Sequence[str],
        messages: Sequence[ChatMessage],
        options: CallOptions,
        record: StepRecord,
        purpose: str = "answer",
    ) -> ModelCallResult:
        """Try each alias in turn (chain model steps and agent turns alike); an
        alias is abandoned once Temporal has spent its retries or its error is
        non-retryable (refusals included). An alias whose worst case does not
        fit the budget is replaced by `options.budget_fallback` when there is
        one, else the run fails with BudgetExceeded."""
        failures: list[str] = []
        fallback = options.budget_fallback
        for index, alias in enumerate(aliases):
            if index > 0:
                metrics.fallback_taken(alias, "error")
            try:
                return await self._ask(
                    alias, messages, options, record, purpose if index == 0 else "fallback"
                )
            except ActivityError as err:
                _raise_if_cancelled(err)
                failures.append(f"{alias}: {describe_activity_error(err)}")
            except BudgetExceededError as err:
                metrics.budget_refused(alias)
                if fallback is None or alias == fallback:
                    raise _over_budget(options, err) from None
                metrics.fallback_taken(fallback, "budget")
                try:
                    return await self._ask(fallback, messages, options, record, "budget_fallback")
                except BudgetExceededError as again:
                    metrics.budget_refused(fallback)
                    raise _over_budget(options, again) from None
                except ActivityError as again:
                    _raise_if_cancelled(again)
                    failures.append(f"{fallback}: {describe_activity_error(again)}")
        raise ChainFailure(
            ChainErrorType.ALL_MODELS_FAILED,
            f"step {options.step}: every model failed: " + " | ".join(failures),
        )

    async def _ask(
        self,
        alias: str,
        messages: Sequence[ChatMessage],
        options: CallOptions,
        record: StepRecord,
        purpose: str,
    ) -> ModelCallResult:
        """Ask one alias, re-asking (up to `options.max_reasks`) while its
        structured output is invalid. Returns the last reply even if still
        invalid: the caller decides."""
        conversation = list(messages)
        result = await self.call(alias, conversation, options, record, purpose)
        for _ in range(options.max_reasks if options.json_schema is not None else 0):
            if result.valid:
                break
            conversation = [
                *conversation,
                ChatMessage(role="assistant", content=result.text),
                ChatMessage(
                    role="user",
                    content=REASK_PROMPT.format(errors="; ".join(result.schema_errors or [])),
                ),
            ]
            result = await self.call(alias, conversation, options, record, "reask")
        return result


COUNT_UNCONFIRMED_ATTEMPTS = "count-unconfirmed-attempts"
"""Patch: attempts of a call that may have been billed with no reply seen
(`ModelCallResult.unconfirmed_usd`, a failed call's details, a last attempt
that timed out) count in the step's cost, the run's cost and its budget.
Runs recorded before it replay without them."""


def _counted(unconfirmed_usd: float, attempts: int) -> tuple[float, int]:
    """What a call may have cost unseen, as this run counts it. The patch is
    asked only when there is something to count, so ordinary calls leave no
    marker in history."""
    if attempts and applies(COUNT_UNCONFIRMED_ATTEMPTS):
        return unconfirmed_usd, attempts
    return 0.0, 0


RESERVE_WHOLE_PROMPT = "reserve-tools-and-schema"
"""Patch: a call reserves the prompt as the gateway's journal bounds it
(`prompt_tokens_bound`: the messages, the tools offered, the tool calls in
the conversation and the structured-output schema), not its messages alone.
Runs recorded before it reserve as they did."""


def _prompt_tokens(request: ModelCallInput) -> int:
    """The prompt's worst-case token count the call reserves: the bound the
    gateway's reply journal counts an unconfirmed attempt at, so a call
    never costs more than its reservation whatever it carries. The patch is
    asked only when the two differ, so calls of messages alone leave no
    marker in history."""
    messages_only = estimate_prompt_tokens(request.messages)
    whole = prompt_tokens_bound(request)
    if whole != messages_only and applies(RESERVE_WHOLE_PROMPT):
        return whole
    return messages_only


def _add_cost(record: StepRecord, cost: float, unconfirmed: float, attempts: int) -> None:
    record.cost_usd += cost + unconfirmed
    record.unconfirmed_usd += unconfirmed
    record.unconfirmed_attempts += attempts


WAIT_OUT_RATE_LIMITS = "model-calls-wait-out-rate-limits"
"""Patch: model calls ask the gateway to answer a call over the alias's rate
limits with a `RateLimitWait` that the run waits out on a timer."""
MIN_WAIT_S = 0.05


def _wait_delay(wait: RateLimitWaitDetails) -> timedelta:
    """How long to sleep: until the time the gateway named, as this workflow
    task's clock sees it (the time the failure took to get here is not waited
    twice, so the call comes back inside the slot reserved for it), never
    longer than the gateway said, and not a busy loop."""
    longest = timedelta(seconds=wait.retry_in_s)
    try:
        until = datetime.fromisoformat(wait.until.replace("Z", "+00:00"))
    except ValueError:
        return max(longest, timedelta(seconds=MIN_WAIT_S))
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    left = min(until - workflow.now(), longest)
    return max(left, timedelta(seconds=MIN_WAIT_S))


def rate_limit_wait(err: ActivityError) -> RateLimitWaitDetails | None:
    """The wait the gateway asked for, if that is what this failure is."""
    cause = err.cause
    if not (
        isinstance(cause, ApplicationError)
        and cause.type == ProviderErrorType.RATE_LIMIT_WAIT
        and cause.details
    ):
        return None
    try:
        return RateLimitWaitDetails.model_validate(cause.details[0])
    except ValidationError:
        return None


def _over_budget(options: CallOptions, err: BudgetExceededError) -> ChainFailure:
    return ChainFailure(ChainErrorType.BUDGET_EXCEEDED, f"step {options.step}: {err}")


CANCELLED_CALLS_END_THE_STEP = "cancelled-calls-end-the-step"
"""Patch: a call cancelled with its run (or its parallel branch) ends the step
as cancelled instead of falling back to the next alias. Runs recorded before
it replay as they ran."""


def _raise_if_cancelled(err: ActivityError) -> None:
    """A cancelled call is not a failed alias: the cancellation goes on up
    (the run ends `cancelled`, a parallel branch stops) and no fallback is
    called and paid for."""
    if isinstance(err.cause, CancelledError) and applies(CANCELLED_CALLS_END_THE_STEP):
        raise asyncio.CancelledError() from err

"""Model steps: a rendered prompt to a model alias, with fallbacks, re-asks
of invalid structured output, a budget fallback and an optional cascade to
a stronger alias."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.gateway.types import ChatMessage, ModelCallResult
    from core.chain_errors import ChainErrorType
    from core.chain_spec import ModelStep
    from workflows.budget import BudgetExceededError
    from workflows.failures import ChainFailure, describe_activity_error
    from workflows.model_calls import CallOptions
    from workflows.run_context import RunContext, Variables
    from workflows.types import CascadeDecision, StepRecord

REASK_PROMPT = (
    "Your reply did not match the required JSON schema: {errors}. "
    "Reply again with only a JSON value that matches the schema."
)


class ModelRunner:
    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx

    async def run(
        self,
        step: ModelStep,
        variables: Variables,
        record: StepRecord,
        feedback: list[ChatMessage] | None = None,
    ) -> None:
        """`feedback` follows the prompt when a guard asks for another answer."""
        ctx = self._ctx
        messages: list[ChatMessage] = []
        if step.system:
            system = ctx.render(step.system, variables, f"{step.name}.system")
            messages.append(ChatMessage(role="system", content=system))
        prompt = ctx.render(step.prompt, variables, f"{step.name}.prompt")
        messages.append(ChatMessage(role="user", content=prompt))
        if feedback:
            messages.extend(feedback)
        result = await self._ask_with_fallbacks(
            step, [step.model, *step.fallbacks], messages, record
        )
        if step.escalate_to:
            reason = self._escalation_reason(step, result, variables)
            record.cascade = CascadeDecision(
                from_alias=result.alias,
                to_alias=step.escalate_to,
                escalated=reason is not None,
                reason=reason or "answer accepted",
            )
            if reason is not None:
                result = await self._ask_with_fallbacks(
                    step, [step.escalate_to], messages, record, purpose="escalation"
                )
        if not result.valid:
            raise ChainFailure(
                ChainErrorType.STRUCTURED_OUTPUT_INVALID,
                f"step {step.name}: {result.alias} kept answering with output that does not "
                f"match the schema after {step.max_reasks} re-asks: "
                + "; ".join(result.schema_errors or []),
            )
        record.model = result.alias
        record.output = result.parsed if step.output_schema is not None else result.text

    def _escalation_reason(
        self, step: ModelStep, result: ModelCallResult, variables: Variables
    ) -> str | None:
        if not result.valid:
            if step.escalate_on_invalid:
                return "invalid structured output: " + "; ".join(result.schema_errors or [])
            return None
        if step.escalate_when is None:
            return None
        output: Any = result.parsed if step.output_schema is not None else result.text
        if self._ctx.condition(
            step.escalate_when, {**variables, "output": output}, f"{step.name}.escalate_when"
        ):
            return f"escalate_when held: {step.escalate_when}"
        return None

    async def _ask_with_fallbacks(
        self,
        step: ModelStep,
        aliases: Sequence[str],
        messages: list[ChatMessage],
        record: StepRecord,
        purpose: str = "answer",
    ) -> ModelCallResult:
        """Try each alias in turn; an alias is abandoned once Temporal has spent
        its retries or its error is non-retryable (refusals included)."""
        failures: list[str] = []
        for index, alias in enumerate(aliases):
            try:
                return await self._ask(
                    step, alias, messages, record, purpose if index == 0 else "fallback"
                )
            except ActivityError as err:
                failures.append(f"{alias}: {describe_activity_error(err)}")
            except BudgetExceededError as err:
                if step.budget_fallback is None or alias == step.budget_fallback:
                    raise ChainFailure(
                        ChainErrorType.BUDGET_EXCEEDED, f"step {step.name}: {err}"
                    ) from None
                try:
                    return await self._ask(
                        step, step.budget_fallback, messages, record, "budget_fallback"
                    )
                except BudgetExceededError as again:
                    raise ChainFailure(
                        ChainErrorType.BUDGET_EXCEEDED, f"step {step.name}: {again}"
                    ) from None
                except ActivityError as again:
                    failures.append(f"{step.budget_fallback}: {describe_activity_error(again)}")
        raise ChainFailure(
            ChainErrorType.ALL_MODELS_FAILED,
            f"step {step.name}: every model failed: " + " | ".join(failures),
        )

    async def _ask(
        self,
        step: ModelStep,
        alias: str,
        messages: list[ChatMessage],
        record: StepRecord,
        purpose: str,
    ) -> ModelCallResult:
        """Ask one alias, re-asking (bounded) while structured output is invalid.
        Returns the last reply even if still invalid: the caller decides."""
        conversation = list(messages)
        result = await self._call(step, alias, conversation, record, purpose)
        for _ in range(step.max_reasks if step.output_schema is not None else 0):
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
            result = await self._call(step, alias, conversation, record, "reask")
        return result

    async def _call(
        self,
        step: ModelStep,
        alias: str,
        messages: list[ChatMessage],
        record: StepRecord,
        purpose: str,
    ) -> ModelCallResult:
        options = CallOptions(
            step=step.name,
            max_tokens=step.max_tokens,
            temperature=step.temperature,
            json_schema=step.output_schema,
            retry=self._ctx.retry_for(step),
        )
        return await self._ctx.caller.call(alias, messages, options, record, purpose)

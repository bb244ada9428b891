"""Model steps: a rendered prompt to a model alias, with fallbacks, re-asks
of invalid structured output, a budget fallback and an optional cascade to
a stronger alias."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.gateway.types import ChatMessage, ModelCallResult
    from core.chain_errors import ChainErrorType
    from core.chain_spec import ModelStep
    from workflows.failures import ChainFailure
    from workflows.model_calls import CallOptions
    from workflows.run_context import RunContext, Variables
    from workflows.types import CascadeDecision, StepRecord


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
        options = CallOptions(
            step=step.name,
            max_tokens=step.max_tokens,
            temperature=step.temperature,
            json_schema=step.output_schema,
            retry=ctx.retry_for(step),
            max_reasks=step.max_reasks,
            budget_fallback=step.budget_fallback,
        )
        caller = ctx.caller
        aliases = [step.model, *step.fallbacks]
        result = await caller.call_with_fallbacks(aliases, messages, options, record)
        if step.escalate_to:
            reason = self._escalation_reason(step, result, variables)
            record.cascade = CascadeDecision(
                from_alias=result.alias,
                to_alias=step.escalate_to,
                escalated=reason is not None,
                reason=reason or "answer accepted",
            )
            if reason is not None:
                result = await caller.call_with_fallbacks(
                    [step.escalate_to], messages, options, record, purpose="escalation"
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

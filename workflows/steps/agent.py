"""Agent steps: a model-driven tool loop run as a child workflow
(workflows/agent.py), within what is left of the run's budget and calls."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from core.chain_errors import ChainErrorType
    from core.chain_spec import AgentStep
    from core.names import AGENT_WORKFLOW_NAME
    from workflows.agent_types import AgentInput, AgentResult
    from workflows.failures import ChainFailure
    from workflows.run_context import RunContext, Variables
    from workflows.types import StepRecord


class AgentRunner:
    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx

    async def run(self, step: AgentStep, variables: Variables, record: StepRecord) -> None:
        ctx = self._ctx
        caller, budget = ctx.caller, ctx.budget
        task = ctx.render(step.prompt, variables, f"{step.name}.prompt")
        system = ctx.render(step.system, variables, f"{step.name}.system") if step.system else None
        caps = [c for c in (step.max_cost_usd, budget.available_usd) if c is not None]
        cap = min(caps) if caps else None
        reservation = budget.reserve(cap, f"agent {step.name}") if cap is not None else None
        try:
            result = await workflow.execute_child_workflow(
                AGENT_WORKFLOW_NAME,
                AgentInput(
                    step=step,
                    chain=ctx.spec.name,
                    task=task,
                    system=system,
                    models={a: caller.models[a] for a in [step.model, *step.fallbacks]},
                    tools={t: ctx.tools[t] for t in step.tools},
                    retry=ctx.retry_for(step),
                    budget_usd=cap,
                    max_calls=caller.max_calls - caller.calls_made,
                    history_event_limit=step.history_event_limit,
                ),
                id=f"{workflow.info().workflow_id}--{step.name}",
                result_type=AgentResult,
                static_summary=f"agent {step.name} · {step.model}",
            )
        except ChildWorkflowError as err:
            if reservation is not None:
                budget.release(reservation)
            cause = err.cause
            error_type = cause.type if isinstance(cause, ApplicationError) and cause.type else None
            message = cause.message if isinstance(cause, ApplicationError) else str(err)
            raise ChainFailure(
                error_type or ChainErrorType.AGENT_FAILED, f"step {step.name}: {message}"
            ) from None
        unconfirmed = sum(c.unconfirmed_usd for c in result.calls)
        if reservation is not None:
            # The agent's cost counts its unconfirmed attempts already.
            budget.settle(reservation, result.cost_usd - unconfirmed, unconfirmed)
        caller.calls_made += len(result.calls)
        record.calls.extend(result.calls)
        record.usage = result.usage
        record.cost_usd = result.cost_usd
        record.unconfirmed_usd = unconfirmed
        record.unconfirmed_attempts = sum(c.unconfirmed_attempts for c in result.calls)
        record.model = next((t.alias for t in reversed(result.transcript)), None)
        record.output = {
            "answer": result.answer,
            "stopped": result.stopped,
            "turns": result.turns,
            "continued_as_new": result.continued_as_new,
            "transcript": [turn.model_dump(mode="json") for turn in result.transcript],
        }
        ctx.publish_cost()

"""Agent steps: a model-driven tool loop run as a child workflow
(workflows/agent.py), within what is left of the run's budget and calls."""

from __future__ import annotations

from pydantic import ValidationError
from temporalio import workflow
from temporalio.exceptions import ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from core.chain_errors import ChainErrorType
    from core.chain_spec import AgentStep
    from core.names import AGENT_WORKFLOW_NAME
    from workflows.agent_types import AgentInput, AgentResult, AgentSpend
    from workflows.budget import Reservation
    from workflows.failures import ChainFailure
    from workflows.patches import applies
    from workflows.run_context import RunContext, Variables
    from workflows.types import StepRecord

COUNT_AGENT_SPEND = "agent-spend-counted-in-the-run"
"""Patch: an agent's spend counts in the run's budget (`max_cost_usd`, what
later steps and parallel branches may reserve, ChorusCostUsd) and in the
step's calls and cost whether the agent answered or failed, and in runs with
no cap. Before it, a failed agent's reservation was released and its calls
dropped, and an uncapped run's budget never saw an agent's spend. Asked only
when there is spend it counts, so runs recorded before replay as they ran."""


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
            cause = err.cause
            spend = _failed_agent_spend(cause)
            if spend is not None and spend.calls and applies(COUNT_AGENT_SPEND):
                # The money a failed agent spent stays spent: in the run's
                # cost, and out of what later steps and branches may reserve.
                self._count(spend, reservation, record, charge=True)
            elif reservation is not None:
                budget.release(reservation)
            error_type = cause.type if isinstance(cause, ApplicationError) and cause.type else None
            message = cause.message if isinstance(cause, ApplicationError) else str(err)
            raise ChainFailure(
                error_type or ChainErrorType.AGENT_FAILED, f"step {step.name}: {message}"
            ) from None
        # A run with no cap reserves nothing for its agent; since the patch
        # it counts the agent's spend all the same.
        charge = reservation is None and bool(result.cost_usd)
        charge = charge and applies(COUNT_AGENT_SPEND)
        self._count(result, reservation, record, charge=charge)
        record.model = next((t.alias for t in reversed(result.transcript)), None)
        record.output = {
            "answer": result.answer,
            "stopped": result.stopped,
            "turns": result.turns,
            "continued_as_new": result.continued_as_new,
            "transcript": [turn.model_dump(mode="json") for turn in result.transcript],
        }
        ctx.publish_cost()

    def _count(
        self,
        spent: AgentResult | AgentSpend,
        reservation: Reservation | None,
        record: StepRecord,
        *,
        charge: bool,
    ) -> None:
        """Count what the agent spent, answered or failed: in the run's
        budget (settling its reservation, or charged with `charge` when it
        has none), its call limit and the step's record."""
        ctx = self._ctx
        calls = spent.calls
        unconfirmed = sum(c.unconfirmed_usd for c in calls)
        # The agent's cost counts its unconfirmed attempts already.
        if reservation is not None:
            ctx.budget.settle(reservation, spent.cost_usd - unconfirmed, unconfirmed)
        elif charge:
            ctx.budget.charge(spent.cost_usd - unconfirmed, unconfirmed)
        ctx.caller.calls_made += len(calls)
        record.calls.extend(calls)
        record.usage = spent.usage
        record.cost_usd = spent.cost_usd
        record.unconfirmed_usd = unconfirmed
        record.unconfirmed_attempts = sum(c.unconfirmed_attempts for c in calls)


def _failed_agent_spend(cause: BaseException | None) -> AgentSpend | None:
    """What a failed agent reported it spent (None from agents that did not
    say: recorded before they did, or cancelled or terminated)."""
    if not isinstance(cause, ApplicationError) or not cause.details:
        return None
    try:
        return AgentSpend.model_validate(cause.details[0])
    except ValidationError:
        return None

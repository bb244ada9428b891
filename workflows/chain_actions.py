"""Steps that act beyond model calls: retrieval, tools, guards and agents.

A mixin of ChainWorkflow, kept apart so the interpreter's core (chain.py)
stays readable; it relies on ChainWorkflow's state (records, budget, model
caller, tool snapshot) and helpers (rendering, approvals, model steps). The
same determinism rules apply: no I/O here, every side effect is an activity
or a child workflow.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.gateway.types import ChatMessage
    from activities.retrieval.types import RETRIEVE, RetrieveInput, RetrieveResult
    from core.chain_errors import ChainErrorType
    from core.chain_spec import AgentStep, GuardStep, ModelStep, RetrieveStep, ToolStep
    from workflows import guards
    from workflows.agent_types import AGENT_WORKFLOW_NAME, AgentInput, AgentResult
    from workflows.approval_host import ApprovalRequest, rejection_message
    from workflows.failures import ChainFailure, ChainRejected, describe_activity_error
    from workflows.tool_calls import run_tool
    from workflows.types import StepRecord

GUARD_RETRY_PROMPT = (
    "Your answer did not pass these checks:\n{}\nAnswer again, fixing every problem."
)


class ActionStepsMixin:
    """retrieve, tool, guard and agent steps (see the module docstring)."""

    if TYPE_CHECKING:  # provided by ChainWorkflow
        from activities.tools.types import ToolInfo
        from core.chain_spec import ChainSpec, Step
        from workflows.activity_options import ActivityOptions
        from workflows.budget import Budget
        from workflows.model_calls import ModelCaller

        _spec: ChainSpec | None
        _records: dict[str, StepRecord]
        _step_defs: dict[str, Step]
        _tools: dict[str, ToolInfo]
        _budget: Budget
        _caller: ModelCaller
        activity_options: ActivityOptions

    # -- retrieval and tools -----------------------------------------------------

    async def _run_retrieve_step(
        self, step: RetrieveStep, context: dict[str, Any], record: StepRecord
    ) -> None:
        query = self._render(step.query, context, f"{step.name}.query")
        try:
            result = await workflow.execute_activity(
                RETRIEVE,
                RetrieveInput(
                    collection=step.collection, query=query, top_k=step.top_k, step=step.name
                ),
                result_type=RetrieveResult,
                start_to_close_timeout=self.activity_options.retrieve_timeout,
                summary=f"{step.name} · retrieve from {step.collection}",
            )
        except ActivityError as err:
            raise ChainFailure(
                ChainErrorType.RETRIEVAL_FAILED, f"step {step.name}: {describe_activity_error(err)}"
            ) from None
        record.output = result.model_dump(mode="json")

    async def _run_tool_step(
        self, step: ToolStep, context: dict[str, Any], record: StepRecord
    ) -> None:
        info = self._tools[step.tool]
        arguments = self._render_value(step.arguments, context, f"{step.name}.arguments")
        key = (
            self._render(step.idempotency_key, context, f"{step.name}.idempotency_key")
            if step.idempotency_key
            else None
        )
        if info.requires_approval:
            approval = await self._ask_people(
                ApprovalRequest(
                    approval_id=step.name,
                    step=step.name,
                    text=json.dumps(arguments, indent=2, sort_keys=True),
                    context={"tool": step.tool, "description": info.description},
                    instructions=f"Approve running {step.tool} with these arguments, or reject.",
                    required_role="reviewer",
                    required_approvals=1,
                    timeout_s=7 * 24 * 3600,
                )
            )
            if approval.status == "rejected":
                raise ChainRejected(rejection_message(step.name, approval))
            arguments = self._edited_arguments(step.name, approval.text)
        try:
            result = await run_tool(
                info,
                arguments,
                idempotency_key=key,
                step=step.name,
                options=self.activity_options,
            )
        except ActivityError as err:
            cause = err.cause
            error_type = cause.type if isinstance(cause, ApplicationError) and cause.type else None
            raise ChainFailure(
                error_type or ChainErrorType.TOOL_FAILED,
                f"step {step.name}: tool {step.tool} failed: {describe_activity_error(err)}",
            ) from None
        record.output = result.output

    @staticmethod
    def _edited_arguments(step: str, text: str) -> dict[str, Any]:
        try:
            arguments = json.loads(text)
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise ChainFailure(
                ChainErrorType.TOOL_INVALID_ARGUMENTS,
                f"step {step}: the approved arguments are not a JSON object",
            )
        return arguments

    def _render_value(self, value: Any, context: dict[str, Any], where: str) -> Any:
        """Render every string inside a JSON-like value as a template."""
        if isinstance(value, str):
            return self._render(value, context, where)
        if isinstance(value, dict):
            return {k: self._render_value(v, context, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self._render_value(v, context, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    # -- guards ------------------------------------------------------------------

    async def _run_guard_step(
        self, step: GuardStep, context: dict[str, Any], record: StepRecord
    ) -> None:
        target = self._records[step.target]
        retrieved = None
        if step.rules.citations_from:
            source = self._records.get(step.rules.citations_from)
            passages = (source.output or {}).get("passages", []) if source else []
            retrieved = [p["id"] for p in passages]
        violations = guards.check(target.output, step.rules, retrieved_ids=retrieved)
        retries = 0
        while violations:
            described = guards.describe(violations)
            record.violations.append(described)
            if step.on_fail == "retry" and retries < step.max_retries:
                retries += 1
                definition = self._step_defs[step.target]
                assert isinstance(definition, ModelStep)
                previous = (
                    target.output
                    if isinstance(target.output, str)
                    else json.dumps(target.output, sort_keys=True)
                )
                await self._run_model_step(
                    definition,
                    context,
                    target,
                    feedback=[
                        ChatMessage(role="assistant", content=previous),
                        ChatMessage(role="user", content=GUARD_RETRY_PROMPT.format(described)),
                    ],
                )
                self._publish_step(context, target)
                violations = guards.check(target.output, step.rules, retrieved_ids=retrieved)
                continue
            if step.on_fail == "escalate":
                approval = await self._ask_people(
                    ApprovalRequest(
                        approval_id=step.name,
                        step=step.name,
                        text=(
                            target.output
                            if isinstance(target.output, str)
                            else json.dumps(target.output, indent=2, sort_keys=True)
                        ),
                        context={"violations": described, "checked_step": step.target},
                        instructions=(
                            f"The output of {step.target} failed automatic checks (listed). "
                            "Approve it anyway, edit it, or reject it."
                        ),
                        required_role=step.required_role,
                        required_approvals=1,
                        timeout_s=step.timeout_s,
                    )
                )
                if approval.status == "rejected":
                    raise ChainRejected(rejection_message(step.name, approval))
                if any(d.decision == "edit" for d in approval.decisions):
                    # Only an edit replaces the output: approving a structured
                    # output as shown keeps it structured.
                    target.output = approval.text
                    self._publish_step(context, target)
                break
            raise ChainFailure(
                ChainErrorType.GUARD_FAILED,
                f"step {step.name}: the output of {step.target} failed its checks"
                + (f" after {retries} retries" if retries else "")
                + f": {described}",
            )
        record.output = target.output

    # -- agents ------------------------------------------------------------------

    async def _run_agent_step(
        self, step: AgentStep, context: dict[str, Any], record: StepRecord
    ) -> None:
        task = self._render(step.prompt, context, f"{step.name}.prompt")
        system = self._render(step.system, context, f"{step.name}.system") if step.system else None
        available = self._budget.available_usd
        caps = [c for c in (step.max_cost_usd, available) if c is not None]
        cap = min(caps) if caps else None
        reservation = self._budget.reserve(cap, f"agent {step.name}") if cap is not None else None
        try:
            result = await workflow.execute_child_workflow(
                AGENT_WORKFLOW_NAME,
                AgentInput(
                    step=step,
                    chain=self._spec.name if self._spec else "",
                    task=task,
                    system=system,
                    models={a: self._caller.models[a] for a in [step.model, *step.fallbacks]},
                    tools={t: self._tools[t] for t in step.tools},
                    retry=self._retry_for(step),
                    budget_usd=cap,
                    max_calls=self._caller.max_calls - self._caller.calls_made,
                    history_event_limit=step.history_event_limit,
                ),
                id=f"{workflow.info().workflow_id}--{step.name}",
                result_type=AgentResult,
                static_summary=f"agent {step.name} · {step.model}",
            )
        except ChildWorkflowError as err:
            if reservation is not None:
                self._budget.release(reservation)
            cause = err.cause
            error_type = cause.type if isinstance(cause, ApplicationError) and cause.type else None
            message = cause.message if isinstance(cause, ApplicationError) else str(err)
            raise ChainFailure(
                error_type or ChainErrorType.AGENT_FAILED, f"step {step.name}: {message}"
            ) from None
        if reservation is not None:
            self._budget.settle(reservation, result.cost_usd)
        self._caller.calls_made += len(result.calls)
        record.calls.extend(result.calls)
        record.usage = result.usage
        record.cost_usd = result.cost_usd
        record.model = next((t.alias for t in reversed(result.transcript)), None)
        record.output = {
            "answer": result.answer,
            "stopped": result.stopped,
            "turns": result.turns,
            "continued_as_new": result.continued_as_new,
            "transcript": [turn.model_dump(mode="json") for turn in result.transcript],
        }
        self._publish_cost()

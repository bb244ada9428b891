"""Approval steps: people approve, edit or reject a rendered text."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.chain_spec import ApprovalStep
    from workflows.approval_host import ApprovalRequest, rejection_message
    from workflows.failures import ChainRejected
    from workflows.run_context import RunContext, Variables
    from workflows.types import StepRecord


class ApprovalRunner:
    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx

    async def run(self, step: ApprovalStep, variables: Variables, record: StepRecord) -> None:
        ctx = self._ctx
        text = ctx.render(step.text, variables, f"{step.name}.text")
        if step.when is not None and not ctx.condition(step.when, variables, f"{step.name}.when"):
            record.branch = "not required (when did not hold)"
            record.output = text
            return
        request = ApprovalRequest(
            approval_id=step.name,
            step=step.name,
            text=text,
            context={
                key: ctx.render(source, variables, f"{step.name}.context.{key}")
                for key, source in step.context.items()
            },
            instructions=(
                ctx.render(step.instructions, variables, f"{step.name}.instructions")
                if step.instructions
                else None
            ),
            required_role=step.required_role,
            required_approvals=step.required_approvals,
            timeout_s=step.timeout_s,
            on_timeout=step.on_timeout,
            escalate_to_role=step.escalate_to_role,
            escalation_timeout_s=step.escalation_timeout_s,
        )
        record.status = "awaiting_approval"
        approval = await ctx.ask_people(request)
        if approval.status == "rejected":
            raise ChainRejected(rejection_message(step.name, approval))
        record.output = approval.text

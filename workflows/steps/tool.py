"""Tool steps: one registered tool with rendered arguments, approved first
when its registry entry requires it."""

from __future__ import annotations

import json
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from core.chain_errors import ChainErrorType
    from core.chain_spec import ToolStep
    from workflows.approval_host import ApprovalRequest, rejection_message
    from workflows.failures import ChainFailure, ChainRejected, describe_activity_error
    from workflows.run_context import RunContext, Variables
    from workflows.tool_calls import run_tool
    from workflows.types import StepRecord

APPROVAL_TIMEOUT_S = 7 * 24 * 3600
"""How long a tool step waits for its approval before it is rejected."""


class ToolRunner:
    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx

    async def run(self, step: ToolStep, variables: Variables, record: StepRecord) -> None:
        ctx = self._ctx
        info = ctx.tools[step.tool]
        arguments = ctx.render_value(step.arguments, variables, f"{step.name}.arguments")
        key = (
            ctx.render(step.idempotency_key, variables, f"{step.name}.idempotency_key")
            if step.idempotency_key
            else None
        )
        if info.requires_approval:
            approval = await ctx.ask_people(
                ApprovalRequest(
                    approval_id=step.name,
                    step=step.name,
                    text=json.dumps(arguments, indent=2, sort_keys=True),
                    context={"tool": step.tool, "description": info.description},
                    instructions=f"Approve running {step.tool} with these arguments, or reject.",
                    required_role="reviewer",
                    required_approvals=1,
                    timeout_s=APPROVAL_TIMEOUT_S,
                )
            )
            if approval.status == "rejected":
                raise ChainRejected(rejection_message(step.name, approval))
            arguments = _edited_arguments(step.name, approval.text)
        try:
            result = await run_tool(
                info, arguments, idempotency_key=key, step=step.name, options=ctx.options
            )
        except ActivityError as err:
            cause = err.cause
            error_type = cause.type if isinstance(cause, ApplicationError) and cause.type else None
            raise ChainFailure(
                error_type or ChainErrorType.TOOL_FAILED,
                f"step {step.name}: tool {step.tool} failed: {describe_activity_error(err)}",
            ) from None
        record.output = result.output


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

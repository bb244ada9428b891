"""Guard steps: check another step's output against rules; on violations
retry that model step with the problems fed back, escalate to people, or
fail the run."""

from __future__ import annotations

import json

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.gateway.types import ChatMessage
    from core.chain_errors import ChainErrorType
    from core.chain_spec import GuardStep, ModelStep
    from workflows import guards, metrics
    from workflows.approval_host import ApprovalRequest, rejection_message
    from workflows.failures import ChainFailure, ChainRejected
    from workflows.patches import applies
    from workflows.run_context import RunContext, Variables
    from workflows.steps.model import ModelRunner
    from workflows.types import StepRecord

CHORUS_JSON_FORMATS = "guards-check-chorus-json-formats"
"""Patch: guards check JSON Schema formats with core.json_formats."""

GUARD_RETRY_PROMPT = (
    "Your answer did not pass these checks:\n{}\nAnswer again, fixing every problem."
)


class GuardRunner:
    def __init__(self, ctx: RunContext, models: ModelRunner) -> None:
        self._ctx = ctx
        self._models = models

    async def run(self, step: GuardStep, variables: Variables, record: StepRecord) -> None:
        ctx = self._ctx
        target = ctx.records[step.target]
        retrieved = None
        if step.rules.citations_from:
            source = ctx.records.get(step.rules.citations_from)
            passages = (source.output or {}).get("passages", []) if source else []
            retrieved = [p["id"] for p in passages]
        # Formats are checked by Chorus's own checker on every worker alike;
        # runs recorded before it replay with jsonschema's.
        formats = step.rules.json_schema is not None and applies(CHORUS_JSON_FORMATS)
        violations = guards.check(
            target.output, step.rules, retrieved_ids=retrieved, chorus_formats=formats
        )
        retries = 0
        verdict = "passed"
        while violations:
            described = guards.describe(violations)
            record.violations.append(described)
            if step.on_fail == "retry" and retries < step.max_retries:
                retries += 1
                definition = ctx.step_defs[step.target]
                assert isinstance(definition, ModelStep)
                previous = (
                    target.output
                    if isinstance(target.output, str)
                    else json.dumps(target.output, sort_keys=True)
                )
                await self._models.run(
                    definition,
                    variables,
                    target,
                    feedback=[
                        ChatMessage(role="assistant", content=previous),
                        ChatMessage(role="user", content=GUARD_RETRY_PROMPT.format(described)),
                    ],
                )
                ctx.publish_step(variables, target)
                violations = guards.check(
                    target.output, step.rules, retrieved_ids=retrieved, chorus_formats=formats
                )
                verdict = "passed_after_retry"
                continue
            if step.on_fail == "escalate":
                verdict = "escalated"
                metrics.guard_verdict(ctx.spec.name, verdict)
                approval = await ctx.ask_people(
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
                    ctx.publish_step(variables, target)
                break
            metrics.guard_verdict(ctx.spec.name, "failed")
            raise ChainFailure(
                ChainErrorType.GUARD_FAILED,
                f"step {step.name}: the output of {step.target} failed its checks"
                + (f" after {retries} retries" if retries else "")
                + f": {described}",
            )
        if verdict != "escalated":
            metrics.guard_verdict(ctx.spec.name, verdict)
        record.output = target.output

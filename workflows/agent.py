"""AgentWorkflow: a model-driven tool loop, run as a child of a chain.

Each turn is one model call offering the allowed tools; each tool call the
model makes runs as an activity (after a person approves it, for tools that
require approval) and its result goes back to the model. The loop ends when
the model answers without calling a tool, or at the turn limit. A long loop
continues-as-new with its state in the input, so its history stays short.
"""

from __future__ import annotations

import json
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.gateway.types import ChatMessage, TokenUsage, ToolCall, ToolSpec
    from core.names import AGENT_WORKFLOW_NAME
    from core.search_attributes import CHAIN_KEY, STATUS_KEY
    from workflows.agent_types import (
        AgentInput,
        AgentResult,
        AgentSpend,
        AgentToolCall,
        AgentTurn,
        ToolOutcome,
    )
    from workflows.approval_host import ApprovalHost, ApprovalRequest
    from workflows.budget import Budget
    from workflows.failures import ChainFailure, describe_activity_error
    from workflows.model_calls import CallOptions, ModelCaller
    from workflows.patches import applies, ask_baseline
    from workflows.tool_calls import run_tool
    from workflows.types import StepRecord

RESULT_PREVIEW_CHARS = 300
AGENT_DRAINS_HANDLERS = "agent-drains-handlers-before-continue-as-new"
"""Patch: an agent waits for its Update and Signal handlers before it
continues as new (runs recorded before it replay as they ran)."""
MAX_TOOL_RESULT_CHARS = 20_000
"""A tool result longer than this is cut before it goes back to the model."""


@workflow.defn(name=AGENT_WORKFLOW_NAME)
class AgentWorkflow(ApprovalHost):
    def __init__(self) -> None:
        super().__init__()
        self._status = "running"

    @workflow.run
    async def run(self, inp: AgentInput) -> AgentResult:
        ask_baseline()  # first: see workflows/patches.py
        step = inp.step
        if inp.continued == 0:
            workflow.upsert_search_attributes(
                [CHAIN_KEY.value_set(inp.chain), STATUS_KEY.value_set("running")]
            )
        remaining = None if inp.budget_usd is None else max(inp.budget_usd - inp.spent_usd, 0.0)
        record = StepRecord(name=step.name, kind="agent", status="running", calls=list(inp.calls))
        caller = ModelCaller(
            budget=Budget(remaining),
            models=inp.models,
            max_calls=max(inp.max_calls - len(inp.calls), 0),
            options=self.activity_options,
        )
        options = CallOptions(
            step=step.name,
            max_tokens=step.max_tokens,
            temperature=step.temperature,
            retry=inp.retry,
            tools=[
                ToolSpec(name=name, description=info.description, parameters=info.parameters)
                for name, info in inp.tools.items()
                if name in step.tools
            ],
        )
        messages = list(inp.messages) or self._first_messages(inp)
        transcript = list(inp.transcript)
        turn = inp.turns_done
        answer: str | None = None
        try:
            while turn < step.max_turns:
                if workflow.info().get_current_history_length() >= inp.history_event_limit:
                    if applies(AGENT_DRAINS_HANDLERS):
                        # A decision still being audited would be lost with
                        # this run: let every handler finish first.
                        await workflow.wait_condition(workflow.all_handlers_finished)
                    spent = inp.spent_usd + caller.budget.spent_usd
                    workflow.continue_as_new(
                        inp.model_copy(
                            update={
                                "messages": messages,
                                "turns_done": turn,
                                "transcript": transcript,
                                "calls": record.calls,
                                "spent_usd": spent,
                                "continued": inp.continued + 1,
                            }
                        )
                    )
                result = await caller.call_with_fallbacks(
                    [step.model, *step.fallbacks], messages, options, record
                )
                turn += 1
                entry = AgentTurn(turn=turn, alias=result.alias, text=result.text[:500])
                transcript.append(entry)
                messages.append(
                    ChatMessage(
                        role="assistant",
                        content=result.text,
                        tool_calls=result.tool_calls or None,
                    )
                )
                if not result.tool_calls:
                    answer = result.text
                    break
                for call in result.tool_calls:
                    content, outcome = await self._use_tool(inp, call)
                    messages.append(ChatMessage(role="tool", content=content, tool_call_id=call.id))
                    entry.tool_calls.append(
                        AgentToolCall(
                            id=call.id,
                            name=call.name,
                            arguments=call.arguments,
                            outcome=outcome,
                            result_preview=content[:RESULT_PREVIEW_CHARS],
                        )
                    )
        except ChainFailure as failure:
            # What was spent goes with the failure: the chain counts it.
            raise ApplicationError(
                str(failure),
                _spend(record, turn),
                type=failure.error_type,
                non_retryable=True,
            ) from None
        await workflow.wait_condition(workflow.all_handlers_finished)
        spend = _spend(record, turn)
        return AgentResult(
            answer=answer,
            stopped="answered" if answer is not None else "turn_limit",
            turns=turn,
            transcript=transcript,
            calls=spend.calls,
            usage=spend.usage,
            cost_usd=spend.cost_usd,
            continued_as_new=inp.continued,
        )

    @staticmethod
    def _first_messages(inp: AgentInput) -> list[ChatMessage]:
        messages = [ChatMessage(role="system", content=inp.system)] if inp.system else []
        return [*messages, ChatMessage(role="user", content=inp.task)]

    async def _on_approvals_changed(self) -> None:
        status = "awaiting_approval" if self._desk.pending() else "running"
        if status != self._status:
            self._status = status
            workflow.upsert_search_attributes([STATUS_KEY.value_set(status)])

    async def _use_tool(self, inp: AgentInput, call: ToolCall) -> tuple[str, ToolOutcome]:
        """Run one tool call; whatever happens, the model gets a tool result
        that says so (errors are information for the model, not a crash)."""
        step = inp.step
        if call.name not in step.tools or call.name not in inp.tools:
            allowed = ", ".join(step.tools) or "none"
            return f"error: tool {call.name!r} is not allowed here (allowed: {allowed})", (
                "not_allowed"
            )
        if set(call.arguments) == {"_raw"}:
            return "error: the arguments were not a valid JSON object", "error"
        info = inp.tools[call.name]
        arguments: dict[str, Any] = call.arguments
        if info.requires_approval:
            approval = await self._ask_people(
                ApprovalRequest(
                    approval_id=f"{step.name}-{call.id}",
                    step=step.name,
                    text=json.dumps(arguments, indent=2, sort_keys=True),
                    context={"tool": call.name, "description": info.description},
                    instructions=(
                        f"The agent wants to run {call.name} with these arguments. Approve, "
                        "edit the JSON arguments, or reject with a reason."
                    ),
                    required_role=step.approval_role,
                    required_approvals=1,
                    timeout_s=step.approval_timeout_s,
                    on_timeout="reject",
                )
            )
            if approval.status == "rejected":
                reason = approval.decisions[-1].comment or "no reason given"
                return f"The reviewer rejected this call, so it did not run: {reason}", "rejected"
            try:
                arguments = json.loads(approval.text)
            except ValueError:
                return "error: the reviewer's edited arguments are not valid JSON", "error"
            if not isinstance(arguments, dict):
                return "error: the reviewer's edited arguments are not a JSON object", "error"
        try:
            result = await run_tool(
                info,
                arguments,
                idempotency_key=f"{workflow.info().workflow_id}/{call.id}",
                step=step.name,
                options=self.activity_options,
            )
        except ActivityError as err:
            return f"error: {describe_activity_error(err)}", "error"
        text = json.dumps(result.output, default=str, sort_keys=True)
        return text[:MAX_TOOL_RESULT_CHARS], "ok"


def _spend(record: StepRecord, turns: int) -> AgentSpend:
    usage = TokenUsage()
    for call in record.calls:
        usage = usage + call.usage
    return AgentSpend(
        calls=record.calls,
        usage=usage,
        cost_usd=sum(c.cost_usd for c in record.calls),
        turns=turns,
    )

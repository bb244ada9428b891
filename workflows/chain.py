"""ChainWorkflow: interprets a chain spec durably.

Determinism: this module does no I/O and reads time only through
`workflow.now()`. Every side effect (model calls, price lookups, the run
index and the approval audit log) is an activity, so a replay reproduces the
same commands from history. Changing the order or number of commands this
code issues for a given spec breaks replay of runs in flight: guard such
changes with `workflow.patched`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.gateway.types import (
        DESCRIBE_MODELS,
        ChatMessage,
        DescribeModelsInput,
        DescribeModelsResult,
        ModelCallResult,
    )
    from activities.tools.types import ToolInfo
    from core.chain_errors import ChainErrorType
    from core.chain_spec import (
        AgentStep,
        ApprovalStep,
        ChainSpec,
        GuardStep,
        ModelStep,
        ParallelStep,
        RetrieveStep,
        RetrySpec,
        RouteStep,
        Step,
        ToolStep,
        iter_aliases,
        iter_tools,
    )
    from core.records import RECORD_RUN, RunRecordInput
    from core.search_attributes import CHAIN_KEY, COST_KEY, STATUS_KEY
    from workflows import templating
    from workflows.approval_host import ApprovalHost, ApprovalRequest, rejection_message
    from workflows.budget import Budget, BudgetExceededError
    from workflows.chain_actions import ActionStepsMixin
    from workflows.failures import (
        ChainFailure,
        ChainRejected,
        describe_activity_error,
        is_budget_failure,
    )
    from workflows.model_calls import CallOptions, ModelCaller
    from workflows.tool_calls import describe_tools
    from workflows.types import (
        STATE_QUERY,
        WORKFLOW_NAME,
        BudgetState,
        CascadeDecision,
        ChainInput,
        ChainResult,
        ModelUsage,
        RunState,
        RunStatus,
        StepRecord,
        UsageSummary,
    )


REASK_PROMPT = (
    "Your reply did not match the required JSON schema: {errors}. "
    "Reply again with only a JSON value that matches the schema."
)
COST_REFRESH = timedelta(seconds=2)
PATCH_THROTTLE_COST_UPSERTS = "chorus-throttle-cost-upserts"
PATCH_RUN_INDEX = "chorus-run-index"


@workflow.defn(name=WORKFLOW_NAME)
class ChainWorkflow(ApprovalHost, ActionStepsMixin):
    def __init__(self) -> None:
        super().__init__()
        self._spec: ChainSpec | None = None
        self._status: RunStatus = "running"
        self._records: dict[str, StepRecord] = {}
        self._current: list[str] = []
        self._finished: list[str] = []
        self._budget = Budget(None)
        self._caller = ModelCaller(budget=self._budget, models={}, max_calls=0)
        self._tools: dict[str, ToolInfo] = {}
        self._step_defs: dict[str, Step] = {}
        self._error: str | None = None
        self._cost_published_at: datetime | None = None
        self._throttle_cost_upserts = True
        self._index_runs = True
        self._index_revision = 0
        self._started_at: datetime | None = None

    @workflow.run
    async def run(self, inp: ChainInput) -> ChainResult:
        spec = inp.spec
        self._spec = spec
        caps = [c for c in (spec.limits.max_cost_usd, inp.max_cost_usd) if c is not None]
        self._budget = Budget(min(caps) if caps else None)
        self._caller = ModelCaller(
            budget=self._budget,
            models={},
            max_calls=spec.limits.max_steps,
            on_spend=self._publish_cost,
            options=self.activity_options,
        )
        workflow.upsert_search_attributes(
            [
                CHAIN_KEY.value_set(spec.name),
                STATUS_KEY.value_set("running"),
                COST_KEY.value_set(0.0),
            ]
        )
        self._started_at = self._cost_published_at = workflow.now()
        # Runs started before cost upserts were throttled upsert after every
        # call; runs started before the run index existed write no index rows.
        self._throttle_cost_upserts = workflow.patched(PATCH_THROTTLE_COST_UPSERTS)
        self._index_runs = workflow.patched(PATCH_RUN_INDEX)
        await self._index_run()
        context: dict[str, Any] = {"input": inp.input, "steps": {}}
        try:
            await self._load_models(spec)
            last = await self._run_steps(spec.steps, context)
            output = self._records[spec.output].output if spec.output else last
        except ChainRejected as rejection:
            await self._finish("rejected", str(rejection))
            return self._result(None, rejection.error_type)
        except ChainFailure as failure:
            await self._finish("failed", str(failure))
            raise ApplicationError(
                str(failure),
                self._result(None, failure.error_type),
                type=failure.error_type,
                non_retryable=True,
            ) from None
        except asyncio.CancelledError:
            # Cancelled by a client (API, UI, CLI): say so in the search
            # attributes and the run index before the run closes as cancelled.
            await self._finish("cancelled", "cancelled by request")
            raise
        await self._finish("completed", None)
        return self._result(output, None)

    @workflow.query(name=STATE_QUERY)
    def state(self) -> RunState:
        spec = self._spec
        return RunState(
            chain=spec.name if spec else "",
            version=spec.version if spec else 0,
            status=self._status,
            current_steps=list(self._current),
            finished_steps=list(self._finished),
            steps=dict(self._records),
            usage=self._usage(),
            budget=BudgetState(
                max_cost_usd=self._budget.max_cost_usd,
                spent_usd=self._budget.spent_usd,
                reserved_usd=self._budget.reserved_usd,
                max_steps=self._caller.max_calls,
                steps_executed=self._caller.calls_made,
            ),
            approvals=self._desk.all(),
            error=self._error,
        )

    # -- run lifecycle -------------------------------------------------------

    async def _load_models(self, spec: ChainSpec) -> None:
        """Snapshot prices and limits of every alias into history, so budgets
        are enforced with the prices the run started with, even on replay."""
        aliases = sorted(iter_aliases(spec.steps))
        described = await workflow.execute_local_activity(
            DESCRIBE_MODELS,
            DescribeModelsInput(aliases=aliases),
            result_type=DescribeModelsResult,
            start_to_close_timeout=self.activity_options.describe_timeout,
            summary="describe models",
        )
        if described.unknown:
            raise ChainFailure(
                ChainErrorType.UNKNOWN_MODEL_ALIAS,
                f"chain {spec.name!r} names model aliases the worker's registry "
                f"does not know: {', '.join(described.unknown)}",
            )
        self._caller.models = described.models
        tool_names = iter_tools(spec.steps)
        if tool_names:
            tools = await describe_tools(sorted(tool_names), self.activity_options)
            if tools.unknown:
                raise ChainFailure(
                    ChainErrorType.UNKNOWN_TOOL,
                    f"chain {spec.name!r} names tools the worker's registry does not know: "
                    + ", ".join(tools.unknown),
                )
            self._tools = tools.tools

    def _publish_cost(self) -> None:
        """Keep ChorusCostUsd current for ops, at most every few seconds: each
        upsert is a visibility write on the server, and doing one per model
        call cost ~4 ms a step (bench/overhead.py). The final value is always
        written when the run ends."""
        now = workflow.now()
        recent = self._cost_published_at and now - self._cost_published_at < COST_REFRESH
        if recent and self._throttle_cost_upserts:
            return
        self._cost_published_at = now
        workflow.upsert_search_attributes([COST_KEY.value_set(self._budget.spent_usd)])

    async def _finish(self, status: RunStatus, error: str | None) -> None:
        # A decision Update may still be writing its audit row: let it finish
        # before the run closes, so its caller gets an answer.
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._status = status
        self._error = error
        workflow.upsert_search_attributes(
            [STATUS_KEY.value_set(status), COST_KEY.value_set(self._budget.spent_usd)]
        )
        await self._index_run(finished=True)

    async def _on_approvals_changed(self) -> None:
        """`awaiting_approval` while any approval is pending, else `running`:
        ops filter on ChorusStatus in the Temporal UI."""
        status: RunStatus = "awaiting_approval" if self._desk.pending() else "running"
        if status != self._status:
            self._status = status
            workflow.upsert_search_attributes([STATUS_KEY.value_set(status)])
            await self._index_run()

    async def _index_run(self, *, finished: bool = False) -> None:
        """Write the run's row in the application database's run index.

        A local activity (no extra server round trip). The index is a
        convenience copy of what Temporal knows, so a database that stays down
        through every retry is logged and skipped rather than failing the
        run; the next write carries the full state again.
        """
        if not self._index_runs or self._spec is None or self._started_at is None:
            return
        self._index_revision += 1
        info = workflow.info()
        usage = self._usage()
        record = RunRecordInput(
            run_id=info.workflow_id,
            temporal_run_id=info.run_id,
            chain=self._spec.name,
            version=self._spec.version,
            status=self._status,
            revision=self._index_revision,
            started_at=self._started_at,
            finished_at=workflow.now() if finished else None,
            cost_usd=usage.cost_usd,
            input_tokens=usage.total.input_tokens,
            output_tokens=usage.total.output_tokens,
            current_step=self._current[-1] if self._current else None,
            error=self._error,
        )
        try:
            await workflow.execute_local_activity(
                RECORD_RUN,
                record,
                start_to_close_timeout=self.activity_options.run_index_timeout,
                retry_policy=self.activity_options.run_index_retry,
                summary=f"run index: {self._status}",
            )
        except ActivityError as err:
            workflow.logger.warning("run index not updated: %s", describe_activity_error(err))

    def _result(self, output: Any, error_type: str | None) -> ChainResult:
        spec = self._spec
        assert spec is not None
        return ChainResult(
            chain=spec.name,
            version=spec.version,
            status=self._status,
            output=output,
            steps=dict(self._records),
            usage=self._usage(),
            approvals=self._desk.all(),
            error=self._error,
            error_type=error_type,
        )

    def _usage(self) -> UsageSummary:
        summary = UsageSummary()
        for record in self._records.values():
            if record.kind not in ("model", "agent"):
                continue
            step_usage = summary.per_step.setdefault(record.name, ModelUsage())
            for call in record.calls:
                if call.outcome == "failed" and not call.cost_usd:
                    continue
                for bucket in (step_usage, summary.per_model.setdefault(call.alias, ModelUsage())):
                    bucket.calls += 1
                    bucket.usage = bucket.usage + call.usage
                    bucket.cost_usd += call.cost_usd
                    bucket.latency_ms += call.latency_ms
                summary.total = summary.total + call.usage
                summary.cost_usd += call.cost_usd
        return summary

    # -- interpreter -----------------------------------------------------------

    async def _run_steps(self, steps: Sequence[Step], context: dict[str, Any]) -> Any:
        output: Any = None
        for step in steps:
            record = await self._run_step(step, context)
            output = record.output
        return output

    async def _run_step(self, step: Step, context: dict[str, Any]) -> StepRecord:
        record = StepRecord(
            name=step.name, kind=step.kind, status="running", started_at=workflow.now()
        )
        self._records[step.name] = record
        self._step_defs[step.name] = step
        self._current.append(step.name)
        try:
            runners: dict[type, Any] = {
                ModelStep: self._run_model_step,
                RouteStep: self._run_route_step,
                ParallelStep: self._run_parallel_step,
                ApprovalStep: self._run_approval_step,
                RetrieveStep: self._run_retrieve_step,
                ToolStep: self._run_tool_step,
                GuardStep: self._run_guard_step,
                AgentStep: self._run_agent_step,
            }
            await runners[type(step)](step, context, record)
        except ChainFailure as failure:
            record.status = "rejected" if isinstance(failure, ChainRejected) else "failed"
            record.error = str(failure)
            raise
        except asyncio.CancelledError:
            record.status = "failed"
            record.error = "cancelled"
            raise
        finally:
            record.finished_at = workflow.now()
            self._current.remove(step.name)
        record.status = "completed"
        self._finished.append(step.name)
        self._publish_step(context, record)
        return record

    @staticmethod
    def _publish_step(context: dict[str, Any], record: StepRecord) -> None:
        """What later templates see of a finished step."""
        context["steps"][record.name] = {
            "output": record.output,
            "model": record.model,
            "branch": record.branch,
            "escalated": bool(record.cascade and record.cascade.escalated),
        }

    async def _run_route_step(
        self, step: RouteStep, context: dict[str, Any], record: StepRecord
    ) -> None:
        chosen: Sequence[Step] | None = None
        for index, branch in enumerate(step.branches):
            if self._condition(branch.when, context, f"{step.name}.branches[{index}].when"):
                chosen, record.branch = branch.steps, f"branches[{index}]"
                break
        else:
            if step.otherwise is None:
                raise ChainFailure(
                    ChainErrorType.NO_ROUTE_MATCHED,
                    f"step {step.name}: no branch condition held and there is no 'otherwise'",
                )
            chosen, record.branch = step.otherwise, "otherwise"
        record.output = await self._run_steps(chosen, context)

    async def _run_parallel_step(
        self, step: ParallelStep, context: dict[str, Any], record: StepRecord
    ) -> None:
        tasks = [
            asyncio.create_task(self._run_steps(branch.steps, context)) for branch in step.branches
        ]
        # workflow.wait, unlike asyncio.wait, orders its results deterministically.
        done, pending = await workflow.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in tasks if t in done and not t.cancelled() and t.exception() is not None]
        if failed:
            first = failed[0].exception()
            assert first is not None
            if is_budget_failure(first):
                # Calls already in flight were reserved within the budget: let
                # them finish so their outputs stay readable; no new call fits.
                if pending:
                    await workflow.wait(pending)
            else:
                # Any other failure fails the step; the other branches are
                # cancelled rather than left spending.
                for task in tasks:
                    if task in pending:
                        task.cancel()
                if pending:
                    await workflow.wait(pending)
            raise first
        outputs = [task.result() for task in tasks]
        record.output = {
            branch.name: output for branch, output in zip(step.branches, outputs, strict=True)
        }

    # -- approval steps ----------------------------------------------------------

    async def _run_approval_step(
        self, step: ApprovalStep, context: dict[str, Any], record: StepRecord
    ) -> None:
        text = self._render(step.text, context, f"{step.name}.text")
        if step.when is not None and not self._condition(step.when, context, f"{step.name}.when"):
            record.branch = "not required (when did not hold)"
            record.output = text
            return
        request = ApprovalRequest(
            approval_id=step.name,
            step=step.name,
            text=text,
            context={
                key: self._render(source, context, f"{step.name}.context.{key}")
                for key, source in step.context.items()
            },
            instructions=(
                self._render(step.instructions, context, f"{step.name}.instructions")
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
        approval = await self._ask_people(request)
        if approval.status == "rejected":
            raise ChainRejected(rejection_message(step.name, approval))
        record.output = approval.text

    # -- model steps -----------------------------------------------------------

    async def _run_model_step(
        self,
        step: ModelStep,
        context: dict[str, Any],
        record: StepRecord,
        feedback: list[ChatMessage] | None = None,
    ) -> None:
        messages: list[ChatMessage] = []
        if step.system:
            messages.append(
                ChatMessage(
                    role="system", content=self._render(step.system, context, f"{step.name}.system")
                )
            )
        messages.append(
            ChatMessage(
                role="user", content=self._render(step.prompt, context, f"{step.name}.prompt")
            )
        )

        if feedback:
            messages.extend(feedback)
        result = await self._ask_with_fallbacks(
            step, [step.model, *step.fallbacks], messages, record
        )
        if step.escalate_to:
            reason = self._escalation_reason(step, result, context)
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
        self, step: ModelStep, result: ModelCallResult, context: dict[str, Any]
    ) -> str | None:
        if not result.valid:
            if step.escalate_on_invalid:
                return "invalid structured output: " + "; ".join(result.schema_errors or [])
            return None
        if step.escalate_when is None:
            return None
        output = result.parsed if step.output_schema is not None else result.text
        if self._condition(
            step.escalate_when, {**context, "output": output}, f"{step.name}.escalate_when"
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
            retry=self._retry_for(step),
        )
        return await self._caller.call(alias, messages, options, record, purpose)

    def _retry_for(self, step: ModelStep | AgentStep) -> RetrySpec:
        """The step's retry policy, else the chain's default, else Chorus's."""
        return (
            step.retry
            or (self._spec.defaults if self._spec else None)
            or self.activity_options.model_retry
        )

    # -- templates -------------------------------------------------------------

    def _render(self, source: str, context: dict[str, Any], where: str) -> str:
        try:
            return templating.render(source, context)
        except templating.TemplateRenderError as err:
            raise ChainFailure(ChainErrorType.TEMPLATE_ERROR, f"{where}: {err}") from None

    def _condition(self, expression: str, context: dict[str, Any], where: str) -> bool:
        try:
            return templating.evaluate_bool(expression, context)
        except templating.TemplateRenderError as err:
            raise ChainFailure(ChainErrorType.TEMPLATE_ERROR, f"{where}: {err}") from None

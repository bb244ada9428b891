"""ChainWorkflow: interprets a chain spec durably.

The workflow class owns the run's lifecycle: its search attributes, the run
index, the approvals people decide (ApprovalHost) and the result. Steps are
run by the interpreter (workflows/interpreter.py) over a RunContext built
once per run (workflows/run_context.py).

Determinism: this module does no I/O and reads time only through
`workflow.now()`. Every side effect (model calls, price lookups, the run
index and the approval audit log) is an activity, so a replay reproduces the
same commands from history. Changing the order or number of commands this
code issues for a given spec breaks replay of runs in flight: guard such
changes with `workflow.patched`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from core.chain_errors import ChainErrorType
    from core.chain_spec import ChainSpec, iter_aliases
    from core.names import RECORD_RUN, STATE_QUERY, WORKFLOW_NAME
    from core.records import RunRecordInput
    from core.search_attributes import CHAIN_KEY, COST_KEY, STATUS_KEY
    from workflows.approval_host import AUDIT_WITH_RUN_INDEX, ApprovalHost, ApprovalRequest
    from workflows.approvals import payload_hash
    from workflows.budget import Budget
    from workflows.failures import ChainFailure, ChainRejected, describe_activity_error
    from workflows.interpreter import Interpreter
    from workflows.model_calls import ModelCaller
    from workflows.patches import applies, ask_baseline
    from workflows.run_context import RunContext
    from workflows.types import (
        ApprovalState,
        BudgetState,
        ChainInput,
        ChainResult,
        ReviewerDecision,
        RunState,
        RunStatus,
    )
    from workflows.validate import validate_chain


COST_REFRESH = timedelta(seconds=2)
"""Shortest interval between two ChorusCostUsd upserts while a run goes on."""
PATCH_THROTTLE_COST_UPSERTS = "chorus-throttle-cost-upserts"
PATCH_RUN_INDEX = "chorus-run-index"
PATCH_COST_WITH_STATUS = "cost-published-with-status"
"""ChorusCostUsd is written with every status change (parking on an approval too)."""
PATCH_CHECK_UNCHECKED_SPEC = "check-unchecked-spec-at-start"
"""Patch, asked only when a chain nobody checked has problems: runs recorded
before it went on (and failed their workflow tasks) where it now fails."""
PATCH_RUNNING_PUBLISHED_AFTER_THE_ACTIVATION = "running-status-published-after-the-activation"
"""ChorusStatus back to `running` after a decision is upserted only if the
run goes on past the decision's activation (see `_on_approvals_changed`)."""
EVALUATION_REVIEWER = "chorus-evaluation"
"""Who approves an evaluation run's approvals (`ChainInput.approvals`)."""


@workflow.defn(name=WORKFLOW_NAME)
class ChainWorkflow(ApprovalHost):
    @workflow.init
    def __init__(self, inp: ChainInput) -> None:
        # Built from the input before the run starts (workflow.init), so the
        # state query and the decide handlers always see the run's context.
        # Nothing here issues a command.
        super().__init__()
        spec = inp.spec
        caps = [c for c in (spec.limits.max_cost_usd, inp.max_cost_usd) if c is not None]
        budget = Budget(min(caps) if caps else None)
        self._run_ctx = RunContext(
            spec=spec,
            budget=budget,
            caller=ModelCaller(
                budget=budget,
                models={},
                max_calls=spec.limits.max_steps,
                on_spend=self._publish_cost,
                options=self.activity_options,
            ),
            options=self.activity_options,
            ask_people=(
                self._auto_approve if inp.approvals == "auto_for_evaluation" else self._ask_people
            ),
            publish_cost=self._publish_cost,
        )
        self._interpreter = Interpreter(self._run_ctx)
        self._status: RunStatus = "running"
        self._published_status: RunStatus = "running"
        """What ChorusStatus says (`_status` may be newer for the rest of an activation)."""
        self._finishing = False
        self._status_publisher: asyncio.Task[None] | None = None
        self._error: str | None = None
        self._error_type: str | None = None
        self._cost_published_at: datetime | None = None
        self._throttle_cost_upserts = True
        self._index_runs = True
        self._index_revision = 0
        self._last_index: dict[str, Any] | None = None
        """What the last run-index write said, its revision aside."""
        self._skip_unchanged_index = False
        """Whether an index write that would change nothing is skipped: on in
        runs that write the index with decisions (`AUDIT_WITH_RUN_INDEX`), so
        the status change a decision makes is not written twice."""
        self._started_at: datetime | None = None

    @workflow.run
    async def run(self, inp: ChainInput) -> ChainResult:
        ask_baseline()  # first: see workflows/patches.py
        ctx = self._run_ctx
        spec = ctx.spec
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
        self._throttle_cost_upserts = applies(PATCH_THROTTLE_COST_UPSERTS)
        self._index_runs = applies(PATCH_RUN_INDEX)
        self._audits_with_run_index = applies(AUDIT_WITH_RUN_INDEX)
        await self._index_run()
        variables: dict[str, Any] = {"input": inp.input, "steps": {}}
        try:
            if not inp.checked:
                _refuse_an_unchecked_spec_that_cannot_run(spec)
            await ctx.load_snapshot()
            last = await self._interpreter.run_steps(spec.steps, variables)
            output = ctx.records[spec.output].output if spec.output else last
        except ChainRejected as rejection:
            self._error_type = rejection.error_type
            await self._finish("rejected", str(rejection))
            return self._result(None, rejection.error_type)
        except ChainFailure as failure:
            self._error_type = failure.error_type
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
        ctx = self._run_ctx
        return RunState(
            chain=ctx.spec.name,
            version=ctx.spec.version,
            status=self._status,
            current_steps=list(ctx.current),
            finished_steps=list(ctx.finished),
            steps=dict(ctx.records),
            usage=ctx.usage(),
            budget=BudgetState(
                max_cost_usd=ctx.budget.max_cost_usd,
                spent_usd=ctx.budget.spent_usd,
                reserved_usd=ctx.budget.reserved_usd,
                unconfirmed_usd=ctx.budget.unconfirmed_usd,
                max_steps=ctx.caller.max_calls,
                steps_executed=ctx.caller.calls_made,
            ),
            approvals=self._desk.all(),
            error=self._error,
            error_type=self._error_type,
            ignored_signals=list(self._ignored_signals),
            waits=list(ctx.caller.waits.values()),
        )

    async def _auto_approve(self, request: ApprovalRequest) -> ApprovalState:
        """An evaluation's run (`ChainInput.approvals`): the approval is
        settled at once as approved by `chorus-evaluation`, with no desk entry,
        status change or audit row (no person was asked). The step's record
        still shows it ran (`awaiting_approval` then completed, no `when`
        branch), which is how an evaluation counts the approvals requested."""
        now = workflow.now()
        digest = payload_hash(request.text, request.context)
        return ApprovalState(
            approval_id=request.approval_id,
            step=request.step,
            status="approved",
            text=request.text,
            context=request.context,
            instructions=request.instructions,
            payload_hash=digest,
            required_role=request.required_role,
            required_approvals=request.required_approvals,
            approvals=[EVALUATION_REVIEWER],
            decisions=[
                ReviewerDecision(
                    reviewer=EVALUATION_REVIEWER, decision="approve", at=now, payload_hash=digest
                )
            ],
            requested_at=now,
            deadline=now,
        )

    # -- run lifecycle -------------------------------------------------------

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
        workflow.upsert_search_attributes([COST_KEY.value_set(self._run_ctx.budget.spent_usd)])

    async def _finish(self, status: RunStatus, error: str | None) -> None:
        # A decision Update may still be writing its audit row: let it finish
        # before the run closes, so its caller gets an answer.
        self._finishing = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._status = self._published_status = status
        self._error = error
        workflow.upsert_search_attributes(
            [STATUS_KEY.value_set(status), COST_KEY.value_set(self._run_ctx.budget.spent_usd)]
        )
        await self._index_run(finished=True)

    async def _on_approvals_changed(self) -> None:
        """`awaiting_approval` while any approval is pending, else `running`:
        ops filter on ChorusStatus in the Temporal UI.

        Back to `running` is published once the rest of this activation has
        run (`_publish_status_after_this_activation`): when the decision ends
        the run, the final status upsert says it and the interim one, a
        visibility write and a history event per decision, is never made."""
        status: RunStatus = "awaiting_approval" if self._desk.pending() else "running"
        if status != self._status:
            self._status = status
            if status == "running" and applies(PATCH_RUNNING_PUBLISHED_AFTER_THE_ACTIVATION):
                self._status_publisher = asyncio.create_task(
                    self._publish_status_after_this_activation()
                )
            else:
                self._publish_status()
            await self._index_run()

    async def _publish_status_after_this_activation(self) -> None:
        """Runs once the run's own coroutine has gone as far as it can in this
        activation (a task starts after the running ones yield): the run has
        either scheduled its next step, and its status is published with it,
        or begun to finish, and `_finish` publishes the end instead."""
        if not self._finishing:
            self._publish_status()

    def _publish_status(self) -> None:
        if self._status == self._published_status:
            return
        self._published_status = self._status
        attributes = [STATUS_KEY.value_set(self._status)]
        if applies(PATCH_COST_WITH_STATUS):
            # A run parked on an approval shows what it has spent so far.
            attributes.append(COST_KEY.value_set(self._run_ctx.budget.spent_usd))
            self._cost_published_at = workflow.now()
        workflow.upsert_search_attributes(attributes)

    async def _index_run(self, *, finished: bool = False) -> None:
        """Write the run's row in the application database's run index.

        A local activity (no extra server round trip). The index is a
        convenience copy of what Temporal knows, so a database that stays down
        through every retry is logged and skipped rather than failing the
        run; the next write carries the full state again.
        """
        record = self._index_record(self._status, finished=finished)
        if record is None or (self._skip_unchanged_index and not self._changes_index(record)):
            return
        self._claim_index(record)
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

    def _index_with_decision(self) -> RunRecordInput | None:
        """The index row as the decision being audited leaves the run (the
        status `_on_approvals_changed` is about to give it), written with the
        audit row; None when it would change nothing. From then on, index
        writes that change nothing are skipped, the one that
        `_on_approvals_changed` makes right after this decision included."""
        self._skip_unchanged_index = True
        status = self._status
        if status in ("running", "awaiting_approval"):
            status = "awaiting_approval" if self._desk.pending() else "running"
        record = self._index_record(status)
        if record is None or not self._changes_index(record):
            return None
        self._claim_index(record)
        return record

    def _index_record(self, status: RunStatus, *, finished: bool = False) -> RunRecordInput | None:
        """The run's index row with the next revision; None when this run
        writes no index."""
        if not self._index_runs or self._started_at is None:
            return None
        ctx = self._run_ctx
        info = workflow.info()
        usage = ctx.usage()
        return RunRecordInput(
            run_id=info.workflow_id,
            temporal_run_id=info.run_id,
            chain=ctx.spec.name,
            version=ctx.spec.version,
            status=status,
            revision=self._index_revision + 1,
            started_at=self._started_at,
            finished_at=workflow.now() if finished else None,
            cost_usd=usage.cost_usd,
            input_tokens=usage.total.input_tokens,
            output_tokens=usage.total.output_tokens,
            current_step=ctx.current[-1] if ctx.current else None,
            error=self._error,
            error_type=self._error_type,
        )

    def _changes_index(self, record: RunRecordInput) -> bool:
        return record.model_dump(exclude={"revision"}) != self._last_index

    def _claim_index(self, record: RunRecordInput) -> None:
        """`record` is being written: its revision is taken."""
        self._index_revision = record.revision
        self._last_index = record.model_dump(exclude={"revision"})

    def _result(self, output: Any, error_type: str | None) -> ChainResult:
        ctx = self._run_ctx
        return ChainResult(
            chain=ctx.spec.name,
            version=ctx.spec.version,
            status=self._status,
            output=output,
            steps=dict(ctx.records),
            usage=ctx.usage(),
            approvals=self._desk.all(),
            error=self._error,
            error_type=error_type,
        )


def _refuse_an_unchecked_spec_that_cannot_run(spec: ChainSpec) -> None:
    """Fail at once, naming every problem, a run whose chain nobody checked
    (a raw Temporal client, the Temporal CLI) and that the run client would
    have refused: otherwise a step referring to a missing one would fail
    the workflow task on every retry, for ever. Aliases are left to
    `load_snapshot`, which asks the worker's registry."""
    problems = validate_chain(spec, iter_aliases(spec.steps))
    if problems and applies(PATCH_CHECK_UNCHECKED_SPEC):
        listed = "; ".join(str(problem) for problem in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise ChainFailure(
            ChainErrorType.INVALID_CHAIN_SPEC, f"chain {spec.name!r} cannot run: {listed}{more}"
        )

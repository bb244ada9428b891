"""EvalWorkflow: every case of an eval set through every chain variant, as
child chain runs, scored, within a concurrency limit and a budget.

Durability: each case runs as an ordinary ChainWorkflow child whose id is
derived from the evaluation, the variant and the case (`child_run_id`), so a
replay, a worker crash or a continue-as-new never starts a case twice, and
Temporal holds every started child until it ends, so none is lost. A case's
score is written by an activity keyed the same way (store/evals.py), so a
retried scoring activity stores it once.

Bounded history: the workflow keeps counters only (the scores are in the
database) and continues as new after `cases_per_run` cases, or sooner when
Temporal suggests it, carrying the counters and the keys of the cases done.

Approvals: children run with `approvals="auto_for_evaluation"`: an approval
step records that it asked and goes on, so an evaluation never parks runs in
the reviewers' inbox nor waits on a person; the report counts how often each
variant would have asked one.

Determinism: no I/O, no clock but `workflow.now()`; judge calls, scoring and
storage are activities.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.evals.types import (
        BeginEvalInput,
        CaseOutcome,
        EvalCarry,
        EvalInput,
        EvalProgress,
        EvalStatus,
        EvalVariant,
        FinishEvalInput,
        JudgeVerdict,
        ScoreCaseInput,
        VariantProgress,
    )
    from core.chain_errors import ChainErrorType
    from core.evals.results import CaseRunFacts, EvalReport
    from core.evals.spec import EvalCase
    from core.names import (
        EVAL_BEGIN,
        EVAL_FINISH,
        EVAL_PROGRESS_QUERY,
        EVAL_SCORE_CASE,
        EVAL_WORKFLOW_NAME,
        WORKFLOW_NAME,
    )
    from workflows.evals.budget import STOPPED_BY_BUDGET, STOPPED_BY_CANCEL, EvalBudget
    from workflows.evals.facts import case_key, child_run_id, gather_facts
    from workflows.evals.judge import judge_case
    from workflows.types import ChainInput, ChainResult

RECORD_TIMEOUT = timedelta(seconds=60)
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=20,
    non_retryable_error_types=["EvalRecordRefused"],
)
"""Scores and reports are written to the database: retried for about five
minutes of outage, then the evaluation fails naming the activity."""


@workflow.defn(name=EVAL_WORKFLOW_NAME)
class EvalWorkflow:
    @workflow.init
    def __init__(self, inp: EvalInput) -> None:
        carry = inp.carry or EvalCarry()
        cases = len(inp.eval_set.cases)
        carried = {p.variant: p for p in carry.variants}
        self._progress: dict[str, VariantProgress] = {
            v.name: carried.get(v.name) or VariantProgress(variant=v.name, total=cases)
            for v in inp.variants
        }
        for progress in self._progress.values():
            progress.in_flight = 0
        self._done: set[str] = set(carry.done)
        self._budget = EvalBudget(
            inp.max_cost_usd,
            spent_usd=carry.spent_usd,
            observed_max_usd=dict(carry.observed_max_usd),
        )
        self._stopped: str | None = carry.stopped_reason
        self._generation = carry.generation
        self._finished_here = 0
        self._status: EvalStatus = "running"
        self._failure: BaseException | None = None
        self._inp = inp

    @workflow.run
    async def run(self, inp: EvalInput) -> EvalReport:
        if inp.carry is None:
            await self._begin(inp)
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._start_cases(inp, tasks)
            await workflow.wait_condition(
                lambda: self._failure is not None or all(t.done() for t in tasks)
            )
        except asyncio.CancelledError:
            # Cancelled (Temporal UI or CLI): the children in flight are
            # cancelled and not scored, what was scored stays, and the end is
            # recorded before the evaluation closes as cancelled.
            self._stopped = STOPPED_BY_CANCEL
            for task in tasks:
                task.cancel()
            await workflow.wait_condition(lambda: all(t.done() for t in tasks))
            self._status = "stopped"
            await self._finish(inp)
            raise
        self._raise_failure()
        if self._stopped is None and len(self._done) < inp.cases_total:
            workflow.continue_as_new(inp.model_copy(update={"carry": self._carry()}))
        self._status = "completed" if self._stopped is None else "stopped"
        return await self._finish(inp)

    async def _start_cases(self, inp: EvalInput, tasks: list[asyncio.Task[None]]) -> None:
        """Start every case not done yet, case by case and variant by variant,
        as slots and the budget allow; return when all are started or the
        evaluation stops starting them."""
        for case in inp.eval_set.cases:
            for variant in inp.variants:
                if case_key(variant.name, case.id) in self._done:
                    continue
                cap = await self._admit(variant)
                if cap is False:
                    return
                tasks.append(asyncio.create_task(self._case(variant, case, cap)))

    async def _finish(self, inp: EvalInput) -> EvalReport:
        return await workflow.execute_activity(
            EVAL_FINISH,
            FinishEvalInput(
                eval_id=inp.eval_id,
                eval_set=inp.eval_set.name,
                cases_total=inp.cases_total,
                simulated=inp.simulated,
                judge_alias=inp.judge_alias,
                stopped_reason=self._stopped,
            ),
            result_type=EvalReport,
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=RECORD_RETRY,
            summary="report",
        )

    @workflow.query(name=EVAL_PROGRESS_QUERY)
    def progress(self) -> EvalProgress:
        inp = self._inp
        return EvalProgress(
            eval_id=inp.eval_id,
            eval_set=inp.eval_set.name,
            status=self._status,
            cases_total=inp.cases_total,
            cases_done=sum(p.done + p.cut for p in self._progress.values()),
            variants=[p.model_copy() for p in self._progress.values()],
            spent_usd=self._budget.spent_usd,
            reserved_usd=self._budget.reserved_usd,
            max_cost_usd=inp.max_cost_usd,
            stopped_reason=self._stopped,
            created_by=inp.created_by,
        )

    # -- starting cases ------------------------------------------------------------

    async def _admit(self, variant: EvalVariant) -> float | bool | None:
        """Wait for a free slot and for the budget to cover a case of
        `variant`; its child's cap, or False when the evaluation stops
        starting cases (budget, a failure, or time to continue as new)."""
        limit = variant.spec.limits.max_cost_usd
        while True:
            await self._until(lambda: len(self._budget.reserved) < self._inp.concurrency)
            if self._stopped is not None or self._pausing() or self._failure is not None:
                return False
            in_flight = len(self._budget.reserved)
            cap = self._budget.cap_for(
                variant.name, limit, free_slots=self._inp.concurrency - in_flight
            )
            if cap is not False and (in_flight == 0 or not self._budget.tight(cap, limit)):
                return cap
            if in_flight == 0:
                self._stopped = STOPPED_BY_BUDGET
                return False
            # A reservation given back by a case in flight may let this one start.
            await self._until(lambda n=in_flight: len(self._budget.reserved) < n)

    async def _until(self, condition: Callable[[], bool]) -> None:
        await workflow.wait_condition(lambda: self._failure is not None or condition())

    def _pausing(self) -> bool:
        """Time to continue as new: enough cases finished in this run."""
        return (
            self._finished_here >= self._inp.cases_per_run
            or workflow.info().is_continue_as_new_suggested()
        )

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    # -- one case ------------------------------------------------------------------

    async def _case(self, variant: EvalVariant, case: EvalCase, cap: float | None) -> None:
        key = case_key(variant.name, case.id)
        self._budget.reserve(key, cap)
        progress = self._progress[variant.name]
        progress.in_flight += 1
        try:
            await self._run_case(variant, case, cap, key, progress)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # run() raises it, failing the evaluation
            if self._failure is None:
                self._failure = exc
        finally:
            progress.in_flight -= 1
            self._budget.reserved.pop(key, None)  # settled already, unless it failed

    async def _run_case(
        self,
        variant: EvalVariant,
        case: EvalCase,
        cap: float | None,
        key: str,
        progress: VariantProgress,
    ) -> None:
        inp = self._inp
        run_id = child_run_id(inp.eval_id, variant.name, case.id)
        started = workflow.now()
        result, error_type = await self._child(variant, case, cap, run_id)
        if self._stopped == STOPPED_BY_CANCEL:
            return  # a run the cancellation cut short says nothing of the variant
        latency = (workflow.now() - started).total_seconds()
        facts = gather_facts(
            case_id=case.id,
            variant=variant.name,
            run_id=run_id,
            result=result,
            error_type=error_type,
            latency_s=latency,
        )
        limit = variant.spec.limits.max_cost_usd
        if (
            error_type == ChainErrorType.BUDGET_EXCEEDED
            and cap is not None
            and (limit is None or cap < limit)
        ):
            # The evaluation's budget, not the chain, cut this run short:
            # scoring it would count the budget against the variant.
            self._budget.settle(key, variant.name, facts.cost_usd)
            progress.cost_usd += facts.cost_usd
            progress.cut += 1
            self._done.add(key)
            self._stopped = STOPPED_BY_BUDGET
            return
        judge = await self._judge(case, facts)
        outcome = await workflow.execute_activity(
            EVAL_SCORE_CASE,
            ScoreCaseInput(eval_id=inp.eval_id, case=case, facts=facts, judge=judge),
            result_type=CaseOutcome,
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=RECORD_RETRY,
            summary=f"score {variant.name} on {case.id}",
        )
        self._budget.settle(key, variant.name, outcome.cost_usd + outcome.judge_cost_usd)
        progress.done += 1
        progress.passed += int(outcome.passed)
        progress.cost_usd += outcome.cost_usd
        progress.judge_cost_usd += outcome.judge_cost_usd
        progress.approvals_requested += outcome.approvals_requested
        progress.escalated += int(outcome.escalated)
        self._done.add(key)
        self._finished_here += 1

    async def _child(
        self, variant: EvalVariant, case: EvalCase, cap: float | None, run_id: str
    ) -> tuple[ChainResult | None, str | None]:
        """Run the case's child chain run: its result (or partial result) and
        the error type it failed with."""
        try:
            result = await workflow.execute_child_workflow(
                WORKFLOW_NAME,
                ChainInput(
                    spec=variant.spec,
                    input=case.input,
                    max_cost_usd=cap,
                    checked=True,
                    approvals="auto_for_evaluation",
                ),
                id=run_id,
                result_type=ChainResult,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"evaluation {self._inp.eval_id}: {variant.name} on {case.id}",
            )
        except ChildWorkflowError as err:
            return _partial(err), _error_type(err)
        return result, None

    async def _judge(self, case: EvalCase, facts: CaseRunFacts) -> JudgeVerdict | None:
        alias = self._inp.judge_alias
        if alias is None or facts.status != "completed":
            return None
        return await judge_case(alias, case, facts.answer_text)

    # -- bookkeeping ---------------------------------------------------------------

    async def _begin(self, inp: EvalInput) -> None:
        await workflow.execute_activity(
            EVAL_BEGIN,
            BeginEvalInput(
                eval_id=inp.eval_id,
                eval_set=inp.eval_set.name,
                variants=[v.name for v in inp.variants],
                cases_total=inp.cases_total,
                concurrency=inp.concurrency,
                max_cost_usd=inp.max_cost_usd,
                judge_alias=inp.judge_alias,
                simulated=inp.simulated,
                created_by=inp.created_by,
            ),
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=RECORD_RETRY,
            summary="evaluation row",
        )

    def _carry(self) -> EvalCarry:
        return EvalCarry(
            done=sorted(self._done),
            variants=list(self._progress.values()),
            spent_usd=self._budget.spent_usd,
            observed_max_usd=dict(self._budget.observed_max_usd),
            stopped_reason=self._stopped,
            generation=self._generation + 1,
        )


def _error_type(err: ChildWorkflowError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type:
        return cause.type
    return type(cause).__name__ if cause is not None else "ChildWorkflowError"


def _partial(err: ChildWorkflowError) -> ChainResult | None:
    """The partial result a failed chain run carries in its error's details."""
    cause = err.cause
    if not isinstance(cause, ApplicationError) or not cause.details:
        return None
    detail: Any = cause.details[0]
    try:
        return ChainResult.model_validate(detail)
    except ValueError:
        return None

"""The evaluation activities: the evaluation's row, one case's score, and the
report, all in the application database (store/evals.py).

Each is idempotent, because an activity runs at least once: the row is
inserted once, a case's score is keyed by (evaluation, variant, case) and the
first write wins, and the report is recomputed from the stored scores. A row
the database refuses as such (a data or integrity error) would be refused on
every attempt, so it fails at once as a non-retryable `EvalRecordRefused`;
anything else (connection lost, database locked) is retried by Temporal. The
database driver blocks, so each write runs in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.evals.scoring import score_case
from activities.evals.types import BeginEvalInput, CaseOutcome, FinishEvalInput, ScoreCaseInput
from core.evals.results import CaseScore, EvalReport
from core.evals.stats import recommend, recommendation_rule, summarise
from core.names import EVAL_BEGIN, EVAL_FINISH, EVAL_SCORE_CASE
from store.evals import (
    Evaluation,
    begin_evaluation,
    case_scores,
    finish_evaluation,
    write_case_score,
)

LOGGER_NAME = "chorus.evals"
EVAL_RECORD_REFUSED = "EvalRecordRefused"
"""`ApplicationError.type` of a write the database refuses on every attempt."""
RECOMMEND_WITHIN_POINTS = 5.0
"""The recommendation: the cheapest variant within this many points of the best pass rate."""

log = structlog.get_logger(LOGGER_NAME)
T = TypeVar("T")


class EvalActivities:
    """The evaluation's writes, on one engine per worker process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def activities(self) -> Sequence[Callable[..., Any]]:
        return [self.begin, self.score_case, self.finish]

    @activity.defn(name=EVAL_BEGIN)
    async def begin(self, req: BeginEvalInput) -> None:
        """The evaluation's row, status `running` (kept as it is when there)."""
        row = Evaluation(
            eval_id=req.eval_id,
            eval_set=req.eval_set,
            variants=req.variants,
            cases_total=req.cases_total,
            status="running",
            concurrency=req.concurrency,
            max_cost_usd=req.max_cost_usd,
            judge_alias=req.judge_alias,
            simulated=req.simulated,
            created_by=req.created_by,
        )
        await _refusing(asyncio.to_thread(begin_evaluation, self.engine, row), req.eval_id)

    @activity.defn(name=EVAL_SCORE_CASE)
    async def score_case(self, req: ScoreCaseInput) -> CaseOutcome:
        """Score one case's run (the deterministic checks, plus the judge's
        verdict when there is one) and store the score once."""
        score = score_case(req.case, req.facts)
        if req.judge is not None:
            score = score.model_copy(
                update={"judge_score": req.judge.score, "judge_cost_usd": req.judge.cost_usd}
            )
        stored = await _refusing(
            asyncio.to_thread(
                write_case_score,
                self.engine,
                eval_id=req.eval_id,
                variant=score.variant,
                case_id=score.case_id,
                run_id=score.run_id,
                passed=score.passed,
                cost_usd=score.cost_usd,
                latency_s=score.latency_s,
                score=score.model_dump(mode="json"),
            ),
            req.eval_id,
        )
        log.info(
            "case scored",
            eval_id=req.eval_id,
            variant=score.variant,
            case_id=score.case_id,
            passed=score.passed,
            stored=stored,
        )
        return CaseOutcome(
            variant=score.variant,
            case_id=score.case_id,
            passed=score.passed,
            cost_usd=score.cost_usd,
            judge_cost_usd=score.judge_cost_usd,
            approvals_requested=score.approvals_requested,
            escalated=score.escalated,
            stored=stored,
        )

    @activity.defn(name=EVAL_FINISH)
    async def finish(self, req: FinishEvalInput) -> EvalReport:
        """The report from every stored score, recorded with how the
        evaluation ended."""
        return await _refusing(asyncio.to_thread(self._finish, req), req.eval_id)

    def _finish(self, req: FinishEvalInput) -> EvalReport:
        scores = stored_scores(self.engine, req.eval_id)
        report = build_report(
            scores,
            eval_set=req.eval_set,
            cases_total=req.cases_total,
            simulated=req.simulated,
            judge_alias=req.judge_alias,
            stopped_reason=req.stopped_reason,
        )
        finish_evaluation(
            self.engine,
            req.eval_id,
            status="completed" if req.stopped_reason is None else "stopped",
            stopped_reason=req.stopped_reason,
            report=report.model_dump(mode="json"),
        )
        return report


def stored_scores(engine: Engine, eval_id: str) -> list[CaseScore]:
    return [CaseScore.model_validate(row.score) for row in case_scores(engine, eval_id)]


def build_report(
    scores: Sequence[CaseScore],
    *,
    eval_set: str,
    cases_total: int,
    simulated: bool,
    judge_alias: str | None,
    stopped_reason: str | None,
) -> EvalReport:
    summaries = summarise(scores)
    return EvalReport(
        eval_set=eval_set,
        variants=summaries,
        recommended=recommend(summaries, within_points=RECOMMEND_WITHIN_POINTS),
        recommendation_rule=recommendation_rule(RECOMMEND_WITHIN_POINTS),
        simulated=simulated,
        judge_alias=judge_alias,
        cases_scored=len(scores),
        cases_total=cases_total,
        stopped_reason=stopped_reason,
    )


async def _refusing(work: Awaitable[T], eval_id: str) -> T:
    """Await a database write; a row the database refuses fails at once."""
    try:
        return await work
    except (DataError, IntegrityError) as exc:
        raise ApplicationError(
            f"the database refused a row of evaluation {eval_id!r}: {exc.orig or exc}",
            type=EVAL_RECORD_REFUSED,
            non_retryable=True,
        ) from None

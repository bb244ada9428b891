"""What an evaluation keeps of a finished child chain run: the facts the
scoring activity needs (`CaseRunFacts`), gathered in the workflow from the
child's result. Pure and deterministic; small on purpose, since it is
recorded in the evaluation's history once per case."""

from __future__ import annotations

import json
from typing import Any

from core.evals.results import CaseRunFacts
from workflows.types import ChainResult, StepRecord

NOT_REQUIRED_PREFIX = "not required"
"""An approval step's branch when its `when` did not hold (steps/approval.py)."""


def child_run_id(eval_id: str, variant: str, case_id: str) -> str:
    """The child run of one case on one variant: the same every time, so a
    replayed or continued evaluation never runs a case twice (Temporal refuses
    a second start of the id, `REJECT_DUPLICATE`)."""
    return f"{eval_id}--{variant}--{case_id}"


def case_key(variant: str, case_id: str) -> str:
    return f"{variant}/{case_id}"


def gather_facts(
    *,
    case_id: str,
    variant: str,
    run_id: str,
    result: ChainResult | None,
    error_type: str | None,
    latency_s: float,
) -> CaseRunFacts:
    """The facts of one run: its status, answer, cost, latency (first step's
    start to last step's end, else the parent's measure), the approvals it
    asked for and whether any cascade escalated. A run that left no result
    (terminated, timed out) is `failed` with its error type."""
    if result is None:
        return CaseRunFacts(
            case_id=case_id,
            variant=variant,
            run_id=run_id,
            status="failed",
            latency_s=latency_s,
            error_type=error_type or "NoResult",
        )
    steps = result.steps.values()
    return CaseRunFacts(
        case_id=case_id,
        variant=variant,
        run_id=run_id,
        status=result.status if error_type is None else "failed",
        output={"output": result.output, "steps": {n: _step(r) for n, r in result.steps.items()}},
        answer_text=_text(result.output),
        cost_usd=result.usage.cost_usd,
        latency_s=_run_latency(list(steps)) or latency_s,
        approvals_requested=sum(1 for r in steps if _approval_requested(r)),
        escalated=any(r.cascade is not None and r.cascade.escalated for r in steps),
        error_type=error_type or result.error_type,
    )


def _step(record: StepRecord) -> dict[str, Any]:
    """What `output_equals` paths read (`steps.classify.output.category`)."""
    return {
        "output": record.output,
        "status": record.status,
        "model": record.model,
        "branch": record.branch,
    }


def _text(output: Any) -> str:
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    return json.dumps(output, ensure_ascii=False, default=str)


def _run_latency(steps: list[StepRecord]) -> float:
    starts = [r.started_at for r in steps if r.started_at is not None]
    ends = [r.finished_at for r in steps if r.finished_at is not None]
    if not starts or not ends:
        return 0.0
    return max(0.0, (max(ends) - min(starts)).total_seconds())


def _approval_requested(record: StepRecord) -> bool:
    """An approval step that ran and did not skip itself asked for a person
    (in an evaluation, the auto-approval stood in for one)."""
    return record.kind == "approval" and not (record.branch or "").startswith(NOT_REQUIRED_PREFIX)

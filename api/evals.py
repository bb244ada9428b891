"""Evaluations over HTTP: start one on published chains, read its progress
or its report. The routes (api/routes/evals.py) are a few lines over this.

Variants are published chains (their latest version), checked like a run's
chain; the eval set comes in the body and is validated field by field, so a
bad case is a 422 naming it. Who may read an evaluation follows the runs'
rule: an admin or a key of scope `all` reads any, a service key the ones it
started.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from sqlmodel import Session

from api.deps import Principal
from api.schemas import RequestModel
from api.state import Database
from core.chain_spec import CHAIN_NAME_PATTERN, ChainSpec
from core.evals.results import EvalReport
from core.evals.spec import EvalSet
from core.problems import ChainNotFound
from runs.evals import (
    MAX_CONCURRENCY,
    EvalClient,
    EvalNotFound,
    EvalProgress,
    simulated_aliases,
)
from store.crud import get_chain_version
from store.evals import Evaluation, read_evaluation

EVAL_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$"

ChainName = Annotated[str, Field(min_length=1, max_length=100, pattern=CHAIN_NAME_PATTERN)]
"""A variant is named like a chain (`POST /v1/runs`'s `chain`), so the schema
refuses what no chain could be called and a well-formed unknown name is a 404."""

EvalDetailStatus = Literal["running", "completed", "stopped", "failed"]


class EvalCreate(RequestModel):
    eval_set: EvalSet = Field(description="The cases, as `chorus compare` reads them from YAML.")
    variants: list[ChainName] = Field(
        min_length=1,
        max_length=20,
        description="Published chains to compare (their latest versions); an unknown one is a 404.",
    )
    concurrency: int = Field(default=4, ge=1, le=MAX_CONCURRENCY)
    max_cost_usd: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Budget of the whole evaluation, judge included.",
    )
    judge: str | None = Field(
        default=None, min_length=1, max_length=100, description="A model alias that grades too."
    )
    eval_id: str | None = Field(default=None, min_length=1, max_length=100, pattern=EVAL_ID_PATTERN)


class EvalAccepted(BaseModel):
    eval_id: str
    status: Literal["running"] = "running"
    eval_set: str
    variants: list[str]
    cases_total: int


class EvalDetail(BaseModel):
    """An evaluation: its progress while it runs, its report once it has ended."""

    eval_id: str
    status: EvalDetailStatus
    eval_set: str
    variants: list[str]
    cases_total: int
    created_by: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    stopped_reason: str | None = None
    progress: EvalProgress | None = None
    """While running (None when no worker answers just now)."""
    report: EvalReport | None = None
    """Once ended: per-variant summaries and the recommendation."""


def _published_variants(session: Session, names: list[str]) -> list[ChainSpec]:
    specs = []
    for name in names:
        found = get_chain_version(session, name=name)
        if found is None:
            raise ChainNotFound(
                f"variant {name!r} is not a published chain (PUT /v1/chains/{name} publishes one)",
                details={"chain": name},
            )
        specs.append(found.to_spec())
    return specs


async def start_evaluation(
    db: Database, evals: EvalClient, principal: Principal, body: EvalCreate, models_file: Path
) -> EvalAccepted:
    specs = await db.read(_published_variants, body.variants)
    inp = evals.prepare(
        body.eval_set,
        specs,
        eval_id=body.eval_id,
        concurrency=body.concurrency,
        max_cost_usd=body.max_cost_usd,
        judge_alias=body.judge,
        simulator_aliases=simulated_aliases(models_file),
        created_by=principal.name,
    )
    await evals.start(inp)
    return EvalAccepted(
        eval_id=inp.eval_id,
        eval_set=inp.eval_set.name,
        variants=[v.name for v in inp.variants],
        cases_total=inp.cases_total,
    )


def _may_read(principal: Principal, created_by: str | None) -> bool:
    return principal.run_access == "all" or created_by == principal.name


def _not_found(eval_id: str) -> EvalNotFound:
    return EvalNotFound(f"no evaluation with id {eval_id!r}", details={"eval_id": eval_id})


async def read_evaluation_detail(
    db: Database, evals: EvalClient, principal: Principal, eval_id: str
) -> EvalDetail:
    row = await db.read(read_evaluation, eval_id)
    if row is None:
        return await _before_its_row(evals, principal, eval_id)
    if not _may_read(principal, row.created_by):
        raise _not_found(eval_id)
    detail = _from_row(row)
    if row.status == "running":
        running = await evals.is_running(eval_id)
        if running:
            detail.progress = await evals.progress(eval_id)
        elif running is False:
            # Closed without writing its end: the workflow failed (its
            # history in Temporal says why).
            detail.status = "failed"
    return detail


async def _before_its_row(evals: EvalClient, principal: Principal, eval_id: str) -> EvalDetail:
    """Started, its first activity not run yet: what its progress query says."""
    if not await evals.is_running(eval_id):
        raise _not_found(eval_id)
    progress = await evals.progress(eval_id)
    if progress is None or not _may_read(principal, progress.created_by):
        raise _not_found(eval_id)
    return EvalDetail(
        eval_id=eval_id,
        status="running",
        eval_set=progress.eval_set,
        variants=[v.variant for v in progress.variants],
        cases_total=progress.cases_total,
        created_by=progress.created_by,
        progress=progress,
    )


def _from_row(row: Evaluation) -> EvalDetail:
    status: EvalDetailStatus = row.status  # type: ignore[assignment]
    return EvalDetail(
        eval_id=row.eval_id,
        status=status,
        eval_set=row.eval_set,
        variants=list(row.variants),
        cases_total=row.cases_total,
        created_by=row.created_by,
        started_at=row.started_at,
        finished_at=row.finished_at,
        stopped_reason=row.stopped_reason,
        report=EvalReport.model_validate(row.report) if row.report is not None else None,
    )

"""/v1/approvals and /v1/runs/{id}/approvals/{approval_id}: review work."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from api import approvals
from api.bodies import CheckedJsonRoute
from api.deps import DatabaseDep, ReaderDep, ReviewerDep, RunClientDep
from api.errors import error_responses
from api.query_params import StrictQuery
from api.routes.runs import RunIdPath
from api.schemas import DecisionRequest, DecisionResult
from core.chain_spec import CHAIN_NAME_PATTERN
from runs.views import ApprovalList

router = APIRouter(
    tags=["approvals"],
    route_class=CheckedJsonRoute,
    dependencies=[StrictQuery],
)


@router.get(
    "/v1/approvals",
    response_model=ApprovalList,
    responses=error_responses(401, 403, 422, 503),
    summary="Pending approvals across runs (a reviewer's: those of its roles)",
)
async def list_approvals(
    principal: ReaderDep,
    db: DatabaseDep,
    runs: RunClientDep,
    approval_status: Annotated[Literal["pending"], Query(alias="status")] = "pending",
    chain: Annotated[str | None, Query(max_length=100, pattern=CHAIN_NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most runs to look at")] = 200,
) -> ApprovalList:
    return await approvals.list_pending(db, runs, principal=principal, chain=chain, limit=limit)


@router.post(
    "/v1/runs/{run_id}/approvals/{approval_id}",
    response_model=DecisionResult,
    responses=error_responses(401, 403, 404, 409, 413, 422, 503, 504),
    summary="Approve, reject or edit a pending approval",
)
async def decide(
    run_id: RunIdPath,
    approval_id: Annotated[str, Path(min_length=1, max_length=200)],
    body: DecisionRequest,
    principal: ReviewerDep,
    runs: RunClientDep,
) -> DecisionResult:
    return await approvals.decide(
        runs, run_id=run_id, approval_id=approval_id, body=body, principal=principal
    )

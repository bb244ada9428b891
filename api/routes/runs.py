"""/v1/runs: start, read, list and cancel chain runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from api import runs
from api.bodies import CheckedJsonRoute
from api.deps import DatabaseDep, ReaderDep, RunClientDep, ServiceDep
from api.errors import error_responses
from api.query_params import StrictQuery
from api.schemas import (
    RUN_ID_PATTERN,
    CancelAccepted,
    RunAccepted,
    RunCreate,
    RunList,
)
from core.chain_spec import CHAIN_NAME_PATTERN
from core.statuses import RunStatus
from runs.views import RunDetail

router = APIRouter(
    prefix="/v1/runs",
    tags=["runs"],
    route_class=CheckedJsonRoute,
    dependencies=[StrictQuery],
)

RunIdPath = Annotated[str, Path(min_length=1, max_length=200, pattern=RUN_ID_PATTERN)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RunAccepted,
    responses={
        200: {"model": RunAccepted, "description": "The run_id names this same run already"},
        **error_responses(401, 403, 404, 409, 413, 422, 503),
    },
    summary="Start a run of a published chain",
)
async def start_run(
    body: RunCreate,
    response: Response,
    principal: ServiceDep,
    db: DatabaseDep,
    run_client: RunClientDep,
) -> RunAccepted:
    starter = runs.RunStarter(db, run_client, principal)
    accepted = await starter.start(body)
    if not accepted.created:
        response.status_code = status.HTTP_200_OK
    return accepted


@router.get(
    "",
    response_model=RunList,
    responses=error_responses(401, 403, 422, 503),
    summary="List runs from the run index, newest first",
)
async def list_runs(
    principal: ReaderDep,
    db: DatabaseDep,
    chain: Annotated[str | None, Query(max_length=100, pattern=CHAIN_NAME_PATTERN)] = None,
    run_status: Annotated[RunStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> RunList:
    items = await db.read(
        runs.list_run_summaries,
        principal=principal,
        chain=chain,
        status=run_status,
        limit=limit,
        offset=offset,
    )
    return RunList(items=items, limit=limit, offset=offset)


@router.get(
    "/{run_id}",
    response_model=RunDetail,
    responses=error_responses(401, 403, 404, 422, 503),
    summary="A run: status, current steps, pending approvals, usage, result or error",
)
async def get_run(
    run_id: RunIdPath, principal: ReaderDep, db: DatabaseDep, run_client: RunClientDep
) -> RunDetail:
    return await runs.read_run(db, run_client, run_id, principal)


@router.post(
    "/{run_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CancelAccepted,
    responses=error_responses(401, 403, 404, 409, 422, 503),
    summary="Ask a running run to cancel",
)
async def cancel_run(
    run_id: RunIdPath, principal: ServiceDep, db: DatabaseDep, run_client: RunClientDep
) -> CancelAccepted:
    await runs.cancel_run(db, run_client, run_id, principal)
    return CancelAccepted(run_id=run_id)

"""/v1/evals: start an evaluation of chain variants on an eval set, read its
progress or its report (service and admin keys)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from api import evals
from api.bodies import CheckedJsonRoute
from api.deps import DatabaseDep, RunClientDep, ServiceDep, SettingsDep
from api.errors import error_responses
from api.query_params import StrictQuery
from runs.client import RunClient
from runs.evals import EvalClient

router = APIRouter(
    prefix="/v1/evals",
    tags=["evals"],
    route_class=CheckedJsonRoute,
    dependencies=[StrictQuery],
)

EvalIdPath = Annotated[str, Path(min_length=1, max_length=100, pattern=evals.EVAL_ID_PATTERN)]


def _eval_client(runs: RunClient) -> EvalClient:
    return EvalClient(runs.client, task_queue=runs.task_queue, catalog=runs.catalog)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=evals.EvalAccepted,
    responses=error_responses(401, 403, 404, 409, 413, 422, 503),
    summary="Start an evaluation: every case through every variant",
)
async def start_evaluation(
    body: evals.EvalCreate,
    principal: ServiceDep,
    db: DatabaseDep,
    run_client: RunClientDep,
    settings: SettingsDep,
) -> evals.EvalAccepted:
    return await evals.start_evaluation(
        db, _eval_client(run_client), principal, body, settings.models_file
    )


@router.get(
    "/{eval_id}",
    response_model=evals.EvalDetail,
    responses=error_responses(401, 403, 404, 422, 503),
    summary="An evaluation's progress while it runs, its report once ended",
)
async def get_evaluation(
    eval_id: EvalIdPath, principal: ServiceDep, db: DatabaseDep, run_client: RunClientDep
) -> evals.EvalDetail:
    return await evals.read_evaluation_detail(db, _eval_client(run_client), principal, eval_id)

"""/v1/chains: read published chain versions, publish new ones (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from api import chains
from api.bodies import CheckedJsonRoute
from api.deps import AdminDep, ReaderDep, SessionDep, StateDep
from api.errors import error_responses
from api.query_params import StrictQuery
from api.schemas import ChainList, ChainVersionList
from core.chain_spec import CHAIN_NAME_PATTERN
from core.input_limits import MAX_VERSION
from store import ChainVersionPublic

router = APIRouter(
    prefix="/v1/chains",
    tags=["chains"],
    route_class=CheckedJsonRoute,
    dependencies=[StrictQuery],
)

ChainNamePath = Annotated[str, Path(min_length=1, max_length=100, pattern=CHAIN_NAME_PATTERN)]

_SPEC_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The chain spec, as JSON or as YAML text (the file format of chains/).",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ChainSpec"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


@router.get(
    "",
    response_model=ChainList,
    responses=error_responses(401, 403, 503),
    summary="Every chain with its latest version",
)
def list_chains(_principal: ReaderDep, session: SessionDep) -> ChainList:
    return ChainList(items=chains.summaries(session))


@router.get(
    "/{name}",
    response_model=ChainVersionPublic,
    responses=error_responses(401, 403, 404, 422, 503),
    summary="A chain's latest version, or the one asked for",
)
def get_chain(
    name: ChainNamePath,
    _principal: ReaderDep,
    session: SessionDep,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
) -> ChainVersionPublic:
    return chains.read(session, name=name, version=version)


@router.get(
    "/{name}/versions",
    response_model=ChainVersionList,
    responses=error_responses(401, 403, 404, 422, 503),
    summary="Every version of a chain, oldest first",
)
def list_versions(
    name: ChainNamePath, _principal: ReaderDep, session: SessionDep
) -> ChainVersionList:
    return ChainVersionList(name=name, items=chains.versions(session, name=name))


@router.put(
    "/{name}",
    status_code=status.HTTP_201_CREATED,
    response_model=ChainVersionPublic,
    responses={
        200: {"model": ChainVersionPublic, "description": "Same spec as the latest version"},
        **error_responses(401, 403, 413, 415, 422, 503),
    },
    openapi_extra=_SPEC_BODY,
    summary="Publish a new version of a chain (validated)",
)
async def put_chain(
    name: ChainNamePath,
    request: Request,
    response: Response,
    principal: AdminDep,
    session: SessionDep,
    state: StateDep,
) -> ChainVersionPublic:
    # Parsing a large or deeply nested document takes CPU: off the event loop.
    spec = await run_in_threadpool(
        chains.parse_spec_body,
        name,
        await request.body(),
        request.headers.get("content-type"),
        state.settings.input_limits,
    )
    stored, created = await run_in_threadpool(
        chains.publish,
        session,
        name=name,
        spec=spec,
        catalog=state.catalog,
        author=principal.name,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return stored

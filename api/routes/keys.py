"""/v1/keys: API keys (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from api import keys
from api.bodies import CheckedJsonRoute
from api.deps import AdminDep, SessionDep
from api.errors import error_responses
from api.query_params import StrictQuery
from api.schemas import KEY_NAME_PATTERN, KeyCreate, KeyCreated, KeyList, KeyRevoked

router = APIRouter(
    prefix="/v1/keys",
    tags=["keys"],
    route_class=CheckedJsonRoute,
    dependencies=[StrictQuery],
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    responses=error_responses(401, 403, 409, 413, 422, 503),
    summary="Create an API key (the key is in this answer only)",
)
def create_key(body: KeyCreate, _principal: AdminDep, session: SessionDep) -> KeyCreated:
    return keys.create(session, body)


@router.get(
    "",
    response_model=KeyList,
    responses=error_responses(401, 403, 503),
    summary="List API keys (never their secrets)",
)
def list_keys(_principal: AdminDep, session: SessionDep) -> KeyList:
    return KeyList(items=keys.listing(session))


@router.delete(
    "/{name}",
    response_model=KeyRevoked,
    responses=error_responses(401, 403, 404, 422, 503),
    summary="Revoke the active key of that name",
)
def revoke_key(
    name: Annotated[str, Path(min_length=1, max_length=100, pattern=KEY_NAME_PATTERN)],
    _principal: AdminDep,
    session: SessionDep,
) -> KeyRevoked:
    keys.revoke(session, name)
    return KeyRevoked(name=name)

"""Dependencies of the routes, as `Annotated` aliases: the database session,
the Temporal client, and who is calling with which role.

No dependency holds a database connection for the rest of the request: a
route that awaits Temporal reaches the database through `DatabaseDep`
(one short session per call, on a thread), and the key check uses a session
of its own.

Authentication is a bearer API key: a key stored (hashed) in the database,
or the bootstrap admin key from CHORUS_ADMIN_KEY, which acts as an admin
named `bootstrap-admin` so that the first real keys can be created.

Roles say what a key may do; its scope says which runs it may do it to
(`Principal.run_access`): a service key sees and cancels the runs it started,
a reviewer the runs and approvals of its roles, unless the key was created
with scope `all`; an admin sees everything.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from temporalio.client import Client

from api.errors import http_error
from api.state import ApiState, Database
from core.problems import ApiProblem
from core.settings import Settings
from runs.client import RunClient
from store import verify_api_key
from store.models import BOOTSTRAP_ADMIN

ROLES = ("service", "reviewer", "admin")

RunAccess = Literal["all", "owned", "reviewed"]


@dataclass(frozen=True)
class Principal:
    """The caller: a key's name (the identity recorded in the audit log),
    roles, and scope (`own` or `all`: which runs it sees)."""

    name: str
    role: str
    approval_roles: list[str] = field(default_factory=list)
    scope: str = "own"

    @property
    def run_access(self) -> RunAccess:
        """Which runs the caller sees: `all` (an admin, or a key of scope
        `all`); `owned`, a service key: the runs it started; `reviewed`, a
        reviewer: approvals of its roles and the runs they belong to, and
        runs it has decided on."""
        if self.role == "admin" or self.scope == "all":
            return "all"
        return "owned" if self.role == "service" else "reviewed"

    @property
    def reviewer_roles(self) -> list[str]:
        """Roles sent with a decision: the key's role and its approval roles; an
        admin also counts as a reviewer."""
        roles = [self.role, *self.approval_roles]
        if self.role == "admin":
            roles.append("reviewer")
        return list(dict.fromkeys(roles))


def get_state(request: Request) -> ApiState:
    return request.app.state.chorus  # type: ignore[no-any-return]


StateDep = Annotated[ApiState, Depends(get_state)]


def get_settings_dep(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_session(state: StateDep) -> Iterator[Session]:
    """One session per request, committed before the response is sent (the
    dependency's scope is the route function), rolled back if the route raises.

    For sync routes, which use it on their own thread: its connection is
    taken at the first query and given back when the route returns. A route
    that awaits anything between queries uses `DatabaseDep` instead."""
    try:
        state.database.prepare()
    except ApiProblem as problem:
        raise http_error(503, problem.code, problem.message) from problem
    with state.database.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_database(state: StateDep) -> Database:
    return state.database


DatabaseDep = Annotated[Database, Depends(get_database)]
"""The database for async routes: `await db.read(fn, ...)` / `await db.write(fn, ...)`
run `fn(session, ...)` on a thread in a session of their own."""


async def get_temporal_client(state: StateDep) -> Client:
    try:
        return await state.temporal.get()
    except ApiProblem as problem:
        raise http_error(503, problem.code, problem.message) from problem


TemporalClientDep = Annotated[Client, Depends(get_temporal_client)]


def get_run_client(state: StateDep, client: TemporalClientDep) -> RunClient:
    return RunClient(client, task_queue=state.settings.task_queue, catalog=state.catalog)


RunClientDep = Annotated[RunClient, Depends(get_run_client)]
"""The one way the API starts, reads, decides and cancels runs."""

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`chorus keys create`, `POST /v1/keys`) or CHORUS_ADMIN_KEY.",
)


def _unauthorized(message: str) -> Exception:
    return http_error(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


async def get_principal(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Who is calling; 401 (with `WWW-Authenticate: Bearer`) when no valid key is given."""
    if credentials is None or not credentials.credentials:
        raise _unauthorized("missing API key: send `Authorization: Bearer <key>`")
    presented = credentials.credentials
    admin_key = state.settings.admin_key
    if admin_key is not None and hmac.compare_digest(
        presented.encode(), admin_key.get_secret_value().encode()
    ):
        return Principal(BOOTSTRAP_ADMIN, "admin", scope="all")
    key = await state.database.read(verify_api_key, presented=presented)
    if key is None:
        raise _unauthorized("unknown or revoked API key")
    if key.name.lower() == BOOTSTRAP_ADMIN.lower():
        # Made before the name was reserved: its decisions would be recorded
        # as the bootstrap admin's.
        raise _unauthorized(
            f"API key {key.name!r} has the bootstrap admin's reserved name: revoke it "
            f"(DELETE /v1/keys/{key.name}) and create one under another name"
        )
    return Principal(key.name, key.role, list(key.approval_roles or []), scope=key.scope)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_role(*roles: str) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency that lets only callers with one of `roles` through (403 otherwise)."""
    needed = " or ".join(roles)

    async def check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            raise http_error(
                403,
                "forbidden",
                f"this needs a key with role {needed}; key {principal.name!r} has role "
                f"{principal.role!r}",
                details={"required_roles": list(roles), "role": principal.role},
            )
        return principal

    return check


ServiceDep = Annotated[Principal, Depends(require_role("service", "admin"))]
"""Starts, cancels and reads runs."""
ReviewerDep = Annotated[Principal, Depends(require_role("reviewer", "admin"))]
"""Decides approvals."""
AdminDep = Annotated[Principal, Depends(require_role("admin"))]
"""Manages chains and keys."""
ReaderDep = Annotated[Principal, Depends(require_role(*ROLES))]
"""Any valid key: reads runs, approvals and chains."""

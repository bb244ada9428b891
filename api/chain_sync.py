"""Chains added to or changed in the chains directory are served at once,
without `chorus chains sync`.

Every request lets the directory be checked when its last check is
`CHAINS_CHECK_INTERVAL_S` old (a stat per chain file; a sync only when one
changed), so a changed file is published within seconds. A request that
meets `chain_not_found` has the directory checked there and then; when that
check published something, the request is answered afresh, so a file added a
moment ago is found on the first try. Asking again is safe: a chain is
resolved before anything else a request does (a run starts only after its
chain is found). When a bad file keeps the directory from being published,
the 404 names the file and what is wrong with it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response, status_of
from api.request_body import read_body, replaying
from api.state import ApiState, ChainsDir
from core.problems import ChainNotFound

SCOPE_KEY = "chorus.chain_lookup"


@dataclass
class ChainLookup:
    """What one request saw of the chains directory, shared by its passes."""

    started: float
    """The event loop's time when the request began."""
    generation: int
    """`ChainsDir.generation` when the request began."""
    again: bool = False
    """The first answer is dropped and the request answered afresh."""
    last_pass: bool = False


class ChainSyncMiddleware:
    """Pure ASGI middleware around the routes (inside the body-size limit, so
    the body it keeps for a second pass is bounded)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chains = _chains(scope)
        if scope["type"] != "http" or chains is None:
            await self.app(scope, receive, send)
            return
        await chains.refresh()
        lookup = ChainLookup(
            started=asyncio.get_running_loop().time(), generation=chains.generation
        )
        body = await read_body(receive)
        if body is None:
            return

        async def first_answer(message: Message) -> None:
            if not lookup.again:
                await send(message)

        await self.app({**scope, SCOPE_KEY: lookup}, replaying(body, receive), first_answer)
        if lookup.again:
            lookup.last_pass = True
            await self.app({**scope, SCOPE_KEY: lookup}, replaying(body, receive), send)


async def chain_not_found_handler(request: Request, exc: Exception) -> JSONResponse:
    """404 `chain_not_found`, once the chains directory has been checked."""
    assert isinstance(exc, ChainNotFound)
    chains = _chains(request.scope)
    lookup = request.scope.get(SCOPE_KEY)
    if chains is not None and isinstance(lookup, ChainLookup) and not lookup.last_pass:
        await chains.refresh(since=lookup.started)
        lookup.again = chains.generation != lookup.generation
    message, details = exc.message, exc.details
    if chains is not None and chains.problem is not None:
        message = (
            f"{message}; the chains directory has a bad file, so none of its changes are "
            f"published: {chains.problem}"
        )
        details = {
            **(details if isinstance(details, dict) else {}),
            "chains_dir_problem": chains.problem,
        }
    return error_response(status_of(exc), exc.code, message, details)


def _chains(scope: Scope) -> ChainsDir | None:
    """The app's ChainsDir once its database is prepared (before that, preparing
    it publishes the directory)."""
    app = scope.get("app")
    state: ApiState | None = getattr(app.state, "chorus", None) if app is not None else None
    if state is None or not state.database.prepared:
        return None
    return state.database.chains

"""JSON request bodies read within the input limits, and refused only once
the caller is known.

FastAPI parses a JSON body before it runs a route's dependencies, so a body
it cannot parse was a 422 even for a caller without a key, and a body it
parsed could still be 1,000 levels deep (a RecursionError: 500), hold a lone
surrogate or a NUL, NaN or a 30-digit integer. Here every route's request
parses JSON with `core.input_limits.loads_json`; a body that breaks a limit
is not refused on the spot but kept aside (the route then sees a placeholder
every body model refuses), so the dependencies run first: no key is a 401, a
key without the role a 403, and only then is the body's problem the answer
(`api.errors` answers the validation error with the problem kept here, a 422
naming its path and limit).

Routes that read their own body (a chain spec, a knowledge document) parse
it with the same limits after their dependencies, which gives the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from core.input_limits import DEFAULT_LIMITS, InputLimits, InputProblem, loads_json, printable

_REFUSED = "chorus_refused_body"
"""Key in the request state (shared by every Request over one scope)."""
_UNKNOWN_QUERY = "chorus_unknown_query"
_IN_LOOP_BYTES = 32 * 1024
"""Bodies up to this size are parsed and checked on the event loop (well under
a millisecond); larger ones (up to ~0.3 s for 1 MB of small values) on a thread."""


REFUSED_BODY = None
"""What a route's body parameter sees in place of a refused body. Every JSON
body of this API is a required model, which refuses None (FastAPI validates
bodies from attributes too, so an arbitrary placeholder object would pass);
tests/api/test_bad_inputs.py checks that every route's body is such a model."""


def input_limits(request: Request) -> InputLimits:
    """The limits of the app serving `request` (its settings' `input_limits`)."""
    settings = getattr(request.app.state, "settings", None)
    return getattr(settings, "input_limits", DEFAULT_LIMITS)


def refused_body(request: Request) -> InputProblem | None:
    """Why this request's JSON body was refused, if it was."""
    problem = getattr(request.state, _REFUSED, None)
    return problem if isinstance(problem, InputProblem) else None


def unknown_query(request: Request) -> InputProblem | None:
    """The query parameters of this request its route does not take, as a problem."""
    problem = getattr(request.state, _UNKNOWN_QUERY, None)
    return problem if isinstance(problem, InputProblem) else None


class CheckedJsonRequest(Request):
    """A Request whose `json()` parses within the input limits, keeping a
    refusal aside (see the module docstring) instead of raising."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                if len(body) > _IN_LOOP_BYTES:
                    parsed = await run_in_threadpool(loads_json, body, input_limits(self))
                else:
                    parsed = loads_json(body, input_limits(self))
                self._json = parsed
                setattr(self.state, _REFUSED, None)
            except InputProblem as problem:
                setattr(self.state, _REFUSED, problem)
                self._json = REFUSED_BODY
        return self._json


class CheckedJsonRoute(APIRoute):
    """The route class of every router: its handler gets a CheckedJsonRequest,
    and a query parameter the route does not take is kept aside as a problem
    (`api.query_params.refuse_unknown_query` answers with it once the caller
    is known)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        known = frozenset(_query_names(self.dependant))

        async def checked(request: Request) -> Response:
            unknown = [name for name in request.query_params if name not in known]
            setattr(request.state, _UNKNOWN_QUERY, _unknown_query(unknown, known))
            return await handler(CheckedJsonRequest(request.scope, request.receive))

        return checked


def _query_names(dependant: Dependant) -> Iterator[str]:
    yield from (field.alias for field in dependant.query_params)
    for sub in dependant.dependencies:
        yield from _query_names(sub)


def _unknown_query(unknown: list[str], known: frozenset[str]) -> InputProblem | None:
    if not unknown:
        return None
    takes = ", ".join(sorted(known)) or "none"
    names = ", ".join(repr(printable(name)) for name in unknown)
    return InputProblem(
        "unknown_query_parameter",
        f"query.{printable(unknown[0])}",
        f"unknown query parameter{'s' if len(unknown) > 1 else ''} {names} "
        f"(this endpoint takes: {takes})",
    )

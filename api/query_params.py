"""Query parameters a route does not take are refused, once the caller is known.

Request bodies forbid unknown fields; query strings now do too: a misspelt
`?stauts=failed` would otherwise be ignored and list every run. The route
class (`api.bodies.CheckedJsonRoute`) finds such parameters; this router
dependency refuses them with a 422 naming them and what the route takes,
after authentication (it depends on the principal, so no key is a 401 first).
"""

from __future__ import annotations

from fastapi import Depends, Request

from api.bodies import unknown_query
from api.deps import PrincipalDep


async def refuse_unknown_query(request: Request, _principal: PrincipalDep) -> None:
    problem = unknown_query(request)
    if problem is not None:
        raise problem


StrictQuery = Depends(refuse_unknown_query)
"""`dependencies=[StrictQuery]` on every router whose routes all authenticate."""

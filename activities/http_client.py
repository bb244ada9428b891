"""The pooled httpx client an activity class calls out through.

Activity classes (model gateway, tools, embeddings) take an optional client:
tests and workers may share one, and then its owner closes it; otherwise the
class makes its own and closes it in `aclose()`.
"""

from __future__ import annotations

import httpx

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class OwnsHttpClient:
    """Holds `_http`: the client given, or a pooled one of its own.

    Its own client neither retries nor follows redirects: Temporal owns
    retries, and a redirect from a provider or tool endpoint means a
    misconfigured base URL."""

    def __init__(
        self, http: httpx.AsyncClient | None = None, *, limits: httpx.Limits = DEFAULT_LIMITS
    ) -> None:
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(follow_redirects=False, limits=limits)

    async def aclose(self) -> None:
        """Close the client if this object made it (a given one is left open)."""
        if self._owns_http:
            await self._http.aclose()

"""Load shedding: the API takes on what it can serve and tells the rest to
come back, quickly, instead of failing them after a long wait.

At most `max_in_flight` requests are handled at once. A request beyond that
waits in a queue (first come, first served) for up to `queue_timeout_s`; when
`max_queued` requests are already waiting, or its wait runs out, it gets
503 `overloaded` with `Retry-After` at once. Health checks (`/healthz`,
`/readyz`) are never queued or refused: an orchestrator must see a busy API
as alive.

The middleware also gives every other 503 passing through it (Temporal or
the database unavailable or busy) a `Retry-After`, so a client can treat
every 503 the same way: wait, then retry. And it sizes the thread pool that
blocking work runs on (`api_threads`), which the database pool is sized from:
the server's concurrency is set in one place.
"""

from __future__ import annotations

import asyncio
import time

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from core.logging import get_logger

log = get_logger(__name__)

EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})
RETRY_AFTER_OVERLOADED_S = 1
"""A shed request is worth retrying almost at once: capacity frees up in milliseconds."""
RETRY_AFTER_UNAVAILABLE_S = 5
"""Temporal or the database unavailable takes longer to come back."""
LOG_INTERVAL_S = 10.0
"""At most one warning per this long while shedding (a burst would flood the log)."""


class LoadSheddingMiddleware:
    """Pure ASGI middleware; the outermost one, so a refused request costs no
    body read and no database or Temporal call."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        max_queued: int,
        queue_timeout_s: float,
        threads: int | None = None,
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.queue_timeout_s = queue_timeout_s
        self.threads = threads
        self.in_flight = 0
        self.queued = 0
        self.shed = 0
        """Requests refused since start (tests and the log read it)."""
        self._slots: asyncio.Semaphore | None = None
        self._shed_since_log = 0
        self._logged_at = float("-inf")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            self._size_thread_pool()
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if not await self._admit():
            await self._refuse(scope, receive, send)
            return
        try:
            await self.app(scope, receive, _with_retry_after(send))
        finally:
            self.in_flight -= 1
            self._semaphore().release()

    def _size_thread_pool(self) -> None:
        if self.threads is not None:
            # The limiter belongs to the event loop that serves the app, which
            # is the one running its lifespan.
            anyio.to_thread.current_default_thread_limiter().total_tokens = self.threads

    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_in_flight)
        return self._slots

    async def _admit(self) -> bool:
        """Take a slot (waiting in the queue if there is room in it); False
        when the request must be refused."""
        slots = self._semaphore()
        if not slots.locked():
            await slots.acquire()  # a free slot: returns at once
            self.in_flight += 1
            return True
        if self.queued >= self.max_queued:
            return False
        self.queued += 1
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await slots.acquire()
        except TimeoutError:
            return False
        finally:
            self.queued -= 1
        self.in_flight += 1
        return True

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.shed += 1
        self._shed_since_log += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_INTERVAL_S:
            log.warning(
                "API overloaded: requests refused with 503",
                refused=self._shed_since_log,
                max_in_flight=self.max_in_flight,
                max_queued=self.max_queued,
            )
            self._logged_at, self._shed_since_log = now, 0
        response = error_response(
            503,
            "overloaded",
            f"the API is serving as many requests as it can ({self.max_in_flight} at once, "
            f"{self.max_queued} waiting); retry after {RETRY_AFTER_OVERLOADED_S} s",
            {
                "max_in_flight": self.max_in_flight,
                "max_queued": self.max_queued,
                "retry_after_s": RETRY_AFTER_OVERLOADED_S,
            },
            headers={"Retry-After": str(RETRY_AFTER_OVERLOADED_S)},
        )
        await response(scope, receive, send)


def _with_retry_after(send: Send) -> Send:
    """`send` that adds `Retry-After` to a 503 that has none."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 503:
            headers = list(message.get("headers", []))
            if not any(name.lower() == b"retry-after" for name, _ in headers):
                headers.append((b"retry-after", str(RETRY_AFTER_UNAVAILABLE_S).encode()))
                message = {**message, "headers": headers}
        await send(message)

    return sending

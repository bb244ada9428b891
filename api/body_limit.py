"""Refuse request bodies over a size limit before reading them in full, and
bodies that do not arrive in time.

A declared `Content-Length` over the limit is refused at once, without
reading a byte of the body. A body without one (chunked) is read only up to
the limit plus one byte, then refused; a body within the limit is handed to
the app as it was received. Refusals use the API's error shape (413), and the
app never sees the request, so nothing can start.

A body not received in full within `read_timeout_s` gets 408 and the
connection is closed: a client that sends slowly (or stops half-way) cannot
hold a connection, and a slot of the API's capacity, for ever.

A few routes take larger bodies (a document upload: `streamed`, path pattern
and limit). Their bodies are not collected here but streamed to the app,
counted: a declared length over the route's limit is refused at once, and
once more than the limit has arrived the app is told the client went away
(Starlette raises `ClientDisconnect` from `request.stream()`) and the client
gets the 413 instead of whatever the app answered.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from api.request_body import replaying


class BodySizeLimitMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer every response)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        read_timeout_s: float | None = None,
        streamed: Sequence[tuple[re.Pattern[str], int]] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.read_timeout_s = read_timeout_s
        self.streamed = tuple(streamed)
        """(path pattern, limit in bytes) of routes whose bodies stream to the app."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        streamed_limit = self._streamed_limit(scope)
        if streamed_limit is not None:
            await self._stream(scope, receive, send, declared, streamed_limit)
            return
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(scope, receive, send, declared)
            return
        if declared == 0 and not _chunked(scope):
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.read_timeout_s):
                while size <= self.max_body_bytes:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body = message.get("body", b"")
                    size += len(body)
                    chunks.append(body)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._too_slow(scope, receive, send, size)
            return
        if size > self.max_body_bytes:
            await self._refuse(scope, receive, send, None)
            return

        await self.app(scope, replaying(b"".join(chunks), receive), send)

    def _streamed_limit(self, scope: Scope) -> int | None:
        path = scope.get("path", "")
        return next((limit for pattern, limit in self.streamed if pattern.fullmatch(path)), None)

    async def _stream(
        self, scope: Scope, receive: Receive, send: Send, declared: int | None, limit: int
    ) -> None:
        """The body streamed to the app, counted; refused (413, or 408 when
        too slow) as soon as it passes `limit` or the read timeout."""
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, declared, limit)
            return
        loop = asyncio.get_running_loop()
        deadline = None if self.read_timeout_s is None else loop.time() + self.read_timeout_s
        size = 0
        refusal: str | None = None
        started = False

        async def counted() -> Message:
            nonlocal size, refusal
            if refusal is not None:
                return {"type": "http.disconnect"}
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                refusal = "slow"
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    refusal = "large"
                    return {"type": "http.disconnect"}
            return message

        async def answer(message: Message) -> None:
            nonlocal started
            if refusal is not None and not started:
                return  # the app's answer to a body it did not get in full
            started = True
            await send(message)

        await self.app(scope, counted, answer)
        if refusal is None or started:
            return
        if refusal == "slow":
            await self._too_slow(scope, receive, send, size)
        else:
            await self._refuse(scope, receive, send, None, limit)

    async def _too_slow(self, scope: Scope, receive: Receive, send: Send, received: int) -> None:
        timeout = self.read_timeout_s
        response = error_response(
            408,
            "request_timeout",
            f"the request body did not arrive within {timeout:g} s "
            f"({received} bytes received); send it in one go",
            {"read_timeout_s": timeout, "received_bytes": received},
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        declared: int | None,
        limit: int | None = None,
    ) -> None:
        limit = self.max_body_bytes if limit is None else limit
        size = f"{declared} bytes" if declared is not None else f"more than {limit} bytes"
        response = error_response(
            413,
            "body_too_large",
            f"request body is {size}; the limit is {limit} bytes",
            {"max_body_bytes": limit, "content_length": declared},
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _chunked(scope: Scope) -> bool:
    return any(
        name == b"transfer-encoding" and b"chunked" in value.lower()
        for name, value in scope.get("headers", ())
    )

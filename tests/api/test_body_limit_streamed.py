"""The body-size middleware's streamed routes (document uploads), at the ASGI
level: a body streams to the app in the pieces it arrives in, counted; past
the route's limit the app is told the client went away and the client gets
413 naming the limit, without the rest of the body being pulled; other
routes keep the general limit."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.types import Message

from api.body_limit import BodySizeLimitMiddleware

PIECE = 1000
LIMIT = 5000


class Client:
    """An endless (or `pieces`-long) body in PIECE-byte messages; what was sent back."""

    def __init__(self, pieces: int | None = None) -> None:
        self.pieces = pieces
        self.pulled = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.pulled += 1
        more = self.pieces is None or self.pulled < self.pieces
        return {"type": "http.request", "body": b"x" * PIECE, "more_body": more}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def status(self) -> int:
        return int(self.sent[0]["status"])

    def error(self) -> dict[str, Any]:
        body = b"".join(m.get("body", b"") for m in self.sent[1:])
        return json.loads(body)["error"]  # type: ignore[no-any-return]


class App:
    """Reads its body like Starlette (stops at a disconnect), then answers 201."""

    def __init__(self) -> None:
        self.pieces: list[int] = []
        self.disconnected = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                break
            self.pieces.append(len(message["body"]))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"stored"})


def scope(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "headers": headers or []}


def middleware(app: App, read_timeout_s: float | None = None) -> BodySizeLimitMiddleware:
    return BodySizeLimitMiddleware(
        app,
        max_body_bytes=2 * PIECE,
        read_timeout_s=read_timeout_s,
        streamed=((re.compile(r"/v1/knowledge/[^/]+/files"), LIMIT),),
    )


async def test_a_body_within_the_limit_streams_through_in_pieces() -> None:
    app, client = App(), Client(pieces=4)
    await middleware(app)(scope("/v1/knowledge/kb/files"), client.receive, client.send)
    assert client.status() == 201 and app.pieces == [PIECE] * 4  # not joined: streamed


async def test_an_endless_body_is_refused_once_past_the_limit() -> None:
    app, client = App(), Client()
    await middleware(app)(scope("/v1/knowledge/kb/files"), client.receive, client.send)
    assert client.status() == 413 and app.disconnected
    assert client.pulled == LIMIT // PIECE + 1  # nothing pulled past the limit
    error = client.error()
    assert error["code"] == "body_too_large" and str(LIMIT) in error["message"]
    assert error["details"]["max_body_bytes"] == LIMIT
    assert all(m.get("status") != 201 for m in client.sent)  # the app's answer dropped


async def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    app, client = App(), Client()
    headers = [(b"content-length", str(LIMIT + 1).encode())]
    await middleware(app)(scope("/v1/knowledge/kb/files", headers), client.receive, client.send)
    assert client.status() == 413 and client.pulled == 0 and app.pieces == []


async def test_other_routes_keep_the_general_limit() -> None:
    app, client = App(), Client(pieces=4)
    await middleware(app)(scope("/v1/knowledge/kb/documents"), client.receive, client.send)
    assert client.status() == 413 and app.pieces == []
    assert client.error()["details"]["max_body_bytes"] == 2 * PIECE


async def test_a_stalled_upload_gets_408() -> None:
    app, client = App(), Client()
    stalled = asyncio.Event()

    async def receive() -> Message:
        if client.pulled >= 2:
            await stalled.wait()  # never set: the client stops sending
        return await client.receive()

    await middleware(app, read_timeout_s=0.05)(
        scope("/v1/knowledge/kb/files"), receive, client.send
    )
    assert client.status() == 408 and app.disconnected and app.pieces == [PIECE, PIECE]

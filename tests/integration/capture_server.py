"""A hostile HTTP server for secret-leak tests: it records every request it
receives (so a test can prove a credential really went out) and answers with
an error whose body echoes the credential back, as some providers and
gateways do ("Incorrect API key provided: ..."), so a test can prove the echo
never reaches a log, a history or an API answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True)
class CapturedRequest:
    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes


class CaptureServer:
    """Answers on 127.0.0.1 (an event-loop server, no thread):

    - `POST …/chat/completions`: 401 in OpenAI's shape, echoing the bearer key;
    - `POST …/messages`: 401 in Anthropic's shape, echoing `x-api-key`;
    - anything else: 500 whose JSON message echoes every credential header.
    """

    def __init__(self) -> None:
        self.requests: list[CapturedRequest] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def header_values(self, name: str) -> list[str]:
        """Every value of header `name` (any case) received so far."""
        return [r.headers[name.lower()] for r in self.requests if name.lower() in r.headers]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *lines = head.split("\r\n")
            method, target, _version = request_line.split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(CapturedRequest(method, target, headers, body))
            status, payload = self._answer(target, headers)
            data = json.dumps(payload).encode()
            writer.write(
                f"HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    def _answer(path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if path.endswith("/chat/completions"):
            key = headers.get("authorization", "").removeprefix("Bearer ")
            return 401, {
                "error": {
                    "message": f"Incorrect API key provided: {key}",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            }
        if path.endswith("/messages"):
            return 401, {
                "type": "error",
                "error": {
                    "type": "authentication_error",
                    "message": f"invalid x-api-key: {headers.get('x-api-key', '')}",
                },
            }
        credentials = {
            name: value
            for name, value in headers.items()
            if name in {"authorization", "x-api-key", "cookie"}
        }
        return 500, {"error": {"message": f"upstream refused the credentials {credentials}"}}

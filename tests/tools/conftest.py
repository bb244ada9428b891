"""Fixtures for tool tests: a real HTTP service on 127.0.0.1 (a free port),
an activity environment with a unique activity identity, and a fresh order desk."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.tools.activities import ToolActivities
from activities.tools.builtin import OrderDesk
from activities.tools.defaults import builtin_registry
from activities.tools.types import ToolCallInput, ToolCallResult
from core.names import RUN_TOOL
from tests.activity_env import ActivityEnv


@dataclass
class Seen:
    """One request as the service received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class ToolService:
    """A small back-office service the HTTP tools call.

    `/v1/track/{carrier}/{number}` and `/v1/inventory/{sku}` answer 200 JSON
    (401 without the right credential); `/v1/orders/{id}/replacements` takes a
    POST; `/status/{code}?retry_after=N` answers that status with an error body
    that echoes the request's credentials (as careless servers do); `/slow`
    waits `seconds`; `/text` answers plain text.
    """

    url: str
    token: str
    api_key: str
    seen: list[Seen] = field(default_factory=list)

    def requests_to(self, prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(prefix)]


def _handler(service: ToolService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _reply(
            self,
            status: int,
            body: Any,
            content_type: str = "application/json",
            headers: dict[str, str] | None = None,
        ) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            seen = Seen(self.command, parts.path, parse_qs(parts.query), dict(self.headers), body)
            service.seen.append(seen)
            segments = parts.path.strip("/").split("/")
            auth = self.headers.get("Authorization", "")
            key = self.headers.get("X-Api-Key", "")
            echo = {"method": self.command, "path": parts.path, "query": seen.query, "body": body}
            if segments[:2] == ["v1", "track"]:
                if auth != f"Bearer {service.token}":
                    return self._reply(401, {"error": {"message": "bad credentials"}})
                return self._reply(
                    200,
                    {"carrier": segments[2], "tracking_number": segments[3], "status": "in_transit"}
                    | echo,
                )
            if segments[:2] == ["v1", "inventory"] or segments[:2] == ["v1", "orders"]:
                if key != service.api_key:
                    return self._reply(401, {"error": {"message": "bad api key"}})
                status = 201 if self.command == "POST" else 200
                return self._reply(status, {"in_stock": True} | echo)
            if segments[0] == "status":
                retry_after = parse_qs(parts.query).get("retry_after")
                headers = {"Retry-After": retry_after[0]} if retry_after else {}
                message = f"upstream said no (request had Authorization: {auth}, key {key})"
                return self._reply(
                    int(segments[1]), {"error": {"message": message}}, headers=headers
                )
            if segments[0] == "slow":
                time.sleep(float(parse_qs(parts.query).get("seconds", ["1"])[0]))
                return self._reply(200, echo)
            if segments[0] == "text":
                return self._reply(200, b"plain words", content_type="text/plain")
            return self._reply(404, {"detail": "no such route"})

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a tool past its timeout) is expected here."""


@pytest.fixture(scope="session")
def tool_service() -> Iterator[ToolService]:
    server = _QuietServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    service = ToolService(
        url=f"http://127.0.0.1:{server.server_address[1]}",
        token=f"tok-{uuid.uuid4().hex}",
        api_key=f"key-{uuid.uuid4().hex}",
    )
    server.RequestHandlerClass = _handler(service)
    thread = threading.Thread(target=server.serve_forever, name="tool-service", daemon=True)
    thread.start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def service(tool_service: ToolService) -> ToolService:
    tool_service.seen.clear()
    return tool_service


@dataclass
class ToolEnv(ActivityEnv):
    """Runs `run_tool` the way a worker does, with a unique activity identity
    and a record of heartbeats."""

    activity_type: str = RUN_TOOL
    activity_id: str = "3"

    @property
    def activity_key(self) -> str:
        return f"{self.workflow_id}/{self.workflow_run_id}/{self.activity_id}"

    async def run(
        self, acts: ToolActivities, tool: str, key: str | None = None, /, **arguments: Any
    ) -> ToolCallResult:
        req = ToolCallInput(tool=tool, arguments=arguments, idempotency_key=key, step="s")
        return await self.execute(acts.run_tool, req)

    async def fail(
        self, acts: ToolActivities, tool: str, key: str | None = None, /, **arguments: Any
    ) -> ApplicationError:
        req = ToolCallInput(tool=tool, arguments=arguments, idempotency_key=key, step="s")
        return await self.raised(acts.run_tool, req)


@pytest.fixture
def env() -> ToolEnv:
    return ToolEnv()


@pytest.fixture
def desk() -> Iterator[OrderDesk]:
    desk = OrderDesk()
    yield desk
    desk.close()


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """One client for the session: a new one loads the CA bundle (~0.3 s)."""
    async with httpx.AsyncClient(follow_redirects=False) as client:
        yield client


@pytest.fixture
def builtin(desk: OrderDesk, http: httpx.AsyncClient) -> ToolActivities:
    """Activities over the builtin tools only (no HTTP tools file)."""
    return ToolActivities(builtin_registry(desk), http)

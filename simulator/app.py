"""The simulator's FastAPI application.

A real HTTP server speaking the OpenAI and Anthropic APIs, used by the demo
and by every test in place of real providers. Every response carries
`X-Simulator: chorus-simulator` so a simulated answer can never pass for a
real one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simulator import anthropic_api, control_api, openai_api
from simulator.models import SimulatorConfig, default_simulator_config
from simulator.pipeline import simulator_config
from simulator.responses import JSONResponse
from simulator.state import SimulatorState

SIMULATOR_HEADER = "X-Simulator"
REQUEST_ID_HEADER = b"x-chorus-request-id"
SIMULATOR_NAME = openai_api.SIMULATOR_NAME

log = structlog.get_logger(__name__)


class SimulatorHeaderMiddleware:
    """Adds the simulator label to every response, errors and 404s included,
    and tells the call log when a completed call's reply has been sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        status = 0

        async def send_labelled(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-simulator", SIMULATOR_NAME.encode())]
                message = {**message, "headers": headers}
            await send(message)
            if (
                message["type"] == "http.response.body"
                and not message.get("more_body", False)
                and 200 <= status < 300
            ):
                _reply_sent(scope)

        await self.app(scope, receive, send_labelled)


def _reply_sent(scope: Scope) -> None:
    """A 2xx reply's last byte is out: the call log stamps its call `sent_at`."""
    request_id = next(
        (v.decode("latin-1") for k, v in scope.get("headers", []) if k == REQUEST_ID_HEADER),
        None,
    )
    if request_id is not None:
        state: SimulatorState = scope["app"].state.sim_state
        state.reply_sent(request_id)


def create_app(config: SimulatorConfig | None = None) -> FastAPI:
    """Build a simulator app; without a config, the shipped default_models.yaml."""
    config = config or default_simulator_config()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.warning(
            "chorus model SIMULATOR started: replies are simulated, not from a real provider",
            models=sorted(config.models),
        )
        yield

    app = FastAPI(
        title="Chorus model SIMULATOR",
        description="Simulated OpenAI and Anthropic APIs for offline demos and tests.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    app.state.sim_config = config
    app.state.sim_state = SimulatorState()
    app.add_middleware(SimulatorHeaderMiddleware)
    app.include_router(openai_api.router)
    app.include_router(anthropic_api.router)
    app.include_router(control_api.router)

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, object]:
        """OpenAI's shape, or Anthropic's when the client sends anthropic-version."""
        names = sorted(simulator_config(request).models)
        if "anthropic-version" in request.headers:
            data = [
                {
                    "type": "model",
                    "id": name,
                    "display_name": f"{name} (simulated)",
                    "created_at": "2024-01-01T00:00:00Z",
                }
                for name in names
            ]
            return {
                "data": data,
                "has_more": False,
                "first_id": names[0] if names else None,
                "last_id": names[-1] if names else None,
            }
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": SIMULATOR_NAME}
                for name in names
            ],
        }

    return app

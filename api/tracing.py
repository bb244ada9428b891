"""The API request's span, the root of a run's trace (`core.tracing`).

One pure-ASGI middleware, added only when tracing is on: a SERVER span per
HTTP request named by the route's template (`POST /v1/runs`), continuing a
caller's trace when the request carries a W3C `traceparent`. The Temporal
client's `TracingInterceptor` starts the workflow inside it, so the run's
workflow, activities and provider calls join the request's trace.

Attributes are the method, route, path and status code: never headers (they
carry API keys), the query string or the body.
"""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import METHODS, route_template
from core import tracing
from core.settings import Settings


def _headers(scope: Scope) -> dict[str, str]:
    # Only what the propagator reads (traceparent, tracestate, baggage).
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name in (b"traceparent", b"tracestate", b"baggage")
    }


class TracingMiddleware:
    """A span around every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in METHODS else "other"
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        with tracing.tracer().start_as_current_span(
            method,
            context=propagate.extract(_headers(scope)),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope.get("path", "")},
        ) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = route_template(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status[0])
                if status[0] >= 500:
                    span.set_status(Status(StatusCode.ERROR))


def install(app: FastAPI, settings: Settings) -> None:
    """Trace the app's requests when tracing is on (`core.tracing`)."""
    if tracing.configure(settings, "chorus-api"):
        app.add_middleware(TracingMiddleware)

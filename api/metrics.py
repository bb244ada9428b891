"""The API's Prometheus metrics, served on `CHORUS_METRICS_PORT` (not on the
API's own port, which faces clients: the endpoint has no auth and stays on
the metrics interface, `CHORUS_METRICS_HOST`, 127.0.0.1 by default).

- `chorus_api_requests_total{method,route,status}` and
  `chorus_api_request_duration_seconds{method,route}`: `route` is the route's
  template (`/v1/runs/{run_id}`), never the raw path, so run ids, approval
  ids and scanners' random paths (`unmatched`) add no series.
- `chorus_api_requests_in_flight`.
- `chorus_runs_awaiting_approval{chain}`: runs waiting for a person, read
  from the run index at scrape time (one grouped count), so every API
  replica reports the same deployment-wide figure.

`install(app, settings)` adds one pure-ASGI middleware, outermost, so a
request the load shedder refuses is counted too; the same middleware starts
the endpoint when the app starts and stops it when the app stops.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logging import get_logger
from core.metrics import MetricsServer, serve_metrics
from core.settings import Settings

log = get_logger(__name__)

UNMATCHED = "unmatched"
AWAITING_APPROVAL = "chorus_runs_awaiting_approval"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "chorus_api_requests",
    "HTTP requests the API answered, by method, route template and status code.",
    ["method", "route", "status"],
)
DURATION = Histogram(
    "chorus_api_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IN_FLIGHT = Gauge("chorus_api_requests_in_flight", "Requests the API is handling now.")


class RunsAwaitingApproval(Collector):
    """`chorus_runs_awaiting_approval{chain}` from the run index."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        state = getattr(self.app.state, "chorus", None)
        if state is None:
            return
        from sqlalchemy import func
        from sqlmodel import select

        from store.engine import session_scope
        from store.models import RunRecord

        try:
            with session_scope(state.database.engine) as session:
                rows = session.exec(
                    select(RunRecord.chain, func.count())
                    .where(RunRecord.status == "awaiting_approval")
                    .group_by(RunRecord.chain)
                ).all()
        except Exception as exc:  # a scrape must not fail with the database
            log.warning("runs awaiting approval not counted", error=str(exc))
            return
        family = GaugeMetricFamily(
            AWAITING_APPROVAL,
            "Runs waiting for an approval decision, by chain (from the run index).",
            labels=["chain"],
        )
        for chain, count in rows:
            family.add_metric([chain], count)
        yield family


def route_template(scope: Scope) -> str:
    """The template of the route that answers (or, for a 405, would answer)
    `scope`, matched against the app's routes again: the scope that reaches
    the router is a copy (api/chain_sync.py), so the `route` it sets is not
    seen out here."""
    app = scope.get("app")
    path = _match(getattr(getattr(app, "router", None), "routes", ()), scope)
    return path or UNMATCHED


def _match(routes: Any, scope: Scope) -> str | None:
    partial: str | None = None
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.NONE:
            continue
        # FastAPI wraps an included router; its routes hold the templates.
        inner = getattr(route, "original_router", None)
        path = _match(inner.routes, scope) if inner is not None else getattr(route, "path", None)
        if not isinstance(path, str) or not path:
            continue
        if match == Match.FULL:
            return path
        partial = partial or path
    return partial


class MetricsMiddleware:
    """Counts and times every HTTP request; serves the endpoint while the app runs."""

    def __init__(self, app: ASGIApp, *, host: str, port: int | None) -> None:
        self.app = app
        self.host, self.port = host, port
        self.server: MetricsServer | None = None
        self.collector: RunsAwaitingApproval | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan_receive(scope, receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            IN_FLIGHT.dec()
            method = scope["method"] if scope["method"] in METHODS else "other"
            route = route_template(scope)
            REQUESTS.labels(method, route, str(status[0])).inc()
            DURATION.labels(method, route).observe(time.perf_counter() - started)

    def _lifespan_receive(self, scope: Scope, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._start(scope["app"])
            elif message["type"] == "lifespan.shutdown":
                self._stop()
            return message

        return wrapped

    def _start(self, app: Any) -> None:
        if self.port is None or self.server is not None:
            return
        self.collector = RunsAwaitingApproval(app)
        REGISTRY.register(self.collector)
        self.server = serve_metrics(self.host, self.port, what="API metrics")
        app.state.metrics_server = self.server

    def _stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.collector is not None:
            REGISTRY.unregister(self.collector)
            self.collector = None


def install(app: FastAPI, settings: Settings) -> None:
    """Count the app's requests; serve `/metrics` on `settings.metrics_port`
    (if set) while it runs. Call last in `create_app`: the middleware added
    last is the outermost."""
    app.add_middleware(MetricsMiddleware, host=settings.metrics_host, port=settings.metrics_port)

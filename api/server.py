"""Serving the API with uvicorn: in the foreground (`chorus api`) or on a
background thread (tests, benchmarks).

Both bind the socket themselves (worker/uvicorn_thread.py), so port 0 picks a
free port and the caller learns which one before any request is made.
"""

from __future__ import annotations

from typing import Self

import uvicorn

from api.app import create_app
from core.logging import get_logger
from core.settings import Settings
from core.uvicorn_thread import BackgroundServer, bind_socket, run_until_stopped
from runs.catalog import Catalog

log = get_logger(__name__)


class ApiStartError(RuntimeError):
    """The API server did not come up."""


def _config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings),
        log_level=settings.log_level,
        # structlog (configured once per process) carries the app's logs; the
        # access log would repeat every request at INFO.
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
    )


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn drains requests in flight first).

    Raises ApiStartError when the port is taken or start-up fails (the model
    registry and the tools file are checked first, so a bad file is named
    instead of a bare "startup failed", and so is a database schema that is
    behind)."""
    try:
        Catalog.from_settings(settings)
    except ValueError as exc:
        raise ApiStartError(str(exc)) from exc
    refuse_a_schema_behind(settings)
    host = host or settings.api_host
    sock = bind_socket(
        host,
        settings.api_port if port is None else port,
        what=ApiServer.what,
        error=ApiStartError,
        backlog=ApiServer.backlog,
        hint=ApiServer.bind_hint,
    )
    actual_port = sock.getsockname()[1]
    log.info("Chorus API listening", url=f"http://{host}:{actual_port}")
    if not run_until_stopped(_config(settings), sock):
        raise ApiStartError(f"the API did not start on {host}:{actual_port}")


def refuse_a_schema_behind(settings: Settings) -> None:
    """ApiStartError naming `chorus db upgrade` when the database answers and
    its schema is behind (the app's start-up would refuse it too, with a
    traceback from uvicorn); a database that does not answer yet is left to
    the app, which starts without it and retries."""
    from store.engine import make_engine
    from store.schema import SchemaNotCurrent, check_schema

    engine = make_engine(settings.effective_database_url)
    try:
        check_schema(engine)
    except SchemaNotCurrent as exc:
        raise ApiStartError(str(exc)) from None
    except Exception as exc:
        log.info("database not checked before start-up", error=str(exc))
    finally:
        engine.dispose()


class ApiServer(BackgroundServer):
    """The API on a background thread; `port=0` picks a free port.

    `with ApiServer(settings) as api: httpx.get(api.url + "/healthz")` (or
    `async with`). The app (and, once started, `app.state.chorus`) is at
    `api.app`.
    """

    what = "the API"
    start_error = ApiStartError
    thread_name = "chorus-api"
    start_timeout_s = 30.0
    stop_timeout_s = 15.0
    backlog = 512
    bind_hint = " (set CHORUS_API_PORT to a free port)"

    def __init__(self, settings: Settings, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings = settings
        self.config = _config(settings)
        self.app = self.config.app
        super().__init__(self.config, host=host, port=port)

    def start(self) -> Self:
        if self._thread is None:
            refuse_a_schema_behind(self.settings)
        return super().start()

"""The Chorus HTTP API: `create_app(settings)` builds it, uvicorn serves it.

    uvicorn --factory api.app:create_app      (or `chorus api`)

At start-up the app reads the model registry's aliases (a bad registry file
stops it: that is configuration), opens the database (checking its schema
and publishing the chains directory, so the shipped chains can run at
once; files added or changed later are published as requests meet them, see
`api.chain_sync`) and connects to Temporal. A database or Temporal that is
not there yet does not stop it: `/readyz` says what is missing and both are
retried when a request needs them. A database whose schema is behind does:
the app refuses to start, naming `chorus db upgrade`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import inbox, metrics, tracing
from api.body_limit import BodySizeLimitMiddleware
from api.chain_sync import ChainSyncMiddleware, chain_not_found_handler
from api.errors import install_error_handlers
from api.json_body import JsonBodyMiddleware
from api.knowledge import UPLOAD_PATH, upload_limit_bytes
from api.load_shedding import LoadSheddingMiddleware
from api.routes import approvals, chains, evals, health, keys, knowledge, runs
from api.state import ApiState, Database, TemporalConnector
from core.logging import get_logger
from core.problems import ChainNotFound, DatabaseUnavailable, TemporalUnavailable
from core.settings import Settings, admin_key_problem, get_settings
from runs.catalog import Catalog
from store.schema import SchemaNotCurrent

log = get_logger(__name__)

API_VERSION = "1"


def _build_state(settings: Settings) -> ApiState:
    catalog = Catalog.from_settings(settings)
    return ApiState(
        settings=settings,
        database=Database(settings, catalog),
        temporal=TemporalConnector(settings),
        catalog=catalog,
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    state = _build_state(settings)
    app.state.chorus = state
    if settings.admin_key is not None:
        problem = admin_key_problem(settings.admin_key.get_secret_value())
        if problem is not None:
            log.warning(f"CHORUS_ADMIN_KEY {problem}; refused outside development")
    try:
        await asyncio.to_thread(state.database.prepare)
    except DatabaseUnavailable as exc:
        if isinstance(exc.__cause__, SchemaNotCurrent):
            # A schema that is behind is the operator's to upgrade: refuse
            # to start rather than serve a database this version cannot use.
            log.error("refusing to start", error=str(exc.__cause__))
            raise exc.__cause__ from None
        log.warning("database not available yet; retrying on demand", error=exc.message)
    try:
        await state.temporal.get()
    except TemporalUnavailable as exc:
        log.warning("Temporal not available yet; retrying on demand", error=exc.message)
    log.info(
        "Chorus API ready",
        temporal=settings.temporal_address,
        task_queue=settings.task_queue,
        chains_dir=str(settings.chains_dir),
    )
    try:
        yield
    finally:
        state.database.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API for `settings` (default: the process's settings from the environment).

    `app.state.settings` holds the settings; once the lifespan has started,
    `app.state.chorus` holds the database, the Temporal connector and the
    registry's aliases (tests reach them there).
    """
    settings = settings or get_settings()
    app = FastAPI(
        title="Chorus API",
        version=API_VERSION,
        summary="Start and watch chain runs, decide approvals, publish chains, manage keys.",
        lifespan=lifespan,
        separate_input_output_schemas=False,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_exception_handler(ChainNotFound, chain_not_found_handler)
    # Added innermost first: the size limit sees a request before anything
    # reads its body.
    app.add_middleware(ChainSyncMiddleware)
    app.add_middleware(JsonBodyMiddleware, form_paths=(inbox.PATH,))
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_body_bytes=settings.api_max_body_bytes,
        read_timeout_s=settings.api_body_read_timeout_s,
        # Document uploads stream in, up to the store's document limit.
        streamed=((UPLOAD_PATH, upload_limit_bytes(settings.input_limits)),),
    )
    # Outermost: a request beyond capacity is refused before anything reads it.
    app.add_middleware(
        LoadSheddingMiddleware,
        max_in_flight=settings.api_max_in_flight,
        max_queued=settings.api_max_queued,
        queue_timeout_s=settings.api_queue_timeout_s,
        threads=settings.api_threads,
    )
    for module in (runs, approvals, chains, evals, keys, knowledge, health):
        app.include_router(module.router)
    # The reviewer inbox's pages; its security headers wrap every /inbox answer.
    inbox.install(app)
    tracing.install(app, settings)  # a span per request, when tracing is on
    metrics.install(app, settings)  # outermost: counts every request
    return app

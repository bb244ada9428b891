"""What the API process holds between requests: settings, the database and
the Temporal client, each able to come up after the process has started.

The API starts even when Temporal or the database is not there yet (a
container stack starts in any order): `/healthz` answers at once, `/readyz`
says what is missing, and requests that need a missing service get 503
naming it. Each service is retried on the next request that needs it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client

from core.logging import get_logger
from core.problems import DatabaseUnavailable, TemporalUnavailable
from core.settings import Settings
from core.temporal import TemporalConnectError, connect
from runs.catalog import Catalog, sync_chain_dir
from store import create_all, make_engine, session_scope

log = get_logger(__name__)

TEMPORAL_CONNECT_TIMEOUT_S = 5.0
CHAINS_DIR_AUTHOR = "chains-dir"


class Database:
    """The engine, plus the one-time preparation (tables, shipped chains) that
    is retried until it succeeds once."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.engine: Engine = make_engine(settings.effective_database_url)
        self._prepared = False
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def prepare(self) -> None:
        """Create missing tables and publish the chains directory (blocking).

        Raises DatabaseUnavailable naming the cause. A bad chain file is
        logged, not fatal: the API still serves the chains already stored.
        """
        if self._prepared:
            return
        with self._lock:
            if self._prepared:
                return
            try:
                create_all(self.engine)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                raise DatabaseUnavailable(
                    f"the database at {self._safe_url()} is unavailable: {self.last_error}"
                ) from exc
            self._sync_chains()
            self._prepared = True
            self.last_error = None

    def _sync_chains(self) -> None:
        chains_dir = self.settings.chains_dir
        if not chains_dir.is_dir():
            log.warning("no chains directory to publish", chains_dir=str(chains_dir))
            return
        try:
            with session_scope(self.engine) as session:
                published = sync_chain_dir(
                    session,
                    chains_dir=chains_dir,
                    known_aliases=self.catalog.aliases,
                    known_tools=self.catalog.tools,
                    created_by=CHAINS_DIR_AUTHOR,
                )
        except Exception as exc:
            log.error("could not publish the chains directory", error=str(exc))
            return
        log.info("chains directory published", chains=[f"{c.name} v{c.version}" for c in published])

    @contextmanager
    def session(self) -> Iterator[Session]:
        self.prepare()
        with session_scope(self.engine) as session:
            yield session

    def _safe_url(self) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.settings.effective_database_url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()


class TemporalConnector:
    """The Temporal client, connected on first need and then kept."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self.last_error: str | None = None

    @property
    def connected(self) -> Client | None:
        return self._client

    async def get(self) -> Client:
        """The client; raises TemporalUnavailable naming the address when it cannot connect."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await asyncio.wait_for(
                        connect(self.settings), TEMPORAL_CONNECT_TIMEOUT_S
                    )
                except (TemporalConnectError, TimeoutError) as exc:
                    self.last_error = str(exc) or (
                        f"no answer from Temporal at {self.settings.temporal_address} "
                        f"within {TEMPORAL_CONNECT_TIMEOUT_S:.0f} s"
                    )
                    raise TemporalUnavailable(self.last_error) from exc
                self.last_error = None
        return self._client


@dataclass
class ApiState:
    """Everything routes reach through `request.app.state.chorus`."""

    settings: Settings
    database: Database
    temporal: TemporalConnector
    catalog: Catalog = field(default_factory=lambda: Catalog(frozenset(), frozenset()))
    """The model aliases and tools runs may name (checked before a run starts)."""

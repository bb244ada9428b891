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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client

from core.logging import get_logger
from core.problems import DatabaseUnavailable, TemporalUnavailable, Unavailable
from core.settings import Settings
from core.temporal import TemporalConnectError, connect
from runs.catalog import Catalog, ChainFileError, chain_files, sync_chain_dir
from store import make_engine, session_scope
from store.engine import WriteLockTimeout, write_scope
from store.schema import check_schema

log = get_logger(__name__)

TEMPORAL_CONNECT_TIMEOUT_S = 5.0
CHAINS_DIR_AUTHOR = "chains-dir"
CHAINS_CHECK_INTERVAL_S = 2.0
"""How long a changed chain file may go unseen by requests for chains that
are found; a chain that is not found has the directory checked at once."""

P = ParamSpec("P")
T = TypeVar("T")

Fingerprint = tuple[tuple[str, int, int, int], ...]
"""Name, size, mtime and inode of each chain file: a save changes one of them."""


class ChainsDir:
    """Keeps the published chains in step with the chains directory, so that a
    file added or changed after start-up is served without `chorus chains sync`.

    A check stats the chain files and publishes the directory
    (`sync_chain_dir`: all or nothing, idempotent) only when they differ from
    what the last sync read. A bad file is logged once and kept in `problem`
    until the files change again; the chains published before it are still
    served. One sync at a time (a lock around the blocking sync, which start-up
    runs too); requests that waited for a check started after they began use
    its result, so a burst of requests for a missing chain costs one check.
    """

    def __init__(
        self,
        chains_dir: Path,
        catalog: Catalog,
        engine: Engine,
        *,
        interval_s: float = CHAINS_CHECK_INTERVAL_S,
    ) -> None:
        self.chains_dir = chains_dir
        self.catalog = catalog
        self.engine = engine
        self.interval_s = interval_s
        self.problem: str | None = None
        """Why the directory as it is now is not published (a bad file), or None."""
        self.generation = 0
        """How many syncs have published the directory: a request that began
        under another number may now find a chain it did not."""
        self._synced: Fingerprint | None = None
        self._sync_lock = threading.Lock()
        self._check_lock = asyncio.Lock()
        self._checked_at = float("-inf")

    def sync(self) -> None:
        """Publish the directory if its files changed since the last sync
        (blocking). A database error propagates, and the next check retries."""
        with self._sync_lock:
            fingerprint = self._fingerprint()
            if fingerprint == self._synced:
                return
            if not self.chains_dir.is_dir():
                log.warning("no chains directory to publish", chains_dir=str(self.chains_dir))
                self._synced, self.problem = fingerprint, None
                return
            try:
                with session_scope(self.engine) as session:
                    published = sync_chain_dir(
                        session,
                        chains_dir=self.chains_dir,
                        known_aliases=self.catalog.aliases,
                        known_tools=self.catalog.tools,
                        created_by=CHAINS_DIR_AUTHOR,
                    )
            except ChainFileError as exc:
                self._synced, self.problem = fingerprint, str(exc)
                log.error(
                    "chains directory not published: a chain file is bad "
                    "(the chains published before are still served)",
                    error=self.problem,
                )
                return
            self._synced, self.problem = fingerprint, None
            self.generation += 1
        log.info("chains directory published", chains=[f"{c.name} v{c.version}" for c in published])

    async def refresh(self, *, since: float | None = None) -> None:
        """Check the directory from a request (the sync runs on a thread).

        Without `since`, only if the last check is `interval_s` old. With
        `since` (the event loop's time when the request began) at once, unless
        a check that started after it has run meanwhile.
        """
        loop = asyncio.get_running_loop()
        if since is None and loop.time() - self._checked_at < self.interval_s:
            return
        async with self._check_lock:
            if since is None and loop.time() - self._checked_at < self.interval_s:
                return
            if since is not None and self._checked_at >= since:
                return
            self._checked_at = loop.time()
            try:
                await asyncio.to_thread(self.sync)
            except Exception as exc:
                log.warning("could not publish the chains directory", error=str(exc))

    def _fingerprint(self) -> Fingerprint:
        if not self.chains_dir.is_dir():
            return ()
        stats = []
        for path in chain_files(self.chains_dir):
            try:
                stat = path.stat()
            except OSError:
                continue
            stats.append((path.name, stat.st_size, stat.st_mtime_ns, stat.st_ino))
        return tuple(stats)


class DatabaseBusy(Unavailable):
    """Every database connection (or, on SQLite, the write turn) stayed taken
    for longer than a request may wait: the API is overloaded, retry later."""

    code = "database_busy"


class Database:
    """The engine, plus the one-time preparation (the schema check, shipped
    chains) that is retried until it succeeds once.

    Requests reach it through `read` and `write`: each call runs on a thread
    in a session of its own, so a connection is held only while that thread
    works, never while a request waits for Temporal or for a thread. The pool
    has a connection for every API thread (`api_threads`), plus some for
    what runs beside them (the chains directory's sync, health checks).
    """

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.engine: Engine = make_engine(
            settings.effective_database_url,
            pool_size=settings.database_pool_size or settings.api_threads,
            max_overflow=settings.database_max_overflow,
            pool_timeout_s=settings.database_pool_timeout_s,
        )
        self._prepared = False
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.chains = ChainsDir(settings.chains_dir, catalog, self.engine)

    def prepare(self) -> None:
        """Check the schema (`store.schema.check_schema`: an empty database
        is created, one that is behind refused) and publish the chains
        directory (blocking).

        Raises DatabaseUnavailable naming the cause (its `__cause__` is
        SchemaNotCurrent for a database that needs `chorus db upgrade`). A
        bad chain file is logged, not fatal: the API still serves the chains
        already stored.
        """
        if self._prepared:
            return
        with self._lock:
            if self._prepared:
                return
            try:
                check_schema(self.engine)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                raise DatabaseUnavailable(
                    f"the database at {self._safe_url()} is unavailable: {self.last_error}"
                ) from exc
            self._publish_chains()
            self._prepared = True
            self.last_error = None

    def _publish_chains(self) -> None:
        try:
            self.chains.sync()
        except Exception as exc:
            log.error("could not publish the chains directory", error=str(exc))

    @property
    def prepared(self) -> bool:
        return self._prepared

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed when the block ends (blocking; for a thread)."""
        self.prepare()
        try:
            with session_scope(self.engine) as session:
                yield session
        except PoolTimeout as exc:
            raise self._busy(exc) from exc

    async def read(
        self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(session, ...)` on a thread, in a session of its own that is
        closed (its connection back in the pool) before this returns. Rows
        returned stay readable."""
        return await run_in_threadpool(self._call, session_scope, fn, args, kwargs)

    async def write(
        self, fn: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Like `read`, in a short write transaction (`store.engine.write_scope`:
        on SQLite the process's writers take turns, so none meets "database is
        locked"). `fn` commits nothing itself: the transaction commits when it
        returns and rolls back if it raises."""
        return await run_in_threadpool(self._call, write_scope, fn, args, kwargs)

    def _call(
        self,
        scope: Callable[[Engine], AbstractContextManager[Session]],
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        self.prepare()
        try:
            with scope(self.engine) as session:
                return fn(session, *args, **kwargs)
        except (PoolTimeout, WriteLockTimeout) as exc:
            raise self._busy(exc) from exc

    def _busy(self, exc: Exception) -> DatabaseBusy:
        log.warning("database busy: a request waited too long", error=str(exc))
        return DatabaseBusy(
            "the database is busy (every connection is in use); retry shortly",
            details={"reason": type(exc).__name__},
        )

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

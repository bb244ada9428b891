"""The database payload store: large payloads Temporal's history holds by
reference (`core.payload_refs`), one row per blob in `payload_blobs`.

The default store (`CHORUS_PAYLOAD_STORE=database`): every API, worker and
CLI process of a deployment already reaches the application database, so a
payload one process offloads, every other one can read. Rows are keyed by
the SHA-256 of their bytes: writing a blob that is there only marks it used
(`last_used_at`, without sending its bytes again), so a retried or replayed
encoding never stores it twice. `sweep` deletes the rows unused since a
cutoff (`chorus payloads sweep`).

Importing this module registers the store with `core.payload_refs` (core
cannot import `store`); `store.schema` imports it, so any process that uses
the database has it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import Engine, delete, inspect, select, update
from sqlmodel import Field, SQLModel

from core.payload_refs import (
    TOUCH_AFTER,
    PayloadStoreUnavailable,
    SweepResult,
    check_digest,
    register_blob_store,
)
from core.settings import Settings
from store.engine import backend_insert, make_engine, session_scope, write_scope
from store.models import UTCDateTime, utcnow

TABLE = "payload_blobs"
SWEEP_BATCH = 500
"""Rows deleted per transaction, so a sweep never holds SQLite's write lock long."""


class PayloadBlob(SQLModel, table=True):
    """One offloaded payload: its bytes (ciphertext when encryption is on)
    under their SHA-256."""

    __tablename__ = TABLE

    digest: str = Field(primary_key=True, max_length=64)
    """SHA-256 of `data`, lowercase hex."""
    size: int = Field(sa_type=sa.BigInteger)
    data: bytes = Field(sa_type=sa.LargeBinary)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    """Last written or read (reads mark it at most hourly); the sweep's clock."""


class DatabaseBlobStore:
    """`core.payload_refs.BlobStore` over the application database."""

    name = "database"

    def __init__(self, engine: Engine, *, owns_engine: bool = False) -> None:
        self.engine = engine
        self._owns_engine = owns_engine
        self._checked = False
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> DatabaseBlobStore:
        """A store on its own small pool (the codec's threads; the process's
        other engines are sized for their own work)."""
        engine = make_engine(settings.effective_database_url, pool_size=2, max_overflow=4)
        return cls(engine, owns_engine=True)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def _check_table(self) -> None:
        """Once: a database without the table is behind (the start-up checks
        of the API and the worker say so too; a bare client may not have run them)."""
        if self._checked:
            return
        with self._lock:
            if not self._checked:
                if not inspect(self.engine).has_table(TABLE):
                    where = self.engine.url.render_as_string(hide_password=True)
                    raise PayloadStoreUnavailable(
                        f"the database at {where} has no {TABLE} table for large payloads: "
                        "run `chorus db upgrade`"
                    )
                self._checked = True

    def put(self, digest: str, data: bytes) -> None:
        check_digest(digest)
        self._check_table()
        now = datetime.now(UTC)
        with write_scope(self.engine) as session:
            touched = session.execute(
                update(PayloadBlob).where(PayloadBlob.digest == digest).values(last_used_at=now)
            )
            if touched.rowcount:  # type: ignore[attr-defined]
                return
            insert = backend_insert(session, PayloadBlob).values(
                digest=digest, size=len(data), data=data, created_at=now, last_used_at=now
            )
            session.execute(
                insert.on_conflict_do_update(index_elements=["digest"], set_={"last_used_at": now})
            )

    def get(self, digest: str) -> bytes | None:
        check_digest(digest)
        self._check_table()
        with session_scope(self.engine) as session:
            row = session.execute(
                select(PayloadBlob.data, PayloadBlob.last_used_at).where(
                    PayloadBlob.digest == digest
                )
            ).first()
        if row is None:
            return None
        data, last_used = row
        now = datetime.now(UTC)
        if now - last_used > TOUCH_AFTER:
            with write_scope(self.engine) as session:
                session.execute(
                    update(PayloadBlob).where(PayloadBlob.digest == digest).values(last_used_at=now)
                )
        return bytes(data)

    def delete(self, digest: str) -> bool:
        check_digest(digest)
        self._check_table()
        with write_scope(self.engine) as session:
            gone = session.execute(delete(PayloadBlob).where(PayloadBlob.digest == digest))
        return bool(gone.rowcount)  # type: ignore[attr-defined]

    def sweep(self, unused_since: datetime) -> SweepResult:
        self._check_table()
        blobs = size = 0
        while True:
            with session_scope(self.engine) as session:
                batch = list(
                    session.execute(
                        select(PayloadBlob.digest)
                        .where(PayloadBlob.last_used_at < unused_since)
                        .limit(SWEEP_BATCH)
                    ).scalars()
                )
            if not batch:
                return SweepResult(blobs, size)
            with write_scope(self.engine) as session:
                # Checked again: a blob written or read since the select stays.
                sizes = session.execute(
                    delete(PayloadBlob)
                    .where(PayloadBlob.digest.in_(batch))  # type: ignore[attr-defined]
                    .where(PayloadBlob.last_used_at < unused_since)
                    .returning(PayloadBlob.size)
                ).scalars()
                deleted = list(sizes)
            blobs += len(deleted)
            size += sum(deleted)
            if len(batch) < SWEEP_BATCH:
                return SweepResult(blobs, size)


register_blob_store("database", DatabaseBlobStore.from_settings)

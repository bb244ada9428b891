"""Throwaway application databases for the store benchmarks: a SQLite file in
a temporary folder, or a new schema on PostgreSQL that is dropped afterwards."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url

from store.engine import make_engine

POSTGRES_URL = os.environ.get(
    "CHORUS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
"""Where PostgreSQL benchmarks make their schema (CHORUS_BENCH_POSTGRES_URL)."""
BACKENDS = ("sqlite", "postgresql")


@contextmanager
def throwaway_database(backend: str, name: str) -> Iterator[str]:
    """The URL of a fresh, empty database for `backend`, removed on exit;
    `name` tells the benchmark's folders and schemas apart."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix=f"chorus-{name}-") as folder:
            yield f"sqlite:///{folder}/chorus.db"
        return
    if backend != "postgresql":
        raise SystemExit(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    admin = make_engine(POSTGRES_URL)
    schema = f"chorus_bench_{name}_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

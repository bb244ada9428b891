"""The application database as the database commands (keys, chains,
ingest) open it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from cli.console import fail
from core.settings import Settings


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[Any]:
    """The application database's engine, its schema checked (an empty
    database is created; one that is behind exits 1 naming `chorus db
    upgrade`); a database error exits 1 with the (password-free) URL it
    concerns."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from store.engine import UnsupportedDatabaseError, make_engine
    from store.schema import SchemaNotCurrent, check_schema

    url = settings.effective_database_url
    try:
        engine = make_engine(url)
    except UnsupportedDatabaseError as exc:
        fail(str(exc))
    try:
        check_schema(engine)
        yield engine
    except SchemaNotCurrent as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        where = make_url(url).render_as_string(hide_password=True)
        fail(f"database error on {where}: {exc}")
    finally:
        engine.dispose()


def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else ""

"""`chorus db`: the application database's schema (Alembic migrations
shipped in store/migrations): upgrade it, say where it stands, list the
revisions.

The API and the worker refuse a database that is behind; `chorus db upgrade`
is the step a deployment runs before starting them (the compose stack's
`migrate` service does; `chorus dev` and `chorus demo` do it themselves).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from cli.console import console, fail, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

db_app = typer.Typer(
    help="The application database's schema: upgrade it, show its revision, list revisions.",
    no_args_is_help=True,
)


@contextlib.contextmanager
def _engine() -> Iterator[Engine]:
    """The configured database's engine, as it is (no schema check); a
    database error exits 1 naming the (password-free) URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from store.engine import UnsupportedDatabaseError, make_engine
    from store.errors import StoreError

    url = load_settings().effective_database_url
    try:
        engine = make_engine(url)
    except UnsupportedDatabaseError as exc:
        fail(str(exc))
    try:
        yield engine
    except StoreError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"database error on {make_url(url).render_as_string(hide_password=True)}: {exc}")
    finally:
        engine.dispose()


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[
        str, typer.Option(help="the revision to upgrade to (default: the newest)")
    ] = "head",
) -> None:
    """Bring the database to the schema this version needs (safe to repeat).

    Creates an empty database, adopts one made before migrations, runs the
    newer revisions; one upgrade at a time when several start at once."""
    from store.schema import SchemaState, upgrade

    with _engine() as engine:
        before, after = upgrade(engine, revision)
    if before.current == after.current and before.state is not SchemaState.UNVERSIONED:
        console.print(
            f"{after.where} is already at revision {after.current}.", highlight=False, markup=False
        )
        return
    was = {
        SchemaState.EMPTY: "an empty database",
        SchemaState.UNVERSIONED: "a database from before migrations",
    }.get(before.state, f"revision {before.current}")
    console.print(
        f"Upgraded {after.where} from {was} to revision {after.current}.", highlight=False
    )


@db_app.command("current")
def db_current(
    check: Annotated[
        bool, typer.Option("--check", help="exit 1 unless the database is at the newest revision")
    ] = False,
) -> None:
    """Show the database's revision and whether this version can use it."""
    from store.schema import SchemaState, schema_status

    with _engine() as engine:
        status = schema_status(engine)
    if status.state is SchemaState.CURRENT:
        console.print(
            f"{status.where}: revision {status.current} (current).", highlight=False, markup=False
        )
        return
    console.print(
        f"{status.where}: revision {status.current or 'none'} ({status.state}; "
        f"this version needs {status.head}).\n{status.message}",
        highlight=False,
        markup=False,
    )
    if check:
        raise typer.Exit(1)


@db_app.command("history")
def db_history() -> None:
    """List the schema revisions this version ships, newest first."""
    from store.schema import head_revision, history

    head = head_revision()
    for revision, down, message in reversed(history()):
        title = message.splitlines()[0] if message else ""
        marker = " (head)" if revision == head else ""
        console.print(
            f"{down or '<base>'} -> {revision}{marker}: {title}", highlight=False, markup=False
        )

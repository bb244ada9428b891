"""Alembic's environment for the application database.

The application runs migrations through `store.schema.upgrade`, which hands
this script a connection already inside the transaction (and, on
PostgreSQL, the advisory lock) that the whole upgrade runs in. Run by the
`alembic` command (a developer writing a revision, store/migrations/alembic.ini),
it connects to the configured database itself. Offline (`--sql`) scripts
are not supported: the first revision inspects the database it upgrades.
"""

from __future__ import annotations

from alembic import context

from store import schema


def run_migrations(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        **schema.migration_options(connection),  # type: ignore[arg-type]
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migration scripts are not supported: run `chorus db upgrade`")

given = context.config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:
    from core.settings import get_settings
    from store.engine import make_engine

    engine = make_engine(get_settings().effective_database_url)
    try:
        with schema._upgrade_connection(engine) as connection:
            run_migrations(connection)
    finally:
        engine.dispose()

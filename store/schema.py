"""The application database's schema, versioned by Alembic (store/migrations).

A database is at one revision of `store/migrations/versions`. `upgrade`
brings it to the head revision (`chorus db upgrade`; the dev stack, the demo
and the compose stack's `migrate` service run it for you), `schema_status`
says where it stands, and `check_schema` is what the API, the worker and the
CLI's database commands call at start-up: a database that is behind (or was
made by a version from before migrations) is refused with a message naming
`chorus db upgrade`, never altered behind the operator's back. The one
exception is a database with no Chorus table at all, which `check_schema`
creates at the head revision: nothing in it can be lost or locked, and a new
installation needs no extra step.

Alembic is configured here, in code: no alembic.ini is read at run time, the
migrations ship inside the package, and SQLite migrations run in batch mode
(`render_as_batch`), its way of altering a table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, inspect, select
from sqlmodel import SQLModel

import store.evals
import store.inbox_sessions
import store.knowledge.tables
import store.models
import store.payload_blobs
import store.rate_limits
import store.reply_journal  # noqa: F401
from store.errors import StoreError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
UPGRADE_COMMAND = "chorus db upgrade"

SCHEMA_LOCK_KEY = 0x43686F72
"""PostgreSQL advisory lock held while a database is upgraded, so two
upgrades (a `migrate` job and a `chorus db upgrade` by hand, or an API and a
worker creating an empty database) run one after the other; the second
finds the work done."""

SEARCH_INDEX_TABLE_PREFIX = "knowledge_chunks_fts"
"""SQLite's full-text index: a virtual table and its shadow tables, made by
DDL the models do not describe (store/knowledge/tables.py)."""
SEARCH_INDEX_OBJECTS = {"search_vector", "ix_knowledge_chunks_search_vector"}
"""PostgreSQL's generated tsvector column and its GIN index, likewise."""


class SchemaState(StrEnum):
    EMPTY = "empty"
    """No Chorus table at all."""
    UNVERSIONED = "unversioned"
    """Chorus tables without a revision: made by a version from before migrations."""
    BEHIND = "behind"
    CURRENT = "current"
    UNKNOWN = "unknown"
    """At a revision this version does not know: a newer version upgraded it."""


@dataclass(frozen=True)
class SchemaStatus:
    state: SchemaState
    current: str | None
    """The database's revision (None: empty or unversioned)."""
    head: str
    """The revision this version of Chorus needs."""
    where: str
    """The database's URL without its password, for messages."""

    @property
    def message(self) -> str:
        """What is wrong and what to run (empty when current)."""
        db = f"the database at {self.where}"
        if self.state is SchemaState.CURRENT:
            return ""
        if self.state is SchemaState.EMPTY:
            return f"{db} has no Chorus tables: run `{UPGRADE_COMMAND}` to create them"
        if self.state is SchemaState.UNVERSIONED:
            return (
                f"{db} was made by a version of Chorus from before schema migrations: "
                f"run `{UPGRADE_COMMAND}` to bring it to revision {self.head}"
            )
        if self.state is SchemaState.BEHIND:
            return (
                f"{db} is at schema revision {self.current}, behind the revision this "
                f"version of Chorus needs ({self.head}): run `{UPGRADE_COMMAND}`"
            )
        return (
            f"{db} is at schema revision {self.current}, which this version of Chorus "
            f"does not know (it needs {self.head}; a newer version upgraded the database): "
            "run that version, or restore a backup made before the upgrade"
        )


class SchemaNotCurrent(StoreError):
    """The database is not at the revision this version needs; the message
    names the command to run."""

    def __init__(self, status: SchemaStatus) -> None:
        self.status = status
        super().__init__(status.message)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the shipped migrations; with a
    connection, env.py runs the migrations on it (in its transaction)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "store/migrations/versions has no revision"
    return head


def migration_options(connection: Connection) -> dict[str, Any]:
    """How env.py and `schema_differences` configure Alembic's context."""
    return {
        "target_metadata": SQLModel.metadata,
        "render_as_batch": connection.dialect.name == "sqlite",
        "include_object": _include_object,
        "compare_type": True,
    }


def _include_object(
    obj: Any, name: str | None, type_: str, _reflected: bool, _compare_to: Any
) -> bool:
    """Leave the full-text index out of comparisons: DDL outside the models."""
    if type_ == "table" and name and name.startswith(SEARCH_INDEX_TABLE_PREFIX):
        return False
    return not (type_ in ("column", "index") and name in SEARCH_INDEX_OBJECTS)


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _status(connection: Connection, where: str) -> SchemaStatus:
    head = head_revision()
    heads = MigrationContext.configure(connection).get_current_heads()
    if not heads:
        tables = set(inspect(connection).get_table_names())
        ours = tables & set(SQLModel.metadata.tables)
        return SchemaStatus(
            SchemaState.UNVERSIONED if ours else SchemaState.EMPTY, None, head, where
        )
    current = ", ".join(heads)
    if heads == (head,):
        return SchemaStatus(SchemaState.CURRENT, current, head, where)
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    state = SchemaState.BEHIND if set(heads) <= known else SchemaState.UNKNOWN
    return SchemaStatus(state, current, head, where)


def schema_status(engine: Engine) -> SchemaStatus:
    """Where the database stands against this version's head revision."""
    with engine.connect() as connection:
        return _status(connection, _where(engine))


@contextlib.contextmanager
def _upgrade_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in one transaction that only one upgrade holds at a time,
    committed when the block ends.

    PostgreSQL: an advisory lock, and DDL is transactional, so a failed
    upgrade leaves nothing half done. SQLite: `BEGIN IMMEDIATE` (the write
    lock, so a second process waits, then reads the new revision), with
    foreign keys off while tables are rebuilt by batch migrations (dropping
    a table otherwise cascades into the rows that point at it) and checked
    before the commit.
    """
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            with connection.begin():
                connection.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))
                yield connection
            return
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            yield connection
            violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if violations:
                raise RuntimeError(f"the upgrade broke foreign keys: {violations[:5]}")
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


def upgrade(engine: Engine, revision: str = "head") -> tuple[SchemaStatus, SchemaStatus]:
    """Bring the database to `revision` (the head by default): create it
    when empty, adopt one made before migrations (revision 0001 adds what
    its tables lack), run the later revisions. Idempotent, and safe to run
    from several processes at once. Returns the status before and after."""
    where = _where(engine)
    with _upgrade_connection(engine) as connection:
        before = _status(connection, where)
        if before.state is SchemaState.UNKNOWN:
            raise SchemaNotCurrent(before)
        command.upgrade(alembic_config(connection), revision)
        after = _status(connection, where)
    return before, after


def check_schema(engine: Engine, *, create_if_empty: bool = True) -> SchemaStatus:
    """The start-up check of the API, the worker and the CLI: returns the
    status when the database is at the head revision; creates the schema
    of an empty database (unless `create_if_empty` is False); raises
    SchemaNotCurrent, naming `chorus db upgrade`, for any other database."""
    status = schema_status(engine)
    if status.state is SchemaState.EMPTY and create_if_empty:
        # Under the upgrade's lock: a process that got there first leaves
        # the database current, and this upgrade finds nothing to do.
        _, status = upgrade(engine)
    if status.state is not SchemaState.CURRENT:
        raise SchemaNotCurrent(status)
    return status


def create_all(engine: Engine) -> None:
    """Bring the database to the head revision (`upgrade`): what tests,
    benchmarks and scripts that build a database call. The name is from
    before migrations, when this ran SQLModel's `create_all`."""
    upgrade(engine)


def history() -> list[tuple[str, str | None, str]]:
    """Every revision, oldest first: (revision, down revision, message)."""
    script = ScriptDirectory.from_config(alembic_config())
    revisions = [
        (rev.revision, rev.down_revision, (rev.doc or "").strip())
        for rev in script.walk_revisions()
    ]
    return [(r, d if isinstance(d, str | None) else ", ".join(d), m) for r, d, m in revisions][::-1]


def schema_differences(connection: Connection) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match
    the models (empty when the migrations and the models agree)."""
    context = MigrationContext.configure(connection, opts=migration_options(connection))
    return list(compare_metadata(context, SQLModel.metadata))

"""Reads and writes of the application database. Keyword-only functions that
take the caller's Session and never commit it (the caller's `session_scope`
does), so several writes can share one transaction.

Every write that may race another process or be retried is one atomic
statement (`INSERT ... ON CONFLICT`), on SQLite and PostgreSQL alike: a
retried activity, two API replicas or two threads end with one row and the
right values, without savepoints and without rolling back the caller's
session.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, desc, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert
from sqlmodel import Session, SQLModel, col, func, select

from core.chain_spec import ChainSpec
from core.records import ApprovalAuditInput, RunRecordInput
from store.engine import backend_insert
from store.errors import (
    ConcurrentPublishError,
    DuplicateKeyNameError,
    InvalidApprovalRoleError,
    InvalidKeyNameError,
    InvalidKeyScopeError,
    ReservedKeyNameError,
    RunExistsError,
    UnknownRoleError,
)
from store.models import (
    API_KEY_ROLES,
    BOOTSTRAP_ADMIN,
    KEY_SCOPES,
    ApiKey,
    ApprovalAudit,
    ChainVersion,
    RunRecord,
    utcnow,
)
from store.prebuilt import PerBackend
from store.text import storable_text, storable_values

API_KEY_PREFIX = "chorus_"
KEY_PREFIX_LENGTH = 12
"""Characters of a key kept in clear for listings: `chorus_` and five random
ones, enough to tell keys apart and nowhere near enough to guess one."""

MAX_LIST_LIMIT = 1000
_PUBLISH_ATTEMPTS = 5
_ROLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")


# -- hashing ----------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """One JSON text per value: sorted keys, no whitespace, UTF-8 kept as is.
    Raises ValueError for NaN and infinities, which JSON cannot represent
    (the API refuses them first: `core.input_limits`)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def hash_json(value: Any) -> str:
    """sha256 hex of the canonical JSON of a value (spec hashes, input hashes).
    Total over strings: a lone surrogate (refused by the API, but possible from
    other callers) hashes as its code point instead of raising."""
    return hashlib.sha256(canonical_json(value).encode("utf-8", "surrogatepass")).hexdigest()


def spec_hash(spec: ChainSpec) -> str:
    """Hash of what a spec means, whatever version number it carries."""
    return hash_json(spec.model_dump(mode="json", exclude={"version"}))


def _values(row: SQLModel, *, skip: Collection[str] = ()) -> dict[str, Any]:
    """Column values of a (not yet added) table row, defaults applied."""
    table = row.__table__  # type: ignore[attr-defined]
    return {
        column.name: getattr(row, column.name)
        for column in table.columns
        if column.name not in skip
    }


# -- chain versions ---------------------------------------------------------------------


@dataclass(frozen=True)
class PublishResult:
    chain_version: ChainVersion
    created: bool
    """False when the spec equals the latest version's, which is returned unchanged."""


def _latest(session: Session, name: str) -> ChainVersion | None:
    statement = (
        select(ChainVersion)
        .where(ChainVersion.name == name)
        .order_by(desc(col(ChainVersion.version)))
        .limit(1)
    )
    return session.exec(statement).first()


def _same_spec(latest: ChainVersion, new_hash: str) -> bool:
    if latest.spec_hash == new_hash:
        return True
    # Stored under an older ChainSpec, the latest may lack fields added since
    # (with defaults): re-read it so an upgrade alone never makes a new version.
    try:
        return spec_hash(latest.to_spec()) == new_hash
    except ValueError:
        return False


def publish_chain(session: Session, *, spec: ChainSpec, created_by: str) -> PublishResult:
    """Publish a spec as the next version of its chain, saying whether a new
    version was made (see `publish_chain_version`)."""
    new_hash = spec_hash(spec)
    for _ in range(_PUBLISH_ATTEMPTS):
        latest = _latest(session, spec.name)
        if latest is not None and _same_spec(latest, new_hash):
            return PublishResult(latest, created=False)
        number = 1 if latest is None else latest.version + 1
        stored = spec.model_copy(update={"version": number})
        row = ChainVersion(
            name=spec.name,
            version=number,
            description=spec.description,
            created_by=created_by,
            spec=stored.model_dump(mode="json"),
            spec_hash=new_hash,
        )
        statement = (
            backend_insert(session, ChainVersion)
            .values(**_values(row, skip={"id"}))
            .on_conflict_do_nothing(index_elements=["name", "version"])
            .returning(col(ChainVersion.id))
        )
        new_id = session.exec(statement).scalar_one_or_none()
        if new_id is not None:
            created = session.get(ChainVersion, new_id)
            assert created is not None
            return PublishResult(created, created=True)
        # Another publisher took this number first: look again (it may even
        # have published this very spec).
    raise ConcurrentPublishError(
        f"could not publish chain {spec.name!r}: other publishers took the next version "
        f"{_PUBLISH_ATTEMPTS} times in a row; try again"
    )


def publish_chain_version(session: Session, *, spec: ChainSpec, created_by: str) -> ChainVersion:
    """Store a spec as version (latest + 1) of its chain, its `version` field
    set to that number. Publishing a spec equal to the latest version (the
    version number aside) returns the latest unchanged."""
    return publish_chain(session, spec=spec, created_by=created_by).chain_version


def get_chain_version(
    session: Session, *, name: str, version: int | None = None
) -> ChainVersion | None:
    """One version of a chain; the latest when `version` is None."""
    if version is None:
        return _latest(session, name)
    statement = select(ChainVersion).where(
        ChainVersion.name == name, ChainVersion.version == version
    )
    return session.exec(statement).first()


def list_chain_versions(session: Session, *, name: str) -> list[ChainVersion]:
    """Every version of a chain, oldest first."""
    statement = (
        select(ChainVersion).where(ChainVersion.name == name).order_by(col(ChainVersion.version))
    )
    return list(session.exec(statement).all())


def list_chains(session: Session) -> list[ChainVersion]:
    """The latest version of every chain, by name."""
    latest = (
        select(ChainVersion.name, func.max(ChainVersion.version).label("version"))
        .group_by(col(ChainVersion.name))
        .subquery()
    )
    statement = (
        select(ChainVersion)
        .join(
            latest,
            (col(ChainVersion.name) == latest.c.name)
            & (col(ChainVersion.version) == latest.c.version),
        )
        .order_by(col(ChainVersion.name))
    )
    return list(session.exec(statement).all())


# -- run index --------------------------------------------------------------------------


def create_run_stub(
    session: Session, *, run_id: str, chain: str, version: int, input_hash: str, created_by: str
) -> RunRecord:
    """Record a run about to start (status `starting`, revision 0).

    Raises RunExistsError carrying the existing row when the id is taken, so
    the API can answer a retried start (same input hash) with the existing run.
    """
    row = RunRecord(
        run_id=run_id,
        chain=chain,
        version=version,
        status="starting",
        revision=0,
        input_hash=input_hash,
        created_by=created_by,
    )
    statement = (
        backend_insert(session, RunRecord)
        .values(**_values(row))
        .on_conflict_do_nothing(index_elements=["run_id"])
        .returning(col(RunRecord.run_id))
    )
    inserted = session.exec(statement).scalar_one_or_none()
    stored = session.get(RunRecord, run_id, populate_existing=True)
    assert stored is not None
    if inserted is None:
        raise RunExistsError(stored)
    return stored


def get_run(session: Session, *, run_id: str) -> RunRecord | None:
    return session.get(RunRecord, run_id, populate_existing=True)


def list_runs(
    session: Session,
    *,
    chain: str | None = None,
    status: str | None = None,
    created_by: str | None = None,
    reviewed_by: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[RunRecord]:
    """Runs newest first, optionally of one chain and/or one status, started
    by one API key (`created_by`) and/or with a decision by one reviewer in
    the audit log (`reviewed_by`)."""
    statement = select(RunRecord)
    if chain is not None:
        statement = statement.where(RunRecord.chain == chain)
    if status is not None:
        statement = statement.where(RunRecord.status == status)
    if created_by is not None:
        statement = statement.where(RunRecord.created_by == created_by)
    if reviewed_by is not None:
        reviewed = select(ApprovalAudit.run_id).where(ApprovalAudit.reviewer == reviewed_by)
        statement = statement.where(col(RunRecord.run_id).in_(reviewed))
    statement = (
        statement.order_by(desc(col(RunRecord.started_at)), desc(col(RunRecord.run_id)))
        .offset(max(offset, 0))
        .limit(min(max(limit, 0), MAX_LIST_LIMIT))
    )
    return list(session.exec(statement).all())


def run_creators(session: Session, *, run_ids: Collection[str]) -> dict[str, str | None]:
    """Who started each of these runs (`created_by`), for the ids the run
    index has; None for runs started outside the API."""
    wanted = sorted(set(run_ids))
    found: dict[str, str | None] = {}
    for start in range(0, len(wanted), 500):
        statement = select(RunRecord.run_id, RunRecord.created_by).where(
            col(RunRecord.run_id).in_(wanted[start : start + 500])
        )
        found.update((run_id, creator) for run_id, creator in session.exec(statement).all())
    return found


_STUB_ONLY_FIELDS = frozenset({"run_id", "input_hash", "created_by"})


def upsert_run_record(session: Session, *, record: RunRecordInput) -> RunRecord:
    """Insert or update a run's row from the workflow's view of it
    (`write_run_record`), and return the row as stored."""
    write_run_record(session, record=record)
    stored = session.get(RunRecord, storable_text(record.run_id), populate_existing=True)
    assert stored is not None
    return stored


def write_run_record(session: Session, *, record: RunRecordInput) -> bool:
    """Insert or update a run's row from the workflow's view of it; returns
    whether the write applied (False: the stored revision is newer).

    The write applies only when `record.revision` is at least the stored one,
    in one statement, so a retried or late write never moves a run backwards.
    The stub's `input_hash` and `created_by` are never touched. Text is
    stored as `store.text.storable_text` makes it (a NUL in an error message
    must not make the write fail on PostgreSQL). The statement is built once
    per backend (`_record_statements`).
    """
    applied = session.execute(
        _record_statements(session).upsert_run, storable_values(record.model_dump())
    )
    return applied.first() is not None


# -- approval audit ---------------------------------------------------------------------


def insert_approval_audit(session: Session, *, entry: ApprovalAuditInput) -> ApprovalAudit:
    """Append one decision to the audit log, once (`write_approval_audit`),
    and return the row: inserting the same (run_id, approval_id, sequence)
    again returns the row already there."""
    write_approval_audit(session, entry=entry)
    lookup = (
        select(ApprovalAudit)
        .where(
            ApprovalAudit.run_id == storable_text(entry.run_id),
            ApprovalAudit.approval_id == storable_text(entry.approval_id),
            ApprovalAudit.sequence == entry.sequence,
        )
        .execution_options(populate_existing=True)
    )
    return session.exec(lookup).one()


def write_approval_audit(session: Session, *, entry: ApprovalAuditInput) -> None:
    """Append one decision to the audit log, once: inserting the same
    (run_id, approval_id, sequence) again changes nothing, also when two
    writers race (the unique constraint decides). Texts (approval text,
    comment, edit) are stored as `store.text.storable_text` makes them: a
    NUL must not make the write fail on PostgreSQL. The statement is built
    once per backend (`_record_statements`)."""
    session.execute(_record_statements(session).insert_audit, storable_values(entry.model_dump()))


@dataclass(frozen=True)
class _RecordStatements:
    upsert_run: Insert
    insert_audit: Insert


_RUN_RECORD_FIELDS = tuple(RunRecordInput.model_fields)


def _build_record_statements(dialect: str) -> _RecordStatements:
    """The run-index upsert and the audit insert, built once per backend:
    building the ORM statement per write (coercing each value, then its
    cache key) cost more CPU than the SQLite work itself. Core statements on
    the tables, executed with each write's values as bound parameters; the
    upsert's column list and update set are those of every `RunRecordInput`
    (`model_dump` gives all its fields, so the statement is the same for
    every write). The upsert returns the row's revision when it applied."""
    runs: Table = RunRecord.__table__  # type: ignore[attr-defined]
    audit: Table = ApprovalAudit.__table__  # type: ignore[attr-defined]
    module = postgresql if dialect == "postgresql" else sqlite
    insert = module.insert(runs)
    excluded = insert.excluded
    upsert_run = insert.on_conflict_do_update(
        index_elements=["run_id"],
        set_={name: excluded[name] for name in _RUN_RECORD_FIELDS if name not in _STUB_ONLY_FIELDS},
        where=runs.c.revision <= excluded.revision,
    ).returning(runs.c.revision)  # a row only when the write applied (rowcount is -1 on psycopg)
    insert_audit = module.insert(audit).on_conflict_do_nothing(
        index_elements=["run_id", "approval_id", "sequence"]
    )
    return _RecordStatements(upsert_run=upsert_run, insert_audit=insert_audit)


_record_statements = PerBackend(_build_record_statements)


def list_approval_audit(
    session: Session, *, run_id: str | None = None, reviewer: str | None = None
) -> list[ApprovalAudit]:
    """Audit rows in the order decisions were made, optionally of one run
    and/or one reviewer."""
    statement = select(ApprovalAudit)
    if run_id is not None:
        statement = statement.where(ApprovalAudit.run_id == run_id)
    if reviewer is not None:
        statement = statement.where(ApprovalAudit.reviewer == reviewer)
    statement = statement.order_by(col(ApprovalAudit.decided_at), col(ApprovalAudit.id))
    return list(session.exec(statement).all())


# -- API keys ---------------------------------------------------------------------------


def hash_api_key(key: str) -> str:
    """sha256 hex of a key. A key has 256 random bits, so a fast hash is
    enough (no password-style stretching needed)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _check_roles(role: str, approval_roles: Sequence[str]) -> list[str]:
    if role not in API_KEY_ROLES:
        raise UnknownRoleError(role, API_KEY_ROLES)
    checked: list[str] = []
    for extra in approval_roles:
        if not isinstance(extra, str) or not _ROLE_NAME.match(extra):
            raise InvalidApprovalRoleError(
                f"invalid approval role {extra!r}: use 1-64 letters, digits, '_', '.' or '-'"
            )
        if extra not in checked:
            checked.append(extra)
    return checked


def _check_scope(role: str, scope: str | None) -> str:
    if scope is None:
        return "all" if role == "admin" else "own"
    if scope not in KEY_SCOPES:
        raise InvalidKeyScopeError(
            f"unknown scope {scope!r}: a key's scope is one of {', '.join(KEY_SCOPES)}"
        )
    if role == "admin" and scope != "all":
        raise InvalidKeyScopeError(
            f"scope {scope!r} does not apply to an admin key: admins see every run"
        )
    return scope


def _active_key_named(session: Session, name: str) -> ApiKey | None:
    """The active key whose name equals `name` ignoring case (names are ASCII)."""
    statement = select(ApiKey).where(
        func.lower(ApiKey.name) == name.lower(), col(ApiKey.revoked_at).is_(None)
    )
    return session.exec(statement).first()


def create_api_key(
    session: Session,
    *,
    name: str,
    role: str,
    approval_roles: list[str] | None = None,
    scope: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns its row and the key itself, which is not stored
    anywhere and cannot be shown again. `scope` defaults to `own` (`all` for
    an admin key, which always sees everything).

    Raises UnknownRoleError, InvalidApprovalRoleError, InvalidKeyNameError,
    InvalidKeyScopeError, ReservedKeyNameError for the bootstrap admin's name,
    or DuplicateKeyNameError when an active key has the name (ignoring case:
    the name is the reviewer identity the audit log records).
    """
    if not _KEY_NAME.match(name):
        raise InvalidKeyNameError(
            f"invalid key name {name!r}: use 1-100 letters, digits, '_', '.', '@' or '-'"
        )
    if name.lower() == BOOTSTRAP_ADMIN.lower():
        raise ReservedKeyNameError(name, BOOTSTRAP_ADMIN)
    extra_roles = _check_roles(role, approval_roles or [])
    checked_scope = _check_scope(role, scope)
    # The unique index catches the same name racing in; this catches the
    # same name in another case, which the index cannot see.
    existing = _active_key_named(session, name)
    if existing is not None:
        raise DuplicateKeyNameError(name, existing.name)
    plaintext = API_KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        role=role,
        approval_roles=extra_roles,
        scope=checked_scope,
        key_prefix=plaintext[:KEY_PREFIX_LENGTH],
        key_hash=hash_api_key(plaintext),
    )
    statement = (
        backend_insert(session, ApiKey)
        .values(**_values(row, skip={"id"}))
        .on_conflict_do_nothing(
            index_elements=["name"], index_where=col(ApiKey.revoked_at).is_(None)
        )
        .returning(col(ApiKey.id))
    )
    new_id = session.exec(statement).scalar_one_or_none()
    if new_id is None:
        raise DuplicateKeyNameError(name)
    created = session.get(ApiKey, new_id)
    assert created is not None
    return created, plaintext


def verify_api_key(session: Session, *, presented: str) -> ApiKey | None:
    """The active key matching a presented key, or None (unknown or revoked).

    Candidates are found by their clear prefix and compared by hash in
    constant time, so the comparison leaks nothing about the stored hashes.
    """
    if not presented.startswith(API_KEY_PREFIX) or len(presented) > 200:
        return None
    presented_hash = hash_api_key(presented)
    statement = select(ApiKey).where(
        ApiKey.key_prefix == presented[:KEY_PREFIX_LENGTH], col(ApiKey.revoked_at).is_(None)
    )
    match: ApiKey | None = None
    for candidate in session.exec(statement).all():
        if hmac.compare_digest(candidate.key_hash, presented_hash):
            match = candidate
    return match


def list_api_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, by name then age."""
    statement = select(ApiKey).order_by(col(ApiKey.name), col(ApiKey.created_at), col(ApiKey.id))
    return list(session.exec(statement).all())


def revoke_api_key(session: Session, *, name: str) -> bool:
    """Revoke the active key of that name; False when there is none."""
    statement = (
        update(ApiKey)
        .where(col(ApiKey.name) == name, col(ApiKey.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    # An ORM-enabled UPDATE: rows already loaded in the session see revoked_at too.
    return bool(session.exec(statement).rowcount)

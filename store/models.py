"""Tables of the application database, layered Base → table → Public.

The database keeps what must outlive Temporal's retention or be looked up
without Temporal: published chain versions (a run records which one it
started with), an index of runs, the audit log of approval decisions, and API
keys (hashed). Temporal stays the source of truth for a run in flight; the run
index is a projection written by activities, ordered by `revision`.

`*Public` models are what the API returns; `ApiKeyPublic` never carries the
key's hash.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from core.chain_spec import ChainSpec

ApiKeyRole = Literal["service", "reviewer", "admin"]
API_KEY_ROLES: tuple[ApiKeyRole, ...] = ("service", "reviewer", "admin")

KeyScope = Literal["own", "all"]
KEY_SCOPES: tuple[KeyScope, ...] = ("own", "all")
"""Which runs a key sees: `own` (a service key: the runs it started; a
reviewer: approvals for its roles, their runs and the runs it decided on),
or `all`. Admin keys always see everything."""

BOOTSTRAP_ADMIN = "bootstrap-admin"
"""The identity the bootstrap admin key (CHORUS_ADMIN_KEY) acts as. No stored
key may take this name, in any case, so that `bootstrap-admin` in the audit
log always means that key."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so the value is
    stored as naive UTC and made aware again when read. Without this, the same
    column would come back aware from one backend and naive from the other.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given: pass an aware one (UTC)")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
"""JSON on SQLite, JSONB (indexable, compact) on PostgreSQL."""


# -- chain versions ---------------------------------------------------------------------


class ChainVersionBase(SQLModel):
    name: str = Field(index=True, max_length=100)
    version: int = Field(ge=1)
    description: str | None = None
    created_by: str = Field(max_length=200)


class ChainVersion(ChainVersionBase, table=True):
    """One published version of a chain. Versions of a name count up from 1
    and are never edited: a run refers to (name, version) for good."""

    __tablename__ = "chain_versions"
    __table_args__ = (
        sa.UniqueConstraint("name", "version", name="uq_chain_versions_name_version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    spec: dict[str, Any] = Field(sa_type=JSONType)
    """The ChainSpec as JSON, its `version` set to this row's version."""
    spec_hash: str = Field(max_length=64)
    """sha256 of the canonical JSON of the spec without its `version`."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    def to_spec(self) -> ChainSpec:
        """The stored spec as the model a workflow runs."""
        return ChainSpec.model_validate(self.spec)


class ChainVersionPublic(ChainVersionBase):
    """A published version as the API and `chorus chains list` show it."""

    spec: ChainSpec
    spec_hash: str
    created_at: datetime


# -- run index --------------------------------------------------------------------------


class RunRecordBase(SQLModel):
    run_id: str = Field(primary_key=True, max_length=255)
    """The Temporal workflow id."""
    temporal_run_id: str | None = Field(default=None, max_length=255)
    chain: str = Field(index=True, max_length=100)
    version: int
    status: str = Field(index=True, max_length=32)
    """One of `core.statuses.RUN_STATUSES`."""
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    current_step: str | None = None
    error: str | None = None
    error_type: str | None = Field(default=None, max_length=64)
    """Why a failed or rejected run ended (`core.chain_errors`), so the index
    alone still names it once Temporal has forgotten the run."""
    created_by: str | None = Field(default=None, max_length=200)
    """Who asked for the run (API key name); None for runs started outside the API."""


class RunRecord(RunRecordBase, table=True):
    """A run in the run index: what ops and the API list and filter without
    asking Temporal, kept after Temporal's retention drops the history."""

    __tablename__ = "runs"

    revision: int = 0
    """Order of the workflow's writes: an older revision never overwrites a newer one."""
    input_hash: str | None = Field(default=None, max_length=64)
    """sha256 of the canonical JSON input, set by the API's stub (idempotent starts)."""


# -- approval audit ---------------------------------------------------------------------


class ApprovalAuditBase(SQLModel):
    run_id: str = Field(index=True, max_length=255)
    step: str = Field(max_length=64)
    approval_id: str = Field(max_length=255)
    sequence: int
    """Position of this decision within its approval (several reviewers, escalations)."""
    reviewer: str = Field(index=True, max_length=200)
    decision: str = Field(max_length=32)
    comment: str | None = None
    before_text: str
    """What the reviewer was shown."""
    after_text: str | None = None
    """The edited text (edit), or the text that went on (approve)."""
    payload_hash: str = Field(max_length=64)
    decided_at: datetime = Field(sa_type=UTCDateTime)


class ApprovalAudit(ApprovalAuditBase, table=True):
    """One decision on one approval. Rows are only ever inserted, never
    changed: the log an auditor reads after the run's history is gone."""

    __tablename__ = "approval_audit"
    __table_args__ = (
        sa.UniqueConstraint(
            "run_id", "approval_id", "sequence", name="uq_approval_audit_run_approval_sequence"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)


# -- API keys ---------------------------------------------------------------------------


class ApiKeyBase(SQLModel):
    name: str = Field(max_length=100)
    """Who holds the key; recorded as the reviewer of the decisions made with it."""
    role: str = Field(max_length=16)
    """One of API_KEY_ROLES."""
    approval_roles: list[str] = Field(default_factory=list, sa_type=JSONType)
    """Extra role names the key may review as (e.g. `supervisor` for escalations)."""
    scope: str = Field(default="own", max_length=16, sa_column_kwargs={"server_default": "own"})
    """One of KEY_SCOPES. Databases made before this column get it from
    `store.schema.upgrade` (`own`; `all` for admin keys)."""
    key_prefix: str = Field(index=True, max_length=16)
    """The key's first characters, to tell keys apart in listings and logs."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApiKey(ApiKeyBase, table=True):
    """An API key, stored as the sha256 of the key: the key itself is shown
    once, when it is created, and never stored.

    A name is unique among the keys that are not revoked, so a leaked key can
    be revoked and its holder given a new key under the same name (and so the
    same reviewer identity in the audit log).
    """

    __tablename__ = "api_keys"
    __table_args__ = (
        sa.Index(
            "uq_api_keys_active_name",
            "name",
            unique=True,
            sqlite_where=sa.text("revoked_at IS NULL"),
            postgresql_where=sa.text("revoked_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    key_hash: str = Field(max_length=64, unique=True)

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class ApiKeyPublic(ApiKeyBase):
    """A key as the API and `chorus keys list` show it: never its hash."""

    role: ApiKeyRole  # type: ignore[assignment]
    scope: KeyScope  # type: ignore[assignment]

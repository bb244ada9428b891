"""API keys: shown once, stored hashed, checked in constant time, revocable;
names unique ignoring case, the bootstrap admin's name reserved; a scope
(`own` or `all`), added to databases made before it existed."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, text
from sqlmodel import Session

from store.crud import (
    create_api_key,
    create_run_stub,
    insert_approval_audit,
    list_api_keys,
    list_runs,
    revoke_api_key,
    run_creators,
    verify_api_key,
)
from store.engine import make_engine, session_scope
from store.errors import (
    DuplicateKeyNameError,
    InvalidApprovalRoleError,
    InvalidKeyNameError,
    InvalidKeyScopeError,
    ReservedKeyNameError,
    UnknownRoleError,
)
from store.schema import create_all
from tests.store.conftest import audit_input


def test_a_new_key_is_returned_once_and_only_its_hash_is_stored(engine: Engine) -> None:
    with session_scope(engine) as session:
        row, plaintext = create_api_key(
            session, name="alice", role="reviewer", approval_roles=["supervisor"]
        )
    assert plaintext.startswith("chorus_") and len(plaintext) >= 7 + 43
    assert row.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert plaintext.startswith(row.key_prefix) and len(row.key_prefix) < len(plaintext) // 3
    assert (row.name, row.role, row.approval_roles, row.revoked_at) == (
        "alice",
        "reviewer",
        ["supervisor"],
        None,
    )

    # Read the raw table: the key appears nowhere, in no column.
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT * FROM api_keys")).mappings().all()
    assert len(raw) == 1
    dumped = " ".join(str(value) for value in raw[0].values())
    assert plaintext not in dumped
    assert plaintext[len(row.key_prefix) :] not in dumped
    assert raw[0]["key_hash"] == row.key_hash


def test_verify_accepts_the_key_and_nothing_else(session: Session) -> None:
    alice, alice_key = create_api_key(session, name="alice", role="reviewer")
    _, bob_key = create_api_key(session, name="bob", role="admin")
    session.commit()

    found = verify_api_key(session, presented=alice_key)
    assert found is not None and found.id == alice.id and found.role == "reviewer"
    found_bob = verify_api_key(session, presented=bob_key)
    assert found_bob is not None and found_bob.name == "bob"
    for wrong in (
        alice_key[:-1] + ("A" if alice_key[-1] != "A" else "B"),  # same prefix, wrong key
        alice_key + "x",
        alice.key_prefix,
        alice.key_hash,
        "",
        "Bearer " + alice_key,
    ):
        assert verify_api_key(session, presented=wrong) is None, wrong


def test_a_revoked_key_fails_verification(session: Session) -> None:
    _, key = create_api_key(session, name="alice", role="reviewer")
    session.commit()
    assert verify_api_key(session, presented=key) is not None

    assert revoke_api_key(session, name="alice") is True
    session.commit()
    assert verify_api_key(session, presented=key) is None
    assert revoke_api_key(session, name="alice") is False
    assert revoke_api_key(session, name="nobody") is False
    [row] = list_api_keys(session)
    assert row.revoked_at is not None


def test_names_are_unique_among_active_keys(session: Session) -> None:
    _, old_key = create_api_key(session, name="alice", role="reviewer")
    with pytest.raises(DuplicateKeyNameError, match="active API key named 'alice' already exists"):
        create_api_key(session, name="alice", role="admin")
    session.commit()

    # After a revocation the holder gets a new key under the same name.
    revoke_api_key(session, name="alice")
    _, new_key = create_api_key(session, name="alice", role="reviewer")
    session.commit()
    assert verify_api_key(session, presented=old_key) is None
    renewed = verify_api_key(session, presented=new_key)
    assert renewed is not None and renewed.name == "alice"
    # oldest first: the revoked key, then its replacement
    assert [(k.name, k.revoked_at is None) for k in list_api_keys(session)] == [
        ("alice", False),
        ("alice", True),
    ]


def test_roles_and_names_are_checked(session: Session) -> None:
    with pytest.raises(UnknownRoleError, match=r"unknown role 'root'.*service, reviewer, admin"):
        create_api_key(session, name="x", role="root")
    with pytest.raises(InvalidApprovalRoleError, match="invalid approval role 'has space'"):
        create_api_key(session, name="x", role="reviewer", approval_roles=["has space"])
    with pytest.raises(InvalidKeyNameError, match="invalid key name ''"):
        create_api_key(session, name="", role="reviewer")
    assert list_api_keys(session) == []


def test_list_api_keys(session: Session) -> None:
    create_api_key(session, name="svc", role="service")
    create_api_key(session, name="alice", role="reviewer", approval_roles=["a", "b", "a"])
    session.commit()
    keys = list_api_keys(session)
    assert [(k.name, k.role, k.approval_roles) for k in keys] == [
        ("alice", "reviewer", ["a", "b"]),
        ("svc", "service", []),
    ]


def test_a_key_sees_its_own_runs_unless_created_with_scope_all(session: Session) -> None:
    service, _ = create_api_key(session, name="backend", role="service")
    wide, _ = create_api_key(session, name="ops", role="service", scope="all")
    reviewer, _ = create_api_key(session, name="alice", role="reviewer")
    admin, _ = create_api_key(session, name="root", role="admin")
    assert [k.scope for k in (service, wide, reviewer, admin)] == ["own", "all", "own", "all"]
    assert create_api_key(session, name="root2", role="admin", scope="all")[0].scope == "all"

    with pytest.raises(InvalidKeyScopeError, match="unknown scope 'everything'"):
        create_api_key(session, name="x", role="service", scope="everything")
    with pytest.raises(InvalidKeyScopeError, match="scope 'own' does not apply to an admin"):
        create_api_key(session, name="x", role="admin", scope="own")


@pytest.mark.parametrize("name", ["bootstrap-admin", "Bootstrap-Admin", "BOOTSTRAP-ADMIN"])
def test_the_bootstrap_admins_name_is_reserved_in_any_case(session: Session, name: str) -> None:
    with pytest.raises(ReservedKeyNameError, match=f"key name '{name}' is reserved"):
        create_api_key(session, name=name, role="reviewer")
    assert list_api_keys(session) == []
    # Names that merely contain it are fine.
    assert create_api_key(session, name=f"{name}-2", role="reviewer")[0].name == f"{name}-2"


def test_names_are_unique_ignoring_case(session: Session) -> None:
    create_api_key(session, name="Alice", role="reviewer")
    with pytest.raises(DuplicateKeyNameError, match=r"named 'alice' already exists.*'Alice'"):
        create_api_key(session, name="alice", role="reviewer")
    revoke_api_key(session, name="Alice")
    assert create_api_key(session, name="alice", role="reviewer")[0].name == "alice"


def test_runs_listed_by_creator_and_by_reviewer(session: Session) -> None:
    for run_id, creator in (("a1", "svc-a"), ("b1", "svc-b"), ("a2", "svc-a")):
        create_run_stub(
            session, run_id=run_id, chain="greet", version=1, input_hash="h", created_by=creator
        )
    insert_approval_audit(session, entry=audit_input(run_id="b1", reviewer="alice"))
    insert_approval_audit(session, entry=audit_input(run_id="a2", reviewer="bob"))
    session.commit()

    assert sorted(r.run_id for r in list_runs(session, created_by="svc-a")) == ["a1", "a2"]
    assert [r.run_id for r in list_runs(session, created_by="svc-b")] == ["b1"]
    assert list_runs(session, created_by="nobody") == []
    assert [r.run_id for r in list_runs(session, reviewed_by="alice")] == ["b1"]
    assert [r.run_id for r in list_runs(session, reviewed_by="bob", created_by="svc-b")] == []
    assert run_creators(session, run_ids=["a1", "b1", "missing"]) == {"a1": "svc-a", "b1": "svc-b"}
    many = [f"r{i}" for i in range(1200)] + ["a2"]
    assert run_creators(session, run_ids=many) == {"a2": "svc-a"}


def _old_api_keys_table() -> sa.Table:
    """`api_keys` as versions before the key scope made it."""
    metadata = sa.MetaData()
    return sa.Table(
        "api_keys",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("approval_roles", sa.JSON, nullable=False),
        sa.Column("key_prefix", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Index(
            "uq_api_keys_active_name",
            "name",
            unique=True,
            sqlite_where=sa.text("revoked_at IS NULL"),
            postgresql_where=sa.text("revoked_at IS NULL"),
        ),
    )


def test_a_database_made_before_key_scopes_is_upgraded(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        old = _old_api_keys_table()
        old.metadata.create_all(engine)
        now = datetime(2025, 1, 1, tzinfo=UTC).replace(tzinfo=None)
        with engine.begin() as conn:
            for name, role in (("backend", "service"), ("root", "admin"), ("alice", "reviewer")):
                conn.execute(
                    old.insert().values(
                        name=name,
                        role=role,
                        approval_roles=[],
                        key_prefix="chorus_" + name[:5],
                        created_at=now,
                        key_hash=hashlib.sha256(name.encode()).hexdigest(),
                    )
                )
        assert "scope" not in {c["name"] for c in sa.inspect(engine).get_columns("api_keys")}

        create_all(engine)
        create_all(engine)  # idempotent: the second finds the column

        with session_scope(engine) as session:
            scopes = {k.name: k.scope for k in list_api_keys(session)}
            assert scopes == {"alice": "own", "backend": "own", "root": "all"}
            # The upgraded table takes new keys, which default to `own`.
            row, plaintext = create_api_key(session, name="new-svc", role="service")
        assert row.scope == "own"
        with session_scope(engine) as session:
            found = verify_api_key(session, presented=plaintext)
            assert found is not None and found.scope == "own"
        with engine.connect() as conn:
            raw = conn.execute(text("SELECT name, scope FROM api_keys ORDER BY name")).all()
        assert [tuple(r) for r in raw] == [
            ("alice", "own"),
            ("backend", "own"),
            ("new-svc", "own"),
            ("root", "all"),
        ]
    finally:
        engine.dispose()

"""API keys: shown once, stored hashed, checked in constant time, revocable."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from store.crud import create_api_key, list_api_keys, revoke_api_key, verify_api_key
from store.engine import session_scope
from store.errors import (
    DuplicateKeyNameError,
    InvalidApprovalRoleError,
    InvalidKeyNameError,
    UnknownRoleError,
)


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

"""Sessions of the reviewer inbox (`/inbox`): a browser signs in once with an
API key and then carries a random session token in a cookie instead of the key.

Only the token's sha256 is stored, so a copy of the database cannot be
replayed as a cookie. A session names the key it was made from by the key's
hash (the same value `api_keys.key_hash` holds, or the hash of the bootstrap
admin key): the inbox looks the key up on every request, so revoking the key
ends every session made from it at once. Sessions expire (`expires_at`) and
end on sign-out (`ended_at`); rows past both are purged at the next sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, delete, select, update

from store.models import ApiKey, UTCDateTime, utcnow

TOKEN_BYTES = 32
"""256 random bits: a token cannot be guessed, so a fast hash is enough."""
PURGE_AFTER = timedelta(days=7)
"""Ended or expired sessions are kept this long (for an operator asking who
was signed in when), then purged."""


class InboxSession(SQLModel, table=True):
    """One signed-in browser."""

    __tablename__ = "inbox_sessions"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    key_hash: str = Field(max_length=64, index=True)
    """The sha256 of the API key signed in with: checked on every request."""
    key_name: str = Field(max_length=200)
    """The key's name when the session began (the reviewer identity)."""
    csrf_token: str = Field(max_length=64)
    """Sent back in every form of the session; useless without the cookie."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    __table_args__ = (sa.Index("ix_inbox_sessions_ended_at", "ended_at"),)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_inbox_session(
    session: Session, *, key_hash: str, key_name: str, ttl: timedelta
) -> tuple[InboxSession, str]:
    """A new session for the key; returns its row and the token (stored only
    as a hash: the cookie is the one copy). Purges long-dead sessions too."""
    now = utcnow()
    session.exec(  # type: ignore[call-overload]
        delete(InboxSession).where(col(InboxSession.expires_at) < now - PURGE_AFTER)
    )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = InboxSession(
        token_hash=hash_token(token),
        key_hash=key_hash,
        key_name=key_name,
        csrf_token=secrets.token_urlsafe(TOKEN_BYTES),
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(row)
    session.flush()
    return row, token


def find_inbox_session(session: Session, *, token: str) -> InboxSession | None:
    """The live session the token belongs to: not ended, not expired; else None."""
    if not token or len(token) > 200:
        return None
    wanted = hash_token(token)
    row = session.exec(select(InboxSession).where(InboxSession.token_hash == wanted)).first()
    if row is None or not hmac.compare_digest(row.token_hash, wanted):
        return None
    if row.ended_at is not None or row.expires_at <= utcnow():
        return None
    return row


def end_inbox_session(session: Session, *, token: str) -> bool:
    """Sign out: the session stops working at once. False when it was not live."""
    statement = (
        update(InboxSession)
        .where(col(InboxSession.token_hash) == hash_token(token))
        .where(col(InboxSession.ended_at).is_(None))
        .values(ended_at=utcnow())
    )
    return bool(session.exec(statement).rowcount)  # type: ignore[call-overload]


def active_key_by_hash(session: Session, *, key_hash: str) -> ApiKey | None:
    """The stored key with this hash while it is not revoked."""
    statement = select(ApiKey).where(ApiKey.key_hash == key_hash, col(ApiKey.revoked_at).is_(None))
    return session.exec(statement).first()

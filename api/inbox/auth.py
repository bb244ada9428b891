"""Who is using the inbox: an API key exchanged once for a server-side session.

The key is read from the sign-in form and never written anywhere the browser
keeps: the browser gets a random session token in an `HttpOnly`,
`SameSite=Strict` cookie (`Secure` over HTTPS), and the database keeps only
the token's hash (`store.inbox_sessions`). Every request looks the session up
and then the key it was made from, so an expired session, a sign-out and a
revoked key all end access at the next click.

A service key cannot sign in: services start runs, people decide them.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import SecretStr
from sqlmodel import Session

from api.deps import Principal
from store import hash_api_key, verify_api_key
from store.inbox_sessions import (
    active_key_by_hash,
    create_inbox_session,
    end_inbox_session,
    find_inbox_session,
)
from store.models import BOOTSTRAP_ADMIN

SESSION_COOKIE = "chorus_inbox_session"
COOKIE_PATH = "/inbox"
INBOX_ROLES = ("reviewer", "admin")


class SignInRefused(Exception):
    """The key cannot open an inbox session; `message` says why, for the person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class InboxUser:
    """A signed-in reviewer: who (the key's principal), the session's CSRF
    token for its forms, and when the session ends."""

    principal: Principal
    csrf_token: str
    expires_at: datetime

    @property
    def name(self) -> str:
        return self.principal.name


def _admin_hash(admin_key: SecretStr | None) -> str | None:
    return hash_api_key(admin_key.get_secret_value()) if admin_key is not None else None


def sign_in(
    session: Session, *, presented: str, admin_key: SecretStr | None, ttl: timedelta
) -> tuple[InboxUser, str]:
    """A new session for the presented key; returns the user and the session
    token for the cookie. Raises SignInRefused naming why."""
    presented = presented.strip()
    if not presented:
        raise SignInRefused("Enter your API key.")
    if admin_key is not None and hmac.compare_digest(
        presented.encode(), admin_key.get_secret_value().encode()
    ):
        principal = Principal(BOOTSTRAP_ADMIN, "admin", scope="all")
        key_hash = hash_api_key(presented)
    else:
        key = verify_api_key(session, presented=presented)
        if key is None:
            raise SignInRefused("That key is unknown or has been revoked.")
        if key.name.lower() == BOOTSTRAP_ADMIN.lower():
            raise SignInRefused(
                f"Key {key.name!r} has the bootstrap admin's reserved name: ask an admin "
                "to revoke it and create one under another name."
            )
        if key.role not in INBOX_ROLES:
            raise SignInRefused(
                f"Key {key.name!r} is a {key.role} key: services start runs, people "
                "decide them. Sign in with a reviewer or admin key "
                "(`chorus keys create NAME --role reviewer`)."
            )
        principal = _principal_of(key.name, key.role, key.approval_roles, key.scope)
        key_hash = key.key_hash
    row, token = create_inbox_session(session, key_hash=key_hash, key_name=principal.name, ttl=ttl)
    return InboxUser(principal, row.csrf_token, row.expires_at), token


def resolve(session: Session, *, token: str, admin_key: SecretStr | None) -> InboxUser | None:
    """The signed-in user of a session token, or None: no such session, ended,
    expired, or its key revoked (or, for the bootstrap admin, changed)."""
    row = find_inbox_session(session, token=token)
    if row is None:
        return None
    admin_hash = _admin_hash(admin_key)
    if admin_hash is not None and hmac.compare_digest(row.key_hash, admin_hash):
        return InboxUser(
            Principal(BOOTSTRAP_ADMIN, "admin", scope="all"), row.csrf_token, row.expires_at
        )
    key = active_key_by_hash(session, key_hash=row.key_hash)
    if key is None or key.role not in INBOX_ROLES:
        return None
    principal = _principal_of(key.name, key.role, key.approval_roles, key.scope)
    return InboxUser(principal, row.csrf_token, row.expires_at)


def sign_out(session: Session, *, token: str) -> None:
    end_inbox_session(session, token=token)


def _principal_of(name: str, role: str, approval_roles: list[str] | None, scope: str) -> Principal:
    return Principal(name, role, list(approval_roles or []), scope=scope)


def csrf_ok(user: InboxUser, presented: str | None) -> bool:
    """The form carries this session's CSRF token (compared in constant time)."""
    return bool(presented) and hmac.compare_digest(
        user.csrf_token.encode(), (presented or "").encode()
    )

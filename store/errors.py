"""Typed errors of the store. Each message names what is wrong, so the API
can hand it to the caller as is (the API maps types to HTTP statuses)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from store.engine import UnsupportedDatabaseError

if TYPE_CHECKING:
    from store.models import RunRecord

__all__ = [
    "ConcurrentPublishError",
    "DuplicateKeyNameError",
    "InvalidApprovalRoleError",
    "InvalidKeyNameError",
    "InvalidKeyScopeError",
    "ReservedKeyNameError",
    "RunExistsError",
    "StoreError",
    "UnknownRoleError",
    "UnsupportedDatabaseError",
]


class StoreError(Exception):
    """Base of the store's own errors (database errors stay SQLAlchemy's)."""


class RunExistsError(StoreError):
    """A run with this id is already recorded; `existing` is its row, so the
    caller can tell an idempotent retry (same input hash) from a conflict."""

    def __init__(self, existing: RunRecord) -> None:
        self.existing = existing
        super().__init__(
            f"a run with id {existing.run_id!r} already exists "
            f"(chain {existing.chain!r} v{existing.version}, status {existing.status})"
        )


class UnknownRoleError(StoreError, ValueError):
    """An API key role that is not one of service, reviewer, admin."""

    def __init__(self, role: str, allowed: Sequence[str]) -> None:
        self.role = role
        super().__init__(f"unknown role {role!r}: a key's role is one of {', '.join(allowed)}")


class InvalidApprovalRoleError(StoreError, ValueError):
    """An approval role name that is empty or has characters a role cannot have."""


class DuplicateKeyNameError(StoreError):
    """An active API key already has this name (names are compared ignoring case)."""

    def __init__(self, name: str, existing: str | None = None) -> None:
        self.name = name
        self.existing = existing or name
        same = "" if self.existing == name else f" ({self.existing!r}: names ignore case)"
        super().__init__(
            f"an active API key named {name!r} already exists{same}: "
            "pick another name, or revoke that key first"
        )


class ReservedKeyNameError(StoreError):
    """The name is the bootstrap admin's identity, which no stored key may take."""

    def __init__(self, name: str, reserved: str) -> None:
        self.name = name
        super().__init__(
            f"the key name {name!r} is reserved: {reserved!r} is the identity of the "
            "bootstrap admin key (CHORUS_ADMIN_KEY); pick another name"
        )


class InvalidKeyScopeError(StoreError, ValueError):
    """A key scope that is not one of own, all, or `own` for an admin key."""


class InvalidKeyNameError(StoreError, ValueError):
    """An API key name that is empty, too long or not printable."""


class ConcurrentPublishError(StoreError):
    """Other publishers of the same chain kept winning the race for the next
    version number; retrying the publish is safe."""

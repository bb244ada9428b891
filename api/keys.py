"""API keys: create (the key is shown once), list (never the secret), revoke."""

from __future__ import annotations

from sqlmodel import Session

from api.schemas import KeyCreate, KeyCreated
from core.problems import KeyExists, KeyNotFound, Unprocessable
from store import (
    ApiKey,
    ApiKeyPublic,
    DuplicateKeyNameError,
    InvalidApprovalRoleError,
    InvalidKeyNameError,
    UnknownRoleError,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)
from store.errors import InvalidKeyScopeError, ReservedKeyNameError


def public(key: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(key, from_attributes=True)


def create(session: Session, body: KeyCreate) -> KeyCreated:
    try:
        key, plaintext = create_api_key(
            session,
            name=body.name,
            role=body.role,
            approval_roles=list(body.approval_roles),
            scope=body.scope,
        )
    except DuplicateKeyNameError as exc:
        raise KeyExists(str(exc), details={"name": body.name, "existing": exc.existing}) from None
    except ReservedKeyNameError as exc:
        raise KeyExists(str(exc), code="key_name_reserved", details={"name": body.name}) from None
    except (
        UnknownRoleError,
        InvalidApprovalRoleError,
        InvalidKeyNameError,
        InvalidKeyScopeError,
    ) as exc:
        raise Unprocessable(str(exc), code="invalid_key") from None
    return KeyCreated(**public(key).model_dump(), key=plaintext)


def listing(session: Session) -> list[ApiKeyPublic]:
    return [public(key) for key in list_api_keys(session)]


def revoke(session: Session, name: str) -> None:
    if not revoke_api_key(session, name=name):
        raise KeyNotFound(f"no active API key named {name!r}", details={"name": name})

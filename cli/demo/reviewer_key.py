"""The reviewer key `chorus demo --interactive` prints for signing in to the
inbox: created in the application database as `chorus keys create` creates
one (stored hashed, the key itself shown once), and revoked when the demo
ends, so a key printed on a terminal does not outlive what it was made for."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cli.demo.errors import DemoError

if TYPE_CHECKING:
    from core.settings import Settings

KEY_NAME_PREFIX = "demo-inbox-reviewer"
"""Each interactive demo gets a key of its own: names are unique among
active keys, and the name is the reviewer identity the audit log records."""


@dataclass(frozen=True)
class ReviewerKey:
    name: str
    key: str
    """The key itself: shown once, never stored (only its hash is)."""


def create_reviewer_key(settings: Settings) -> ReviewerKey:
    """A new reviewer key (role `reviewer`, scope `own`: it sees the
    approvals its role may decide). DemoError when the database refuses."""
    from sqlalchemy.exc import SQLAlchemyError

    from store.crud import create_api_key
    from store.engine import make_engine, session_scope
    from store.errors import StoreError
    from store.schema import upgrade

    name = f"{KEY_NAME_PREFIX}-{uuid.uuid4().hex[:6]}"
    engine = make_engine(settings.effective_database_url)
    try:
        upgrade(engine)
        with session_scope(engine) as session:
            row, key = create_api_key(session, name=name, role="reviewer")
            return ReviewerKey(name=row.name, key=key)
    except (SQLAlchemyError, StoreError) as exc:
        raise DemoError(f"cannot create a reviewer key in the database: {exc}") from exc
    finally:
        engine.dispose()


def revoke_reviewer_key(settings: Settings, name: str) -> bool:
    """Revoke the demo's key (its inbox sessions end with it); False when the
    database could not be reached, so the caller can say the key still works."""
    from sqlalchemy.exc import SQLAlchemyError

    from store.crud import revoke_api_key
    from store.engine import make_engine, session_scope

    engine = make_engine(settings.effective_database_url)
    try:
        with session_scope(engine) as session:
            revoke_api_key(session, name=name)
        return True
    except SQLAlchemyError:
        return False
    finally:
        engine.dispose()

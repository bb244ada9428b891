"""The application database (SQLModel): chain versions, the run index, the
approval audit log and API keys, on a SQLite file or PostgreSQL.

    engine = make_engine(settings.effective_database_url)
    create_all(engine)
    with session_scope(engine) as session:
        key, plaintext = create_api_key(session, name="alice", role="reviewer")
"""

from store.crud import (
    PublishResult,
    create_api_key,
    create_run_stub,
    get_chain_version,
    get_run,
    hash_api_key,
    hash_json,
    insert_approval_audit,
    list_api_keys,
    list_approval_audit,
    list_chain_versions,
    list_chains,
    list_runs,
    publish_chain,
    publish_chain_version,
    revoke_api_key,
    spec_hash,
    upsert_run_record,
    verify_api_key,
)
from store.engine import make_engine, session_scope
from store.errors import (
    ConcurrentPublishError,
    DuplicateKeyNameError,
    InvalidApprovalRoleError,
    InvalidKeyNameError,
    RunExistsError,
    StoreError,
    UnknownRoleError,
    UnsupportedDatabaseError,
)
from store.models import (
    API_KEY_ROLES,
    ApiKey,
    ApiKeyPublic,
    ApprovalAudit,
    ChainVersion,
    ChainVersionPublic,
    RunRecord,
)
from store.schema import create_all

__all__ = [
    "API_KEY_ROLES",
    "ApiKey",
    "ApiKeyPublic",
    "ApprovalAudit",
    "ChainVersion",
    "ChainVersionPublic",
    "ConcurrentPublishError",
    "DuplicateKeyNameError",
    "InvalidApprovalRoleError",
    "InvalidKeyNameError",
    "PublishResult",
    "RunExistsError",
    "RunRecord",
    "StoreError",
    "UnknownRoleError",
    "UnsupportedDatabaseError",
    "create_all",
    "create_api_key",
    "create_run_stub",
    "get_chain_version",
    "get_run",
    "hash_api_key",
    "hash_json",
    "insert_approval_audit",
    "list_api_keys",
    "list_approval_audit",
    "list_chain_versions",
    "list_chains",
    "list_runs",
    "make_engine",
    "publish_chain",
    "publish_chain_version",
    "revoke_api_key",
    "session_scope",
    "spec_hash",
    "upsert_run_record",
    "verify_api_key",
]

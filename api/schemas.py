"""Request and response bodies of the HTTP API (what /openapi.json publishes).

Requests forbid unknown fields, so a misspelt `run_id` is a 422 naming it
rather than a silently ignored field and a duplicate run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core.chain_spec import CHAIN_NAME_PATTERN
from core.input_limits import MAX_VERSION
from core.statuses import RunStatus
from store import ApiKeyPublic, ChainVersionPublic
from store.models import ApiKeyRole, KeyScope
from workflows.types import DecisionKind, DecisionOutcome

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
KEY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$"
ROLE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"


ApprovalRole = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ROLE_PATTERN)]
"""An extra role a key may decide approvals for (a step's `required_role`)."""


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- runs ------------------------------------------------------------------------------


class RunCreate(RequestModel):
    chain: str = Field(max_length=100, pattern=CHAIN_NAME_PATTERN)
    version: int | None = Field(
        default=None, ge=1, le=MAX_VERSION, description="Default: the latest version."
    )
    input: Any = Field(default=None, description="Must match the chain's input_schema.")
    run_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=RUN_ID_PATTERN,
        description="Client-chosen id: makes the request idempotent. Default: a new UUID.",
    )
    max_cost_usd: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Cap on this run's cost; the lower of it and the chain's.",
    )


class RunAccepted(BaseModel):
    """Answer of POST /v1/runs: 201 for a new run, 200 for an idempotent repeat."""

    run_id: str
    chain: str
    version: int
    status: RunStatus
    created: bool = Field(description="False when the run_id named an existing run.")


class RunSummary(BaseModel):
    run_id: str
    chain: str
    version: int
    status: RunStatus
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    current_step: str | None = None
    error: str | None = None
    error_type: str | None = None
    created_by: str | None = None


class RunList(BaseModel):
    items: list[RunSummary]
    limit: int
    offset: int


class CancelAccepted(BaseModel):
    run_id: str
    status: Literal["cancel_requested"] = "cancel_requested"


# -- approvals -------------------------------------------------------------------------


class DecisionRequest(RequestModel):
    decision: DecisionKind
    payload_hash: str = Field(min_length=1, max_length=200, description="From the approval.")
    comment: str | None = Field(default=None, max_length=10_000)
    edited_output: str | None = Field(
        default=None, max_length=200_000, description="The new text (decision `edit`)."
    )


class DecisionResult(DecisionOutcome):
    run_id: str = Field(
        description="The run the decision was taken on: the agent's child run when a "
        "chain run's id was sent with one of its agents' approval ids."
    )
    reviewer: str


# -- chains ----------------------------------------------------------------------------


class ChainSummary(BaseModel):
    name: str
    latest_version: int
    description: str | None = None
    updated_at: datetime


class ChainList(BaseModel):
    items: list[ChainSummary]


class ChainVersionList(BaseModel):
    name: str
    items: list[ChainVersionPublic]


# -- keys ------------------------------------------------------------------------------


class KeyCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100, pattern=KEY_NAME_PATTERN)
    """Also the reviewer identity recorded in the approval audit log."""
    role: ApiKeyRole
    approval_roles: list[ApprovalRole] = Field(default_factory=list, max_length=20)
    scope: KeyScope | None = Field(
        default=None,
        description="Which runs the key sees: `own` (default; a service key: the runs it "
        "starts, a reviewer: approvals for its roles) or `all`. Admin keys see every run.",
    )


class KeyCreated(ApiKeyPublic):
    key: str = Field(description="The secret key. Shown once: it is stored hashed.")


class KeyList(BaseModel):
    items: list[ApiKeyPublic]


# -- health ----------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class CheckResult(BaseModel):
    ok: bool
    latency_ms: float
    error: str | None = None


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, CheckResult]


class KeyRevoked(BaseModel):
    name: str
    revoked: Literal[True] = True

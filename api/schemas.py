"""Request and response bodies of the HTTP API (what /openapi.json publishes).

Requests forbid unknown fields, so a misspelt `run_id` is a 422 naming it
rather than a silently ignored field and a duplicate run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core.chain_spec import ChainSpec
from workflows.types import DecisionKind, DecisionOutcome, StepRecord, UsageSummary

CHAIN_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
"""Same rule as `ChainSpec.name`; also keeps names safe inside visibility queries."""
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
KEY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$"
ROLE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"

Role = Literal["service", "reviewer", "admin"]
ApprovalRole = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ROLE_PATTERN)]
"""An extra role a key may decide approvals for (a step's `required_role`)."""
RunStatus = Literal[
    "starting",
    "running",
    "awaiting_approval",
    "completed",
    "failed",
    "rejected",
    "cancelled",
    "terminated",
    "timed_out",
]
"""`starting`: recorded, not yet started in Temporal. The others follow the
workflow (`rejected`: a reviewer rejected it; `cancelled`/`terminated`/
`timed_out`: ended from outside)."""


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- runs ------------------------------------------------------------------------------


class RunCreate(RequestModel):
    chain: str = Field(max_length=100, pattern=CHAIN_NAME_PATTERN)
    version: int | None = Field(default=None, ge=1, description="Default: the latest version.")
    input: Any = Field(default=None, description="Must match the chain's input_schema.")
    run_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=RUN_ID_PATTERN,
        description="Client-chosen id: makes the request idempotent. Default: a new UUID.",
    )
    max_cost_usd: float | None = Field(
        default=None, gt=0, description="Cap on this run's cost; the lower of it and the chain's."
    )


class RunAccepted(BaseModel):
    """Answer of POST /v1/runs: 201 for a new run, 200 for an idempotent repeat."""

    run_id: str
    chain: str
    version: int
    status: RunStatus
    created: bool = Field(description="False when the run_id named an existing run.")


class RunError(BaseModel):
    type: str | None = Field(
        default=None, description="ApplicationError type, e.g. BudgetExceeded."
    )
    message: str


class ApprovalView(BaseModel):
    """A pending approval as reviewers see it."""

    run_id: str
    chain: str | None = None
    approval_id: str
    step: str
    status: Literal["pending", "approved", "rejected"]
    text: str
    context: dict[str, str] = Field(default_factory=dict)
    instructions: str | None = None
    payload_hash: str = Field(description="Send it back with the decision.")
    required_role: str
    required_approvals: int
    approvals: list[str] = Field(default_factory=list)
    escalated: bool = False
    requested_at: datetime | None = None
    deadline: datetime | None = None


class RunDetail(BaseModel):
    run_id: str
    temporal_run_id: str | None = None
    chain: str | None = None
    version: int | None = None
    status: RunStatus
    source: Literal["workflow", "result", "index"] = Field(
        description="`workflow`: live state queried from the running workflow; "
        "`result`: the closed run's result; `index`: only the database index answered."
    )
    current_steps: list[str] = Field(default_factory=list)
    pending_approvals: list[ApprovalView] = Field(default_factory=list)
    steps: dict[str, StepRecord] = Field(default_factory=dict)
    usage: UsageSummary | None = None
    cost_usd: float = 0.0
    output: Any = None
    error: RunError | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_by: str | None = None


class RunSummary(BaseModel):
    run_id: str
    chain: str
    version: int
    status: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    current_step: str | None = None
    error: str | None = None
    created_by: str | None = None


class RunList(BaseModel):
    items: list[RunSummary]
    limit: int
    offset: int


class CancelAccepted(BaseModel):
    run_id: str
    status: Literal["cancel_requested"] = "cancel_requested"


# -- approvals -------------------------------------------------------------------------


class ApprovalList(BaseModel):
    items: list[ApprovalView]
    unavailable_runs: list[str] = Field(
        default_factory=list,
        description="Runs awaiting approval whose approvals could not be read just now "
        "(e.g. no worker polling); retry later.",
    )


class DecisionRequest(RequestModel):
    decision: DecisionKind
    payload_hash: str = Field(min_length=1, max_length=200, description="From the approval.")
    comment: str | None = Field(default=None, max_length=10_000)
    edited_output: str | None = Field(
        default=None, max_length=200_000, description="The new text (decision `edit`)."
    )


class DecisionResult(DecisionOutcome):
    run_id: str
    reviewer: str


# -- chains ----------------------------------------------------------------------------


class ChainVersionPublic(BaseModel):
    name: str
    version: int
    description: str | None = None
    spec: ChainSpec
    spec_hash: str
    created_at: datetime
    created_by: str | None = None


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
    role: Role
    approval_roles: list[ApprovalRole] = Field(default_factory=list, max_length=20)


class KeyPublic(BaseModel):
    name: str
    role: Role
    approval_roles: list[str] = Field(default_factory=list)
    key_prefix: str = Field(description="First characters of the key, to recognise it.")
    created_at: datetime
    revoked_at: datetime | None = None


class KeyCreated(KeyPublic):
    key: str = Field(description="The secret key. Shown once: it is stored hashed.")


class KeyList(BaseModel):
    items: list[KeyPublic]


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

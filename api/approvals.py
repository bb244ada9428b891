"""Approvals: what waits for a reviewer across runs, and deciding one.

The workflow owns the rules: a decision is the `decide` Workflow Update,
whose validator refuses an unknown approval, one already decided, a stale
payload, a second decision by the same reviewer, a missing role or a
malformed decision before anything enters the run's history. The API only
says who the reviewer is (the API key's name and roles); the run client
sends the Update and names the validator's reason.
"""

from __future__ import annotations

from api import ownership
from api.deps import Principal
from api.schemas import DecisionRequest, DecisionResult
from api.state import Database
from runs.client import RunClient
from runs.views import ApprovalList


async def list_pending(
    db: Database, runs: RunClient, *, principal: Principal, chain: str | None, limit: int
) -> ApprovalList:
    """The pending approvals the caller sees (`api.ownership`): a reviewer
    those of its roles, a service key those of its runs."""
    listing = await runs.list_pending(
        chain=chain, limit=limit, roles=ownership.approval_roles_filter(principal)
    )
    return await db.read(ownership.owned_approvals, principal=principal, listing=listing)


async def decide(
    runs: RunClient,
    *,
    run_id: str,
    approval_id: str,
    body: DecisionRequest,
    principal: Principal,
) -> DecisionResult:
    """Send the reviewer's decision and return where the approval stands.

    A chain run's id with one of its agents' approval ids is decided on the
    agent's child run (the run's `pending_approvals` lists both); the
    answer's `run_id` names the run the decision was taken on."""
    decided_on, outcome = await runs.decide_in_run(
        run_id,
        approval_id=approval_id,
        decision=body.decision,
        reviewer=principal.name,
        reviewer_roles=principal.reviewer_roles,
        payload_hash=body.payload_hash,
        comment=body.comment,
        edited_text=body.edited_output,
    )
    return DecisionResult(run_id=decided_on, reviewer=principal.name, **outcome.model_dump())

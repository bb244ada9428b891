"""Approvals: what waits for a reviewer across runs, and deciding one.

The workflow owns the rules: a decision is the `decide` Workflow Update,
whose validator refuses an unknown approval, one already decided, a stale
payload, a second decision by the same reviewer, a missing role or a
malformed decision before anything enters the run's history. The API only
says who the reviewer is (the API key's name and roles) and turns the
validator's reason into an HTTP status.
"""

from __future__ import annotations

import asyncio

from pydantic import ValidationError
from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Principal
from api.runs import (
    QUERY_TIMEOUT,
    RPC_TIMEOUT,
    approval_view,
    describe_running,
    temporal_problem,
)
from api.schemas import ApprovalList, ApprovalView, DecisionRequest, DecisionResult
from core.problems import (
    ApiProblem,
    Conflict,
    Forbidden,
    NotFound,
    RunNotRunning,
    Unprocessable,
    UpstreamTimeout,
)
from core.search_attributes import CHAIN_KEY, STATUS_KEY
from workflows.types import (
    AGENT_WORKFLOW_NAME,
    DECIDE,
    PENDING_APPROVALS_QUERY,
    WORKFLOW_NAME,
    ApprovalDecision,
    ApprovalRejection,
    ApprovalState,
    DecisionOutcome,
)

QUERY_CONCURRENCY = 8
"""Runs queried at once when listing approvals: enough to hide latency,
few enough not to flood the workers that answer the queries."""
UPDATE_TIMEOUT_S = 30.0
"""How long a decision waits for a worker to run the Update."""

_REJECTIONS: dict[str, tuple[type[ApiProblem], str]] = {
    ApprovalRejection.NOT_FOUND: (NotFound, "approval_not_found"),
    ApprovalRejection.ALREADY_DECIDED: (Conflict, "approval_already_decided"),
    ApprovalRejection.STALE: (Conflict, "stale_payload"),
    ApprovalRejection.DUPLICATE_REVIEWER: (Conflict, "reviewer_already_decided"),
    ApprovalRejection.FORBIDDEN: (Forbidden, "reviewer_role_missing"),
    ApprovalRejection.MALFORMED: (Unprocessable, "malformed_decision"),
}
"""Validator reasons (ApplicationError.type) → problem family and stable code."""


def awaiting_query(task_queue: str, chain: str | None) -> str:
    """Visibility query for this deployment's runs waiting on a reviewer.

    Only the API's own task queue: another deployment sharing the namespace
    has its own reviewers, and its runs would be queried through workers this
    API does not know. `chain` is pattern-checked by the route and the task
    queue comes from settings, so neither can break out of the quotes.
    """
    # Agents' child workflows wait for approvals of their tool calls too.
    query = (
        f"WorkflowType IN ('{WORKFLOW_NAME}', '{AGENT_WORKFLOW_NAME}') "
        "AND ExecutionStatus = 'Running' "
        f"AND TaskQueue = '{task_queue}' AND {STATUS_KEY.name} = 'awaiting_approval'"
    )
    if chain is not None:
        query += f" AND {CHAIN_KEY.name} = '{chain}'"
    return query


async def list_pending(
    client: Client, *, task_queue: str, chain: str | None, limit: int
) -> ApprovalList:
    """Pending approvals of every run awaiting one, oldest run first."""
    runs: list[tuple[str, str | None]] = []
    try:
        async for execution in client.list_workflows(
            awaiting_query(task_queue, chain), limit=limit, rpc_timeout=RPC_TIMEOUT
        ):
            runs.append((execution.id, execution.typed_search_attributes.get(CHAIN_KEY)))
    except RPCError as exc:
        raise temporal_problem(exc, "listing runs awaiting approval") from exc

    gate = asyncio.Semaphore(QUERY_CONCURRENCY)

    async def pending_of(run_id: str) -> list[ApprovalState] | None:
        async with gate:
            try:
                return await client.get_workflow_handle(run_id).query(  # type: ignore[no-any-return]
                    PENDING_APPROVALS_QUERY,
                    result_type=list[ApprovalState],
                    rpc_timeout=QUERY_TIMEOUT,
                )
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
                return None

    answers = await asyncio.gather(*(pending_of(run_id) for run_id, _ in runs))
    items: list[ApprovalView] = []
    unavailable: list[str] = []
    for (run_id, run_chain), pending in zip(reversed(runs), reversed(answers), strict=True):
        if pending is None:
            unavailable.append(run_id)
            continue
        items.extend(approval_view(run_id, run_chain, a) for a in pending if a.status == "pending")
    return ApprovalList(items=items, unavailable_runs=unavailable)


async def decide(
    client: Client,
    *,
    run_id: str,
    approval_id: str,
    body: DecisionRequest,
    principal: Principal,
) -> DecisionResult:
    """Send the reviewer's decision as the `decide` Update and return its outcome."""
    # An agent's child workflow (`<run id>--<step>`) takes decisions too.
    await describe_running(
        client,
        run_id,
        closed=": its approvals are closed",
        types=(WORKFLOW_NAME, AGENT_WORKFLOW_NAME),
    )
    handle = client.get_workflow_handle(run_id)
    try:
        decision = ApprovalDecision(
            approval_id=approval_id,
            decision=body.decision,
            reviewer=principal.name,
            reviewer_roles=principal.reviewer_roles,
            payload_hash=body.payload_hash,
            comment=body.comment,
            edited_text=body.edited_output,
        )
    except ValidationError as exc:
        raise Unprocessable(
            f"malformed decision: {exc.errors()[0]['msg']}", code="malformed_decision"
        ) from None

    try:
        outcome = await asyncio.wait_for(
            handle.execute_update(DECIDE, decision, result_type=DecisionOutcome),
            UPDATE_TIMEOUT_S,
        )
    except WorkflowUpdateFailedError as exc:
        raise _rejection(exc, run_id, approval_id) from None
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
        raise UpstreamTimeout(
            f"no worker answered the decision on run {run_id!r} within "
            f"{UPDATE_TIMEOUT_S:.0f} s; it may still be applied: read the run before retrying",
            code="decision_timeout",
        ) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RunNotRunning(
                f"run {run_id!r} closed before the decision reached it",
                details={"run_id": run_id},
            ) from exc
        raise temporal_problem(exc, f"sending a decision to run {run_id!r}") from exc
    return DecisionResult(run_id=run_id, reviewer=principal.name, **outcome.model_dump())


def _rejection(exc: WorkflowUpdateFailedError, run_id: str, approval_id: str) -> ApiProblem:
    cause = exc.cause
    kind = cause.type if isinstance(cause, ApplicationError) else None
    message = cause.message if isinstance(cause, ApplicationError) else str(exc.cause or exc)
    family, code = _REJECTIONS.get(kind or "", (Conflict, "decision_failed"))
    return family(
        message,
        code=code,
        details={"run_id": run_id, "approval_id": approval_id, "reason": kind},
    )

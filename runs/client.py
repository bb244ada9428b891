"""The run client: the one module that starts chain runs on Temporal, and the
one that reads, lists, decides and cancels them.

Every entry point (the API, the CLI, the demo, the benchmarks and the tests)
starts a chain run through `RunClient.start`, so they share one check
(`runs.checks.check_run`), one id-reuse policy and one way of reading a run.

Id reuse: a run id names one run forever, even after it closed
(`REJECT_DUPLICATE`). Reusing the id of a closed run would give the new run
the old one's activity ids, and so the reply journal's answers of another
run. A start repeated with the same input (same hash in the workflow's memo)
is recognised as the same request and adopts the run it started.

Refusals are `core.problems` exceptions (HTTP-free): the API turns them into
statuses, the CLI into messages. The module is about 500 lines on purpose: it
is every call Chorus makes to Temporal about a run, kept in one place.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from core.chain_spec import ChainSpec
from core.names import (
    AGENT_WORKFLOW_NAME,
    DECIDE,
    PENDING_APPROVALS_QUERY,
    STATE_QUERY,
    WORKFLOW_NAME,
)
from core.problems import (
    ApiProblem,
    Conflict,
    Forbidden,
    NotFound,
    RunConflict,
    RunNotFound,
    RunNotRunning,
    TemporalUnavailable,
    Unprocessable,
    UpstreamTimeout,
)
from core.search_attributes import CHAIN_KEY, STATUS_KEY
from core.statuses import RunStatus
from runs.agents import AgentApproval, agent_run_id, running_agent_steps
from runs.catalog import Catalog
from runs.checks import check_run
from runs.results import failure_error, fill_result, partial_result
from runs.views import ApprovalList, ApprovalView, RunDetail, RunError
from runs.waits import provider_retry_waits
from store import hash_json
from workflows.types import (
    ApprovalDecision,
    ApprovalRejection,
    ApprovalState,
    ChainInput,
    ChainResult,
    DecisionOutcome,
    ProviderWait,
    RunState,
)

ID_REUSE_POLICY = WorkflowIDReusePolicy.REJECT_DUPLICATE
"""A run id names one run forever (see the module docstring)."""
INPUT_HASH_MEMO = "chorus_input_hash"
QUERY_TIMEOUT = timedelta(seconds=5)
"""A query waits for a worker; a run whose worker is down still gets an answer
(from Temporal's description and the index) after this long."""
RPC_TIMEOUT = timedelta(seconds=10)
UPDATE_TIMEOUT_S = 30.0
"""How long a decision waits for a worker to run the Update."""
QUERY_CONCURRENCY = 8
"""Runs queried at once when listing approvals: enough to hide latency,
few enough not to flood the workers that answer the queries."""
RUN_TYPES = (WORKFLOW_NAME,)
DECIDING_TYPES = (WORKFLOW_NAME, AGENT_WORKFLOW_NAME)
"""An agent's child workflow (`<run id>--<step>`) takes decisions too."""

_CLOSED_STATUS: dict[WorkflowExecutionStatus, RunStatus] = {
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}

_REJECTIONS: dict[str, tuple[type[ApiProblem], str]] = {
    ApprovalRejection.NOT_FOUND: (NotFound, "approval_not_found"),
    ApprovalRejection.ALREADY_DECIDED: (Conflict, "approval_already_decided"),
    ApprovalRejection.STALE: (Conflict, "stale_payload"),
    ApprovalRejection.DUPLICATE_REVIEWER: (Conflict, "reviewer_already_decided"),
    ApprovalRejection.FORBIDDEN: (Forbidden, "reviewer_role_missing"),
    ApprovalRejection.MALFORMED: (Unprocessable, "malformed_decision"),
}
"""Validator reasons (ApplicationError.type) → problem family and stable code."""


def temporal_problem(exc: RPCError, action: str) -> TemporalUnavailable:
    return TemporalUnavailable(f"Temporal did not answer while {action}: {exc.message or exc}")


def input_hash_of(value: Any, max_cost_usd: float | None) -> str:
    """What makes two start requests the same request (besides chain and run id)."""
    return hash_json({"input": value, "max_cost_usd": max_cost_usd})


@dataclass(frozen=True)
class StartedRun:
    run_id: str
    temporal_run_id: str | None
    created: bool
    """False when the start adopted a run this same request had started before."""
    handle: WorkflowHandle[Any, ChainResult]


class RunClient:
    """Starts, reads, lists, decides and cancels chain runs on one task queue.

    With a `catalog`, every start is checked against it first (`check_run`);
    without one, only the spec's own shape (already validated by the model)
    is trusted: tests of the interpreter pass none.
    """

    def __init__(self, client: Client, *, task_queue: str, catalog: Catalog | None = None):
        self.client = client
        self.task_queue = task_queue
        self.catalog = catalog

    # -- start -------------------------------------------------------------------------

    def check(self, spec: ChainSpec, value: Any) -> None:
        if self.catalog is not None:
            check_run(spec, value, self.catalog)

    async def start(
        self,
        spec: ChainSpec,
        value: Any,
        *,
        run_id: str | None = None,
        max_cost_usd: float | None = None,
        input_hash: str | None = None,
        summary: str | None = None,
        checked: bool = False,
    ) -> StartedRun:
        """Start a run of `spec` on `value` (checked first unless the caller
        says it already did). Raises InvalidChainSpec / InvalidInput before
        anything starts, RunConflict when the id names another run, and
        TemporalUnavailable when Temporal does not answer."""
        if not checked:
            self.check(spec, value)
        checked = checked or self.catalog is not None
        run_id = run_id or str(uuid.uuid4())
        input_hash = input_hash or input_hash_of(value, max_cost_usd)
        try:
            handle = await self.client.start_workflow(
                WORKFLOW_NAME,
                ChainInput(spec=spec, input=value, max_cost_usd=max_cost_usd, checked=checked),
                id=run_id,
                task_queue=self.task_queue,
                result_type=ChainResult,
                id_reuse_policy=ID_REUSE_POLICY,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                memo={INPUT_HASH_MEMO: input_hash},
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(CHAIN_KEY, spec.name),
                        SearchAttributePair(STATUS_KEY, "running"),
                    ]
                ),
                static_summary=summary or f"chain {spec.name} v{spec.version}",
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            temporal_run_id = await self._adopt_existing(run_id, input_hash)
            return StartedRun(
                run_id,
                temporal_run_id,
                created=False,
                handle=self.client.get_workflow_handle(
                    run_id, run_id=temporal_run_id, result_type=ChainResult
                ),
            )
        except RPCError as exc:
            raise temporal_problem(exc, f"starting run {run_id!r}") from exc
        return StartedRun(run_id, handle.result_run_id, created=True, handle=handle)

    async def _adopt_existing(self, run_id: str, input_hash: str) -> str | None:
        try:
            description = await self.client.get_workflow_handle(run_id).describe(
                rpc_timeout=RPC_TIMEOUT
            )
        except RPCError as exc:
            raise temporal_problem(exc, f"describing run {run_id!r}") from exc
        if await description.memo_value(INPUT_HASH_MEMO, None) == input_hash:
            return description.run_id
        raise RunConflict(
            f"a workflow with id {run_id!r} already exists in Temporal and was not started "
            "by this request; pick a new run id",
            details={"run_id": run_id, "workflow_type": description.workflow_type},
        )

    # -- read --------------------------------------------------------------------------

    def handle(self, run_id: str) -> WorkflowHandle[Any, ChainResult]:
        return self.client.get_workflow_handle(run_id, result_type=ChainResult)

    async def describe(
        self, run_id: str, types: tuple[str, ...] = RUN_TYPES
    ) -> WorkflowExecutionDescription | None:
        """Temporal's description of a Chorus run; None when there is none."""
        try:
            description = await self.client.get_workflow_handle(run_id).describe(
                rpc_timeout=RPC_TIMEOUT
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise temporal_problem(exc, f"describing run {run_id!r}") from exc
        return description if description.workflow_type in types else None

    async def describe_running(
        self, run_id: str, *, closed: str, types: tuple[str, ...] = RUN_TYPES
    ) -> WorkflowExecutionDescription:
        """The description of a run that must still be running: RunNotFound
        when Temporal has no Chorus run by that id; RunNotRunning, naming its
        status followed by `closed` (what that means for the request)."""
        description = await self.describe(run_id, types)
        if description is None:
            raise RunNotFound(f"no run with id {run_id!r}", details={"run_id": run_id})
        if description.status != WorkflowExecutionStatus.RUNNING:
            status = description.status.name.lower() if description.status else "unknown"
            raise RunNotRunning(
                f"run {run_id!r} is not running (status: {status}){closed}",
                details={"run_id": run_id, "status": status},
            )
        return description

    async def read(
        self,
        run_id: str,
        *,
        chain: str | None = None,
        version: int | None = None,
        created_by: str | None = None,
        cost_usd: float = 0.0,
    ) -> RunDetail | None:
        """A run as Temporal knows it: live state of a running run, the result
        (or partial result) of a closed one. None when Temporal does not know
        it. The keyword arguments are what the caller already knows (the run
        index); Temporal's answer completes them."""
        description = await self.describe(run_id)
        if description is None:
            return None
        detail = RunDetail(
            run_id=run_id,
            temporal_run_id=description.run_id,
            chain=chain or description.typed_search_attributes.get(CHAIN_KEY),
            version=version,
            status="running",
            source="workflow",
            started_at=description.start_time,
            finished_at=description.close_time,
            created_by=created_by,
            cost_usd=cost_usd,
        )
        handle = self.client.get_workflow_handle(run_id, run_id=description.run_id)
        status = description.status
        if status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
            await self._fill_live(detail, handle, description)
        elif status == WorkflowExecutionStatus.COMPLETED:
            fill_result(detail, await self._closed_result(handle, run_id))
        elif status == WorkflowExecutionStatus.FAILED:
            await self._fill_failure(detail, handle, run_id)
        else:
            detail.status = _CLOSED_STATUS.get(status, "failed") if status else "failed"
            detail.source = "result"
            detail.error = RunError(type=detail.status, message=f"the run was {detail.status}")
        return detail

    async def _fill_live(
        self,
        detail: RunDetail,
        handle: WorkflowHandle[Any, Any],
        description: WorkflowExecutionDescription,
    ) -> None:
        # Calls Temporal is about to retry (Retry-After, backoff): from the
        # description already read, so shown even with no worker answering.
        detail.waits = await provider_retry_waits(description, self.client.data_converter)
        try:
            state, pending = await asyncio.gather(
                handle.query(STATE_QUERY, result_type=RunState, rpc_timeout=QUERY_TIMEOUT),
                handle.query(
                    PENDING_APPROVALS_QUERY,
                    result_type=list[ApprovalState],
                    rpc_timeout=QUERY_TIMEOUT,
                ),
            )
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
            # No worker answered (down, or not picked up yet): what Temporal's
            # visibility says is all there is.
            attribute = description.typed_search_attributes.get(STATUS_KEY)
            detail.status = "awaiting_approval" if attribute == "awaiting_approval" else "running"
            detail.source = "index"
            return
        detail.status = state.status
        detail.chain = detail.chain or state.chain
        detail.version = detail.version or state.version
        detail.current_steps = list(state.current_steps)
        detail.steps = state.steps
        detail.usage = state.usage
        detail.cost_usd = state.usage.cost_usd
        detail.pending_approvals = [
            ApprovalView.of(detail.run_id, detail.chain, a) for a in pending
        ] + [
            ApprovalView.of(child.run_id, detail.chain, child.approval, parent_run_id=detail.run_id)
            for child in await self.agent_approvals(detail.run_id, state)
        ]
        detail.waits = [*state.waits, *detail.waits]
        if state.error:
            detail.error = RunError(type=state.error_type, message=state.error)

    async def waits(self, run_id: str, state: RunState | None = None) -> list[ProviderWait]:
        """What a running run's model calls wait for now: the limiter waits of
        its `state` (when given) and the retries Temporal has scheduled."""
        description = await self.describe(run_id)
        retries = (
            await provider_retry_waits(description, self.client.data_converter)
            if description is not None
            else []
        )
        return [*(state.waits if state is not None else []), *retries]

    async def _closed_result(self, handle: WorkflowHandle[Any, Any], run_id: str) -> ChainResult:
        try:
            result = await handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
        except RPCError as exc:
            raise temporal_problem(exc, f"reading the result of run {run_id!r}") from exc
        return result if isinstance(result, ChainResult) else ChainResult.model_validate(result)

    async def _fill_failure(
        self, detail: RunDetail, handle: WorkflowHandle[Any, Any], run_id: str
    ) -> None:
        detail.status = "failed"
        detail.source = "result"
        try:
            await handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
        except WorkflowFailureError as failure:
            error = failure_error(failure)
            partial = partial_result(failure)
            if partial is not None:
                fill_result(detail, partial)
                detail.status = "failed"
            detail.error = error
        except RPCError as exc:
            raise temporal_problem(exc, f"reading the failure of run {run_id!r}") from exc

    # -- approvals ---------------------------------------------------------------------

    def awaiting_query(self, chain: str | None) -> str:
        """Visibility query for this task queue's runs waiting on a reviewer.

        Only this task queue: another deployment sharing the namespace has its
        own reviewers. `chain` must be pattern-checked by the caller (the API's
        route does) and the task queue comes from settings, so neither can
        break out of the quotes.
        """
        types = ", ".join(f"'{name}'" for name in DECIDING_TYPES)
        query = (
            f"WorkflowType IN ({types}) AND ExecutionStatus = 'Running' "
            f"AND TaskQueue = '{self.task_queue}' AND {STATUS_KEY.name} = 'awaiting_approval'"
        )
        if chain is not None:
            query += f" AND {CHAIN_KEY.name} = '{chain}'"
        return query

    async def _awaiting_runs(
        self, chain: str | None, limit: int
    ) -> AsyncIterator[tuple[str, str | None, str | None]]:
        """(run id, chain, parent run id: set for an agent's child run)."""
        try:
            async for execution in self.client.list_workflows(
                self.awaiting_query(chain), limit=limit, rpc_timeout=RPC_TIMEOUT
            ):
                yield (
                    execution.id,
                    execution.typed_search_attributes.get(CHAIN_KEY),
                    execution.parent_id,
                )
        except RPCError as exc:
            raise temporal_problem(exc, "listing runs awaiting approval") from exc

    async def pending_approvals(self, run_id: str) -> list[ApprovalState]:
        """The approvals of one run (raises the query's errors)."""
        return await self.client.get_workflow_handle(run_id).query(  # type: ignore[no-any-return]
            PENDING_APPROVALS_QUERY, result_type=list[ApprovalState], rpc_timeout=QUERY_TIMEOUT
        )

    async def list_pending(
        self, *, chain: str | None, limit: int, roles: Collection[str] | None = None
    ) -> ApprovalList:
        """Pending approvals of every run awaiting one, oldest run first; with
        `roles`, only those whose `required_role` is one of them."""
        runs = [run async for run in self._awaiting_runs(chain, limit)]
        gate = asyncio.Semaphore(QUERY_CONCURRENCY)

        async def pending_of(run_id: str) -> list[ApprovalState] | None:
            async with gate:
                try:
                    return await self.pending_approvals(run_id)
                except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
                    return None

        answers = await asyncio.gather(*(pending_of(run_id) for run_id, _, _ in runs))
        items: list[ApprovalView] = []
        unavailable: list[str] = []
        for (run_id, run_chain, parent), pending in zip(
            reversed(runs), reversed(answers), strict=True
        ):
            if pending is None:
                unavailable.append(run_id)
                continue
            items.extend(
                ApprovalView.of(run_id, run_chain, a, parent_run_id=parent)
                for a in pending
                if a.status == "pending" and (roles is None or a.required_role in roles)
            )
        return ApprovalList(items=items, unavailable_runs=unavailable)

    async def agent_approvals(self, run_id: str, state: RunState) -> list[AgentApproval]:
        """The pending approvals of the run's running agent steps (child runs
        `<run id>--<step>`), step by step. A child not started yet, closing,
        or whose query no worker answers just now has none to show: the
        parent's own answer must not fail for it."""
        steps = running_agent_steps(state)
        if not steps:
            return []

        async def of(step: str) -> list[AgentApproval]:
            child = agent_run_id(run_id, step)
            try:
                pending = await self.pending_approvals(child)
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
                return []
            return [AgentApproval(child, step, a) for a in pending if a.status == "pending"]

        answers = await asyncio.gather(*(of(step) for step in steps))
        return [approval for answer in answers for approval in answer]

    async def _agent_holding(self, run_id: str, approval_id: str) -> str | None:
        """The running agent child of chain run `run_id` that has the pending
        approval `approval_id`; None when none has it (or none answers)."""
        try:
            state = await self.handle(run_id).query(
                STATE_QUERY, result_type=RunState, rpc_timeout=QUERY_TIMEOUT
            )
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
            return None
        for child in await self.agent_approvals(run_id, state):
            if child.approval.approval_id == approval_id:
                return child.run_id
        return None

    async def decide_in_run(
        self,
        run_id: str,
        *,
        approval_id: str,
        decision: str,
        reviewer: str,
        reviewer_roles: list[str],
        payload_hash: str,
        comment: str | None = None,
        edited_text: str | None = None,
    ) -> tuple[str, DecisionOutcome]:
        """`decide`, where the approval may also be one of the run's agents':
        a chain run's pending approvals include its agents' (`read`), so a
        decision sent to the chain run with an agent's approval id is sent on
        to the agent's child run that holds it. Returns the run the decision
        was taken on and the outcome. Only an approval the chain run itself
        does not have is looked for in its running agents, and the child's
        own validator checks the reviewer's role and the payload hash as for
        any decision."""

        async def send(target: str) -> DecisionOutcome:
            return await self.decide(
                target,
                approval_id=approval_id,
                decision=decision,
                reviewer=reviewer,
                reviewer_roles=reviewer_roles,
                payload_hash=payload_hash,
                comment=comment,
                edited_text=edited_text,
            )

        try:
            return run_id, await send(run_id)
        except NotFound as exc:
            if exc.code != "approval_not_found":
                raise
            child = await self._agent_holding(run_id, approval_id)
            if child is None:
                raise
        return child, await send(child)

    async def decide(
        self,
        run_id: str,
        *,
        approval_id: str,
        decision: str,
        reviewer: str,
        reviewer_roles: list[str],
        payload_hash: str,
        comment: str | None = None,
        edited_text: str | None = None,
    ) -> DecisionOutcome:
        """Send a reviewer's decision as the `decide` Update; the workflow's
        validator refuses it (a typed problem naming why) before anything
        enters the run's history."""
        await self.describe_running(
            run_id, closed=": its approvals are closed", types=DECIDING_TYPES
        )
        try:
            update = ApprovalDecision(
                approval_id=approval_id,
                decision=decision,  # type: ignore[arg-type]
                reviewer=reviewer,
                reviewer_roles=reviewer_roles,
                payload_hash=payload_hash,
                comment=comment,
                edited_text=edited_text,
            )
        except ValidationError as exc:
            raise Unprocessable(
                f"malformed decision: {exc.errors()[0]['msg']}", code="malformed_decision"
            ) from None
        handle = self.client.get_workflow_handle(run_id)
        try:
            return await asyncio.wait_for(
                handle.execute_update(DECIDE, update, result_type=DecisionOutcome),
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
            raise _closed_meanwhile(
                exc, run_id, "the decision reached it", f"sending a decision to run {run_id!r}"
            ) from exc

    # -- cancel ------------------------------------------------------------------------

    async def cancel(self, run_id: str) -> None:
        """Ask Temporal to cancel a running run; RunNotRunning when it has closed."""
        description = await self.describe_running(run_id, closed="; nothing to cancel")
        try:
            await self.client.get_workflow_handle(run_id, run_id=description.run_id).cancel(
                rpc_timeout=RPC_TIMEOUT
            )
        except RPCError as exc:
            raise _closed_meanwhile(
                exc, run_id, "it could be cancelled", f"cancelling run {run_id!r}"
            ) from exc


def _closed_meanwhile(exc: RPCError, run_id: str, before: str, action: str) -> ApiProblem:
    """A run found running a moment ago that Temporal no longer has open
    (RunNotRunning), or Temporal not answering (TemporalUnavailable)."""
    if exc.status == RPCStatusCode.NOT_FOUND:
        return RunNotRunning(f"run {run_id!r} closed before {before}", details={"run_id": run_id})
    return temporal_problem(exc, action)


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

"""Runs: start one (idempotently), read one, list them, cancel one.

Starting is ordered so that a rejected request starts nothing and a crash
loses nothing: resolve the chain version and validate the input first, then
write the run's stub row (status `starting`, with the input's hash), commit,
and only then start the workflow. A client `run_id` makes the request
idempotent: the same id with the same chain and input answers with the
existing run (and finishes a start a crash interrupted); with anything else
it is a conflict. The workflow carries the input hash in its memo, so a run
started by a concurrent retry is recognised as the same request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, update
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Principal
from api.schemas import (
    ApprovalView,
    RunAccepted,
    RunCreate,
    RunDetail,
    RunError,
    RunStatus,
    RunSummary,
)
from core.problems import (
    ChainNotFound,
    InvalidChainSpec,
    InvalidInput,
    RunConflict,
    RunNotFound,
    RunNotRunning,
    TemporalUnavailable,
)
from core.search_attributes import CHAIN_KEY, STATUS_KEY
from core.settings import Settings
from store import (
    ChainVersion,
    RunExistsError,
    RunRecord,
    create_run_stub,
    get_chain_version,
    get_run,
    hash_json,
    list_runs,
)
from workflows.types import (
    PENDING_APPROVALS_QUERY,
    STATE_QUERY,
    WORKFLOW_NAME,
    ApprovalState,
    ChainInput,
    ChainResult,
    RunState,
)
from workflows.validate import ChainSpecError, check_chain, validate_input

INPUT_HASH_MEMO = "chorus_input_hash"
QUERY_TIMEOUT = timedelta(seconds=5)
"""A query waits for a worker; a run whose worker is down still gets an answer
(from Temporal's description and the index) after this long."""
RPC_TIMEOUT = timedelta(seconds=10)

_CLOSED_STATUS: dict[WorkflowExecutionStatus, RunStatus] = {
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}

T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking database call off the event loop (SQLite may wait for a
    write lock held by a worker)."""
    return await run_in_threadpool(fn, *args, **kwargs)


def temporal_problem(exc: RPCError, action: str) -> TemporalUnavailable:
    return TemporalUnavailable(f"Temporal did not answer while {action}: {exc.message or exc}")


# -- start -----------------------------------------------------------------------------


def input_hash_of(body: RunCreate) -> str:
    """What makes two start requests the same request (besides chain and run_id)."""
    return hash_json({"input": body.input, "max_cost_usd": body.max_cost_usd})


def _chain_not_found(session: Session, name: str, version: int | None) -> ChainNotFound:
    if version is not None and get_chain_version(session, name=name) is not None:
        latest = get_chain_version(session, name=name)
        assert latest is not None
        return ChainNotFound(
            f"chain {name!r} has no version {version} (latest: {latest.version})",
            details={"chain": name, "version": version, "latest_version": latest.version},
        )
    return ChainNotFound(
        f"no chain named {name!r} is published (PUT /v1/chains/{name} publishes one)",
        details={"chain": name},
    )


def _resolve_chain(session: Session, name: str, version: int | None) -> ChainVersion:
    found = get_chain_version(session, name=name, version=version)
    if found is None:
        raise _chain_not_found(session, name, version)
    return found


def _mark_started(session: Session, run_id: str, temporal_run_id: str | None) -> None:
    """`starting` → `running` unless the workflow's own index writes came first."""
    session.exec(  # type: ignore[call-overload]
        update(RunRecord)
        .where(
            col(RunRecord.run_id) == run_id,
            col(RunRecord.status) == "starting",
            col(RunRecord.revision) == 0,
        )
        .values(status="running", temporal_run_id=temporal_run_id)
    )
    session.commit()


def _drop_stub(session: Session, run_id: str, input_hash: str, author: str) -> None:
    """Undo this request's stub when its workflow was not started by it: delete
    the row while it is still a stub; if a workflow of that id (started
    elsewhere) has written its own row over it meanwhile, keep that row but
    take back what only this request put there (its input hash and author)."""
    ours = (
        col(RunRecord.run_id) == run_id,
        col(RunRecord.input_hash) == input_hash,
        col(RunRecord.created_by) == author,
    )
    session.exec(  # type: ignore[call-overload]
        delete(RunRecord).where(
            *ours, col(RunRecord.status) == "starting", col(RunRecord.revision) == 0
        )
    )
    session.exec(  # type: ignore[call-overload]
        update(RunRecord).where(*ours).values(input_hash=None, created_by=None)
    )
    session.commit()


class RunStarter:
    """Starts a run for one POST /v1/runs request."""

    def __init__(
        self,
        session: Session,
        client: Client,
        settings: Settings,
        aliases: set[str],
        principal: Principal,
    ) -> None:
        self.session = session
        self.client = client
        self.settings = settings
        self.aliases = aliases
        self.principal = principal

    async def start(self, body: RunCreate) -> RunAccepted:
        run_id = body.run_id or str(uuid.uuid4())
        input_hash = input_hash_of(body)
        if body.run_id is not None:
            existing = await in_thread(get_run, self.session, run_id=run_id)
            if existing is not None:
                return await self._repeat(existing, body, input_hash)

        chain = await in_thread(_resolve_chain, self.session, body.chain, body.version)
        spec = chain.to_spec()
        self._check(chain, body)

        try:
            stub = await in_thread(self._create_stub, run_id, chain, input_hash)
        except RunExistsError as exc:
            return await self._repeat(exc.existing, body, input_hash)
        try:
            temporal_run_id = await self._start_workflow(run_id, spec, body, input_hash)
        except BaseException:
            await in_thread(_drop_stub, self.session, run_id, input_hash, self.principal.name)
            raise
        await in_thread(_mark_started, self.session, run_id, temporal_run_id)
        return RunAccepted(
            run_id=run_id,
            chain=stub.chain,
            version=stub.version,
            status="running",
            created=True,
        )

    def _check(self, chain: ChainVersion, body: RunCreate) -> None:
        spec = chain.to_spec()
        try:
            check_chain(spec, self.aliases)
        except ChainSpecError as exc:
            raise InvalidChainSpec(
                f"chain {chain.name!r} v{chain.version} no longer matches the model registry; "
                "publish a fixed version",
                details=[{"path": p.path, "message": p.message} for p in exc.problems],
            ) from None
        problems = validate_input(spec, body.input)
        if problems:
            raise InvalidInput(
                f"input does not match the input_schema of chain {chain.name!r} "
                f"v{chain.version}: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                details=[{"path": p.path, "message": p.message} for p in problems],
            )

    def _create_stub(self, run_id: str, chain: ChainVersion, input_hash: str) -> RunRecord:
        stub = create_run_stub(
            self.session,
            run_id=run_id,
            chain=chain.name,
            version=chain.version,
            input_hash=input_hash,
            created_by=self.principal.name,
        )
        # Durable before the workflow starts: a crash in between leaves a
        # `starting` row that a retry with the same run_id completes.
        self.session.commit()
        return stub

    async def _repeat(self, existing: RunRecord, body: RunCreate, input_hash: str) -> RunAccepted:
        """A run_id seen before: the same request again, or a conflict."""
        differences = []
        if existing.chain != body.chain:
            differences.append(f"chain {existing.chain!r}, not {body.chain!r}")
        if body.version is not None and existing.version != body.version:
            differences.append(f"version {existing.version}, not {body.version}")
        if existing.input_hash != input_hash:
            differences.append("a different input")
        if differences:
            raise RunConflict(
                f"run_id {existing.run_id!r} is already used by a run with "
                + " and ".join(differences)
                + "; pick a new run_id for a new run",
                details={
                    "run_id": existing.run_id,
                    "chain": existing.chain,
                    "version": existing.version,
                    "status": existing.status,
                },
            )
        status = existing.status
        if status == "starting":
            # An earlier attempt recorded the run but may have died before
            # starting it: start it now (a no-op if it did start).
            chain = await in_thread(_resolve_chain, self.session, existing.chain, existing.version)
            temporal_run_id = await self._start_workflow(
                existing.run_id, chain.to_spec(), body, input_hash
            )
            await in_thread(_mark_started, self.session, existing.run_id, temporal_run_id)
            status = "running"
        return RunAccepted(
            run_id=existing.run_id,
            chain=existing.chain,
            version=existing.version,
            status=status,  # type: ignore[arg-type]
            created=False,
        )

    async def _start_workflow(
        self, run_id: str, spec: Any, body: RunCreate, input_hash: str
    ) -> str | None:
        """Start ChainWorkflow; return its Temporal run id. A workflow already
        started with this id by the same request (same input hash) counts as
        started; any other is a conflict."""
        try:
            handle = await self.client.start_workflow(
                WORKFLOW_NAME,
                ChainInput(spec=spec, input=body.input, max_cost_usd=body.max_cost_usd),
                id=run_id,
                task_queue=self.settings.task_queue,
                result_type=ChainResult,
                # A run_id names one run forever, even after it closed.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                memo={INPUT_HASH_MEMO: input_hash},
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(CHAIN_KEY, spec.name),
                        SearchAttributePair(STATUS_KEY, "running"),
                    ]
                ),
                static_summary=f"chain {spec.name} v{spec.version} (API, {self.principal.name})",
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            return await self._adopt_existing(run_id, input_hash)
        except RPCError as exc:
            raise temporal_problem(exc, f"starting run {run_id!r}") from exc
        return handle.result_run_id

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
            "by this request; pick a new run_id",
            details={"run_id": run_id, "workflow_type": description.workflow_type},
        )


# -- read ------------------------------------------------------------------------------


async def _describe(
    client: Client, run_id: str, types: tuple[str, ...] = (WORKFLOW_NAME,)
) -> WorkflowExecutionDescription | None:
    try:
        description = await client.get_workflow_handle(run_id).describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise temporal_problem(exc, f"describing run {run_id!r}") from exc
    return description if description.workflow_type in types else None


async def describe_running(
    client: Client, run_id: str, *, closed: str, types: tuple[str, ...] = (WORKFLOW_NAME,)
) -> WorkflowExecutionDescription:
    """Temporal's description of a run that must still be running.

    RunNotFound when Temporal has no Chorus run by that id; RunNotRunning,
    naming the run's status followed by `closed` (what that means for the
    request), when it has ended."""
    description = await _describe(client, run_id, types)
    if description is None:
        raise RunNotFound(f"no run with id {run_id!r}", details={"run_id": run_id})
    if description.status != WorkflowExecutionStatus.RUNNING:
        status = description.status.name.lower() if description.status else "unknown"
        raise RunNotRunning(
            f"run {run_id!r} is not running (status: {status}){closed}",
            details={"run_id": run_id, "status": status},
        )
    return description


def approval_view(run_id: str, chain: str | None, approval: ApprovalState) -> ApprovalView:
    return ApprovalView(run_id=run_id, chain=chain, **approval.model_dump(exclude={"decisions"}))


async def read_run(session: Session, client: Client, run_id: str) -> RunDetail:
    """A run as Temporal knows it (live state, or the closed run's result),
    completed from the run index; the index alone once Temporal forgot it."""
    record = await in_thread(get_run, session, run_id=run_id)
    description = await _describe(client, run_id)
    if description is None:
        if record is None:
            raise RunNotFound(f"no run with id {run_id!r}", details={"run_id": run_id})
        return _from_index(record)

    detail = RunDetail(
        run_id=run_id,
        temporal_run_id=description.run_id,
        chain=record.chain if record else description.typed_search_attributes.get(CHAIN_KEY),
        version=record.version if record else None,
        status="running",
        source="workflow",
        started_at=description.start_time,
        finished_at=description.close_time,
        created_by=record.created_by if record else None,
        cost_usd=record.cost_usd if record else 0.0,
    )
    handle = client.get_workflow_handle(run_id, run_id=description.run_id)
    status = description.status
    if status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
        await _fill_live(detail, handle, description)
    elif status == WorkflowExecutionStatus.COMPLETED:
        result = await _closed_result(handle, run_id)
        _fill_result(detail, result)
    elif status == WorkflowExecutionStatus.FAILED:
        await _fill_failure(detail, handle, run_id)
    else:
        detail.status = _CLOSED_STATUS.get(status, "failed")  # type: ignore[arg-type]
        detail.source = "result"
        detail.error = RunError(type=detail.status, message=f"the run was {detail.status}")
    return detail


async def _fill_live(
    detail: RunDetail, handle: WorkflowHandle[Any, Any], description: WorkflowExecutionDescription
) -> None:
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
    detail.pending_approvals = [approval_view(detail.run_id, detail.chain, a) for a in pending]
    if state.error:
        detail.error = RunError(message=state.error)


async def _closed_result(handle: WorkflowHandle[Any, Any], run_id: str) -> ChainResult:
    try:
        result = await handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        raise temporal_problem(exc, f"reading the result of run {run_id!r}") from exc
    return result if isinstance(result, ChainResult) else ChainResult.model_validate(result)


def _fill_result(detail: RunDetail, result: ChainResult) -> None:
    detail.source = "result"
    detail.status = result.status
    detail.chain = detail.chain or result.chain
    detail.version = detail.version or result.version
    detail.steps = result.steps
    detail.usage = result.usage
    detail.cost_usd = result.usage.cost_usd
    detail.output = result.output
    if result.error:
        detail.error = RunError(type=result.error_type, message=result.error)


async def _fill_failure(detail: RunDetail, handle: WorkflowHandle[Any, Any], run_id: str) -> None:
    detail.status = "failed"
    detail.source = "result"
    try:
        await handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
    except WorkflowFailureError as failure:
        cause = failure.cause
        if isinstance(cause, ApplicationError):
            detail.error = RunError(type=cause.type, message=cause.message)
            if cause.details:
                try:
                    partial = ChainResult.model_validate(cause.details[0])
                except ValueError:
                    partial = None
                if partial is not None:
                    _fill_result(detail, partial)
                    detail.status = "failed"
                    detail.error = RunError(type=cause.type, message=cause.message)
        else:
            detail.error = RunError(type=type(cause).__name__, message=str(cause or failure))
    except RPCError as exc:
        raise temporal_problem(exc, f"reading the failure of run {run_id!r}") from exc


def _from_index(record: RunRecord) -> RunDetail:
    return RunDetail(
        run_id=record.run_id,
        temporal_run_id=record.temporal_run_id,
        chain=record.chain,
        version=record.version,
        status=record.status,  # type: ignore[arg-type]
        source="index",
        current_steps=[record.current_step] if record.current_step else [],
        cost_usd=record.cost_usd,
        error=RunError(message=record.error) if record.error else None,
        started_at=record.started_at,
        finished_at=record.finished_at,
        created_by=record.created_by,
    )


# -- list ------------------------------------------------------------------------------


def list_run_summaries(
    session: Session, *, chain: str | None, status: str | None, limit: int, offset: int
) -> list[RunSummary]:
    records = list_runs(session, chain=chain, status=status, limit=limit, offset=offset)
    return [RunSummary.model_validate(record, from_attributes=True) for record in records]


# -- cancel ----------------------------------------------------------------------------


async def cancel_run(client: Client, run_id: str) -> None:
    """Ask Temporal to cancel a running run; 409 when it has already closed."""
    description = await describe_running(client, run_id, closed="; nothing to cancel")
    try:
        await client.get_workflow_handle(run_id, run_id=description.run_id).cancel(
            rpc_timeout=RPC_TIMEOUT
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RunNotRunning(
                f"run {run_id!r} closed before it could be cancelled",
                details={"run_id": run_id},
            ) from exc
        raise temporal_problem(exc, f"cancelling run {run_id!r}") from exc

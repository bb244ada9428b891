"""Runs: start one (idempotently), read one, list them, cancel one.

Starting is ordered so that a rejected request starts nothing and a crash
loses nothing: resolve the chain version and validate the input first, then
write the run's stub row (status `starting`, with the input's hash), commit,
and only then start the workflow. A client `run_id` makes the request
idempotent: the same id with the same chain and input answers with the
existing run (and finishes a start a crash interrupted); with anything else
it is a conflict. The workflow carries the input hash in its memo, so a run
started by a concurrent retry is recognised as the same request.

Each database call is a short session of its own on a thread (`Database.read`
and `Database.write`): no connection is held while a request waits for
Temporal, and on SQLite the stub writes of concurrent starts take turns
instead of meeting "database is locked".
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete, update
from sqlmodel import Session, col

from api import ownership
from api.deps import Principal
from api.schemas import RunAccepted, RunCreate, RunSummary
from api.state import Database
from core.problems import ChainNotFound, RunConflict
from runs.agents import agent_run_id
from runs.client import RunClient, input_hash_of
from runs.results import index_error
from runs.views import RunDetail
from store import (
    ChainVersion,
    RunExistsError,
    RunRecord,
    create_run_stub,
    get_chain_version,
    get_run,
    list_runs,
)

# -- start -----------------------------------------------------------------------------


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


def _create_stub(
    session: Session, *, run_id: str, chain: ChainVersion, input_hash: str, author: str
) -> tuple[RunRecord, bool]:
    """The run's stub row and True, or the row already there and False."""
    try:
        stub = create_run_stub(
            session,
            run_id=run_id,
            chain=chain.name,
            version=chain.version,
            input_hash=input_hash,
            created_by=author,
        )
    except RunExistsError as exc:
        return exc.existing, False
    return stub, True


class RunStarter:
    """Starts a run for one POST /v1/runs request: the stub row and its
    idempotency are the API's; checking and starting are the run client's."""

    def __init__(self, db: Database, runs: RunClient, principal: Principal) -> None:
        self.db = db
        self.runs = runs
        self.principal = principal

    async def start(self, body: RunCreate) -> RunAccepted:
        run_id = body.run_id or str(uuid.uuid4())
        input_hash = input_hash_of(body.input, body.max_cost_usd)
        if body.run_id is not None:
            existing = await self.db.read(get_run, run_id=run_id)
            if existing is not None:
                return await self._repeat(existing, body, input_hash)

        chain = await self.db.read(_resolve_chain, body.chain, body.version)
        spec = chain.to_spec()
        self.runs.check(spec, body.input)

        # Durable before the workflow starts: a crash in between leaves a
        # `starting` row that a retry with the same run_id completes.
        stub, created = await self.db.write(
            _create_stub,
            run_id=run_id,
            chain=chain,
            input_hash=input_hash,
            author=self.principal.name,
        )
        if not created:
            return await self._repeat(stub, body, input_hash)
        try:
            temporal_run_id = await self._start_run(run_id, chain, body, input_hash)
        except BaseException:
            await self.db.write(_drop_stub, run_id, input_hash, self.principal.name)
            raise
        await self.db.write(_mark_started, run_id, temporal_run_id)
        return RunAccepted(
            run_id=run_id,
            chain=stub.chain,
            version=stub.version,
            status="running",
            created=True,
        )

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
            chain = await self.db.read(_resolve_chain, existing.chain, existing.version)
            temporal_run_id = await self._start_run(existing.run_id, chain, body, input_hash)
            await self.db.write(_mark_started, existing.run_id, temporal_run_id)
            status = "running"
        return RunAccepted(
            run_id=existing.run_id,
            chain=existing.chain,
            version=existing.version,
            status=status,  # type: ignore[arg-type]
            created=False,
        )

    async def _start_run(
        self, run_id: str, chain: ChainVersion, body: RunCreate, input_hash: str
    ) -> str | None:
        """Start the run (checked above); a workflow already started with this
        id by the same request counts as started, any other is a conflict."""
        spec = chain.to_spec()
        started = await self.runs.start(
            spec,
            body.input,
            run_id=run_id,
            max_cost_usd=body.max_cost_usd,
            input_hash=input_hash,
            summary=f"chain {spec.name} v{spec.version} (API, {self.principal.name})",
            checked=True,
        )
        return started.temporal_run_id


# -- read ------------------------------------------------------------------------------


async def read_run(db: Database, runs: RunClient, run_id: str, principal: Principal) -> RunDetail:
    """A run as Temporal knows it (live state, or the closed run's result),
    completed from the run index; the index alone once Temporal forgot it.
    RunNotFound for a run the caller may not see (`api.ownership`)."""
    record = await db.read(ownership.visible_record, principal=principal, run_id=run_id)
    detail = await _read(runs, run_id, record)
    if principal.run_access != "reviewed":
        return detail
    seen = ownership.reviewer_view(principal, detail)
    if not seen.pending_approvals and not await db.read(
        _reviewed_run_or_agents, reviewer=principal.name, detail=detail
    ):
        raise ownership.run_not_found(run_id)
    return seen


def _reviewed_run_or_agents(session: Session, *, reviewer: str, detail: RunDetail) -> bool:
    """Whether `reviewer` decided one of the run's approvals, or one of its
    agents' tool approvals (audited under the agent's child run id): the
    parent's pending approvals list both, so both open the run to it after."""
    agents = [name for name, step in detail.steps.items() if step.kind == "agent"]
    return any(
        ownership.has_reviewed(session, reviewer=reviewer, run_id=run_id)
        for run_id in [detail.run_id, *(agent_run_id(detail.run_id, a) for a in agents)]
    )


async def _read(runs: RunClient, run_id: str, record: RunRecord | None) -> RunDetail:
    if record is None:
        detail = await runs.read(run_id)
    else:
        detail = await runs.read(
            run_id,
            chain=record.chain,
            version=record.version,
            created_by=record.created_by,
            cost_usd=record.cost_usd,
        )
    if detail is not None:
        return detail
    if record is None:
        raise ownership.run_not_found(run_id)
    return _from_index(record)


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
        error=index_error(record.status, record.error, record.error_type),
        started_at=record.started_at,
        finished_at=record.finished_at,
        created_by=record.created_by,
    )


# -- list ------------------------------------------------------------------------------


def list_run_summaries(
    session: Session,
    *,
    principal: Principal,
    chain: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> list[RunSummary]:
    """The runs the caller sees (`api.ownership`), newest first."""
    records = list_runs(
        session,
        chain=chain,
        status=status,
        limit=limit,
        offset=offset,
        **ownership.runs_filter(principal),
    )
    return [RunSummary.model_validate(record, from_attributes=True) for record in records]


# -- cancel ----------------------------------------------------------------------------


async def cancel_run(db: Database, runs: RunClient, run_id: str, principal: Principal) -> None:
    """Ask a run to cancel; RunNotFound for a run the caller may not see."""
    if principal.run_access != "all":
        await db.read(ownership.visible_record, principal=principal, run_id=run_id)
    await runs.cancel(run_id)

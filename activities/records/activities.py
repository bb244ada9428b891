"""The record activities: the workflow's writes to the run index and the
approval audit log. A decision's audit row and the index row it changes go
together (`record_approval` with a `DecisionRecordInput`): one local
activity and one transaction.

Both are idempotent (an activity runs at least once): a run write is an upsert
ordered by revision, an audit write is keyed by (run, approval, sequence). A
database error that may pass (connection lost, database locked, a table not
there yet) propagates and Temporal retries the activity, a bounded number of
times (`workflows.activity_options`), which is safe for the same reason. A
row the database refuses as such (a data or integrity error: a value too long
for its column, say) would be refused on every attempt, so it fails the
activity at once as a non-retryable `RecordRefused`. Text is made storable on
every backend first (`store.text`: a NUL no longer fails a write on
PostgreSQL). The database driver blocks, so each write runs in a thread: the
worker's event loop keeps serving workflow tasks meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import metrics
from core.names import RECORD_APPROVAL, RECORD_RUN
from core.records import ApprovalAuditInput, DecisionRecordInput, RunRecordInput
from store.crud import write_approval_audit, write_run_record
from store.engine import session_scope

LOGGER_NAME = "chorus.records"

RECORD_REFUSED = "RecordRefused"
"""`ApplicationError.type` of a write the database refuses on every attempt."""


class RecordActivities:
    """Writes of the run index and audit log, on one engine per worker process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def activities(self) -> Sequence[Callable[..., Any]]:
        """The bound activity methods to register on a worker."""
        return [self.record_run, self.record_approval]

    @activity.defn(name=RECORD_RUN)
    async def record_run(self, req: RunRecordInput) -> None:
        """Upsert the run's index row; an older revision leaves it unchanged."""
        try:
            await asyncio.to_thread(self._record_run, req)
        except Exception as exc:
            refusal = _refusal(exc, f"run index row of {req.run_id!r}")
            if refusal is None:
                raise
            raise refusal from None
        metrics.run_recorded(req.chain, req.status)

    @activity.defn(name=RECORD_APPROVAL)
    async def record_approval(self, req: DecisionRecordInput | ApprovalAuditInput) -> None:
        """Append a decision to the audit log, once however often it is
        retried, and upsert the run's index row with it when one comes along.

        The two share a transaction. An index row the database refuses never
        costs the audit row: the audit row is then written alone (the index
        is a convenience copy, and the run's next index write carries the
        full state again); an audit row it refuses fails the activity as
        `RecordRefused` after the index row, if any, is written alone."""
        try:
            indexed = await asyncio.to_thread(self._record_decision, req)
        except Exception as exc:
            what = f"audit row {req.approval_id!r}/{req.sequence} of {req.run_id!r}"
            refusal = _refusal(exc, what)
            if refusal is None:
                raise
            raise refusal from None
        metrics.APPROVAL_DECISIONS.labels(req.decision).inc()
        if indexed and isinstance(req, DecisionRecordInput) and req.run_record is not None:
            metrics.run_recorded(req.run_record.chain, req.run_record.status)

    def _record_run(self, req: RunRecordInput) -> None:
        with session_scope(self.engine) as session:
            applied = write_run_record(session, record=req)
        # A fresh logger per call: a module-level proxy would be frozen by
        # structlog's cache_logger_on_first_use to whatever config came first.
        structlog.get_logger(LOGGER_NAME).debug(
            "run recorded",
            run_id=req.run_id,
            status=req.status,
            revision=req.revision,
            applied=applied,
        )

    def _record_decision(self, req: DecisionRecordInput | ApprovalAuditInput) -> bool:
        """Write the audit row and the index row (if any) in one
        transaction; returns whether the index row was written."""
        if not isinstance(req, DecisionRecordInput):  # an audit row alone
            self._record_approval(req)
            return False
        audit, record = req.audit(), req.run_record
        if record is None:
            self._record_approval(audit)
            return False
        try:
            with session_scope(self.engine) as session:
                write_approval_audit(session, entry=audit)
                write_run_record(session, record=record)
        except Exception as exc:
            if not _refused(exc):
                raise  # retried, both rows again (both writes are idempotent)
            # One of the two rows is refused for good: find out which.
            try:
                self._record_approval(audit)
            except Exception as audit_exc:
                if _refused(audit_exc):
                    self._record_run_alone(record)
                raise
            self._record_run_alone(record)
            return False
        structlog.get_logger(LOGGER_NAME).debug(
            "approval recorded with the run index",
            run_id=req.run_id,
            approval_id=req.approval_id,
            sequence=req.sequence,
            decision=req.decision,
            status=record.status,
            revision=record.revision,
        )
        return True

    def _record_run_alone(self, record: RunRecordInput) -> None:
        """Best effort: the index row of a decision whose other row was refused."""
        try:
            self._record_run(record)
        except Exception as exc:
            _refusal(exc, f"run index row of {record.run_id!r}")  # logs a refusal
            structlog.get_logger(LOGGER_NAME).warning(
                "run index not updated with the decision",
                run_id=record.run_id,
                error_type=type(exc).__name__,
            )

    def _record_approval(self, req: ApprovalAuditInput) -> None:
        with session_scope(self.engine) as session:
            write_approval_audit(session, entry=req)
        structlog.get_logger(LOGGER_NAME).debug(
            "approval recorded",
            run_id=req.run_id,
            approval_id=req.approval_id,
            sequence=req.sequence,
            decision=req.decision,
        )


def _refusal(exc: Exception, what: str) -> ApplicationError | None:
    """A non-retryable `RecordRefused` when the database (or the driver,
    before sending) refused the row itself; None when a retry may succeed."""
    if not _refused(exc):
        return None
    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    # The driver's message names the problem; the statement and its
    # parameters (the row's texts) stay out of the error and the history
    # (hence no chained cause), and out of the log.
    reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
    structlog.get_logger(LOGGER_NAME).warning(
        "record refused", what=what, error_type=type(cause).__name__, reason=reason
    )
    return ApplicationError(
        f"the database refused the {what}: {type(cause).__name__}: {reason}",
        type=RECORD_REFUSED,
        non_retryable=True,
    )


def _refused(exc: Exception) -> bool:
    if isinstance(exc, DataError | IntegrityError):
        return True
    if isinstance(exc, DBAPIError):  # operational, programming (no table yet), ...
        return False
    if isinstance(exc, StatementError):  # raised before the driver sent anything
        return isinstance(exc.orig, ValueError | TypeError)
    return isinstance(exc, ValueError | TypeError)

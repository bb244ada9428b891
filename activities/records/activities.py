"""The record activities: the workflow's writes to the run index and the
approval audit log.

Both are idempotent (an activity runs at least once): a run write is an upsert
ordered by revision, an audit write is keyed by (run, approval, sequence). A
database error propagates and Temporal retries the activity, which is safe
for the same reason. The database driver blocks, so each write runs in a
thread: the worker's event loop keeps serving workflow tasks meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy import Engine
from temporalio import activity

from core.names import RECORD_APPROVAL, RECORD_RUN
from core.records import ApprovalAuditInput, RunRecordInput
from store.crud import insert_approval_audit, upsert_run_record
from store.engine import session_scope

LOGGER_NAME = "chorus.records"


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
        await asyncio.to_thread(self._record_run, req)

    @activity.defn(name=RECORD_APPROVAL)
    async def record_approval(self, req: ApprovalAuditInput) -> None:
        """Append a decision to the audit log, once however often it is retried."""
        await asyncio.to_thread(self._record_approval, req)

    def _record_run(self, req: RunRecordInput) -> None:
        with session_scope(self.engine) as session:
            stored = upsert_run_record(session, record=req)
        # A fresh logger per call: a module-level proxy would be frozen by
        # structlog's cache_logger_on_first_use to whatever config came first.
        structlog.get_logger(LOGGER_NAME).debug(
            "run recorded",
            run_id=req.run_id,
            status=req.status,
            revision=req.revision,
            applied=stored.revision == req.revision,
        )

    def _record_approval(self, req: ApprovalAuditInput) -> None:
        with session_scope(self.engine) as session:
            insert_approval_audit(session, entry=req)
        structlog.get_logger(LOGGER_NAME).debug(
            "approval recorded",
            run_id=req.run_id,
            approval_id=req.approval_id,
            sequence=req.sequence,
            decision=req.decision,
        )

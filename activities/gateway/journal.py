"""The gateway's side of the reply journal (store/reply_journal.py): async,
off the event loop, and never the reason a model call fails."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from activities.gateway.types import ModelCallResult
from activities.logging import activity_logger
from store.engine import session_scope
from store.reply_journal import get_reply, record_reply


class ReplyJournal:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def get(self, request_id: str) -> ModelCallResult | None:
        """The reply already paid for under this request id, if any. A
        database error here only costs a possible second call: it is logged
        and the call goes ahead."""
        try:
            stored = await asyncio.to_thread(self._get, request_id)
            return None if stored is None else ModelCallResult.model_validate(stored)
        except (SQLAlchemyError, ValueError) as exc:  # ValueError: pydantic's, a row it cannot read
            activity_logger("chorus.gateway").warning(
                "reply_journal.unreadable", error=_first_line(exc)
            )
            return None

    async def put(self, request_id: str, result: ModelCallResult) -> None:
        """Journal a reply. A failed write (the database down, or refusing the
        row) is logged and the call's result returned all the same: it costs
        at most a second call on a retry, never a retried call that can
        never succeed."""
        try:
            await asyncio.to_thread(self._put, request_id, result)
        except (SQLAlchemyError, ValueError, TypeError) as exc:
            activity_logger("chorus.gateway").warning(
                "reply_journal.unwritable", error=_first_line(exc)
            )

    def _get(self, request_id: str) -> dict[str, object] | None:
        with session_scope(self.engine) as session:
            return get_reply(session, request_id=request_id)

    def _put(self, request_id: str, result: ModelCallResult) -> None:
        with session_scope(self.engine) as session:
            record_reply(session, request_id=request_id, reply=result.model_dump(mode="json"))


def _first_line(exc: Exception) -> str:
    # Not the statement and its parameters (the reply's text).
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]

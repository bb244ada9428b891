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
        except SQLAlchemyError as exc:
            activity_logger("chorus.gateway").warning("reply_journal.unreadable", error=str(exc))
            return None
        return None if stored is None else ModelCallResult.model_validate(stored)

    async def put(self, request_id: str, result: ModelCallResult) -> None:
        try:
            await asyncio.to_thread(self._put, request_id, result)
        except SQLAlchemyError as exc:
            activity_logger("chorus.gateway").warning("reply_journal.unwritable", error=str(exc))

    def _get(self, request_id: str) -> dict[str, object] | None:
        with session_scope(self.engine) as session:
            return get_reply(session, request_id=request_id)

    def _put(self, request_id: str, result: ModelCallResult) -> None:
        with session_scope(self.engine) as session:
            record_reply(session, request_id=request_id, reply=result.model_dump(mode="json"))

"""The gateway's side of the reply journal (store/reply_journal.py): async,
off the event loop, and never the reason a model call fails.

Each attempt of `call_model` opens a `CallLedger`: it reads what earlier
attempts of the same call left (a raw reply to reuse instead of paying
again; attempts that may have been billed with no reply seen), records the
attempt as in flight before the request leaves, stores the raw reply the
moment it arrives, and marks an attempt the provider refused as failed.
What may have been billed unseen is counted as *unconfirmed*: at the
attempt's worst case, in the result or the error the workflow gets, so a
run's cost and budget never miss a call the provider may charge for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.gateway.types import ProviderErrorType
from activities.logging import activity_logger
from store.engine import session_scope
from store.reply_journal import (
    EarlierAttempt,
    earlier_attempts,
    record_attempt,
    record_attempt_failed,
    record_raw_reply,
)

T = TypeVar("T")

UNCONFIRMED_USD = "unconfirmed_usd"
UNCONFIRMED_ATTEMPTS = "unconfirmed_attempts"
"""Keys of the error details (and heartbeat details) that carry what may have
been billed unseen; workflows/failures.py reads them."""

_UNKNOWN_OUTCOME = frozenset(
    {ProviderErrorType.TIMEOUT, ProviderErrorType.CONNECTION, ProviderErrorType.MALFORMED}
)
"""Errors after which the request may have reached the provider and been
answered (and billed) without the reply being seen. Every other error is an
HTTP error status (the provider answered: nothing billed) or a refusal to send."""
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport failures before a byte of the request left this process."""


def call_key(info: activity.Info) -> str:
    """One model call's key, stable across its attempts and unique to its run:
    activity ids restart when a workflow continues as new or a closed run's
    workflow id is reused, so the run id is part of it. Also sent to the
    provider as `X-Chorus-Request-Id`."""
    return f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"


class ReplyJournal:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def open(self, info: activity.Info, alias: str, worst_case_usd: float) -> CallLedger:
        """This attempt's ledger, with what earlier attempts left. A database
        error here only costs a possible second call: it is logged and the
        call goes ahead."""
        ledger = CallLedger(self, info, alias, worst_case_usd)
        if info.attempt > 1:
            earlier = await self._run(
                "reply_journal.unreadable",
                earlier_attempts,
                request_id=ledger.request_id,
                before=info.attempt,
            )
            ledger.take_earlier(earlier or [])
        return ledger

    async def _run(self, failure_event: str, fn: Callable[..., T], **kwargs: Any) -> T | None:
        """`fn(session, **kwargs)` on a thread, in one transaction. A failed
        read or write (the database down, or refusing the row) is logged and
        None returned: the journal never fails a call."""

        def work() -> T:
            with session_scope(self.engine) as session:
                return fn(session, **kwargs)

        try:
            return await asyncio.to_thread(work)
        except (SQLAlchemyError, ValueError, TypeError) as exc:
            activity_logger("chorus.gateway").warning(failure_event, error=_first_line(exc))
            return None


@dataclass
class CallLedger:
    """One attempt of one model call, as the journal sees it."""

    journal: ReplyJournal
    info: activity.Info
    alias: str
    worst_case_usd: float
    reusable: list[EarlierAttempt] = field(default_factory=list)
    """Earlier attempts whose raw reply arrived: parse one instead of calling."""
    unconfirmed: list[EarlierAttempt] = field(default_factory=list)
    """Earlier attempts that may have been billed with no reply seen."""
    replied: bool = False
    """This attempt's raw reply arrived (and was offered to the journal)."""

    @property
    def request_id(self) -> str:
        return call_key(self.info)

    @property
    def unconfirmed_usd(self) -> float:
        return sum(a.worst_case_usd for a in self.unconfirmed)

    @property
    def unconfirmed_attempts(self) -> int:
        return len(self.unconfirmed)

    def take_earlier(self, earlier: list[EarlierAttempt]) -> None:
        for attempt in earlier:
            if attempt.state == "replied" and attempt.raw_reply is not None:
                self.reusable.append(attempt)
            elif attempt.state == "in_flight":
                self.unconfirmed.append(attempt)

    def unusable(self, attempt: EarlierAttempt) -> None:
        """A journaled reply that does not parse: it was a 2xx, so it may well
        have been billed, at a cost nobody can read from it."""
        self.reusable.remove(attempt)
        self.unconfirmed.append(attempt)

    def heartbeat_details(self) -> dict[str, float | int] | None:
        """What this attempt's heartbeats carry, so a workflow whose last
        attempt died still counts the attempts before it."""
        if not self.unconfirmed:
            return None
        return {
            UNCONFIRMED_USD: self.unconfirmed_usd,
            UNCONFIRMED_ATTEMPTS: self.unconfirmed_attempts,
        }

    async def sending(self) -> None:
        """Record this attempt as in flight: called just before the request leaves."""
        info = self.info
        await self.journal._run(
            "reply_journal.unwritable",
            record_attempt,
            request_id=self.request_id,
            attempt=info.attempt,
            workflow_id=info.workflow_id,
            run_id=info.workflow_run_id,
            activity_id=info.activity_id,
            alias=self.alias,
            worst_case_usd=self.worst_case_usd,
        )

    async def received(self, raw: dict[str, Any], latency_ms: float) -> None:
        """Store the provider's raw reply, before anything parses it."""
        self.replied = True
        await self.journal._run(
            "reply_journal.unwritable",
            record_raw_reply,
            request_id=self.request_id,
            attempt=self.info.attempt,
            reply=raw,
            latency_ms=latency_ms,
        )

    async def failed(self, exc: ApplicationError) -> ApplicationError:
        """Settle this attempt after `exc` and return the error to raise:
        `exc` itself, or a copy whose details say what may have been billed
        unseen (earlier attempts, and this one when its outcome is unknown)."""
        mine = self._may_have_been_billed(exc)
        if not mine and not self.replied:
            await self.journal._run(
                "reply_journal.unwritable",
                record_attempt_failed,
                request_id=self.request_id,
                attempt=self.info.attempt,
            )
        usd = self.unconfirmed_usd + (self.worst_case_usd if mine else 0.0)
        attempts = self.unconfirmed_attempts + (1 if mine else 0)
        return exc if not attempts else with_unconfirmed(exc, usd, attempts)

    def _may_have_been_billed(self, exc: ApplicationError) -> bool:
        if exc.type == ProviderErrorType.REFUSED:
            return False  # billed, and its cost travels in the error's details
        if self.replied:
            return True  # a 2xx that did not parse: billed at a cost nobody can read
        if exc.type not in _UNKNOWN_OUTCOME:
            return False
        return not isinstance(_transport_cause(exc), _NEVER_SENT)


def with_unconfirmed(exc: ApplicationError, usd: float, attempts: int) -> ApplicationError:
    """`exc` with `unconfirmed_usd` and `unconfirmed_attempts` in its details
    (added to the first, when it is a dict), everything else as it was."""
    details = list(exc.details)
    first = details[0] if details and isinstance(details[0], dict) else None
    counted = {**(first or {}), UNCONFIRMED_USD: usd, UNCONFIRMED_ATTEMPTS: attempts}
    details = [counted, *details[1:]] if first is not None else [counted, *details]
    return ApplicationError(
        exc.message,
        *details,
        type=exc.type,
        non_retryable=exc.non_retryable,
        next_retry_delay=exc.next_retry_delay,
        category=exc.category,
    )


def _transport_cause(exc: BaseException) -> BaseException | None:
    """The httpx exception behind a translated error (raised `from None`, so
    it is the context, not the cause)."""
    seen: BaseException | None = exc.__cause__ or exc.__context__
    while seen is not None and not isinstance(seen, httpx.HTTPError):
        seen = seen.__cause__ or seen.__context__
    return seen


def _first_line(exc: Exception) -> str:
    # Not the statement and its parameters (the reply's text).
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]

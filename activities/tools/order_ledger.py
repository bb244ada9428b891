"""The sample order desk's ledger: the refunds and tickets its tools record,
in SQLite (in memory by default, or a file when refunds must be deduplicated
across worker restarts too).

Each change is one transaction that also records the call's idempotency key,
so a retried `issue_refund` finds the first refund instead of paying twice.
What the tools check before writing (the order exists, is not cancelled) is
in `activities.tools.builtin`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from activities.tools.errors import ToolError

CURRENCY = "USD"
TICKET_NUMBER_BASE = 5000

Priority = Literal["low", "normal", "high", "urgent"]


class Refund(BaseModel):
    refund_id: str
    order_id: str
    amount: float
    currency: str = CURRENCY
    reason: str
    status: Literal["issued"] = "issued"
    duplicate: bool = False
    """True when this call repeated an earlier one (same idempotency key)
    and returned its refund instead of issuing another."""


class Ticket(BaseModel):
    ticket_id: str
    subject: str
    body: str
    priority: Priority
    customer_email: str | None = None
    order_id: str | None = None
    status: Literal["open"] = "open"
    duplicate: bool = False


def cents(amount: float) -> int:
    return round(amount * 100)


def dollars(amount_cents: int) -> float:
    return round(amount_cents / 100, 2)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS refunds (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    reason TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS tickets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    priority TEXT NOT NULL,
    customer_email TEXT,
    order_id TEXT,
    idempotency_key TEXT UNIQUE
);
"""


class OrderLedger:
    """Refunds and tickets. Safe to share between the worker threads that run
    sync tools: every change is one transaction under a lock."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- reading ----------------------------------------------------------------

    @property
    def refunds(self) -> list[Refund]:
        """Every refund issued, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, order_id, amount_cents, reason FROM refunds ORDER BY seq"
            ).fetchall()
        return [self._refund(*row) for row in rows]

    @property
    def tickets(self) -> list[Ticket]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, subject, body, priority, customer_email, order_id "
                "FROM tickets ORDER BY seq"
            ).fetchall()
        return [self._ticket(*row) for row in rows]

    def refunded_cents(self, order_id: str) -> int:
        with self._lock:
            return self._refunded_cents(order_id)

    # -- recording --------------------------------------------------------------

    def record_refund(
        self,
        *,
        order_id: str,
        amount_cents: int,
        reason: str,
        idempotency_key: str,
        total_cents: int,
    ) -> Refund:
        """Issue a refund unless one was issued under `idempotency_key` (then
        that one, marked duplicate). ToolError when the key was used for a
        different refund or the order's refunds would pass `total_cents`."""
        with self._transaction() as db:
            earlier = db.execute(
                "SELECT seq, order_id, amount_cents, reason FROM refunds WHERE idempotency_key = ?",
                (idempotency_key,),
            ).fetchone()
            if earlier is not None:
                if (earlier[1], earlier[2], earlier[3]) != (order_id, amount_cents, reason):
                    raise ToolError(
                        "idempotency key already used for a different refund "
                        f"({self._refund(*earlier).refund_id})",
                        non_retryable=True,
                    )
                return self._refund(*earlier).model_copy(update={"duplicate": True})
            refunded = self._refunded_cents(order_id)
            if refunded + amount_cents > total_cents:
                raise ToolError(
                    f"refund of ${dollars(amount_cents):.2f} exceeds what order {order_id} can "
                    f"still refund: total ${dollars(total_cents):.2f}, already refunded "
                    f"${dollars(refunded):.2f}",
                    non_retryable=True,
                )
            cursor = db.execute(
                "INSERT INTO refunds (order_id, amount_cents, reason, idempotency_key) "
                "VALUES (?, ?, ?, ?)",
                (order_id, amount_cents, reason, idempotency_key),
            )
            seq = cursor.lastrowid
        assert seq is not None
        return self._refund(seq, order_id, amount_cents, reason)

    def record_ticket(
        self,
        *,
        subject: str,
        body: str,
        priority: Priority,
        customer_email: str | None,
        order_id: str | None,
        idempotency_key: str | None,
    ) -> Ticket:
        """Open a ticket, or return the one opened under `idempotency_key`
        (marked duplicate)."""
        with self._transaction() as db:
            if idempotency_key:
                earlier = db.execute(
                    "SELECT seq, subject, body, priority, customer_email, order_id "
                    "FROM tickets WHERE idempotency_key = ?",
                    (idempotency_key,),
                ).fetchone()
                if earlier is not None:
                    return self._ticket(*earlier).model_copy(update={"duplicate": True})
            cursor = db.execute(
                "INSERT INTO tickets "
                "(subject, body, priority, customer_email, order_id, idempotency_key) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (subject, body, priority, customer_email, order_id, idempotency_key or None),
            )
            seq = cursor.lastrowid
        assert seq is not None
        return self._ticket(seq, subject, body, priority, customer_email, order_id)

    # -- helpers ----------------------------------------------------------------

    def _refunded_cents(self, order_id: str) -> int:
        row = self._db.execute(
            "SELECT COALESCE(SUM(amount_cents), 0) FROM refunds WHERE order_id = ?", (order_id,)
        ).fetchone()
        return int(row[0])

    @staticmethod
    def _refund(seq: int, order_id: str, amount_cents: int, reason: str) -> Refund:
        return Refund(
            refund_id=f"RF-{seq:05d}",
            order_id=order_id,
            amount=dollars(amount_cents),
            reason=reason,
        )

    @staticmethod
    def _ticket(
        seq: int,
        subject: str,
        body: str,
        priority: Priority,
        customer_email: str | None,
        order_id: str | None,
    ) -> Ticket:
        return Ticket(
            ticket_id=f"T-{TICKET_NUMBER_BASE + seq}",
            subject=subject,
            body=body,
            priority=priority,
            customer_email=customer_email,
            order_id=order_id,
        )

"""Shared rate-limit state of a deployment's model aliases: every worker asks
here before it calls a provider, so `rpm`, `tpm` and `max_concurrent` hold
across all of them.

Two tables. `rate_limit_aliases` has one row per limited alias: the lock row
that orders the workers asking about that alias, and what the provider said
(a Retry-After block, the remaining requests and tokens it reported). Each
row of `rate_limit_leases` is one call: when it may go (`granted_at`), the
tokens it counts, until when it is in flight (`active_until`, for
`max_concurrent`; a worker that died is forgotten at that time), and, while it
is a reservation not yet claimed, the caller's `ticket`.

Scheduling: a call over a limit is given the earliest time at which it fits
and that slot is reserved for it at once (a lease dated in the future), so
callers that wait are served in order, each at its own time, instead of all
waking at once and racing for one slot. The caller comes back with its
ticket and goes. A reservation never claimed (the run was cancelled, or
moved to a fallback) only leaves its slot unused.

The plan: a new lease goes at T = the time when the rpm-th latest lease
leaves the window, and the tokens of every lease dated after T - window
(future ones included) plus its own fit the tpm. Plans run late (a busy
worker, a late timer), so every grant also passes a strict check of what
really went: calls in flight count whatever their time, settled calls count
in the windows of the time their request left (`sent_at`), and a call that
does not fit waits (its slot moved) until it does. No window of real
requests ever holds more than the limits. Callers pass the window widened by
their margin for the time a request takes to reach the provider.

Time is the database's (PostgreSQL `clock_timestamp()`; SQLite, one machine:
the process clock), read after the alias row is locked.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from sqlalchemy import Index, delete, func, or_, update
from sqlmodel import Field, Session, SQLModel, select

from store.engine import backend_insert

CONCURRENCY_POLL_S = 1.0
"""How soon a call refused for `max_concurrent` asks again (a call in flight
ends at no time anyone knows)."""


class RateLimitAlias(SQLModel, table=True):
    __tablename__ = "rate_limit_aliases"

    alias: str = Field(primary_key=True, max_length=200)
    blocked_until: float = 0.0
    """Epoch seconds: the provider asked not to be called before (Retry-After)."""
    blocked_reason: str | None = Field(default=None, max_length=500)
    requests_remaining: int | None = None
    """Requests left as the provider last reported them, until `requests_reset_at`."""
    requests_reset_at: float | None = None
    tokens_remaining: int | None = None
    tokens_reset_at: float | None = None


class RateLimitLease(SQLModel, table=True):
    __tablename__ = "rate_limit_leases"
    __table_args__ = (Index("ix_rate_limit_leases_alias_granted", "alias", "granted_at"),)

    id: str = Field(primary_key=True, max_length=64)
    alias: str = Field(max_length=200)
    granted_at: float
    tokens: int = 0
    active_until: float | None = None
    ticket: str | None = Field(default=None, max_length=1000, index=True)
    sent_at: float | None = None
    """When the request really left (known once settled); a call counts in
    the windows of that time, not of the slot it was planned for."""


@dataclass(frozen=True)
class LimitSpec:
    """One alias's limits, the window already widened by the caller's margin."""

    rpm: int | None
    tpm: int | None
    max_concurrent: int | None
    window_s: float
    lease_ttl_s: float
    """How long a granted call counts as in flight if it is never settled."""
    grace_s: float
    """How long after leaving the window a call's row is kept."""


@dataclass(frozen=True)
class Admission:
    """Go (`lease_id`) or wait `wait_s` for `reason` (a code; `detail` for
    the provider's reasons), with `ticket` reserved for the return."""

    lease_id: str | None
    wait_s: float = 0.0
    reason: str = ""
    detail: str | None = None
    ticket: str | None = None

    @property
    def granted(self) -> bool:
        return self.lease_id is not None


class Reason:
    """Why a call waits (`Admission.reason`)."""

    RPM = "rpm"
    TPM = "tpm"
    CONCURRENCY = "max_concurrent"
    PROVIDER_BLOCK = "provider_retry_after"
    PROVIDER_REQUESTS = "provider_requests"
    PROVIDER_TOKENS = "provider_tokens"
    TOO_LARGE = "tpm_too_small"
    """The call alone needs more tokens than the alias's tpm: it never fits."""

    PROVIDER = frozenset({PROVIDER_BLOCK, PROVIDER_REQUESTS, PROVIDER_TOKENS})


def schedule(
    leases: list[tuple[float, int]], spec: LimitSpec, tokens: int, now: float
) -> tuple[float, str]:
    """The earliest time >= now a call of `tokens` fits among `leases`
    ((granted_at, tokens), sorted by time, the window's and later ones), and
    the limit that set it ("" when it fits now). Pure."""
    candidates = [(now, "")]
    if spec.rpm is not None and len(leases) >= spec.rpm:
        candidates.append((leases[len(leases) - spec.rpm][0] + spec.window_s, Reason.RPM))
    if spec.tpm is not None:
        if tokens > spec.tpm:
            return now, Reason.TOO_LARGE
        # Every lease dated after T - window still counts at T (future ones
        # included): T is when enough of the oldest have left for this call.
        counted = sum(t for _, t in leases)
        for granted_at, lease_tokens in leases:
            if counted + tokens <= spec.tpm:
                break
            counted -= lease_tokens
            candidates.append((granted_at + spec.window_s, Reason.TPM))
    at, why = max(candidates, key=lambda c: c[0])
    return (now, "") if at <= now else (at, why)


STRICT_POLL_S = 0.25
"""How soon a call held back only by calls still in flight asks again."""


def strict_wait(
    sent: list[tuple[float, int]], in_flight: list[int], spec: LimitSpec, tokens: int, now: float
) -> float:
    """Seconds until a call of `tokens` may go, counting only calls that went:
    those in flight (counted whatever their time) and those settled, at the
    time they really left (`sent`: (sent_at, tokens) within the window). A
    plan can be late (a slow worker, a late timer); this check is what keeps
    every window of real requests within the limits. Pure."""
    sent = sorted(sent)
    waits = [0.0]
    if spec.rpm is not None and len(sent) + len(in_flight) + 1 > spec.rpm:
        leave = len(sent) + len(in_flight) + 1 - spec.rpm
        waits.append(
            sent[leave - 1][0] + spec.window_s - now if leave <= len(sent) else STRICT_POLL_S
        )
    if spec.tpm is not None:
        used = sum(t for _, t in sent) + sum(in_flight)
        if used + tokens > spec.tpm:
            wait = STRICT_POLL_S
            for sent_at, counted in sent:
                used -= counted
                if used + tokens <= spec.tpm:
                    wait = sent_at + spec.window_s - now
                    break
            waits.append(wait)
    return max(max(waits), 0.0)


def database_now(session: Session) -> float:
    """Epoch seconds by the database's clock (SQLite: this machine's)."""
    if session.get_bind().dialect.name == "postgresql":
        return float(session.exec(select(func.extract("epoch", func.clock_timestamp()))).one())
    return time.time()


def _lock_alias(session: Session, alias: str) -> RateLimitAlias:
    """The alias's row, created if missing, locked for this transaction
    (PostgreSQL: FOR UPDATE; SQLite: the caller's BEGIN IMMEDIATE)."""
    insert = backend_insert(session, RateLimitAlias).values(alias=alias, blocked_until=0.0)
    session.exec(insert.on_conflict_do_nothing(index_elements=["alias"]))  # type: ignore[call-overload]
    statement = select(RateLimitAlias).where(RateLimitAlias.alias == alias)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return session.exec(statement).one()


def _provider_wait(row: RateLimitAlias, tokens: int, now: float) -> tuple[float, str, str | None]:
    """(seconds, reason, detail) the provider's last word imposes; 0 when none."""
    waits: list[tuple[float, str, str | None]] = [(0.0, "", None)]
    if row.blocked_until > now:
        waits.append((row.blocked_until - now, Reason.PROVIDER_BLOCK, row.blocked_reason))
    if (
        row.requests_remaining is not None
        and row.requests_reset_at is not None
        and row.requests_reset_at > now
        and row.requests_remaining <= 0
    ):
        waits.append((row.requests_reset_at - now, Reason.PROVIDER_REQUESTS, None))
    if (
        row.tokens_remaining is not None
        and row.tokens_reset_at is not None
        and row.tokens_reset_at > now
        and row.tokens_remaining < tokens
    ):
        waits.append((row.tokens_reset_at - now, Reason.PROVIDER_TOKENS, None))
    return max(waits, key=lambda w: w[0])


def admit(session: Session, *, alias: str, spec: LimitSpec, tokens: int, ticket: str) -> Admission:
    """Grant a call of `tokens` now, or reserve its slot and say how long to
    wait. `ticket` names the caller: coming back with it claims the slot
    reserved for it. Run inside `store.engine.write_scope`."""
    row = _lock_alias(session, alias)
    now = database_now(session)
    reserved = session.exec(
        select(RateLimitLease).where(RateLimitLease.alias == alias, RateLimitLease.ticket == ticket)
    ).first()
    if reserved is not None and reserved.granted_at > now:
        return Admission(None, reserved.granted_at - now, "reserved", ticket=ticket)

    provider_wait, provider_reason, provider_detail = _provider_wait(row, tokens, now)
    if provider_wait > 0:
        # The provider's word outranks any reservation: it counts, we guess.
        return Admission(None, provider_wait, provider_reason, provider_detail, ticket=ticket)

    active_count = session.exec(
        select(func.count())
        .select_from(RateLimitLease)
        .where(RateLimitLease.alias == alias, RateLimitLease.active_until > now)  # type: ignore[operator]
    ).one()
    if spec.max_concurrent is not None and active_count >= spec.max_concurrent:
        return Admission(None, CONCURRENCY_POLL_S, Reason.CONCURRENCY, ticket=ticket)

    went = session.exec(
        select(RateLimitLease).where(
            RateLimitLease.alias == alias,
            RateLimitLease.ticket.is_(None),  # type: ignore[union-attr]
            or_(
                RateLimitLease.active_until > now,  # type: ignore[operator]
                func.coalesce(RateLimitLease.sent_at, RateLimitLease.granted_at)
                > now - spec.window_s,
            ),
        )
    ).all()
    in_flight = [lease.tokens for lease in went if (lease.active_until or 0) > now]
    sent = [
        (lease.sent_at if lease.sent_at is not None else lease.granted_at, lease.tokens)
        for lease in went
        if (lease.active_until or 0) <= now
    ]
    strict = strict_wait(sent, in_flight, spec, tokens, now)

    if reserved is not None:
        if strict > 0:
            # Its turn came, but calls that went late still fill the window:
            # the slot moves to when they have left.
            reserved.granted_at = now + strict
            session.add(reserved)
            return Admission(None, strict, "reserved", ticket=ticket)
        reserved.ticket = None
        reserved.active_until = now + spec.lease_ttl_s
        session.add(reserved)
        _take_from_provider_counts(row, tokens, now)
        session.add(row)
        return Admission(reserved.id)

    rows = session.exec(
        select(RateLimitLease.granted_at, RateLimitLease.tokens)
        .where(RateLimitLease.alias == alias, RateLimitLease.granted_at > now - spec.window_s)
        .order_by(RateLimitLease.granted_at)  # type: ignore[arg-type]
    ).all()
    leases = [(float(at), int(counted)) for at, counted in rows]
    at, why = schedule(leases, spec, tokens, now)
    if why == Reason.TOO_LARGE:
        return Admission(None, 0.0, Reason.TOO_LARGE, ticket=None)
    if at <= now and strict > 0:
        at, why = now + strict, Reason.RPM if spec.rpm is not None else Reason.TPM
    lease_id = uuid.uuid4().hex
    granted_now = at <= now
    session.add(
        RateLimitLease(
            id=lease_id,
            alias=alias,
            granted_at=at,
            tokens=tokens,
            active_until=now + spec.lease_ttl_s if granted_now else None,
            ticket=None if granted_now else ticket,
        )
    )
    _prune(session, alias, spec, now)
    if granted_now:
        _take_from_provider_counts(row, tokens, now)
        session.add(row)
        return Admission(lease_id)
    return Admission(None, at - now, why, ticket=ticket)


def _take_from_provider_counts(row: RateLimitAlias, tokens: int, now: float) -> None:
    """Count a granted call against what the provider said was left, so other
    workers do not all spend the same last request before it answers again."""
    if row.requests_remaining is not None and (row.requests_reset_at or 0) > now:
        row.requests_remaining -= 1
    if row.tokens_remaining is not None and (row.tokens_reset_at or 0) > now:
        row.tokens_remaining -= tokens


def _prune(session: Session, alias: str, spec: LimitSpec, now: float) -> None:
    """Forget leases out of the window that are no longer in flight."""
    session.exec(
        delete(RateLimitLease).where(  # type: ignore[call-overload]
            RateLimitLease.alias == alias,
            func.coalesce(RateLimitLease.sent_at, RateLimitLease.granted_at)
            <= now - spec.window_s - spec.grace_s,
            RateLimitLease.granted_at <= now - spec.window_s - spec.grace_s,
            or_(RateLimitLease.active_until.is_(None), RateLimitLease.active_until <= now),  # type: ignore[union-attr,operator]
        )
    )


def settle(
    session: Session, *, lease_id: str, tokens: int | None, sent_ago_s: float | None = None
) -> None:
    """The call is over: no longer in flight, counted at the tokens it really
    used when known (else at what it reserved), and in the windows of the
    time its request left (`sent_ago_s` before now), when it did."""
    values: dict[str, object] = {"active_until": None}
    if tokens is not None:
        values["tokens"] = tokens
    if sent_ago_s is not None:
        values["sent_at"] = database_now(session) - max(sent_ago_s, 0.0)
    session.exec(update(RateLimitLease).where(RateLimitLease.id == lease_id).values(**values))  # type: ignore[call-overload]


def block(session: Session, *, alias: str, delay_s: float, reason: str) -> None:
    """The provider asked for no call before `delay_s` from now (a 429's
    Retry-After): every worker waits it out. A later block wins."""
    row = _lock_alias(session, alias)
    until = database_now(session) + delay_s
    if until > row.blocked_until:
        row.blocked_until = until
        row.blocked_reason = reason[:500]
        session.add(row)


def observe(
    session: Session,
    *,
    alias: str,
    requests_remaining: int | None,
    requests_reset_s: float | None,
    tokens_remaining: int | None,
    tokens_reset_s: float | None,
) -> None:
    """What the provider's rate-limit headers said is left, and for how long."""
    row = _lock_alias(session, alias)
    now = database_now(session)
    if requests_remaining is not None and requests_reset_s is not None:
        row.requests_remaining = requests_remaining
        row.requests_reset_at = now + requests_reset_s
    if tokens_remaining is not None and tokens_reset_s is not None:
        row.tokens_remaining = tokens_remaining
        row.tokens_reset_at = now + tokens_reset_s
    session.add(row)

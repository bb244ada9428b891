"""How a run ends badly, and how activity errors read to people."""

from __future__ import annotations

import math

from temporalio.exceptions import ActivityError, ApplicationError, TimeoutType
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

from activities.gateway.types import TokenUsage
from core.chain_errors import ChainErrorType


class ChainFailure(Exception):
    """Ends the run: carries the `ApplicationError.type` ops will see."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class ChainRejected(ChainFailure):
    """A reviewer (or a timeout policy) rejected an approval: the run ends as
    `rejected`, a business outcome rather than a failure."""

    def __init__(self, message: str) -> None:
        super().__init__(ChainErrorType.REJECTED, message)


def is_budget_failure(error: BaseException) -> bool:
    return isinstance(error, ChainFailure) and error.error_type == ChainErrorType.BUDGET_EXCEEDED


def describe_activity_error(err: ActivityError) -> str:
    """The innermost cause's type and message, e.g. `RateLimited: 429 ...`."""
    cause: BaseException | None = err.cause
    while (
        cause is not None
        and cause.__cause__ is not None
        and not isinstance(cause, ApplicationError)
    ):
        cause = cause.__cause__
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'Error'}: {cause.message}"
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return str(err)


def billed_usage(err: ActivityError) -> tuple[TokenUsage, float]:
    """Usage a failed call was billed for, when the activity reported it in
    the error's details (refusals: the provider charged for the reply)."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.details:
        detail = cause.details[0]
        if isinstance(detail, dict) and "cost_usd" in detail:
            usage = TokenUsage.model_validate(detail.get("usage") or {})
            return usage, float(detail["cost_usd"])
    return TokenUsage(), 0.0


UNCONFIRMED_USD = "unconfirmed_usd"
UNCONFIRMED_ATTEMPTS = "unconfirmed_attempts"
"""Keys the gateway puts in a failed call's details and its heartbeats
(activities/gateway/journal.py)."""
_ATTEMPT_TIMEOUTS = (TimeoutType.START_TO_CLOSE, TimeoutType.HEARTBEAT)


def unconfirmed_cost(err: ActivityError, worst_case_usd: float) -> tuple[float, int]:
    """What a failed call may have cost with no reply seen, at worst case,
    and how many attempts that stands for: as the gateway reported it in the
    error's details; or, when the last attempt timed out (its worker died or
    hung with the request sent), that attempt at `worst_case_usd` plus the
    earlier ones its heartbeats reported."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return _counted(cause.details[0] if cause.details else None)
    if isinstance(cause, ActivityTimeoutError) and cause.type in _ATTEMPT_TIMEOUTS:
        details = cause.last_heartbeat_details
        usd, attempts = _counted(details[0] if details else None)
        return usd + worst_case_usd, attempts + 1
    return 0.0, 0


def _counted(detail: object) -> tuple[float, int]:
    if not isinstance(detail, dict):
        return 0.0, 0
    try:
        usd = float(detail.get(UNCONFIRMED_USD) or 0.0)
        attempts = int(detail.get(UNCONFIRMED_ATTEMPTS) or 0)
    except (TypeError, ValueError):
        return 0.0, 0
    return (usd, attempts) if math.isfinite(usd) and usd >= 0 and attempts > 0 else (0.0, 0)

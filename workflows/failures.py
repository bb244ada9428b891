"""How a run ends badly, and how activity errors read to people."""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError

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

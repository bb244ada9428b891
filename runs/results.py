"""What a closed run left behind: its result, or its failure with the partial
result the workflow attaches to it. One parser for the API, the CLI and the
demo."""

from __future__ import annotations

from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from runs.views import RunDetail, RunError
from workflows.types import ChainResult


def root_cause(exc: BaseException) -> BaseException | None:
    cause = getattr(exc, "cause", None)
    while cause is not None and getattr(cause, "cause", None) is not None:
        cause = cause.cause
    return cause


def partial_result(exc: BaseException) -> ChainResult | None:
    """The partial ChainResult a failed run attaches to its ApplicationError
    (None when the failure carries none)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ApplicationError) and cause.details:
        try:
            return ChainResult.model_validate(cause.details[0])
        except (ValueError, TypeError):
            return None
    return None


def failure_message(exc: BaseException) -> str:
    """`Type: message` of the innermost cause of a failed run."""
    cause = root_cause(exc)
    if cause is None:
        return str(exc)
    kind = getattr(cause, "type", None)
    message = str(cause)
    return f"{kind}: {message}" if kind and not message.startswith(f"{kind}:") else message


UNRECORDED_ERROR_TYPE = "Unrecorded"
"""The error type of a failed run whose index row was written before the
index recorded error types (and that Temporal no longer knows)."""

_STOPPED = ("cancelled", "terminated", "timed_out")


def failure_error(exc: WorkflowFailureError) -> RunError:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return RunError(type=cause.type or type(cause).__name__, message=cause.message)
    return RunError(type=type(cause).__name__, message=str(cause or exc))


def index_error(status: str, error: str | None, error_type: str | None) -> RunError | None:
    """A run's error as its index row tells it, typed whenever the run did
    not succeed: a stopped run by how it stopped, a failed or rejected one by
    its recorded type (`UNRECORDED_ERROR_TYPE` for rows older than that)."""
    if status in _STOPPED:
        return RunError(type=error_type or status, message=error or f"the run was {status}")
    if status in ("failed", "rejected"):
        return RunError(
            type=error_type or UNRECORDED_ERROR_TYPE, message=error or f"the run was {status}"
        )
    return RunError(type=error_type, message=error) if error else None


def fill_result(detail: RunDetail, result: ChainResult) -> None:
    """Complete a run's view from its result (or the partial result of a failure)."""
    detail.source = "result"
    detail.status = result.status
    detail.chain = detail.chain or result.chain
    detail.version = detail.version or result.version
    detail.steps = result.steps
    detail.usage = result.usage
    detail.cost_usd = result.usage.cost_usd
    detail.output = result.output
    if result.error:
        detail.error = RunError(type=result.error_type, message=result.error)

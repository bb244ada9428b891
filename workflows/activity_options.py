"""Timeouts and retry policies of every activity Chorus workflows schedule, in
one options object (like sdk-python contrib/openai_agents'
`ModelActivityParameters`), instead of literals spread over workflow modules.

Compatibility: these values are recorded in the histories of runs in flight.
Replay does not compare them, but a run that resumes on a worker with other
values schedules its next activities with those; change them knowingly.

Pure and deterministic: safe to pass through the workflow sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.common import RetryPolicy

from activities.gateway.types import ModelInfo
from activities.tools.types import ToolInfo
from core.chain_spec import RetrySpec

__all__ = ["DEFAULT_ACTIVITY_OPTIONS", "ActivityOptions", "retry_policy"]


def _run_index_retry() -> RetryPolicy:
    return RetryPolicy(maximum_attempts=8, maximum_interval=timedelta(seconds=10))


def _audit_retry() -> RetryPolicy:
    # 1 + 2 + 4 + 8 + 16 + 30 * 9 s: about five minutes of attempts.
    return RetryPolicy(maximum_attempts=15, maximum_interval=timedelta(seconds=30))


@dataclass(frozen=True)
class ActivityOptions:
    """What workflows schedule their activities with."""

    describe_timeout: timedelta = timedelta(seconds=10)
    """`describe_models` and `describe_tools` (local activities that snapshot
    the registries into history when a run starts)."""

    run_index_timeout: timedelta = timedelta(seconds=10)
    """`record_run` (local activity writing the run index row)."""

    run_index_retry: RetryPolicy = field(default_factory=_run_index_retry)
    """The run index is a convenience copy: after these attempts (or at once,
    when the database refuses the row: `RecordRefused` is non-retryable) the
    write is logged and skipped rather than failing the run."""

    audit_timeout: timedelta = timedelta(seconds=30)
    """`record_approval` (the audit row of a decision)."""

    audit_retry: RetryPolicy = field(default_factory=_audit_retry)
    """`record_approval` rides out a database outage of about five minutes
    (an audit log with holes is worse than a late answer), but not forever: a
    run waits for its decision Updates to finish before it closes, so an
    unbounded retry held runs open for good. After the last attempt, or at
    once for a row the database refuses (`RecordRefused`), the Update fails
    naming the audit write; the decision itself stands in the run's history
    and result."""

    retrieve_timeout: timedelta = timedelta(seconds=60)
    """`retrieve` (embedding the query and searching a collection)."""

    model_timeout_margin_s: float = 5.0
    """`call_model`'s deadline over the alias's HTTP deadline, so a slow
    provider fails as a typed ProviderTimeout rather than Temporal's own
    timeout."""

    model_retry: RetrySpec = field(default_factory=RetrySpec)
    """A model or agent step's retry policy when neither the step nor the
    chain's `defaults` sets one."""

    tool_timeout_margin_s: float = 5.0
    """`run_tool`'s deadline over the tool's own timeout."""

    tool_retry_initial_interval: timedelta = timedelta(seconds=1)
    """First backoff of `run_tool` retries."""

    tool_retry_maximum_interval: timedelta = timedelta(seconds=30)
    """Longest backoff of `run_tool` retries; how many attempts a tool gets is
    its registry entry's (workflows/tool_calls.py)."""

    def model_call_timeout(self, info: ModelInfo) -> timedelta:
        return timedelta(seconds=info.timeout_s + self.model_timeout_margin_s)

    def model_heartbeat_timeout(self, info: ModelInfo) -> timedelta:
        return timedelta(seconds=info.heartbeat_timeout_s)

    def tool_call_timeout(self, info: ToolInfo) -> timedelta:
        return timedelta(seconds=info.timeout_s + self.tool_timeout_margin_s)


DEFAULT_ACTIVITY_OPTIONS = ActivityOptions()


def retry_policy(retry: RetrySpec) -> RetryPolicy:
    """The Temporal retry policy of a chain's `retry` setting."""
    return RetryPolicy(
        maximum_attempts=retry.max_attempts,
        initial_interval=timedelta(seconds=retry.initial_interval_s),
        backoff_coefficient=retry.backoff,
        maximum_interval=timedelta(seconds=retry.max_interval_s),
    )

"""Chorus' own Prometheus metrics, counted where each fact is known: in the
activities (tools, retrieval, run and audit records here; model calls in
`activities/gateway/metrics.py`).

Label values are bounded: registry aliases and providers, tool names of the
registry, `ApplicationError` types (a fixed vocabulary), statuses and chain
names. Nothing that grows with traffic (run ids, prompts, queries, reviewer
names) is ever a label; an alias or tool this worker does not know is
counted as `unknown`.

The metrics live in `prometheus_client`'s default registry and cost nothing
to keep when no endpoint serves them (`CHORUS_METRICS_PORT` unset).
Activities run at least once, so a retried activity counts again: the
counters count attempts, as Temporal's own `temporal_activity_*` do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram
from temporalio.exceptions import ApplicationError

UNKNOWN = "unknown"

FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
"""Retrieval and tools: database lookups and HTTP calls."""

TOOL_CALLS = Counter(
    "chorus_tool_calls",
    "Attempts of chorus.run_tool, by how they ended.",
    ["tool", "outcome", "error_type"],
)
TOOL_DURATION = Histogram(
    "chorus_tool_call_duration_seconds",
    "Time one attempt of chorus.run_tool took.",
    ["tool", "outcome"],
    buckets=FAST_BUCKETS,
)
RETRIEVALS = Counter(
    "chorus_retrievals",
    "Attempts of chorus.retrieve, by how they ended.",
    ["outcome", "error_type"],
)
RETRIEVAL_DURATION = Histogram(
    "chorus_retrieval_duration_seconds",
    "Time one attempt of chorus.retrieve took (embedding the query included).",
    ["outcome"],
    buckets=FAST_BUCKETS,
)
APPROVAL_DECISIONS = Counter(
    "chorus_approval_decisions",
    "Approval decisions written to the audit log (decision: approve, reject, edit, "
    "timeout_approve, timeout_reject, escalate).",
    ["decision"],
)
RUNS_FINISHED = Counter(
    "chorus_runs_finished",
    "Runs that reached a final status, by chain, as their run index row recorded it.",
    ["chain", "status"],
)

FINAL_STATUSES = frozenset({"completed", "failed", "rejected", "cancelled"})


def error_labels(exc: BaseException) -> tuple[str, str]:
    """(outcome, error_type) of an attempt that raised `exc`."""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled", ""
    if isinstance(exc, ApplicationError):
        return "error", exc.type or "ApplicationError"
    return "error", type(exc).__name__


@contextmanager
def counted(calls: Counter, duration: Histogram, *labels: str) -> Iterator[None]:
    """Count and time one activity attempt: `calls` by (*labels, outcome,
    error_type), `duration` by (*labels, outcome)."""
    started = time.perf_counter()
    outcome, error_type = "ok", ""
    try:
        yield
    except BaseException as exc:
        outcome, error_type = error_labels(exc)
        raise
    finally:
        calls.labels(*labels, outcome, error_type).inc()
        duration.labels(*labels, outcome).observe(time.perf_counter() - started)


def run_recorded(chain: str, status: str) -> None:
    """Count a run index write of a final status (a retried write counts again)."""
    if status in FINAL_STATUSES:
        RUNS_FINISHED.labels(chain, status).inc()

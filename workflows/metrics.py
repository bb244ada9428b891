"""What workflow code counts, through the Temporal SDK's workflow metric meter.

Fallbacks taken, budget refusals, guard verdicts and reviewers' decisions
happen in workflow code, where no I/O may happen; the SDK's meter is the replay-safe way to
count there (it records nothing while a history replays, so a worker that
picks up a run counts only what happens anew). The counts reach the worker's
`/metrics` endpoint with the SDK's own metrics (`core/metrics.py`), with the
SDK's `namespace`, `task_queue` and `workflow_type` labels. Label values are
bounded: aliases, chain names and fixed outcomes, never run ids or text.
"""

from __future__ import annotations

from typing import Final

from temporalio import workflow

FALLBACKS: Final = "chorus_model_fallbacks_total"
BUDGET_REFUSALS: Final = "chorus_budget_refusals_total"
GUARD_VERDICTS: Final = "chorus_guard_verdicts_total"
DECISION_SECONDS: Final = "chorus_approval_decision_seconds"


def _count(name: str, description: str, **labels: str) -> None:
    # The SDK's Prometheus exporter adds `_total` to counters itself.
    counter = workflow.metric_meter().create_counter(name.removesuffix("_total"), description)
    counter.add(1, labels)


def fallback_taken(alias: str, reason: str) -> None:
    """A step asked `alias` because the alias before it failed (`reason`
    `error`) or did not fit the budget (`budget`)."""
    _count(FALLBACKS, "Model calls sent to a fallback alias", alias=alias, reason=reason)


def budget_refused(alias: str) -> None:
    """A call to `alias` was not made: its worst case did not fit the run's budget."""
    _count(BUDGET_REFUSALS, "Model calls refused by the run's budget", alias=alias)


def guard_verdict(chain: str, verdict: str) -> None:
    """A guard's final verdict: `passed`, `passed_after_retry`, `escalated` or `failed`."""
    _count(GUARD_VERDICTS, "Guard verdicts", chain=chain, verdict=verdict)


def decision_latency(decision: str, seconds: float) -> None:
    """How long a reviewer's decision took from the approval's request
    (`decision`: approve, edit or reject; buckets up to three days in
    `core.metrics.SDK_HISTOGRAM_BUCKETS`)."""
    histogram = workflow.metric_meter().create_histogram_float(
        DECISION_SECONDS, "Seconds from an approval's request to a reviewer's decision", "s"
    )
    histogram.record(max(seconds, 0.0), {"decision": decision})

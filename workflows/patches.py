"""One patch marker per run for every behaviour change made so far.

Each change to what runs in flight do went behind its own `workflow.patched`
id, so runs started before it replay the old way. Asked one by one, each
such change costs every new run a marker event and an upsert of the
`TemporalChangeVersion` search attribute (a visibility write on the server):
four of each on a plain chain run, a fifth of its history (bench/history_counts.py).

A run started by this version asks one patch, `BASELINE`, first of all (the
first thing `ChainWorkflow.run` and `AgentWorkflow.run` do): it holds for
every run started from now on, and then every change in `ABSORBED` applies
without a marker of its own. A run started before (no `BASELINE` marker in
its history) asks each change's own patch where it always did, so its
history replays unchanged: `applies` is `patched(BASELINE) or
patched(change)`, and the SDK remembers each answer for the rest of the run,
so `BASELINE` is asked once and a change's own patch only on old runs.

A change made after this baseline gets its own patch id (plain
`workflow.patched`); a later baseline can absorb it the same way.
"""

from __future__ import annotations

from temporalio import workflow

BASELINE = "chorus-baseline-1"
"""Every change in `ABSORBED` applies to runs whose history holds this marker."""

ABSORBED = frozenset(
    {
        "chorus-throttle-cost-upserts",
        "chorus-run-index",
        "cost-published-with-status",
        "check-unchecked-spec-at-start",
        "audit-with-run-index",
        "timeout-audit-failure-stops-the-run",
        "template-limits",
        "guards-check-chorus-json-formats",
        "agent-spend-counted-in-the-run",
        "agent-drains-handlers-before-continue-as-new",
        "count-unconfirmed-attempts",
        "reserve-tools-and-schema",
        "model-calls-wait-out-rate-limits",
        "cancelled-calls-end-the-step",
        "running-status-published-after-the-activation",
        "retrieve-min-score",
    }
)
"""The patch ids `BASELINE` stands for. Never remove one while a run
started before `BASELINE` may still be in flight or replayed."""


class UnknownPatchError(ValueError):
    """A change asked through `applies` that `BASELINE` does not stand for:
    it needs its own `workflow.patched` call (or a new baseline)."""


def ask_baseline() -> bool:
    """Ask `BASELINE`; call it first thing in a workflow's run, before any
    `applies`, so that a run started before it answers False here, in its
    first workflow task, and keeps answering each change's own patch."""
    return workflow.patched(BASELINE)


def applies(change: str) -> bool:
    """Whether the behaviour change `change` (one of `ABSORBED`) applies to
    this run: on every run started with `BASELINE`, else as its own patch
    said when the run first asked it."""
    if change not in ABSORBED:
        raise UnknownPatchError(
            f"patch {change!r} is not part of {BASELINE!r}: ask it with workflow.patched"
        )
    return workflow.patched(BASELINE) or workflow.patched(change)

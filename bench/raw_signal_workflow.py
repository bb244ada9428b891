"""The baseline for bench/waiting.py: a minimal hand-written Temporal workflow
that makes one model call (one bare httpx activity, bench/raw_activities.py),
then parks until a signal arrives, with nothing of Chorus in between.

It mirrors the Chorus chain the benchmark parks (a model step, then an
approval) as closely as a minimal workflow can. Its one extra line is the
upsert of `ChorusStatus=awaiting_approval` when it parks: that lets the
benchmark count parked runs of both kinds with the same cheap visibility
query, and Chorus makes the same upsert when it parks.

Kept in an importable module (a workflow in `__main__` fails sandbox
validation) whose top-level imports are all deterministic.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import SearchAttributeKey

from bench.raw_workflow import RawCallInput

RAW_SIGNAL_WORKFLOW = "BenchRawSignalWorkflow"
RAW_DECIDE_SIGNAL = "decide"
RAW_CALL_ACTIVITY = "bench.raw_call"

PARKED_KEY = SearchAttributeKey.for_keyword("ChorusStatus")
"""The same search attribute Chorus runs use (the dev server registers it)."""
PARKED_VALUE = "awaiting_approval"


class RawSignalInput(BaseModel):
    base_url: str
    model: str
    prompt: str


class RawDecision(BaseModel):
    """What the signal carries: just enough to say who decided what."""

    decision: str
    reviewer: str


@workflow.defn(name=RAW_SIGNAL_WORKFLOW)
class RawSignalWorkflow:
    def __init__(self) -> None:
        self._decision: RawDecision | None = None

    @workflow.signal(name=RAW_DECIDE_SIGNAL)
    def decide(self, decision: RawDecision) -> None:
        self._decision = decision

    @workflow.run
    async def run(self, inp: RawSignalInput) -> str:
        text = await workflow.execute_activity(
            RAW_CALL_ACTIVITY,
            RawCallInput(base_url=inp.base_url, model=inp.model, prompt=inp.prompt),
            result_type=str,
            start_to_close_timeout=timedelta(seconds=30),
        )
        workflow.upsert_search_attributes([PARKED_KEY.value_set(PARKED_VALUE)])
        await workflow.wait_condition(lambda: self._decision is not None)
        return text

"""The baseline for bench/overhead.py: a minimal hand-written Temporal
workflow that calls the simulator N times in sequence, one activity per call
(bench/raw_activities.py), with nothing of Chorus in between."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow


class RawInput(BaseModel):
    base_url: str
    model: str
    steps: int


class RawCallInput(BaseModel):
    base_url: str
    model: str
    prompt: str


@workflow.defn(name="BenchRawWorkflow")
class RawWorkflow:
    @workflow.run
    async def run(self, inp: RawInput) -> str:
        text = ""
        for i in range(inp.steps):
            text = await workflow.execute_activity(
                "bench.raw_call",
                RawCallInput(
                    base_url=inp.base_url, model=inp.model, prompt=f"Step {i}: {text[:40]}"
                ),
                result_type=str,
                start_to_close_timeout=timedelta(seconds=30),
            )
        return text

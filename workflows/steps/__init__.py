"""One runner per kind of chain step. Each receives the run's RunContext
(workflows/run_context.py) when the run starts and then runs any number of
steps of its kind: `await runner.run(step, variables, record)` fills the
step's record (output, calls, cost) or raises ChainFailure.

Determinism: no I/O in runners; every side effect is an activity, a timer or
a child workflow, issued in the same order on replay.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.chain_spec import Step
    from workflows.run_context import Variables
    from workflows.types import StepRecord

S_contra = TypeVar("S_contra", bound=Step, contravariant=True)


class StepRunner(Protocol[S_contra]):
    async def run(self, step: S_contra, variables: Variables, record: StepRecord) -> None:
        """Run `step`, filling `record`; raise ChainFailure to end the run."""

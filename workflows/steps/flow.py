"""Steps that run other steps: a route picks one branch, a parallel step runs
all its branches at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.chain_errors import ChainErrorType
    from core.chain_spec import ParallelStep, RouteStep, Step
    from workflows.failures import ChainFailure, is_budget_failure
    from workflows.run_context import RunContext, Variables
    from workflows.types import StepRecord

RunSteps = Callable[[Sequence[Step], Variables], Awaitable[Any]]
"""The interpreter: runs steps in order, returns the last one's output."""


class RouteRunner:
    def __init__(self, ctx: RunContext, run_steps: RunSteps) -> None:
        self._ctx = ctx
        self._run_steps = run_steps

    async def run(self, step: RouteStep, variables: Variables, record: StepRecord) -> None:
        chosen: Sequence[Step] | None = None
        for index, branch in enumerate(step.branches):
            where = f"{step.name}.branches[{index}].when"
            if self._ctx.condition(branch.when, variables, where):
                chosen, record.branch = branch.steps, f"branches[{index}]"
                break
        else:
            if step.otherwise is None:
                raise ChainFailure(
                    ChainErrorType.NO_ROUTE_MATCHED,
                    f"step {step.name}: no branch condition held and there is no 'otherwise'",
                )
            chosen, record.branch = step.otherwise, "otherwise"
        record.output = await self._run_steps(chosen, variables)


class ParallelRunner:
    def __init__(self, run_steps: RunSteps) -> None:
        self._run_steps = run_steps

    async def run(self, step: ParallelStep, variables: Variables, record: StepRecord) -> None:
        tasks = [
            asyncio.create_task(self._run_steps(branch.steps, variables))
            for branch in step.branches
        ]
        # workflow.wait, unlike asyncio.wait, orders its results deterministically.
        done, pending = await workflow.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in tasks if t in done and not t.cancelled() and t.exception() is not None]
        if failed:
            first = failed[0].exception()
            assert first is not None
            if is_budget_failure(first):
                # Calls already in flight were reserved within the budget: let
                # them finish so their outputs stay readable; no new call fits.
                if pending:
                    await workflow.wait(pending)
            else:
                # Any other failure fails the step; the other branches are
                # cancelled rather than left spending.
                for task in tasks:
                    if task in pending:
                        task.cancel()
                if pending:
                    await workflow.wait(pending)
            raise first
        outputs = [task.result() for task in tasks]
        record.output = {
            branch.name: output for branch, output in zip(step.branches, outputs, strict=True)
        }

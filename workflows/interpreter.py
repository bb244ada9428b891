"""The chain interpreter: runs steps in order, each by the runner of its
kind, and keeps the run's step records. Built once per run, with its
dispatch table from step kind to runner.

Determinism: changing the order or number of commands the runners issue for
a given spec breaks replay of runs in flight: guard such changes with
`workflow.patched`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.chain_spec import (
        AgentStep,
        ApprovalStep,
        GuardStep,
        ModelStep,
        ParallelStep,
        RetrieveStep,
        RouteStep,
        Step,
        ToolStep,
    )
    from workflows.failures import ChainFailure, ChainRejected
    from workflows.run_context import RunContext, Variables
    from workflows.steps import StepRunner
    from workflows.steps.agent import AgentRunner
    from workflows.steps.approval import ApprovalRunner
    from workflows.steps.flow import ParallelRunner, RouteRunner
    from workflows.steps.guard import GuardRunner
    from workflows.steps.model import ModelRunner
    from workflows.steps.retrieve import RetrieveRunner
    from workflows.steps.tool import ToolRunner
    from workflows.types import StepRecord


class Interpreter:
    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        models = ModelRunner(ctx)
        self._runners: dict[type[Step], StepRunner[Any]] = {
            ModelStep: models,
            RouteStep: RouteRunner(ctx, self.run_steps),
            ParallelStep: ParallelRunner(self.run_steps),
            ApprovalStep: ApprovalRunner(ctx),
            RetrieveStep: RetrieveRunner(ctx),
            ToolStep: ToolRunner(ctx),
            GuardStep: GuardRunner(ctx, models),
            AgentStep: AgentRunner(ctx),
        }

    async def run_steps(self, steps: Sequence[Step], variables: Variables) -> Any:
        """Run `steps` in order; the last one's output."""
        output: Any = None
        for step in steps:
            record = await self.run_step(step, variables)
            output = record.output
        return output

    async def run_step(self, step: Step, variables: Variables) -> StepRecord:
        ctx = self._ctx
        record = StepRecord(
            name=step.name, kind=step.kind, status="running", started_at=workflow.now()
        )
        ctx.records[step.name] = record
        ctx.step_defs[step.name] = step
        ctx.current.append(step.name)
        try:
            await self._runners[type(step)].run(step, variables, record)
        except ChainFailure as failure:
            record.status = "rejected" if isinstance(failure, ChainRejected) else "failed"
            record.error = str(failure)
            raise
        except asyncio.CancelledError:
            record.status = "failed"
            record.error = "cancelled"
            raise
        finally:
            record.finished_at = workflow.now()
            ctx.current.remove(step.name)
        record.status = "completed"
        ctx.finished.append(step.name)
        ctx.publish_step(variables, record)
        return record

"""What every step runner of a chain run shares, built once per run.

The run's budget, model caller, snapshot of models and tools, step records,
template rendering, the door to people (approvals) and cost publishing.
Step runners (workflows/steps/) receive it instead of reaching into the
workflow class, so each says what it uses.

Determinism: no I/O here; the snapshot is taken by local activities, so a
replay reads it from history.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.gateway.types import DescribeModelsInput, DescribeModelsResult
    from activities.tools.types import ToolInfo
    from core.chain_errors import ChainErrorType
    from core.chain_spec import (
        AgentStep,
        ChainSpec,
        ModelStep,
        RetrySpec,
        Step,
        iter_aliases,
        iter_tools,
    )
    from core.names import DESCRIBE_MODELS
    from workflows import templating
    from workflows.activity_options import ActivityOptions
    from workflows.approval_host import ApprovalRequest
    from workflows.budget import Budget
    from workflows.failures import ChainFailure
    from workflows.model_calls import ModelCaller
    from workflows.tool_calls import describe_tools
    from workflows.types import ApprovalState, ModelUsage, StepRecord, UsageSummary

Variables = dict[str, Any]
"""What templates see: `input` and the finished `steps` (see `publish_step`)."""

AskPeople = Callable[[ApprovalRequest], Awaitable[ApprovalState]]


@dataclass
class RunContext:
    spec: ChainSpec
    budget: Budget
    caller: ModelCaller
    options: ActivityOptions
    ask_people: AskPeople
    """Open an approval and wait until it is settled (the workflow's
    ApprovalHost, which also keeps the run's status current)."""
    publish_cost: Callable[[], None]
    """Keep the run's cost search attribute current (throttled)."""
    tools: dict[str, ToolInfo] = field(default_factory=dict)
    """Snapshot of the tools the chain names, taken when the run starts."""
    records: dict[str, StepRecord] = field(default_factory=dict)
    step_defs: dict[str, Step] = field(default_factory=dict)
    current: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)

    async def load_snapshot(self) -> None:
        """Snapshot prices and limits of every alias (and the tools) into
        history, so budgets are enforced with the prices the run started
        with, even on replay."""
        spec = self.spec
        described = await workflow.execute_local_activity(
            DESCRIBE_MODELS,
            DescribeModelsInput(aliases=sorted(iter_aliases(spec.steps))),
            result_type=DescribeModelsResult,
            start_to_close_timeout=self.options.describe_timeout,
            summary="describe models",
        )
        if described.unknown:
            raise ChainFailure(
                ChainErrorType.UNKNOWN_MODEL_ALIAS,
                f"chain {spec.name!r} names model aliases the worker's registry "
                f"does not know: {', '.join(described.unknown)}",
            )
        self.caller.models = described.models
        tool_names = iter_tools(spec.steps)
        if tool_names:
            tools = await describe_tools(sorted(tool_names), self.options)
            if tools.unknown:
                raise ChainFailure(
                    ChainErrorType.UNKNOWN_TOOL,
                    f"chain {spec.name!r} names tools the worker's registry does not know: "
                    + ", ".join(tools.unknown),
                )
            self.tools = tools.tools

    def retry_for(self, step: ModelStep | AgentStep) -> RetrySpec:
        """The step's retry policy, else the chain's default, else Chorus's."""
        return step.retry or self.spec.defaults or self.options.model_retry

    # -- templates -------------------------------------------------------------

    @staticmethod
    def render(source: str, variables: Variables, where: str) -> str:
        with _template_errors(where):
            return templating.render(source, variables)

    @staticmethod
    def condition(expression: str, variables: Variables, where: str) -> bool:
        with _template_errors(where):
            return templating.evaluate_bool(expression, variables)

    @classmethod
    def render_value(cls, value: Any, variables: Variables, where: str) -> Any:
        """Render every string inside a JSON-like value as a template."""
        if isinstance(value, str):
            return cls.render(value, variables, where)
        if isinstance(value, dict):
            return {k: cls.render_value(v, variables, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [cls.render_value(v, variables, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    @staticmethod
    def publish_step(variables: Variables, record: StepRecord) -> None:
        """What later templates see of a finished step."""
        variables["steps"][record.name] = {
            "output": record.output,
            "model": record.model,
            "branch": record.branch,
            "escalated": bool(record.cascade and record.cascade.escalated),
        }

    # -- usage -----------------------------------------------------------------

    def usage(self) -> UsageSummary:
        summary = UsageSummary()
        for record in self.records.values():
            if record.kind not in ("model", "agent"):
                continue
            step_usage = summary.per_step.setdefault(record.name, ModelUsage())
            for call in record.calls:
                if call.outcome == "failed" and not call.cost_usd:
                    continue
                for bucket in (step_usage, summary.per_model.setdefault(call.alias, ModelUsage())):
                    bucket.calls += 1
                    bucket.usage = bucket.usage + call.usage
                    bucket.cost_usd += call.cost_usd
                    bucket.latency_ms += call.latency_ms
                    bucket.unconfirmed_usd += call.unconfirmed_usd
                    bucket.unconfirmed_attempts += call.unconfirmed_attempts
                summary.total = summary.total + call.usage
                summary.cost_usd += call.cost_usd
                summary.unconfirmed_usd += call.unconfirmed_usd
                summary.unconfirmed_attempts += call.unconfirmed_attempts
        return summary


@contextmanager
def _template_errors(where: str) -> Iterator[None]:
    """A template that fails to render fails the run, saying where it is."""
    try:
        yield
    except templating.TemplateRenderError as err:
        raise ChainFailure(err.error_type, f"{where}: {err}") from None

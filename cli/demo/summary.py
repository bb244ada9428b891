"""The demo's results as data: one summary per ticket run and the totals,
which `chorus demo --json` prints as one object and the report renders."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from cli.demo.analysis import (
    STRONG_ONLY_METHOD,
    cost_by_model,
    decision_of,
    describe_path,
    path_kind,
    strong_only_cost,
)
from cli.demo.simulator_script import SCRIPTED_NOTE
from cli.demo.tickets import SampleTicket

if TYPE_CHECKING:
    from activities.gateway.types import ModelPrices
    from core.chain_spec import ChainSpec
    from workflows.types import ChainResult


class ApprovalTaken(BaseModel):
    decision: str
    reviewer: str


class DecidedApproval(BaseModel):
    ticket: str
    run_id: str
    approval_id: str
    decision: Literal["approve", "edit", "reject"]
    """`reject` only from a person in the inbox (`chorus demo --interactive`)."""
    reviewer: str


class TicketSummary(BaseModel):
    id: str
    run_id: str
    customer_name: str
    message: str
    status: str
    category: str | None = None
    complexity: str | None = None
    urgency: str | None = None
    confidence: float | None = None
    verdict_scripted: bool = True
    path_kind: str | None = None
    path: list[str] = Field(default_factory=list)
    reply: str | None = None
    cost_usd: float = 0.0
    strong_only_cost_usd: float = 0.0
    cost_by_model: dict[str, float] = Field(default_factory=dict)
    approval: ApprovalTaken | None = None
    error: str | None = None


class ApprovalsSummary(BaseModel):
    count: int
    decided: list[DecidedApproval]


class StackSummary(BaseModel):
    started: dict[str, int]
    """Service name → pid of each process this demo started (and stopped)."""
    reused: list[str]


class DemoSummary(BaseModel):
    """What `chorus demo --json` prints: one object."""

    chain: str
    version: int
    simulated: bool = True
    note: str = SCRIPTED_NOTE
    tickets: list[TicketSummary]
    paths: dict[str, int]
    routed_cost_usd: float
    strong_only_cost_usd: float
    strong_only_method: str = STRONG_ONLY_METHOD
    savings_ratio: float
    """Share of the strong-only cost that routing saved: 1 - routed / strong-only."""
    approvals: ApprovalsSummary
    temporal_ui: str
    stack: StackSummary


@dataclass
class TicketRun:
    """One ticket's run as the demo drove it."""

    ticket: SampleTicket
    run_id: str
    result: ChainResult | None = None
    error: str | None = None
    decided: list[DecidedApproval] = field(default_factory=list)

    def summary(self, prices: ModelPrices) -> TicketSummary:
        ticket, result = self.ticket, self.result
        summary = TicketSummary(
            id=ticket.id,
            run_id=self.run_id,
            customer_name=ticket.customer_name,
            message=ticket.message,
            status="failed" if result is None else result.status,
            error=self.error if self.error is not None else (result.error if result else None),
        )
        if result is None:
            return summary
        verdict = result.steps.get("classify")
        if verdict is not None and isinstance(verdict.output, dict):
            summary.category = verdict.output.get("category")
            summary.complexity = verdict.output.get("complexity")
            summary.urgency = verdict.output.get("urgency")
            summary.confidence = verdict.output.get("confidence")
        decision = decision_of(result, "review")
        summary.path_kind = path_kind(result)
        summary.path = describe_path(result)
        summary.reply = result.output if isinstance(result.output, str) else None
        summary.cost_usd = _usd(result.usage.cost_usd)
        summary.strong_only_cost_usd = _usd(strong_only_cost(result, prices))
        summary.cost_by_model = {alias: _usd(c) for alias, c in cost_by_model(result).items()}
        summary.approval = (
            ApprovalTaken(decision=decision[0], reviewer=decision[1]) if decision else None
        )
        return summary


def _usd(value: float) -> float:
    """Costs in the summary, without float noise (1e-10 USD is far below any price)."""
    return round(value, 10)


def summarize(
    spec: ChainSpec,
    runs: list[TicketRun],
    prices: ModelPrices,
    *,
    temporal_ui: str,
    stack: StackSummary,
) -> DemoSummary:
    tickets = [run.summary(prices) for run in runs]
    routed = sum(t.cost_usd for t in tickets)
    strong = sum(t.strong_only_cost_usd for t in tickets)
    decided = [d for run in runs for d in run.decided]
    return DemoSummary(
        chain=spec.name,
        version=spec.version,
        tickets=tickets,
        paths=dict(Counter(t.path_kind for t in tickets if t.path_kind)),
        routed_cost_usd=_usd(routed),
        strong_only_cost_usd=_usd(strong),
        savings_ratio=round(1 - routed / strong, 4) if strong > 0 else 0.0,
        approvals=ApprovalsSummary(count=len(decided), decided=decided),
        temporal_ui=temporal_ui,
        stack=stack,
    )

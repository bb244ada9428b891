"""Input and result of an agent's child workflow. The input also carries the
loop's state, so a long agent can continue-as-new without losing anything."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from activities.gateway.types import ChatMessage, ModelInfo, TokenUsage
from activities.tools.types import ToolInfo
from core.chain_spec import AgentStep, RetrySpec
from core.names import AGENT_WORKFLOW_NAME
from workflows.types import ModelCallRecord

__all__ = [
    "AGENT_WORKFLOW_NAME",
    "AgentInput",
    "AgentResult",
    "AgentSpend",
    "AgentToolCall",
    "AgentTurn",
]


ToolOutcome = Literal["ok", "error", "rejected", "not_allowed"]


class AgentToolCall(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    outcome: ToolOutcome
    result_preview: str = ""
    """The start of what went back to the model (full results stay out of the
    transcript summary to keep payloads small)."""


class AgentTurn(BaseModel):
    turn: int
    alias: str
    text: str = ""
    tool_calls: list[AgentToolCall] = Field(default_factory=list)


class AgentInput(BaseModel):
    step: AgentStep
    chain: str
    task: str
    system: str | None = None
    models: dict[str, ModelInfo]
    tools: dict[str, ToolInfo]
    retry: RetrySpec
    budget_usd: float | None = None
    max_calls: int
    history_event_limit: int = Field(default=2000, ge=50)
    """Continue-as-new once history passes this many events (Temporal warns
    at 10,240 and stops at 51,200)."""
    # Loop state carried across continue-as-new:
    messages: list[ChatMessage] = Field(default_factory=list)
    turns_done: int = 0
    transcript: list[AgentTurn] = Field(default_factory=list)
    calls: list[ModelCallRecord] = Field(default_factory=list)
    spent_usd: float = 0.0
    continued: int = 0


class AgentResult(BaseModel):
    answer: str | None
    stopped: Literal["answered", "turn_limit"]
    turns: int
    transcript: list[AgentTurn]
    calls: list[ModelCallRecord]
    usage: TokenUsage
    cost_usd: float
    continued_as_new: int = 0
    """How many times the loop continued-as-new to keep its history short."""


class AgentSpend(BaseModel):
    """What an agent spent before it failed: the details of its failure
    (`ApplicationError.details[0]`), so the chain counts the money in the
    run's cost and budget like an answered agent's. Carried by the failure
    itself, it is in history and replays as it ran."""

    calls: list[ModelCallRecord]
    """Every call of every run of the loop (continued-as-new ones too)."""
    usage: TokenUsage
    cost_usd: float
    """Unconfirmed attempts included, as in `AgentResult.cost_usd`."""
    turns: int

"""The chain language: pydantic models of a chain spec.

A chain is YAML validated into `ChainSpec`. Steps form one discriminated union
on `kind`, so a new step kind is one more model in `Step` and one more branch
in the interpreter. The spec travels inside the workflow input (a run never
sees a later edit of its chain), so these models must stay backward compatible:
add optional fields, never rename or remove one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.pii import MAX_ALLOWED_CONTACTS, MAX_CONTACT_CHARS

STEP_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
CHAIN_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
"""A chain's name; also keeps names safe inside visibility queries and URLs."""
"""Step names are identifiers so templates can say `steps.classify.output`."""


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetrySpec(SpecModel):
    """Temporal retry policy of one model call (per alias; the fallback chain
    starts once these attempts are spent)."""

    max_attempts: int = Field(default=3, ge=1, le=20)
    initial_interval_s: float = Field(default=1.0, gt=0, le=600)
    backoff: float = Field(default=2.0, ge=1.0, le=10.0)
    max_interval_s: float = Field(default=30.0, gt=0, le=3600)


class StepBase(SpecModel):
    name: str = Field(pattern=STEP_NAME_PATTERN, max_length=64)
    description: str | None = None


class ModelStep(StepBase):
    """Call a model alias with a rendered prompt.

    Cascade: with `escalate_to`, the step first answers from `model`; when
    `escalate_when` (a Jinja2 expression over `output` and the run context)
    is true, or the structured output stays invalid and `escalate_on_invalid`
    is set, the step asks `escalate_to` instead. The decision is recorded.
    """

    kind: Literal["model"] = "model"
    model: str
    fallbacks: list[str] = Field(default_factory=list)
    system: str | None = None
    prompt: str
    output_schema: dict[str, Any] | None = None
    max_tokens: int = Field(default=512, gt=0, le=200_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_reasks: int = Field(default=2, ge=0, le=5)
    escalate_to: str | None = None
    escalate_when: str | None = None
    escalate_on_invalid: bool = True
    budget_fallback: str | None = None
    """A cheaper alias to use when the budget cannot cover this step's worst case."""
    retry: RetrySpec | None = None


class RouteBranch(SpecModel):
    when: str
    """Jinja2 expression over the run context,
    e.g. `steps.classify.output.complexity == "simple"`."""
    steps: list[Step]


class RouteStep(StepBase):
    """Pick the first branch whose `when` holds (else `otherwise`); the step's
    output is the output of the chosen branch's last step."""

    kind: Literal["route"] = "route"
    branches: list[RouteBranch] = Field(min_length=1)
    otherwise: list[Step] | None = None


class ParallelBranch(SpecModel):
    name: str = Field(pattern=STEP_NAME_PATTERN, max_length=64)
    steps: list[Step]


class ParallelStep(StepBase):
    """Run branches at once; the output maps each branch name to the output of
    its last step. A failing branch fails the step (the others are cancelled)."""

    kind: Literal["parallel"] = "parallel"
    branches: list[ParallelBranch] = Field(min_length=2)


class ApprovalStep(StepBase):
    """A human checkpoint: reviewers see the rendered `text` (and `context`),
    then approve it, reject it (with a reason) or edit it. The step's output
    is the approved text, edited or not; a rejection ends the run as
    `rejected`. Decisions arrive as the Temporal Update `decide`."""

    kind: Literal["approval"] = "approval"
    text: str
    """Template of the text under review; approved as is or edited."""
    context: dict[str, str] = Field(default_factory=dict)
    """Templates of read-only material shown beside the text (sources, the question...)."""
    instructions: str | None = None
    when: str | None = None
    """Expression: ask for approval only when it holds (else the text passes as approved)."""
    required_role: str = Field(default="reviewer", min_length=1, max_length=64)
    required_approvals: int = Field(default=1, ge=1, le=20)
    """Distinct reviewers who must approve (an edit counts as its author's approval)."""
    timeout_s: float = Field(default=7 * 24 * 3600, gt=0, le=365 * 24 * 3600)
    on_timeout: Literal["reject", "approve", "escalate"] = "reject"
    escalate_to_role: str | None = Field(default=None, min_length=1, max_length=64)
    escalation_timeout_s: float | None = Field(default=None, gt=0, le=365 * 24 * 3600)
    """Deadline after escalating (default: timeout_s); if it passes too, the step is rejected."""


class RetrieveStep(StepBase):
    """Top-k passages of a knowledge collection for a templated query. The
    output is `{"query", "collection", "ranking", "passages": [...],
    "min_score", "nothing_relevant"}`; each passage carries its citation id
    (`document#position`), source, text and a score in 0..1. Passages scoring
    below `min_score` are dropped; when none is left, `passages` is empty and
    `nothing_relevant` is true, so a chain can route the question to a person
    or an honest "let me check" instead of citing an unrelated passage."""

    kind: Literal["retrieve"] = "retrieve"
    collection: str = Field(min_length=1, max_length=100)
    query: str
    top_k: int = Field(default=5, ge=1, le=50)
    min_score: float | None = Field(default=None, ge=0, le=1)
    """Lowest score (0..1) a passage needs; null: the knowledge store's
    tuned default (`store.knowledge.search.DEFAULT_MIN_SCORE`); 0 keeps every
    passage that matches at all."""


class ToolStep(StepBase):
    """Run one registered tool. String values in `arguments` (at any depth)
    are templates; the output is the tool's JSON result."""

    kind: Literal["tool"] = "tool"
    tool: str = Field(min_length=1, max_length=100)
    arguments: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    """Template; lets a non-idempotent tool be retried safely (the tool
    receives the key and must deduplicate on it)."""


class GuardRules(SpecModel):
    json_schema: dict[str, Any] | None = None
    required_patterns: list[str] = Field(default_factory=list)
    forbidden_patterns: list[str] = Field(default_factory=list)
    pii: list[Literal["email", "phone", "card"]] = Field(default_factory=list)
    """PII kinds that must not appear in the output."""
    pii_allow: list[Annotated[str, Field(min_length=1, max_length=MAX_CONTACT_CHARS)]] = Field(
        default_factory=list, max_length=MAX_ALLOWED_CONTACTS
    )
    """The business's own published contacts (its support phone number and
    email address), which a reply may quote: the `pii` detectors skip them,
    a phone number compared by its digits, an address case-insensitively.
    Each must be one phone number or email address as a whole (checked with
    the chain); every other number or address is still refused."""
    min_length: int | None = Field(default=None, ge=0)
    max_length: int | None = Field(default=None, ge=1)
    citations_from: str | None = None
    """Name of a retrieve step: the output may cite (`[document#position]`)
    only passages that step returned, and must cite at least one."""


class GuardStep(StepBase):
    """Check an earlier step's output. On failure: `retry` re-runs the
    guarded model step with the violations fed back (at most `max_retries`
    times), `escalate` asks a person (an approval on the output, showing the
    violations), `fail` ends the run listing the violations. The output is
    the (possibly corrected) guarded output."""

    kind: Literal["guard"] = "guard"
    target: str = Field(pattern=STEP_NAME_PATTERN)
    rules: GuardRules
    on_fail: Literal["retry", "escalate", "fail"] = "fail"
    max_retries: int = Field(default=1, ge=1, le=5)
    required_role: str = Field(default="reviewer", min_length=1, max_length=64)
    """Role of the reviewers an escalation asks."""
    timeout_s: float = Field(default=7 * 24 * 3600, gt=0, le=365 * 24 * 3600)


class AgentStep(StepBase):
    """A model-driven tool loop, run as a child workflow: the model proposes
    tool calls from the allow-list, the tools run as activities, their
    results go back to the model, until it answers or `max_turns` is hit.
    Tools marked `requires_approval` wait for a person first."""

    kind: Literal["agent"] = "agent"
    model: str
    fallbacks: list[str] = Field(default_factory=list)
    system: str | None = None
    prompt: str
    tools: list[str] = Field(default_factory=list)
    max_turns: int = Field(default=8, ge=1, le=200)
    max_cost_usd: float | None = Field(default=None, gt=0)
    """This agent's own cap, inside the run's budget."""
    max_tokens: int = Field(default=1024, gt=0, le=200_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    approval_role: str = Field(default="reviewer", min_length=1, max_length=64)
    approval_timeout_s: float = Field(default=24 * 3600, gt=0, le=365 * 24 * 3600)
    retry: RetrySpec | None = None
    history_event_limit: int = Field(default=2000, ge=50, le=40_000)
    """The agent continues-as-new once its history passes this many events."""


Step = Annotated[
    ModelStep
    | RouteStep
    | ParallelStep
    | ApprovalStep
    | RetrieveStep
    | ToolStep
    | GuardStep
    | AgentStep,
    Field(discriminator="kind"),
]


class Limits(SpecModel):
    max_cost_usd: float | None = Field(default=None, gt=0)
    """Hard cap: every model call reserves its worst case against it first."""
    max_steps: int = Field(default=50, ge=1, le=10_000)
    """Cap on executed steps (model calls and re-asks each count as one)."""


class ChainSpec(SpecModel):
    name: str = Field(pattern=CHAIN_NAME_PATTERN, max_length=100)
    version: int = Field(default=1, ge=1)
    description: str | None = None
    limits: Limits = Field(default_factory=Limits)
    defaults: RetrySpec | None = None
    """Retry policy for model steps that do not set their own."""
    input_schema: dict[str, Any] | None = None
    """JSON schema the run input must satisfy (checked before the run starts)."""
    steps: list[Step] = Field(min_length=1)
    output: str | None = None
    """Name of the step whose output is the run's output; default: the last top-level step."""


RouteBranch.model_rebuild()
RouteStep.model_rebuild()
ParallelBranch.model_rebuild()
ParallelStep.model_rebuild()
ChainSpec.model_rebuild()


def iter_model_steps(steps: list[Step]) -> Iterator[ModelStep | AgentStep]:
    """Every step that calls models, depth first, in document order."""
    for step in _walk(steps):
        if isinstance(step, ModelStep | AgentStep):
            yield step


def iter_aliases(steps: list[Step]) -> set[str]:
    """Every model alias a chain may call (answer, fallback, escalation, budget)."""
    aliases: set[str] = set()
    for step in iter_model_steps(steps):
        aliases.update([step.model, *step.fallbacks])
        if isinstance(step, ModelStep):
            aliases.update(a for a in (step.escalate_to, step.budget_fallback) if a)
    return aliases


def iter_tools(steps: list[Step]) -> set[str]:
    """Every tool a chain may run (tool steps and agents' allow-lists)."""
    tools: set[str] = set()
    for step in _walk(steps):
        if isinstance(step, ToolStep):
            tools.add(step.tool)
        elif isinstance(step, AgentStep):
            tools.update(step.tools)
    return tools


def _walk(steps: list[Step]) -> Iterator[Step]:
    for step in steps:
        yield step
        if isinstance(step, RouteStep):
            for branch in step.branches:
                yield from _walk(branch.steps)
            if step.otherwise:
                yield from _walk(step.otherwise)
        elif isinstance(step, ParallelStep):
            for parallel_branch in step.branches:
                yield from _walk(parallel_branch.steps)

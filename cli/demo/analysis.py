"""What a finished ticket run did and what it cost: the path it took through
support_triage, and its tokens re-priced at the `strong` alias's prices."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cli.demo.errors import DemoError

if TYPE_CHECKING:
    from activities.gateway.types import ModelPrices
    from core.settings import Settings
    from workflows.types import ChainResult, StepRecord

COMPARISON_ALIAS = "strong"
"""The one model the routed cost is compared against."""
STRONG_ONLY_METHOD = (
    "same tokens, strong prices: every model call's actual token usage re-priced at "
    "the 'strong' alias's prices"
)
ROUTE_STEP = "answer"
ROUTE_KINDS = {"branches[0]": "simple", "otherwise": "complex"}
"""support_triage's route: its first branch is the simple (cheap) answer."""
PAST_TENSE = {"approve": "approved", "edit": "edited", "reject": "rejected"}
"""A reviewer's decision as the output words it."""

_CITATION = re.compile(r"\[([^\[\]\s]+#\d+)\]")


def comparison_prices(settings: Settings) -> ModelPrices:
    """The `strong` alias's prices, read from the model registry."""
    from activities.gateway.registry import ModelRegistry, RegistryError

    try:
        registry = ModelRegistry.from_file(
            settings.models_file, simulator_base_url=settings.simulator_base_url
        )
        return registry.describe(COMPARISON_ALIAS).prices
    except (RegistryError, KeyError) as exc:
        raise DemoError(
            f"cannot price the strong-only comparison from {settings.models_file}: {exc}"
        ) from exc


def strong_only_cost(result: ChainResult, prices: ModelPrices) -> float:
    """What the run's model calls would have cost at `prices`: every call's
    actual token usage (failed and re-asked calls included, as they were
    paid for) re-priced. Same tokens, other prices."""
    return sum(prices.cost(call.usage) for step in result.steps.values() for call in step.calls)


def cost_by_model(result: ChainResult) -> dict[str, float]:
    return {alias: usage.cost_usd for alias, usage in sorted(result.usage.per_model.items())}


def path_kind(result: ChainResult) -> str | None:
    """`simple` or `complex`: the branch the chain's route took (None when
    the run failed before it routed)."""
    record = result.steps.get(ROUTE_STEP)
    if record is None or record.branch is None:
        return None
    return ROUTE_KINDS.get(record.branch, record.branch)


def describe_path(result: ChainResult) -> list[str]:
    """Each step the run took, in order, as one short line: the model it ran
    on, what it retrieved or cited, whether a check passed, who approved."""
    retrieved: set[str] = set()
    for record in result.steps.values():
        output = record.output if isinstance(record.output, dict) else {}
        if record.kind == "retrieve":
            retrieved |= {p["id"] for p in output.get("passages", []) if "id" in p}
    path: list[str] = []
    for name, record in result.steps.items():
        if record.kind == "route" and name != ROUTE_STEP:
            continue  # an inner route: the steps it chose say which way it went
        label = _describe_step(name, record, result, retrieved)
        if record.status in ("failed", "rejected") and "✗" not in label:
            label += f" ✗ {record.status}"
        path.append(label)
    return path


def decision_of(result: ChainResult, step: str) -> tuple[str, str] | None:
    """(decision, reviewer) of the last decision taken on this step's approval."""
    for approval in result.approvals:
        if approval.step == step and approval.decisions:
            last = approval.decisions[-1]
            return last.decision, last.reviewer
    return None


def _describe_step(name: str, record: StepRecord, result: ChainResult, retrieved: set[str]) -> str:
    if record.kind == "route":
        return ROUTE_KINDS.get(record.branch or "", record.branch or name)
    if record.kind == "model":
        label = f"{name}[{record.model}]" if record.model else name
        if isinstance(record.output, str):
            cited = [c for c in dict.fromkeys(_CITATION.findall(record.output)) if c in retrieved]
            if cited:
                label += " cites " + ", ".join(cited)
        return label
    if record.kind == "retrieve":
        output = record.output if isinstance(record.output, dict) else {}
        collection = output.get("collection", "?")
        if output.get("nothing_relevant"):
            return f"{name}({collection}: nothing relevant)"
        return f"{name}({collection}: {len(output.get('passages', []))} passages)"
    if record.kind == "guard":
        if record.status != "completed":
            return f"{name} ✗"
        retries = len(record.violations)
        return f"{name} ✓" + (
            f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
        )
    if record.kind == "approval":
        if record.branch and record.branch.startswith("not required"):
            return "approval: not required"
        decision = decision_of(result, name)
        if decision is None:
            return f"approval: {record.status}"
        return f"approval: {PAST_TENSE.get(decision[0], decision[0])} by {decision[1]}"
    return f"{name} ({record.kind})"

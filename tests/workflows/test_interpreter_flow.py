"""Steps that run other steps, against stub activities: a route picks one
branch (or `otherwise`, or fails), a parallel step joins its branches'
outputs and fails as a whole when one branch fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from core.chain_errors import ChainErrorType
from tests.workflows.stubs import DOWN, SLOW, Harness, model, stub_harness

KIND_SCHEMA = {"type": "object", "properties": {"kind": {"type": "string"}}, "required": ["kind"]}


@pytest.fixture
async def chains(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    async with stub_harness(temporal_env, task_queue) as harness:
        yield harness


def classified(*, otherwise: bool) -> list[dict[str, Any]]:
    """A classifier, then a route on what it said; each branch's one step is
    named after its alias."""
    route: dict[str, Any] = {
        "name": "pick",
        "kind": "route",
        "branches": [
            {
                "when": f"steps.classify.output.kind == '{kind}'",
                "steps": [model(f"{kind}_desk", f"{kind}_desk", prompt="Order {{ input.order }}")],
            }
            for kind in ("refund", "shipping")
        ],
    }
    if otherwise:
        route["otherwise"] = [model("triage", "triage", prompt="Order {{ input.order }}")]
    return [model("classify", "cheap", output_schema=KIND_SCHEMA), route]


@pytest.mark.parametrize(
    ("kind", "branch", "alias"),
    [
        ("refund", "branches[0]", "refund_desk"),
        ("shipping", "branches[1]", "shipping_desk"),
        ("other", "otherwise", "triage"),
    ],
)
async def test_route_takes_the_first_branch_that_holds_else_otherwise(
    chains: Harness, kind: str, branch: str, alias: str
) -> None:
    chains.stubs.script("cheap", f'{{"kind": "{kind}"}}')
    result = await chains.result(classified(otherwise=True), {"order": "A-17"})

    assert (result.steps["pick"].branch, result.output) == (branch, f"{alias}: Order A-17")
    assert result.steps["pick"].output == result.output
    assert chains.stubs.aliases_called == ["cheap", alias]
    assert list(result.steps) == ["classify", "pick", alias]  # no other branch ran


async def test_no_branch_holding_and_no_otherwise_fails_the_run(chains: Harness) -> None:
    chains.stubs.script("cheap", '{"kind": "other"}')
    error, partial = await chains.failure(classified(otherwise=False), {"order": "A-17"})

    assert error.type == ChainErrorType.NO_ROUTE_MATCHED
    assert "step pick: no branch condition held" in error.message
    assert chains.stubs.aliases_called == ["cheap"]
    assert partial.steps["pick"].status == "failed"
    assert sorted(partial.steps) == ["classify", "pick"]


def parallel(name: str, **branches: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "parallel",
        "branches": [{"name": b, "steps": steps} for b, steps in branches.items()],
    }


async def test_parallel_joins_each_branchs_last_output_by_branch_name(chains: Harness) -> None:
    both = parallel(
        "both",
        left=[
            model("l1", "first", prompt="L"),
            model("l2", "second", prompt="{{ steps.l1.output }}!"),
        ],
        right=[model("r1", "other", prompt="R")],
    )
    join = model(
        "join", "joiner", prompt="{{ steps.both.output.left }} | {{ steps.both.output.right }}"
    )
    result = await chains.result([both, join])

    assert result.steps["both"].output == {"left": "second: first: L!", "right": "other: R"}
    assert result.output == "joiner: second: first: L! | other: R"
    called = chains.stubs.aliases_called
    assert sorted(called[:3]) == ["first", "other", "second"] and called[3] == "joiner"
    assert called.index("first") < called.index("second")  # a branch runs in order


async def test_a_failing_branch_fails_the_step_and_cancels_the_others(chains: Harness) -> None:
    both = parallel("both", bad=[model("fails", DOWN)], waits=[model("waits", SLOW)])
    error, partial = await chains.failure([both, model("after", "cheap")])

    assert error.type == ChainErrorType.ALL_MODELS_FAILED
    assert "step fails: every model failed" in error.message
    assert [partial.steps[s].status for s in ("fails", "waits", "both")] == ["failed"] * 3
    assert partial.steps["waits"].error == "cancelled"
    assert "after" not in partial.steps
    assert "cheap" not in chains.stubs.aliases_called


async def test_a_cancelled_branch_does_not_fall_back(chains: Harness) -> None:
    both = parallel(
        "both", bad=[model("fails", DOWN)], waits=[model("waits", SLOW, fallbacks=["cheap"])]
    )
    await chains.failure([both])

    assert "cheap" not in chains.stubs.aliases_called

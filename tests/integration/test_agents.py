"""Agent steps: a model-driven tool loop in a child workflow."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import WorkflowHandle

from core.names import PENDING_APPROVALS_QUERY
from simulator.control import SimulatorControl
from simulator.models import Rule, ToolCallSpec
from tests.integration.conftest import FAST_RETRY, ChainRunner, load_spec, shipped_chain
from tests.integration.test_approvals import decide
from workflows.types import ApprovalState


def agent_chain(registry: Any, **agent: Any):
    step = {
        "name": "helper",
        "kind": "agent",
        "model": "strong",
        "system": "You help customers with their orders.",
        "prompt": "{{ input.message }}",
        "tools": ["lookup_order", "track_shipment"],
        "max_turns": 6,
        **agent,
    }
    return load_spec({"name": "agent_chain", "defaults": FAST_RETRY, "steps": [step]}, registry)


def lookup(order: str = "NW-1002") -> ToolCallSpec:
    return ToolCallSpec(name="lookup_order", arguments={"order_id": order})


def track(order: str = "NW-1002") -> ToolCallSpec:
    return ToolCallSpec(name="track_shipment", arguments={"order_id": order})


async def test_agent_uses_two_tools_over_several_turns_then_answers(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    await sim.add_rules(
        Rule(after_tool="track_shipment", reply="Your order NW-1002 arrives Friday."),
        Rule(after_tool="lookup_order", tool_calls=[track()]),
        Rule(match="where is my order", tool_calls=[lookup()]),
    )

    result = await runner.run(agent_chain(registry), {"message": "Hi, where is my order?"})

    output = result.output
    assert output["stopped"] == "answered" and output["turns"] == 3
    assert output["answer"] == "Your order NW-1002 arrives Friday."
    calls = [c for turn in output["transcript"] for c in turn["tool_calls"]]
    assert [(c["name"], c["outcome"]) for c in calls] == [
        ("lookup_order", "ok"),
        ("track_shipment", "ok"),
    ]
    assert calls[0]["result_preview"].startswith('{"found": true')
    # The tools' results reached the model: the third call's prompt carries them.
    third = [c for c in await sim.calls() if c.model == "sim-large"][2]
    assert "tracking_number" in third.prompt
    assert result.usage.per_model["strong"].calls == 3


async def test_agent_stops_at_its_turn_limit(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    await sim.add_rules(
        Rule(after_tool="*", tool_calls=[track()]),
        Rule(match="loop", tool_calls=[lookup()]),
    )

    result = await runner.run(agent_chain(registry, max_turns=3), {"message": "loop forever"})

    output = result.output
    assert output["stopped"] == "turn_limit" and output["turns"] == 3 and output["answer"] is None
    assert len([c for c in await sim.calls() if c.model == "sim-large"]) == 3


async def test_a_tool_outside_the_allow_list_is_refused_to_the_model(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    await sim.add_rules(
        Rule(after_tool="*", reply="I cannot do that."),
        Rule(match="refund", tool_calls=[ToolCallSpec(name="issue_refund", arguments={})]),
    )

    result = await runner.run(agent_chain(registry), {"message": "refund me"})

    [call] = result.output["transcript"][0]["tool_calls"]
    assert call["outcome"] == "not_allowed" and "not allowed" in call["result_preview"]
    assert result.output["answer"] == "I cannot do that."


async def agent_pending(runner: ChainRunner, parent: WorkflowHandle[Any, Any]) -> tuple[Any, Any]:
    child = runner.client.get_workflow_handle(f"{parent.id}--helper")
    for _ in range(200):
        try:
            pending = await child.query(PENDING_APPROVALS_QUERY, result_type=list[ApprovalState])
        except Exception:  # the child may not exist yet
            pending = []
        if pending:
            return child, pending[0]
        await asyncio.sleep(0.05)
    raise AssertionError("the agent never asked for approval")


REFUND = ToolCallSpec(
    name="issue_refund", arguments={"order_id": "NW-1001", "amount": 20, "reason": "late"}
)


async def test_a_requires_approval_tool_waits_and_does_not_run_when_rejected(
    runner: ChainRunner, sim: SimulatorControl, registry: Any, order_desk: Any
) -> None:
    await sim.add_rules(
        Rule(after_tool="issue_refund", reply="Done."),
        Rule(match="refund", tool_calls=[REFUND]),
    )
    spec = agent_chain(registry, tools=["lookup_order", "issue_refund"])
    handle = await runner.start(spec, {"message": "refund NW-1001"})

    child, approval = await agent_pending(runner, handle)
    assert approval.context["tool"] == "issue_refund" and '"amount": 20' in approval.text
    await decide(child, approval, decision="reject", comment="not eligible")
    result = await handle.result()

    [call] = result.output["transcript"][0]["tool_calls"]
    assert call["outcome"] == "rejected" and "not eligible" in call["result_preview"]
    assert order_desk.refunds == []


async def test_an_approved_tool_call_runs_once(
    runner: ChainRunner, sim: SimulatorControl, registry: Any, order_desk: Any
) -> None:
    await sim.add_rules(
        Rule(after_tool="issue_refund", reply="Refunded."),
        Rule(match="refund", tool_calls=[REFUND]),
    )
    spec = agent_chain(registry, tools=["issue_refund"])
    handle = await runner.start(spec, {"message": "refund NW-1001"})

    child, approval = await agent_pending(runner, handle)
    await decide(child, approval)
    result = await handle.result()

    assert result.output["answer"] == "Refunded."
    [refund] = order_desk.refunds
    assert refund.order_id == "NW-1001" and refund.amount == 20


async def test_a_long_agent_continues_as_new_and_keeps_its_whole_transcript(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    await sim.add_rules(
        Rule(after_tool="*", tool_calls=[lookup()]),
        Rule(match="keep going", tool_calls=[lookup()]),
    )
    spec = agent_chain(registry, max_turns=12, history_event_limit=50)

    result = await runner.run(spec, {"message": "keep going"})

    output = result.output
    assert output["continued_as_new"] >= 2
    assert output["turns"] == 12 and [t["turn"] for t in output["transcript"]] == list(range(1, 13))
    assert all(t["tool_calls"][0]["outcome"] == "ok" for t in output["transcript"])
    assert result.usage.per_model["strong"].calls == 12


async def test_three_agents_composed_and_the_review_sends_the_work_back_once(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    await sim.add_rules(
        Rule(model="sim-large", after_tool="lookup_order", reply="NW-1002 shipped by UPS."),
        Rule(model="sim-large", match="Find the facts", tool_calls=[lookup()]),
        Rule(model="sim-writer", match="Rewrite this reply", reply="Your boots ship by UPS."),
        Rule(model="sim-writer", reply="Your boots are coming."),
        Rule(model="sim-judge", reply="REVISE: name the carrier"),
    )

    result = await runner.run(
        shipped_chain("agent_team", registry), {"message": "Where are my boots? NW-1002"}
    )

    assert result.status == "completed"
    assert result.steps["research"].output["answer"] == "NW-1002 shipped by UPS."
    assert result.steps["review"].output["answer"].startswith("REVISE")
    assert result.steps["final"].branch == "branches[0]" and "accepted" not in result.steps
    assert result.output["answer"] == "Your boots ship by UPS."
    assert set(result.usage.per_model) == {"strong", "writer", "judge"}

"""The flagship chain, chains/support_triage.yaml, on the simulator."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.control import SimulatorControl
from simulator.models import Rule
from tests.integration.conftest import ChainRunner, shipped_chain
from tests.integration.test_approvals import decide, wait_pending
from tests.integration.test_tools_retrieval_guards import knowledge  # noqa: F401 (fixture)


def classified(ticket: str, category: str, complexity: str, confidence: float = 0.93) -> Rule:
    """Script the classifier's verdict for one ticket (a simulator cannot judge)."""
    return Rule(
        model="sim-mini",
        match=f"Classify this ticket(?s:.*){ticket[:30]}",
        json={
            "category": category,
            "complexity": complexity,
            "urgency": "normal",
            "confidence": confidence,
        },
        times=1,
    )


@pytest.mark.usefixtures("knowledge")
async def test_simple_ticket_stays_on_the_cheap_model_and_needs_no_approval(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    ticket = "Do you ship to Canada?"
    await sim.add_rules(classified(ticket, "shipping", "simple"))

    result = await runner.run(shipped_chain("support_triage", registry), {"message": ticket})

    assert result.status == "completed"
    assert result.steps["answer"].branch == "branches[0]"
    assert result.steps["review"].branch == "not required (when did not hold)"
    assert set(result.usage.per_model) == {"cheap", "writer"}
    assert result.output.startswith("[simulated sim-writer]")
    assert result.approvals == []


@pytest.mark.usefixtures("knowledge")
async def test_complex_ticket_is_grounded_cited_and_checked(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    ticket = "My tent pole snapped on the second trip, is that covered and what do I send you?"
    await sim.add_rules(classified(ticket, "product", "complex"))

    result = await runner.run(shipped_chain("support_triage", registry), {"message": ticket})

    assert result.status == "completed"
    assert result.steps["answer"].branch == "otherwise"
    passages = result.steps["research"].output["passages"]
    assert passages and passages[0]["document"] in {"warranty.md", "damaged_items.md"}
    answer = result.steps["grounded_answer"].output
    assert f"[{passages[0]['id']}]" in answer
    assert result.steps["check_citations"].violations == []
    assert set(result.usage.per_model) == {"cheap", "strong", "writer"}


@pytest.mark.usefixtures("knowledge")
async def test_refund_ticket_waits_for_a_person(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    ticket = "I returned the boots two weeks ago, where is my refund?"
    await sim.add_rules(classified(ticket, "refund", "complex"))
    handle = await runner.start(shipped_chain("support_triage", registry), {"message": ticket})

    [approval] = await wait_pending(handle)
    assert approval.context["category"] == "refund" and approval.context["ticket"] == ticket
    await decide(handle, approval, decision="edit", edited_text="Your refund left today.")
    result = await handle.result()

    assert result.status == "completed" and result.output == "Your refund left today."

"""The flagship chain with a question its Help Center does not cover: the
retrieve step answers "nothing relevant", nothing is cited, the cheap model
drafts an honest "let me check" reply and a person reviews it; a covered
question on the same path still cites its article and needs no person.
Real Temporal, real worker and retrieval activity, the simulator, the
sample knowledge in the application database."""

from __future__ import annotations

import re
from typing import Any

import pytest

from simulator.control import SimulatorControl
from tests.integration.conftest import ChainRunner, shipped_chain
from tests.integration.test_approvals import decide, wait_pending
from tests.integration.test_support_triage import classified
from tests.integration.test_tools_retrieval_guards import knowledge  # noqa: F401 (fixture)

UNCOVERED = "Can you recommend a good recipe for campfire chili for our scout troop?"
CITATION = re.compile(r"\[[\w.-]+#\d+\]")
COVERED = "how many days do I have to send something back"  # in-sample: qa_pairs.yaml


@pytest.mark.usefixtures("knowledge")
async def test_an_uncovered_question_cites_nothing_and_goes_to_a_person(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    await sim.add_rules(classified(UNCOVERED, "other", "complex"))
    handle = await runner.start(shipped_chain("support_triage", registry), {"message": UNCOVERED})

    [approval] = await wait_pending(handle)
    assert approval.context["help_center"] == "nothing relevant found"
    assert approval.context["ticket"] == UNCOVERED
    await decide(handle, approval, decision="approve")
    result = await handle.result()

    assert result.status == "completed"
    research = result.steps["research"].output
    assert research["nothing_relevant"] is True and research["passages"] == []
    assert research["min_score"] is not None and research["min_score"] > 0
    assert result.steps["answer"].branch == "otherwise"
    assert result.steps["grounded"].branch == "branches[0]"
    assert "let_me_check" in result.steps
    assert "grounded_answer" not in result.steps and "check_citations" not in result.steps
    # Nothing cited anywhere, and the strong model was never asked.
    assert not CITATION.search(str(result.steps["let_me_check"].output))
    assert not CITATION.search(str(result.output))
    assert "strong" not in result.usage.per_model
    assert result.output == result.steps["check_reply"].output


@pytest.mark.usefixtures("knowledge")
async def test_a_covered_question_still_cites_its_article(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    await sim.add_rules(classified(COVERED, "return", "complex"))

    result = await runner.run(shipped_chain("support_triage", registry), {"message": COVERED})

    assert result.status == "completed"
    research = result.steps["research"].output
    assert research["nothing_relevant"] is False
    passages = research["passages"]
    assert passages and passages[0]["document"] == "returns.md"
    assert all(p["score"] >= research["min_score"] for p in passages)
    assert result.steps["grounded"].branch == "otherwise"
    assert f"[{passages[0]['id']}]" in result.steps["grounded_answer"].output
    assert result.steps["check_citations"].violations == []
    assert result.steps["review"].branch == "not required (when did not hold)"
    assert result.approvals == []

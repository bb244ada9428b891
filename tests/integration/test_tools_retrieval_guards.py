"""Tool, retrieve and guard steps inside real chain runs."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.control import SimulatorControl
from simulator.models import Rule
from store.engine import session_scope
from store.knowledge.search import search
from store.sample_knowledge import ingest_sample_knowledge
from tests.integration.conftest import FAST_RETRY, ChainRunner, load_spec
from tests.integration.test_approvals import decide, wait_pending


@pytest.fixture(scope="session")
def knowledge(store_engine: Any) -> Any:
    ingest_sample_knowledge(store_engine)
    return store_engine


def chain(registry: Any, *steps: dict[str, Any], **extra: Any):
    return load_spec(
        {"name": "tools_and_guards", "defaults": FAST_RETRY, "steps": list(steps), **extra},
        registry,
    )


async def test_tool_step_runs_a_registered_tool_with_templated_arguments(
    runner: ChainRunner, registry: Any
) -> None:
    spec = chain(
        registry,
        {"name": "order", "kind": "tool", "tool": "lookup_order",
         "arguments": {"order_id": "{{ input.order }}"}},
    )  # fmt: skip

    result = await runner.run(spec, {"order": "NW-1001"})

    assert result.status == "completed"
    assert result.output["found"] is True and result.output["order_id"] == "NW-1001"


async def test_a_failing_tool_fails_the_step_with_a_typed_error(
    runner: ChainRunner, registry: Any
) -> None:
    spec = chain(
        registry,
        {"name": "refund", "kind": "tool", "tool": "create_ticket",
         "arguments": {"subject": "x", "body": "y", "priority": "not-a-priority"}},
    )  # fmt: skip

    error, partial, _ = await runner.run_failing(spec, {})

    assert error.type == "ToolInvalidArguments"
    assert "step refund: tool create_ticket failed" in error.message and "priority" in error.message
    assert partial.steps["refund"].status == "failed"


async def test_retrieve_step_returns_cited_passages_from_the_collection(
    runner: ChainRunner, registry: Any, knowledge: Any
) -> None:
    spec = chain(
        registry,
        {"name": "research", "kind": "retrieve", "collection": "help_center",
         "query": "{{ input.q }}", "top_k": 3},
    )  # fmt: skip

    result = await runner.run(spec, {"q": "how long does a refund take to reach my card"})

    passages = result.output["passages"]
    assert result.output["ranking"] == "fts" and len(passages) == 3
    assert passages[0]["document"] == "refunds.md"
    assert passages[0]["id"].startswith("refunds.md#") and passages[0]["text"]


QUERY = "how long does a refund take to reach my card"
PROMPT = (
    "{% for p in steps.research.output.passages %}[{{ p.id }}] {{ p.text }}\n{% endfor %}"
    "Q: {{ input.q }}"
)


def first_passage_id(engine: Any) -> str:
    """What the retrieve step below will return first (same store, same query)."""
    with session_scope(engine) as session:
        return search(session, collection="help_center", query=QUERY, top_k=2)[0].id


def grounded(registry: Any, on_fail: str, **guard: Any):
    return chain(
        registry,
        {"name": "research", "kind": "retrieve", "collection": "help_center",
         "query": QUERY, "top_k": 2},
        {"name": "answer", "kind": "model", "model": "strong", "prompt": PROMPT},
        {"name": "check", "kind": "guard", "target": "answer", "on_fail": on_fail,
         "rules": {"citations_from": "research", "pii": ["email"]}, **guard},
    )  # fmt: skip


async def test_guard_retry_feeds_violations_back_and_accepts_the_fixed_answer(
    runner: ChainRunner, sim: SimulatorControl, registry: Any, knowledge: Any
) -> None:
    cited = first_passage_id(knowledge)
    await sim.add_rules(
        Rule(
            model="sim-large",
            replies=[
                "Refunds take 5 days [made-up.md#9]. Mail me at a@b.example",
                f"Refunds reach your card in 5 to 10 business days [{cited}].",
            ],
        )
    )

    result = await runner.run(grounded(registry, "retry"), {"q": "refund?"})

    assert result.status == "completed"
    assert result.output.endswith(f"[{cited}].")
    [violations] = result.steps["check"].violations
    assert "citation_unknown" in violations and "pii_email" in violations
    second = [c for c in await sim.calls() if c.model == "sim-large"][1]
    assert "did not pass these checks" in second.prompt and "made-up.md#9" in second.prompt
    assert [c.purpose for c in result.steps["answer"].calls] == ["answer", "answer"]


async def test_guard_fail_lists_the_violations(
    runner: ChainRunner, sim: SimulatorControl, registry: Any, knowledge: Any
) -> None:
    await sim.add_rules(Rule(model="sim-large", reply="No sources, email x@y.example"))

    error, partial, _ = await runner.run_failing(grounded(registry, "fail"), {"q": "refund?"})

    assert error.type == "GuardFailed"
    assert "citation_missing" in error.message and "pii_email" in error.message
    assert "x@y.example" not in error.message  # the guard names positions, not the data
    assert partial.steps["check"].status == "failed"


async def test_guard_escalate_asks_a_person_who_can_edit_the_output(
    runner: ChainRunner, sim: SimulatorControl, registry: Any, knowledge: Any
) -> None:
    await sim.add_rules(Rule(model="sim-large", reply="Refunds take ages."))
    handle = await runner.start(grounded(registry, "escalate"), {"q": "refund?"})

    [approval] = await wait_pending(handle)
    assert approval.approval_id == "check" and "citation_missing" in approval.context["violations"]
    await decide(handle, approval, decision="edit", edited_text="5-10 business days.")
    result = await handle.result()

    assert result.status == "completed" and result.output == "5-10 business days."
    assert result.steps["answer"].output == "5-10 business days."


async def test_approving_an_escalated_structured_output_keeps_it_structured(
    runner: ChainRunner, sim: SimulatorControl, registry: Any
) -> None:
    await sim.add_rules(Rule(model="sim-mini", json={"note": "write to ops@example.com"}))
    spec = chain(
        registry,
        {"name": "draft", "kind": "model", "model": "cheap", "prompt": "Note please",
         "output_schema": {"type": "object", "properties": {"note": {"type": "string"}},
                           "required": ["note"]}},
        {"name": "check", "kind": "guard", "target": "draft", "on_fail": "escalate",
         "rules": {"pii": ["email"]}},
    )  # fmt: skip
    handle = await runner.start(spec, {})

    [approval] = await wait_pending(handle)
    await decide(handle, approval)  # approve as shown
    result = await handle.result()

    assert result.output == {"note": "write to ops@example.com"}
    assert result.steps["draft"].output == {"note": "write to ops@example.com"}

"""Tool, retrieve and guard steps against stub activities: what the workflow
sends the tool and retrieval activities (rendered arguments, queries, keys),
how their results and failures reach the run, and how a guard retries or
fails a model step."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.retrieval.types import RetrieveInput
from activities.tools.types import ToolCallInput, ToolErrorType
from core.chain_errors import ChainErrorType
from tests.workflows.stubs import Harness, model, purposes, stub_harness
from workflows.steps.guard import GUARD_RETRY_PROMPT

ORDER = {"order": "A-17", "kind": "refund"}


@pytest.fixture
async def chains(temporal_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    async with stub_harness(temporal_env, task_queue) as harness:
        yield harness


def tool(name: str, tool_name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "tool", "tool": tool_name, **extra}


# -- tools -----------------------------------------------------------------------------


async def test_a_tool_runs_with_rendered_arguments_and_its_output_reaches_later_steps(
    chains: Harness,
) -> None:
    lookup = tool(
        "order",
        "lookup_order",
        arguments={"order_id": "{{ input.order }}", "tags": ["{{ input.kind }}", 3]},
        idempotency_key="look-{{ input.order }}",
    )
    answer = model(
        "answer",
        "cheap",
        prompt="{{ steps.order.output.order_id }} is {{ steps.order.output.status }}",
    )
    result = await chains.result([lookup, answer], ORDER)

    assert chains.stubs.tool_calls == [
        ToolCallInput(
            tool="lookup_order",
            arguments={"order_id": "A-17", "tags": ["refund", 3]},
            idempotency_key="look-A-17",
            step="order",
        )
    ]
    assert result.steps["order"].output == {"order_id": "A-17", "status": "shipped"}
    assert result.output == "cheap: A-17 is shipped"


async def test_an_unknown_tool_fails_the_run_before_any_step(chains: Harness) -> None:
    error, partial = await chains.failure([model("first", "cheap"), tool("t", "nope")])

    assert error.type == ChainErrorType.UNKNOWN_TOOL
    assert "tools the worker's registry does not know: nope" in error.message
    assert (chains.stubs.model_calls, partial.steps) == ([], {})


async def test_a_failing_tool_fails_the_run_with_the_tools_error_type(chains: Harness) -> None:
    error, partial = await chains.failure([tool("check", "broken")])

    assert error.type == ToolErrorType.FAILED
    assert error.message == ("step check: tool broken failed: ToolFailed: the order system is down")
    assert len(chains.stubs.tool_calls) == 1  # its registry entry allows one attempt
    assert partial.steps["check"].status == "failed"


REFUND = tool("pay", "refund", arguments={"order_id": "{{ input.order }}", "amount": 20})


async def test_a_tool_that_needs_approval_runs_with_the_approved_arguments(
    chains: Harness,
) -> None:
    started = await chains.start([REFUND], ORDER)
    approval = await chains.pending(started)

    assert json.loads(approval.text) == {"order_id": "A-17", "amount": 20}
    assert approval.context == {"tool": "refund", "description": "stub refund"}
    assert chains.stubs.tool_calls == []
    edited = json.dumps({"order_id": "A-17", "amount": 15})
    await chains.decide(started, approval, "edit", edited_text=edited)
    result = await chains.finish(started)

    assert [c.arguments for c in chains.stubs.tool_calls] == [{"order_id": "A-17", "amount": 15}]
    assert result.output == {"refunded": 15, "order_id": "A-17"}


async def test_a_rejected_tool_never_runs(chains: Harness) -> None:
    started = await chains.start([REFUND], ORDER)
    await chains.decide(started, await chains.pending(started), "reject", comment="no refunds")
    result = await chains.finish(started)

    assert (result.status, result.error) == ("rejected", "step pay: rejected by alice: no refunds")
    assert chains.stubs.tool_calls == []


# -- retrieval -------------------------------------------------------------------------


CITED_ANSWER = model(
    "answer",
    "cheap",
    prompt="{% for p in steps.ground.output.passages %}[{{ p.id }}] {% endfor %}",
)


def ground(collection: str = "help") -> dict[str, Any]:
    return {
        "name": "ground",
        "kind": "retrieve",
        "collection": collection,
        "query": "refund for {{ input.order }}",
        "top_k": 2,
    }


def cited(on_fail: str = "fail") -> dict[str, Any]:
    return {
        "name": "cites",
        "kind": "guard",
        "target": "answer",
        "rules": {"citations_from": "ground"},
        "on_fail": on_fail,
    }


async def test_a_retrieve_step_sends_the_rendered_query_and_passes_its_passages_on(
    chains: Harness,
) -> None:
    result = await chains.result([ground(), CITED_ANSWER, cited()], ORDER)

    assert chains.stubs.retrievals == [
        # A new run asks the activity to apply the store's default minimum score.
        RetrieveInput(
            collection="help",
            query="refund for A-17",
            top_k=2,
            step="ground",
            apply_min_score=True,
        )
    ]
    output = result.steps["ground"].output
    assert (output["query"], output["collection"]) == ("refund for A-17", "help")
    assert [p["id"] for p in output["passages"]] == ["refunds.md#0", "refunds.md#1"]
    assert result.output == "cheap: [refunds.md#0] [refunds.md#1] "
    assert result.steps["cites"].violations == []


async def test_a_citation_of_a_passage_not_retrieved_fails_the_guard(chains: Harness) -> None:
    chains.stubs.script("cheap", "See [refunds.md#2].")
    error, _ = await chains.failure([ground(), CITED_ANSWER, cited()], ORDER)

    assert error.type == ChainErrorType.GUARD_FAILED
    assert "refunds.md#2" in error.message


async def test_a_retrieval_failure_fails_the_run_naming_its_cause(chains: Harness) -> None:
    error, _ = await chains.failure([ground("nope"), CITED_ANSWER], ORDER)

    assert error.type == ChainErrorType.RETRIEVAL_FAILED
    assert error.message == "step ground: UnknownCollection: no collection 'nope'"
    assert chains.stubs.model_calls == []


# -- guards ----------------------------------------------------------------------------


def guarded(on_fail: str, **extra: Any) -> list[dict[str, Any]]:
    no_email = {"name": "check", "kind": "guard", "target": "reply", "rules": {"pii": ["email"]}}
    return [
        model("reply", "writer", prompt="Who do I ask?"),
        {**no_email, "on_fail": on_fail, **extra},
    ]


async def test_a_guard_that_retries_asks_the_model_again_with_the_violations(
    chains: Harness,
) -> None:
    chains.stubs.script("writer", "Write to bob@example.com", "Use the support form")
    result = await chains.result(guarded("retry"))

    assert result.output == result.steps["reply"].output == "Use the support form"
    [violation] = result.steps["check"].violations
    assert "email" in violation
    assert purposes(result, "reply") == [("writer", "answer", "ok")] * 2
    retried = chains.stubs.model_calls[1].messages
    assert [(m.role, m.content) for m in retried] == [
        ("user", "Who do I ask?"),
        ("assistant", "Write to bob@example.com"),
        ("user", GUARD_RETRY_PROMPT.format(violation)),
    ]


@pytest.mark.parametrize(
    ("on_fail", "calls", "phrase"),
    [("fail", 1, "failed its checks: - "), ("retry", 2, "failed its checks after 1 retries")],
)
async def test_a_guard_that_fails_ends_the_run_with_guard_failed(
    chains: Harness, on_fail: str, calls: int, phrase: str
) -> None:
    chains.stubs.script("writer", "Write to bob@example.com", "Or to ann@example.com")
    error, partial = await chains.failure(guarded(on_fail, max_retries=1))

    assert error.type == ChainErrorType.GUARD_FAILED
    assert "step check: the output of reply " + phrase in error.message
    assert len(chains.stubs.model_calls) == calls
    assert partial.steps["check"].status == "failed"
    assert chains.stubs.run_records[-1].status == "failed"

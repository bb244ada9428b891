"""The optional judge: a model alias asked, through the ordinary gateway
activity (journaled, priced, retried by Temporal), to grade an answer against
the case's reference and checks with a fixed rubric. Its cost is reported
apart from the variant's. A judge that fails or answers off the rubric leaves
the case unjudged (`JudgeVerdict.error`) rather than failing the evaluation:
the deterministic checks still decide pass or fail."""

from __future__ import annotations

import json
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.evals.types import JudgeVerdict
    from activities.gateway.types import ChatMessage, ModelCallInput, ModelCallResult
    from core.evals.spec import EvalCase
    from core.names import CALL_MODEL

JUDGE_TIMEOUT = timedelta(seconds=120)
JUDGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=20),
    maximum_attempts=4,
)
JUDGE_MAX_TOKENS = 200
ANSWER_CHARS = 6_000
"""Of the answer, what the judge reads (its prompt stays bounded)."""

RUBRIC = (
    "You grade a customer-support answer. Score from 0 to 1: 1 when it answers the "
    "customer's question correctly and completely, consistent with the reference answer "
    "and the required facts; 0.5 when partly; 0 when wrong, unsafe or off-topic. Reply "
    'with JSON only: {"score": <number>, "reason": "<one sentence>"}.'
)
SCHEMA = {
    "type": "object",
    "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string"},
    },
    "required": ["score"],
}


def judge_request(alias: str, case: EvalCase, answer: str) -> ModelCallInput:
    facts = [c.model_dump(exclude_none=True) for c in case.checks]
    prompt = (
        f"Customer input:\n{json.dumps(case.input, ensure_ascii=False)}\n\n"
        f"Reference answer:\n{case.reference or '(none)'}\n\n"
        f"Checks the answer must pass:\n{json.dumps(facts, ensure_ascii=False)}\n\n"
        f"Answer to grade:\n{answer[:ANSWER_CHARS]}"
    )
    return ModelCallInput(
        alias=alias,
        messages=[
            ChatMessage(role="system", content=RUBRIC),
            ChatMessage(role="user", content=prompt),
        ],
        max_tokens=JUDGE_MAX_TOKENS,
        temperature=0,
        json_schema=SCHEMA,
        step=f"judge:{case.id}",
    )


async def judge_case(alias: str, case: EvalCase, answer: str) -> JudgeVerdict:
    try:
        reply = await workflow.execute_activity(
            CALL_MODEL,
            judge_request(alias, case, answer),
            result_type=ModelCallResult,
            start_to_close_timeout=JUDGE_TIMEOUT,
            retry_policy=JUDGE_RETRY,
            summary=f"judge {alias} on {case.id}",
        )
    except ActivityError as err:
        cause = err.cause
        return JudgeVerdict(alias=alias, error=str(cause or err)[:500])
    parsed = reply.parsed
    score = parsed.get("score") if isinstance(parsed, dict) else None
    if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
        return JudgeVerdict(
            alias=alias, cost_usd=reply.cost_usd, error="the judge answered off the rubric"
        )
    return JudgeVerdict(alias=alias, score=float(score), cost_usd=reply.cost_usd)

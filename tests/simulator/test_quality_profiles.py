"""Per-model quality profiles: answers read from the prompt, errors at the
configured rates, the same answer for the same call, and no change at all
for models without a profile."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from simulator.models import (
    SimulatorConfigError,
    default_simulator_config,
    load_simulator_config,
)
from simulator.quality import (
    UNGROUNDED_ANSWER,
    UNSUPPORTED_ANSWER,
    QualityProfile,
    quality_reply,
    quality_structured_reply,
)
from simulator.server import SimulatorServer

QUALITY_CONFIG = Path(__file__).resolve().parents[2] / "simulator" / "quality_models.yaml"

CLASSIFY_SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["refund", "return", "shipping", "other"]},
        "complexity": {"type": "string", "enum": ["simple", "complex"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["category", "complexity", "confidence"],
    "additionalProperties": False,
}
KEYWORDS = {"refund": ["refund", "money back"], "return": ["return", "send back"]}


def classify_prompt(ticket: str) -> str:
    return (
        "Classify this ticket.\ncategory: refund, return, shipping or other.\n"
        f"complexity: simple or complex.\n\nTicket: {ticket}"
    )


def grounded_prompt(question: str) -> str:
    return (
        "Help Center passages:\n\n"
        "[refunds.md#2] Card refunds arrive in 5 to 10 business days. "
        "PayPal refunds arrive within 2 business days.\n\n"
        "[shipping.md#1] Standard shipping costs $5.95 and is free on orders of $75 or more.\n\n"
        f"Question (refund, urgency normal):\n{question}\n"
    )


def test_the_shipped_default_models_have_no_profile() -> None:
    """Every existing test and the demo keep the plain echo replies."""
    assert all(m.quality is None for m in default_simulator_config().models.values())


def test_the_quality_config_makes_the_small_model_worse_than_the_strong_one() -> None:
    models = load_simulator_config(QUALITY_CONFIG).models
    small, strong = models["sim-mini"].quality, models["sim-large"].quality
    assert small is not None and strong is not None
    assert small.misclassify_rate > strong.misclassify_rate
    assert (small.hard_omit_rate or 0) > (strong.hard_omit_rate or 0)
    assert small.keywords == strong.keywords  # the same reading, different error rates
    assert models["sim-judge"].quality is None


def test_x_keys_are_anchors_only_and_unknown_keys_still_fail(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("x-shared: &s {latency_ms: 1}\nmodels:\n  m: *s\n", encoding="utf-8")
    assert load_simulator_config(path).models["m"].latency_ms == 1
    path.write_text("shared: 1\nmodels: {m: {}}\n", encoding="utf-8")
    with pytest.raises(SimulatorConfigError, match="shared"):
        load_simulator_config(path)


def test_a_grounded_answer_quotes_and_cites_the_passages() -> None:
    profile = QualityProfile()
    answer = quality_reply(profile, "sim-large", grounded_prompt("How long do card refunds take?"))
    assert "Card refunds arrive in 5 to 10 business days. [refunds.md#2]" in answer
    assert "$5.95" not in answer  # the other passage shares no word with the question
    assert answer == quality_reply(
        profile, "sim-large", grounded_prompt("How long do card refunds take?")
    )


def test_sources_that_do_not_answer_get_an_honest_reply_unless_the_model_guesses() -> None:
    prompt = grounded_prompt("Do you sponsor trail running races in Oregon?")
    assert quality_reply(QualityProfile(), "m", prompt) == UNSUPPORTED_ANSWER
    guesser = QualityProfile(unsupported_answer_rate=1.0)
    assert "[refunds.md#2]" in quality_reply(guesser, "m", prompt)


def test_omitted_sentences_are_how_a_fact_goes_missing() -> None:
    prompt = grounded_prompt("How long do card refunds take?")
    assert quality_reply(QualityProfile(omit_rate=1.0), "m", prompt) == UNSUPPORTED_ANSWER
    omitted = [
        "5 to 10" not in quality_reply(QualityProfile(omit_rate=0.3, seed=seed), "m", prompt)
        for seed in range(200)
    ]
    # Seeds 0-199 are fixed, so this count is too; the bounds say what it means.
    assert 40 <= sum(omitted) <= 80


def test_a_rewrite_carries_the_answer_with_its_citations() -> None:
    prompt = (
        "Rewrite the answer below.\nCustomer: Dana\nAnswer: Refunds take 5 days. [refunds.md#2]"
    )
    assert quality_reply(QualityProfile(), "w", prompt) == (
        "Hi Dana,\n\nRefunds take 5 days. [refunds.md#2]"
    )
    assert quality_reply(QualityProfile(), "w", "Question: what?") == UNGROUNDED_ANSWER


def test_classification_reads_the_ticket_not_the_instructions() -> None:
    profile = QualityProfile(keywords=KEYWORDS)
    short = quality_structured_reply(
        profile, "m", classify_prompt("I want my money back"), CLASSIFY_SCHEMA
    )
    jsonschema.validate(short, CLASSIFY_SCHEMA)
    assert (short["category"], short["complexity"]) == ("refund", "simple")
    long_ticket = "I need to send back the boots I bought. " * 6
    long = quality_structured_reply(profile, "m", classify_prompt(long_ticket), CLASSIFY_SCHEMA)
    assert (long["category"], long["complexity"]) == ("return", "complex")
    nothing = quality_structured_reply(profile, "m", classify_prompt("hello"), CLASSIFY_SCHEMA)
    assert nothing["category"] == "other"


def test_misclassification_happens_at_the_configured_rate_with_lower_confidence() -> None:
    profile = QualityProfile(keywords=KEYWORDS, misclassify_rate=0.25)
    outcomes = [
        quality_structured_reply(
            profile, "sim-mini", classify_prompt(f"refund for order {n}"), CLASSIFY_SCHEMA
        )
        for n in range(400)
    ]
    wrong = [o for o in outcomes if o["category"] != "refund" or o["complexity"] != "simple"]
    # Two enum fields, each wrong at 25%: about 44% of tickets have at least one error.
    assert 140 <= len(wrong) <= 210
    low, high = profile.confidence_when_wrong
    assert all(low <= o["confidence"] <= high for o in wrong)
    right = [o for o in outcomes if o not in wrong]
    mean = sum(o["confidence"] for o in right) / len(right)
    assert mean > sum(o["confidence"] for o in wrong) / len(wrong)


def test_the_same_call_gets_the_same_answer_and_models_differ_by_seed() -> None:
    prompt = classify_prompt("refund please")
    noisy = QualityProfile(keywords=KEYWORDS, misclassify_rate=0.5)
    first = [quality_structured_reply(noisy, "a", prompt, CLASSIFY_SCHEMA) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    by_model = {
        json.dumps(quality_structured_reply(noisy, f"model-{n}", prompt, CLASSIFY_SCHEMA))
        for n in range(20)
    }
    assert len(by_model) > 1


@pytest.fixture(scope="module")
async def quality_http() -> AsyncIterator[httpx.AsyncClient]:
    async with (
        SimulatorServer(load_simulator_config(QUALITY_CONFIG)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        yield client


async def test_profiles_answer_over_http_and_unprofiled_models_echo(
    quality_http: httpx.AsyncClient,
) -> None:
    body = {
        "model": "sim-large",
        "messages": [
            {"role": "user", "content": grounded_prompt("How long do card refunds take?")}
        ],
    }
    reply = await quality_http.post("/v1/chat/completions", json=body)
    text = reply.json()["choices"][0]["message"]["content"]
    assert "[refunds.md#2]" in text and "5 to 10 business days" in text

    fmt = {"type": "json_schema", "json_schema": {"name": "t", "schema": CLASSIFY_SCHEMA}}
    body = {
        "model": "sim-large",
        "messages": [{"role": "user", "content": classify_prompt("Where is my refund?")}],
        "response_format": fmt,
    }
    reply = await quality_http.post("/v1/chat/completions", json=body)
    parsed = json.loads(reply.json()["choices"][0]["message"]["content"])
    jsonschema.validate(parsed, CLASSIFY_SCHEMA)
    assert parsed["category"] == "refund"

    body = {"model": "sim-judge", "messages": [{"role": "user", "content": "Rate this."}]}
    reply = await quality_http.post("/v1/chat/completions", json=body)
    assert reply.json()["choices"][0]["message"]["content"] == (
        "[simulated sim-judge] reply to: Rate this."
    )

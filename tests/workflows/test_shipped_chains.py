"""The chains shipped in chains/ parse, validate against the shipped model
registry, and their templates and conditions work on realistic run contexts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from core.chain_spec import ChainSpec, ModelStep, ParallelStep, RouteStep
from workflows.templating import evaluate_bool, render
from workflows.validate import iter_steps, parse_chain_yaml, validate_chain, validate_input

CHAINS = Path(__file__).resolve().parents[2] / "chains"
ALIASES = frozenset({"cheap", "cheap_b", "strong", "writer", "judge", "embed"})


def load(name: str) -> ChainSpec:
    return parse_chain_yaml((CHAINS / f"{name}.yaml").read_text())


def steps_by_name(spec: ChainSpec) -> dict[str, Any]:
    return {step.name: step for _, step in iter_steps(spec.steps)}


def registry_aliases() -> set[str]:
    data = yaml.safe_load((CHAINS / "models.yaml").read_text())
    return set(data["models"])


def test_registry_ships_the_aliases_chains_are_written_for() -> None:
    assert registry_aliases() >= ALIASES


@pytest.mark.parametrize("name", ["classify_then_answer", "ask_two_judge"])
def test_chain_is_valid(name: str) -> None:
    spec = load(name)
    assert spec.name == name
    assert validate_chain(spec, ALIASES) == []


@pytest.mark.parametrize(
    "path", sorted(p for p in CHAINS.glob("*.yaml") if p.name != "models.yaml"), ids=str
)
def test_every_shipped_chain_validates_against_the_shipped_registry(path: Path) -> None:
    spec = parse_chain_yaml(path.read_text())
    assert validate_chain(spec, registry_aliases()) == []
    assert path.stem == spec.name  # the CLI and the API find chains by file name


# -- classify_then_answer ---------------------------------------------------------------


def test_classify_then_answer_shape() -> None:
    spec = load("classify_then_answer")
    steps = steps_by_name(spec)
    classify, answer = spec.steps
    assert isinstance(classify, ModelStep) and isinstance(answer, RouteStep)
    assert (classify.name, classify.model, classify.temperature) == ("classify", "cheap", 0)
    assert classify.output_schema is not None
    assert classify.output_schema["properties"]["complexity"]["enum"] == ["simple", "complex"]
    assert steps["answer_simple"].model == "cheap"
    assert (steps["answer_complex"].model, steps["answer_complex"].fallbacks) == (
        "strong",
        ["cheap"],
    )
    assert spec.limits.max_cost_usd == 0.05
    assert spec.output == "answer"


@pytest.mark.parametrize(
    ("output", "ok"),
    [
        ({"complexity": "simple", "topic": "geography"}, True),
        ({"complexity": "complex", "topic": "physics"}, True),
        ({"complexity": "medium", "topic": "physics"}, False),
        ({"complexity": "simple"}, False),
        ("simple", False),
    ],
)
def test_classify_output_schema(output: Any, ok: bool) -> None:
    spec = load("classify_then_answer")
    schema = steps_by_name(spec)["classify"].output_schema
    assert Draft202012Validator(schema).is_valid(output) is ok


@pytest.mark.parametrize(
    ("complexity", "chosen"), [("simple", "answer_simple"), ("complex", "answer_complex")]
)
def test_classify_then_answer_routes_and_renders(complexity: str, chosen: str) -> None:
    spec = load("classify_then_answer")
    steps = steps_by_name(spec)
    run_input = {"question": "What is the capital of France?"}
    context: dict[str, Any] = {"input": run_input, "steps": {}}
    classify_prompt = render(steps["classify"].prompt, context)
    assert "Question: What is the capital of France?" in classify_prompt

    context["steps"]["classify"] = {
        "output": {"complexity": complexity, "topic": "geography"},
        "model": "cheap",
        "escalated": False,
    }
    route = steps["answer"]
    taken = next((b.steps for b in route.branches if evaluate_bool(b.when, context)), None)
    taken = taken if taken is not None else route.otherwise
    assert [s.name for s in taken] == [chosen]
    step = taken[0]
    assert "What is the capital of France?" in render(step.prompt, context)
    if step.system is not None:
        assert "geography" in render(step.system, context)


def test_classify_then_answer_input_schema() -> None:
    spec = load("classify_then_answer")
    assert validate_input(spec, {"question": "Why?"}) == []
    [problem] = validate_input(spec, {"query": "Why?"})
    assert (problem.path, problem.message) == ("input", "'question' is a required property")


# -- ask_two_judge ------------------------------------------------------------------------


def test_ask_two_judge_shape() -> None:
    spec = load("ask_two_judge")
    ask, judge = spec.steps
    assert isinstance(ask, ParallelStep) and isinstance(judge, ModelStep)
    assert [(b.name, [s.model for s in b.steps]) for b in ask.branches] == [
        ("a", ["cheap"]),
        ("b", ["strong"]),
    ]
    assert judge.model == "judge"
    assert judge.output_schema is not None
    assert judge.output_schema["properties"]["winner"]["enum"] == ["a", "b"]
    assert spec.output == "judge"


def test_ask_two_judge_renders_both_answers_for_the_judge() -> None:
    spec = load("ask_two_judge")
    ask, judge = spec.steps
    assert isinstance(ask, ParallelStep) and isinstance(judge, ModelStep)
    context: dict[str, Any] = {"input": {"question": "Why is the sky blue?"}, "steps": {}}
    for branch in ask.branches:
        assert "Why is the sky blue?" in render(branch.steps[0].prompt, context)
    context["steps"]["ask"] = {"output": {"a": "ANSWER-A", "b": "ANSWER-B"}}
    prompt = render(judge.prompt, context)
    assert prompt.index("ANSWER-A") < prompt.index("ANSWER-B")
    assert "Why is the sky blue?" in prompt
    verdict = Draft202012Validator(judge.output_schema)
    assert verdict.is_valid({"winner": "b", "reason": "more precise"})
    assert not verdict.is_valid({"winner": "c", "reason": "?"})

"""Chain spec validation: every bad spec is refused with the document path of
the problem and a message that says what is wrong."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from core.chain_spec import ModelStep, ParallelStep, RouteStep, ToolStep
from workflows.validate import (
    DOCUMENT,
    ChainSpecError,
    SpecProblem,
    check_chain,
    iter_steps,
    load_chain_yaml,
    parse_chain,
    parse_chain_yaml,
    validate_chain,
    validate_input,
)

ALIASES = frozenset({"cheap", "cheap_b", "strong", "writer", "judge", "embed"})
TOOLS = frozenset({"lookup_order", "issue_refund", "search_kb"})


def model(name: str, prompt: str = "{{ input.question }}", **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "model", "model": "cheap", "prompt": prompt, **extra}


def route(name: str, *branches: tuple[str, list[Any]], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "route",
        "branches": [{"when": when, "steps": steps} for when, steps in branches],
        **extra,
    }


def parallel(name: str, **branches: list[Any]) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "parallel",
        "branches": [{"name": b, "steps": steps} for b, steps in branches.items()],
    }


def retrieve(name: str, query: str = "{{ input.question }}", **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "retrieve", "collection": "help_center", "query": query, **extra}


def tool(name: str, tool: str = "lookup_order", **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "tool", "tool": tool, **extra}


def guard(name: str, target: str, rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "guard", "target": target, "rules": rules, **extra}


def agent(name: str, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"model": "strong", "prompt": "{{ input.question }}"}
    return {"name": name, "kind": "agent", **fields, **extra}


SHORT = {"max_length": 500}


def chain(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "test_chain", "steps": list(steps), **extra}


def problems_of(data: dict[str, Any]) -> list[SpecProblem]:
    """Parse problems if the spec does not parse, else its semantic problems."""
    try:
        spec = parse_chain(data)
    except ChainSpecError as err:
        return err.problems
    return validate_chain(spec, ALIASES, known_tools=TOOLS)


SIMPLE = "steps.classify.output.complexity == 'simple'"

# (id, spec, path, phrase): each spec has exactly one problem, at `path`.
BAD_SPECS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "unknown alias",
        chain(model("a", model="cheep")),
        "steps[0].model",
        "unknown model alias 'cheep' (did you mean 'cheap'?)",
    ),
    (
        "unknown fallback alias",
        chain(model("a", fallbacks=["strong", "gpt9"])),
        "steps[0].fallbacks[1]",
        "unknown model alias 'gpt9'",
    ),
    (
        "unknown escalate_to alias",
        chain(model("a", escalate_to="stronger", escalate_when="output == ''")),
        "steps[0].escalate_to",
        "unknown model alias 'stronger'",
    ),
    (
        "unknown budget_fallback alias",
        chain(model("a", budget_fallback="free")),
        "steps[0].budget_fallback",
        "unknown model alias 'free'",
    ),
    (
        "unknown step in template",
        chain(model("classify"), model("answer", "{{ steps.clasify.output }}")),
        "steps[1].prompt",
        "unknown step 'clasify' (did you mean 'classify'?)",
    ),
    (
        "unknown step by item in system",
        chain(model("a", system="{{ steps['ghost'].output }}")),
        "steps[0].system",
        "unknown step 'ghost'",
    ),
    (
        "unknown step in condition",
        chain(model("classify"), route("r", ("steps.nope.output == 1", [model("x")]))),
        "steps[1].branches[0].when",
        "unknown step 'nope'",
    ),
    (
        "forward reference",
        chain(model("first", "{{ steps.second.output }}"), model("second")),
        "steps[0].prompt",
        "step 'second' runs later",
    ),
    (
        "forward reference into a later route",
        chain(model("a", "{{ steps.deep.output }}"), route("r", ("true", [model("deep")]))),
        "steps[0].prompt",
        "step 'deep' runs later",
    ),
    (
        "sibling parallel branch",
        chain(parallel("p", a=[model("left")], b=[model("right", "{{ steps.left.output }}")])),
        "steps[0].branches[1].steps[0].prompt",
        "sibling branch 'a' of parallel step 'p', which runs at the same time",
    ),
    (
        "sibling route branch",
        chain(
            model("classify"),
            route(
                "answer",
                (SIMPLE, [model("simple")]),
                otherwise=[model("hard", "{{ steps.simple.output }}")],
            ),
        ),
        "steps[1].otherwise[0].prompt",
        "another branch of route 'answer'; only one branch runs",
    ),
    (
        "self reference",
        chain(model("a", "{{ steps.a.output }}")),
        "steps[0].prompt",
        "refers to itself",
    ),
    (
        "self reference in escalate_when",
        chain(model("a", escalate_to="strong", escalate_when="steps.a.output == ''")),
        "steps[0].escalate_when",
        "refers to itself (use `output` in escalate_when)",
    ),
    (
        "enclosing step",
        chain(route("r", ("true", [model("inner", "{{ steps.r.output }}")]))),
        "steps[0].branches[0].steps[0].prompt",
        "step 'r' encloses this step",
    ),
    (
        "condition reads a step inside its own route",
        chain(route("r", ("steps.inner.output", [model("inner")]))),
        "steps[0].branches[0].when",
        "step 'inner' is inside this step and has not run yet",
    ),
    (
        "duplicate step names",
        chain(model("a"), model("a")),
        "steps[1].name",
        "duplicate step name 'a' (first used at steps[0])",
    ),
    (
        "duplicate nested step name",
        chain(model("a"), route("r", ("true", [model("b")]), otherwise=[model("a")])),
        "steps[1].otherwise[0].name",
        "duplicate step name 'a' (first used at steps[0])",
    ),
    (
        "duplicate names across parallel branches",
        chain(parallel("p", x=[model("same")], y=[model("same")])),
        "steps[0].branches[1].steps[0].name",
        "duplicate step name 'same' (first used at steps[0].branches[0].steps[0])",
    ),
    (
        "duplicate branch names",
        chain(
            {
                "name": "p",
                "kind": "parallel",
                "branches": [
                    {"name": "x", "steps": [model("one")]},
                    {"name": "x", "steps": [model("two")]},
                ],
            }
        ),
        "steps[0].branches[1].name",
        "duplicate branch name 'x'",
    ),
    (
        "empty route branch",
        chain(model("a"), route("r", ("true", []), otherwise=[model("b")])),
        "steps[1].branches[0].steps",
        "routes nowhere",
    ),
    (
        "empty otherwise",
        chain(route("r", ("true", [model("b")]), otherwise=[])),
        "steps[0].otherwise",
        "otherwise routes nowhere",
    ),
    (
        "empty parallel branch",
        chain(parallel("p", x=[model("one")], y=[])),
        "steps[0].branches[1].steps",
        "parallel branch 'y' has no steps",
    ),
    (
        "bad kind",
        chain({"name": "a", "kind": "modle", "model": "cheap", "prompt": "x"}),
        "steps[0].kind",
        "unknown step kind 'modle' "
        "(allowed: model, route, parallel, approval, retrieve, tool, guard, agent)",
    ),
    (
        "missing kind",
        chain({"name": "a", "model": "cheap", "prompt": "x"}),
        "steps[0].kind",
        "missing step kind "
        "(allowed: model, route, parallel, approval, retrieve, tool, guard, agent)",
    ),
    (
        "missing prompt",
        chain({"name": "a", "kind": "model", "model": "cheap"}),
        "steps[0].prompt",
        "required field is missing",
    ),
    (
        "missing field deep inside a parallel branch",
        chain(
            model("a"),
            parallel("p", x=[model("one")], y=[{"name": "two", "kind": "model", "prompt": "p"}]),
        ),
        "steps[1].branches[1].steps[0].model",
        "required field is missing",
    ),
    (
        "misspelt field",
        chain(model("a", promt="x")),
        "steps[0].promt",
        "unknown field 'promt' (did you mean 'prompt'?)",
    ),
    (
        "bad template syntax in prompt",
        chain(model("a", "Question:\n{{ input.question }"), model("b")),
        "steps[0].prompt",
        "line 2: syntax error",
    ),
    (
        "bad template syntax in system",
        chain(model("a", system="{% if input.x %}no end")),
        "steps[0].system",
        "syntax error",
    ),
    (
        "bad condition syntax",
        chain(model("classify"), route("r", ("steps.classify.output ==", [model("x")]))),
        "steps[1].branches[0].when",
        "syntax error",
    ),
    (
        "escalate_when without escalate_to",
        chain(model("a", escalate_when="output | length < 10")),
        "steps[0].escalate_when",
        "escalate_when needs escalate_to",
    ),
    (
        "escalate_to equal to model",
        chain(model("a", escalate_to="cheap", escalate_when="true")),
        "steps[0].escalate_to",
        "escalate_to names the step's own model",
    ),
    (
        "escalate_to that can never trigger",
        chain(model("a", escalate_to="strong")),
        "steps[0].escalate_to",
        "escalation can never happen",
    ),
    (
        "invalid output_schema",
        chain(model("a", output_schema={"type": "object", "properties": {"x": {"type": "strin"}}})),
        "steps[0].output_schema.properties.x.type",
        "not a valid JSON Schema",
    ),
    (
        "invalid input_schema",
        chain(model("a"), input_schema={"type": "object", "required": "question"}),
        "input_schema.required",
        "not a valid JSON Schema",
    ),
    (
        "bad step name",
        chain(model("my-step")),
        "steps[0].name",
        "invalid name 'my-step'",
    ),
    (
        "unknown output step",
        chain(model("a"), output="answr"),
        "output",
        "unknown step 'answr'",
    ),
    (
        "unknown variable",
        chain(model("a", "{{ question }}")),
        "steps[0].prompt",
        "unknown variable 'question' (available: input, steps)",
    ),
    (
        "output outside escalate_when",
        chain(model("a", "{{ output }}")),
        "steps[0].prompt",
        "unknown variable 'output'",
    ),
    (
        "unknown variable in a condition",
        chain(route("r", ("output.ok", [model("x")]))),
        "steps[0].branches[0].when",
        "unknown variable 'output'",
    ),
    (
        "parallel with one branch",
        chain(parallel("p", only=[model("x")])),
        "steps[0].branches",
        "at least 2",
    ),
    (
        "bad limit",
        chain(model("a"), limits={"max_cost_usd": 0}),
        "limits.max_cost_usd",
        "greater than 0",
    ),
    # -- guards --
    (
        "guard target unknown",
        chain(model("answer"), guard("g", "answr", SHORT)),
        "steps[1].target",
        "unknown step 'answr' (did you mean 'answer'?)",
    ),
    (
        "guard target later than the guard",
        chain(guard("g", "answer", SHORT), model("answer")),
        "steps[0].target",
        "step 'answer' runs later; a guard reads an earlier step's output",
    ),
    (
        "guard target is the guard itself",
        chain(model("answer"), guard("g", "g", SHORT)),
        "steps[1].target",
        "a guard cannot name itself",
    ),
    (
        "guard target in a sibling parallel branch",
        chain(parallel("p", a=[model("left")], b=[guard("g", "left", SHORT)])),
        "steps[0].branches[1].steps[0].target",
        "sibling branch 'a' of parallel step 'p'",
    ),
    (
        "guard retry over a retrieve step",
        chain(retrieve("docs"), guard("g", "docs", SHORT, on_fail="retry")),
        "steps[1].target",
        "must be a model step; 'docs' is a retrieve step",
    ),
    (
        "guard retry over a tool step",
        chain(tool("order"), guard("g", "order", SHORT, on_fail="retry")),
        "steps[1].target",
        "'order' is a tool step (use on_fail: escalate or fail)",
    ),
    (
        "guard with no rules",
        chain(model("answer"), guard("g", "answer", {})),
        "steps[1].rules",
        "always passes",
    ),
    (
        "guard citations_from names a model step",
        chain(model("answer"), guard("g", "answer", {"citations_from": "answer"})),
        "steps[1].rules.citations_from",
        "citations_from must name a retrieve step; 'answer' is a model step",
    ),
    (
        "guard citations_from names an unknown step",
        chain(retrieve("docs"), model("answer"), guard("g", "answer", {"citations_from": "doc"})),
        "steps[2].rules.citations_from",
        "unknown step 'doc' (did you mean 'docs'?)",
    ),
    (
        "guard citations_from names a later retrieve step",
        chain(model("answer"), guard("g", "answer", {"citations_from": "docs"}), retrieve("docs")),
        "steps[1].rules.citations_from",
        "step 'docs' runs later",
    ),
    (
        "guard forbidden pattern is not a regex",
        chain(model("a"), guard("g", "a", {"forbidden_patterns": ["ok", "(unclosed"]})),
        "steps[1].rules.forbidden_patterns[1]",
        "'(unclosed' is not a valid regular expression: missing ), unterminated subpattern",
    ),
    (
        "guard required pattern is not a regex",
        chain(model("a"), guard("g", "a", {"required_patterns": ["[a-"]})),
        "steps[1].rules.required_patterns[0]",
        "not a valid regular expression",
    ),
    (
        "guard pattern that backtracks exponentially",
        chain(model("a"), guard("g", "a", {"forbidden_patterns": [r"(\w+\s?)+$"]})),
        "steps[1].rules.forbidden_patterns[0]",
        "is a regular expression that can take exponential time (a repeat inside a repeat",
    ),
    (
        "guard min_length greater than max_length",
        chain(model("a"), guard("g", "a", {"min_length": 50, "max_length": 10})),
        "steps[1].rules.min_length",
        "min_length 50 is greater than max_length 10",
    ),
    (
        "guard json_schema is not a schema",
        chain(model("a"), guard("g", "a", {"json_schema": {"type": "strin"}})),
        "steps[1].rules.json_schema.type",
        "not a valid JSON Schema",
    ),
    (
        "guard duplicate PII kind",
        chain(model("a"), guard("g", "a", {"pii": ["email", "card", "email"]})),
        "steps[1].rules.pii[2]",
        "duplicate PII kind 'email'",
    ),
    (
        "guard unknown PII kind",
        chain(model("a"), guard("g", "a", {"pii": ["ssn"]})),
        "steps[1].rules.pii[0]",
        "'email', 'phone' or 'card'",
    ),
    (
        "guard pii_allow entry is not a whole contact",
        chain(model("a"), guard("g", "a", {"pii": ["phone"], "pii_allow": ["call 1-800"]})),
        "steps[1].rules.pii_allow[0]",
        "not, as a whole, an email address or phone number",
    ),
    (
        "guard pii_allow entry is a card number",
        chain(model("a"), guard("g", "a", {"pii": ["card"], "pii_allow": ["4111111111111111"]})),
        "steps[1].rules.pii_allow[0]",
        "a payment card number is never a published contact",
    ),
    (
        "guard pii_allow duplicate",
        chain(
            model("a"),
            guard("g", "a", {"pii": ["email"], "pii_allow": ["help@x.example", "HELP@x.example"]}),
        ),
        "steps[1].rules.pii_allow[1]",
        "duplicate allowed contact",
    ),
    (
        "guard pii_allow without a pii rule",
        chain(model("a"), guard("g", "a", {"max_length": 10, "pii_allow": ["1-800-555-0142"]})),
        "steps[1].rules.pii_allow",
        "the guard has no pii rule",
    ),
    (
        "guard pii_allow too many",
        chain(
            model("a"),
            guard(
                "g", "a", {"pii": ["phone"], "pii_allow": [f"555-010-{i:04d}" for i in range(21)]}
            ),
        ),
        "steps[1].rules.pii_allow",
        "at most 20",
    ),
    (
        "guard unknown on_fail",
        chain(model("a"), guard("g", "a", SHORT, on_fail="ignore")),
        "steps[1].on_fail",
        "'retry', 'escalate' or 'fail'",
    ),
    (
        "guard max_retries out of range",
        chain(model("a"), guard("g", "a", SHORT, on_fail="retry", max_retries=9)),
        "steps[1].max_retries",
        "less than or equal to 5",
    ),
    # -- retrieval and tools --
    (
        "retrieve query reads an unknown variable",
        chain(retrieve("docs", "{{ question }}")),
        "steps[0].query",
        "unknown variable 'question'",
    ),
    (
        "unknown tool",
        chain(tool("order", "lookup_ordr")),
        "steps[0].tool",
        "unknown tool 'lookup_ordr' (did you mean 'lookup_order'?)",
    ),
    (
        "tool argument template deep inside lists and mappings",
        chain(tool("order", arguments={"q": {"ids": [1, "{{ steps.nope.output }}"]}})),
        "steps[0].arguments.q.ids[1]",
        "unknown step 'nope'",
    ),
    (
        "tool idempotency key reads a later step",
        chain(tool("refund", "issue_refund", idempotency_key="{{ steps.a.output }}"), model("a")),
        "steps[0].idempotency_key",
        "step 'a' runs later",
    ),
    # -- agents --
    (
        "agent with unknown model alias",
        chain(agent("research", model="strnog")),
        "steps[0].model",
        "unknown model alias 'strnog' (did you mean 'strong'?)",
    ),
    (
        "agent with unknown fallback alias",
        chain(agent("research", fallbacks=["gpt9"])),
        "steps[0].fallbacks[0]",
        "unknown model alias 'gpt9'",
    ),
    (
        "agent tools list with duplicates",
        chain(agent("research", tools=["search_kb", "lookup_order", "search_kb"])),
        "steps[0].tools[2]",
        "duplicate tool 'search_kb' (first listed at steps[0].tools[0])",
    ),
    (
        "agent allow-list names an unknown tool",
        chain(agent("research", tools=["search_kb", "web_search"])),
        "steps[0].tools[1]",
        "unknown tool 'web_search'",
    ),
    (
        "agent system prompt reads a later step",
        chain(agent("research", system="{{ steps.b.output }}"), model("b")),
        "steps[0].system",
        "step 'b' runs later",
    ),
    (
        "agent prompt bad syntax",
        chain(agent("research", prompt="{{ input.question ")),
        "steps[0].prompt",
        "syntax error",
    ),
]


@pytest.mark.parametrize(
    ("spec", "path", "phrase"),
    [pytest.param(spec, path, phrase, id=case) for case, spec, path, phrase in BAD_SPECS],
)
def test_bad_spec_is_refused_at_its_path(spec: dict[str, Any], path: str, phrase: str) -> None:
    problems = problems_of(spec)
    assert [p.path for p in problems] == [path], problems
    assert phrase in problems[0].message


GOOD_SPECS: list[tuple[str, dict[str, Any]]] = [
    (
        "reads a step inside an earlier route branch",
        chain(
            model("classify"),
            route("r", (SIMPLE, [model("simple")]), otherwise=[model("hard")]),
            model("after", "{{ steps.simple.output }} {{ steps.hard.output }} {{ steps.r }}"),
        ),
    ),
    (
        "reads an earlier step of its own branch and steps before the parallel",
        chain(
            model("first"),
            parallel(
                "p",
                a=[model("a1"), model("a2", "{{ steps.a1.output }} {{ steps.first.output }}")],
                b=[model("b1")],
            ),
            model("join", "{{ steps.p.output.a }} {{ steps.a2.output }} {{ steps.b1.output }}"),
        ),
    ),
    (
        "escalate_when reads output and earlier steps",
        chain(
            model("classify"),
            model(
                "answer",
                escalate_to="strong",
                escalate_when="output | length < 20 or steps.classify.output.hard",
            ),
        ),
    ),
    (
        "escalates on invalid structured output",
        chain(model("a", escalate_to="strong", output_schema={"type": "object"})),
    ),
    (
        "computed step lookup is left to run time",
        chain(model("a"), model("b", "{{ steps[input.which].output }}")),
    ),
    (
        "output names a nested step",
        chain(route("r", ("true", [model("inner")])), output="inner"),
    ),
    (
        "retrieve, answer, guard with citations and retry, tool, agent",
        chain(
            retrieve("docs", "{{ input.question }}"),
            model("answer", "{{ steps.docs.output.passages }}"),
            guard(
                "check",
                "answer",
                {
                    "pii": ["email", "phone", "card"],
                    "citations_from": "docs",
                    "forbidden_patterns": [r"(?i)\bguarantee"],
                    "required_patterns": [r"\[[^\]]+#\d+\]"],
                    "min_length": 10,
                    "max_length": 10,
                    "json_schema": {"type": "string"},
                },
                on_fail="retry",
                max_retries=3,
            ),
            tool(
                "order",
                arguments={"id": "{{ input.order_id }}", "opts": {"tags": ["{{ steps.check }}"]}},
                idempotency_key="{{ input.order_id }}-refund",
            ),
            agent(
                "research",
                fallbacks=["cheap"],
                system="{{ steps.order.output }}",
                tools=["search_kb", "lookup_order"],
            ),
        ),
    ),
    (
        "guard escalates over a tool step; citations from a retrieve inside an earlier route",
        chain(
            route("r", ("input.rag", [retrieve("docs")]), otherwise=[model("plain")]),
            tool("order"),
            guard("g", "order", {"citations_from": "docs"}, on_fail="escalate"),
        ),
    ),
]


@pytest.mark.parametrize("spec", [pytest.param(spec, id=case) for case, spec in GOOD_SPECS])
def test_good_spec_has_no_problems(spec: dict[str, Any]) -> None:
    assert problems_of(spec) == []


def test_every_problem_is_reported_at_once() -> None:
    spec = parse_chain(
        chain(
            model("a", model="nope", prompt="{{ steps.later.output }} {{ x }}"),
            model("a"),
            model("later"),
        )
    )
    problems = validate_chain(spec, ALIASES)
    assert {(p.path, p.message.split(" (")[0]) for p in problems} == {
        ("steps[1].name", "duplicate step name 'a'"),
        ("steps[0].model", "unknown model alias 'nope'"),
        ("steps[0].prompt", "unknown variable 'x'"),
        ("steps[0].prompt", "step 'later' runs later"),
    }
    with pytest.raises(ChainSpecError) as info:
        check_chain(spec, ALIASES)
    text = str(info.value)
    assert text.startswith("invalid chain spec (4 problems)")
    for problem in problems:
        assert f"{problem.path}: {problem.message}" in text


def test_tools_are_checked_only_when_known_tools_are_given() -> None:
    spec = parse_chain(chain(tool("t", "anything"), agent("a", tools=["else"])))
    assert validate_chain(spec, ALIASES) == []
    assert [p.path for p in validate_chain(spec, ALIASES, known_tools=TOOLS)] == [
        "steps[0].tool",
        "steps[1].tools[0]",
    ]
    problems = validate_chain(spec, ALIASES, known_tools=[])
    assert [p.message for p in problems] == [
        "unknown tool 'anything' (no tools are registered)",
        "unknown tool 'else' (no tools are registered)",
    ]
    with pytest.raises(ChainSpecError, match="unknown tool 'anything'"):
        check_chain(spec, ALIASES, known_tools={"search_kb"})
    check_chain(spec, ALIASES)  # positional signature unchanged, tools unchecked


def test_load_chain_yaml_checks_tools_when_given() -> None:
    text = "name: x\nsteps:\n  - {name: t, kind: tool, tool: lookup_order}\n"
    assert isinstance(load_chain_yaml(text, ALIASES).steps[0], ToolStep)
    assert isinstance(load_chain_yaml(text, ALIASES, known_tools=TOOLS).steps[0], ToolStep)
    with pytest.raises(ChainSpecError, match="unknown tool 'lookup_order'"):
        load_chain_yaml(text, ALIASES, known_tools={"search_kb"})


def test_guard_problems_are_all_reported_at_once() -> None:
    spec = parse_chain(
        chain(
            tool("order"),
            guard(
                "g",
                "order",
                {
                    "forbidden_patterns": ["("],
                    "required_patterns": ["*"],
                    "min_length": 3,
                    "max_length": 2,
                    "citations_from": "order",
                },
                on_fail="retry",
            ),
        )
    )
    assert [p.path for p in validate_chain(spec, ALIASES, known_tools=TOOLS)] == [
        "steps[1].target",
        "steps[1].rules.required_patterns[0]",
        "steps[1].rules.forbidden_patterns[0]",
        "steps[1].rules.min_length",
        "steps[1].rules.citations_from",
    ]


def test_no_configured_aliases_is_said_plainly() -> None:
    spec = parse_chain(chain(model("a")))
    [problem] = validate_chain(spec, set())
    assert problem == SpecProblem("steps[0].model", problem.message)
    assert "no model aliases are configured" in problem.message


def test_validation_does_not_change_the_spec() -> None:
    data = chain(model("a"), route("r", (SIMPLE, [model("b")])))
    spec = parse_chain(copy.deepcopy(data))
    before = spec.model_dump()
    validate_chain(spec, ALIASES)
    assert spec.model_dump() == before


# -- YAML -----------------------------------------------------------------------------


def test_yaml_syntax_error_names_the_line() -> None:
    text = "name: x\nsteps:\n  - name: a\n    prompt: [unclosed\n"
    with pytest.raises(ChainSpecError) as info:
        parse_chain_yaml(text)
    [problem] = info.value.problems
    assert problem.path == DOCUMENT
    assert "invalid YAML at line" in problem.message


def test_yaml_duplicate_key_is_refused() -> None:
    text = "name: x\nsteps:\n  - name: a\n    kind: model\n    model: cheap\n    model: strong\n"
    with pytest.raises(ChainSpecError, match=r"line 6.*duplicate key 'model' \(first at line 5\)"):
        parse_chain_yaml(text)


@pytest.mark.parametrize(("text", "phrase"), [("", "got empty"), ("- a\n- b\n", "got a list")])
def test_yaml_that_is_not_a_mapping(text: str, phrase: str) -> None:
    with pytest.raises(ChainSpecError, match=phrase):
        parse_chain_yaml(text)


def test_yaml_paths_point_into_the_document() -> None:
    text = """
name: nested
steps:
  - name: a
    kind: model
    model: cheap
    prompt: hi
  - name: r
    kind: route
    branches:
      - when: "true"
        steps:
          - name: p
            kind: parallel
            branches:
              - name: x
                steps: [{name: deep, kind: model, prompt: hi}]
              - name: y
                steps: [{name: deep2, kind: model, model: cheap, prompt: hi}]
"""
    with pytest.raises(ChainSpecError) as info:
        parse_chain_yaml(text)
    assert [p.path for p in info.value.problems] == [
        "steps[1].branches[0].steps[0].branches[0].steps[0].model"
    ]


def test_load_chain_yaml_parses_and_checks() -> None:
    text = "name: x\nsteps:\n  - {name: a, kind: model, model: cheap, prompt: '{{ input }}'}\n"
    spec = load_chain_yaml(text, ALIASES)
    assert isinstance(spec.steps[0], ModelStep)
    with pytest.raises(ChainSpecError, match="unknown model alias 'cheap'"):
        load_chain_yaml(text, {"strong"})


def test_chain_spec_error_is_a_value_error_and_pickles() -> None:
    err = ChainSpecError([SpecProblem("steps[0].model", "unknown model alias 'x'")])
    assert isinstance(err, ValueError)
    copy_ = pickle.loads(pickle.dumps(err))
    assert copy_.problems == err.problems
    assert str(copy_) == str(err)


# -- iter_steps -----------------------------------------------------------------------


def test_iter_steps_walks_the_tree_in_document_order() -> None:
    spec = parse_chain(
        chain(
            model("a"),
            route("r", ("true", [model("r1"), model("r2")]), otherwise=[model("o1")]),
            parallel("p", x=[model("x1")], y=[model("y1")]),
        )
    )
    walked = [(path, step.name, type(step)) for path, step in iter_steps(spec.steps)]
    assert walked == [
        ("steps[0]", "a", ModelStep),
        ("steps[1]", "r", RouteStep),
        ("steps[1].branches[0].steps[0]", "r1", ModelStep),
        ("steps[1].branches[0].steps[1]", "r2", ModelStep),
        ("steps[1].otherwise[0]", "o1", ModelStep),
        ("steps[2]", "p", ParallelStep),
        ("steps[2].branches[0].steps[0]", "x1", ModelStep),
        ("steps[2].branches[1].steps[0]", "y1", ModelStep),
    ]


# -- run input ------------------------------------------------------------------------

INPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 1},
        "context": {"type": "object", "properties": {"lang": {"enum": ["en", "fr"]}}},
        "email": {"type": "string", "format": "email"},
    },
    "required": ["question"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"question": "Why?"}, []),
        ({"question": "Why?", "context": {"lang": "en"}}, []),
        ({}, [("input", "'question' is a required property")]),
        ({"question": 3}, [("input.question", "3 is not of type 'string'")]),
        ({"question": ""}, [("input.question", "should be non-empty")]),
        ({"question": "q", "context": {"lang": "de"}}, [("input.context.lang", "is not one of")]),
        ({"question": "q", "extra": 1}, [("input", "'extra' was unexpected")]),
        ({"question": "q", "email": "not-an-email"}, [("input.email", "is not a 'email'")]),
        ("just a string", [("input", "is not of type 'object'")]),
    ],
)
def test_validate_input(value: Any, expected: list[tuple[str, str]]) -> None:
    spec = parse_chain(chain(model("a"), input_schema=INPUT_SCHEMA))
    problems = validate_input(spec, value)
    assert [p.path for p in problems] == [path for path, _ in expected]
    for problem, (_, phrase) in zip(problems, expected, strict=True):
        assert phrase in problem.message


def test_validate_input_reports_every_problem_and_indexes_lists() -> None:
    schema = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
        "required": ["items", "question"],
    }
    spec = parse_chain(chain(model("a"), input_schema=schema))
    items: list[Any] = [1, "two", *range(8), "ten"]
    problems = validate_input(spec, {"items": items})
    assert [p.path for p in problems] == ["input", "input.items[1]", "input.items[10]"]


def test_validate_input_without_schema_accepts_anything() -> None:
    spec = parse_chain(chain(model("a")))
    assert validate_input(spec, object()) == []

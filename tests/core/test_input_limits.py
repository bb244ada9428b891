"""The input limits on their own: JSON parsed and values walked within them,
each refusal naming its path, and YAML specs composed within them (depth,
alias expansion) before anything is built from them."""

from __future__ import annotations

import json
import time

import pytest

from core.input_limits import (
    INT64_MAX,
    INT64_MIN,
    InputLimits,
    InputProblem,
    check_value,
    json_size,
    loads_json,
    printable,
)
from core.settings import Settings
from workflows.spec_parsing import ChainSpecError, load_yaml, parse_chain_yaml

SMALL = InputLimits(max_depth=8, max_string_chars=100, max_spec_bytes=2048)


def refusal(document: str | bytes, limits: InputLimits = SMALL) -> InputProblem:
    with pytest.raises(InputProblem) as caught:
        loads_json(document, limits)
    return caught.value


@pytest.mark.parametrize(
    ("document", "code", "path"),
    [
        ("[" * 100_000 + "]" * 100_000, "nesting_too_deep", "body"),
        ('{"a": ' + "[" * 9 + "]" * 9 + "}", "nesting_too_deep", "body.a[0][0][0][0][0][0][0]"),
        ('{"a": ["x", "\\ud800"]}', "invalid_character", "body.a[1]"),
        ('{"a": {"\\udc00b": 1}}', "invalid_character", "body.a.\\udc00b"),
        ('{"a": "x\\u0000"}', "invalid_character", "body.a"),
        ('{"a": {"k\\u0000": 1}}', "invalid_character", "body.a.k\\x00"),
        ('{"a": NaN}', "non_finite_number", "body.a"),
        ('{"a": [Infinity]}', "non_finite_number", "body.a[0]"),
        ('{"a": -1e999}', "non_finite_number", "body.a"),
        (f'{{"a": {INT64_MAX + 1}}}', "integer_out_of_range", "body.a"),
        (f'{{"a": {INT64_MIN - 1}}}', "integer_out_of_range", "body.a"),
        ('{"a": ' + "7" * 30 + "}", "integer_out_of_range", "body.a"),
        # Past 4,300 digits Python refuses at once to convert (no path then).
        ('{"a": ' + "7" * 100_000 + "}", "integer_out_of_range", "body"),
        ('{"a": "' + "x" * 101 + '"}', "string_too_long", "body.a"),
        ('{"a": ', "invalid_json", "body"),
        (b'{"a": "\xff"}', "invalid_json", "body"),
    ],
)
def test_each_refusal_names_its_path(document: str, code: str, path: str) -> None:
    problem = refusal(document)
    assert (problem.code, problem.path) == (code, path), problem.message
    assert problem.message.startswith(f"{path}: ")
    assert problem.details == [
        {"path": path, "message": problem.problem, "type": code}
        | ({"limit": problem.limit} if problem.limit is not None else {})
    ]
    # The refusal itself always encodes (it is what the client gets back).
    json.dumps(problem.details, ensure_ascii=False).encode("utf-8")


def test_values_within_the_limits_pass_unchanged() -> None:
    document = {
        "text": "héllo ✓ 𝄞",
        "n": [INT64_MIN, INT64_MAX, 1.5e308, -0.0, True, None],
        "nested": [[[[[[["deep enough"]]]]]]],
    }
    assert loads_json(json.dumps(document), SMALL) == document


def test_huge_integers_are_not_converted() -> None:
    started = time.perf_counter()
    refusal('{"a": ' + "9" * 1_000_000 + "}", InputLimits())
    assert time.perf_counter() - started < 1.0


def test_a_document_over_its_byte_limit() -> None:
    with pytest.raises(InputProblem) as caught:
        check_value({"items": ["x" * 50] * 100}, SMALL, root="input", max_bytes=1024)
    assert caught.value.code == "document_too_large" and caught.value.path == "input"
    assert caught.value.limit == 1024 and "the limit is 1024" in caught.value.message


def test_a_shared_value_counts_each_time_it_appears() -> None:
    shared = ["x" * 60] * 10
    assert json_size({"a": shared, "b": shared}) == len(
        json.dumps({"a": shared, "b": shared}, separators=(",", ":"))
    )


def test_printable_never_fails_to_encode() -> None:
    text = printable("a\ud800\x00" + "b" * 100, 10)
    text.encode("utf-8")
    assert text.startswith("a\\ud800\\x00") and text.endswith("…")


def test_limits_are_one_setting() -> None:
    settings = Settings(_env_file=None, input_limits={"max_depth": 20})
    assert settings.input_limits.max_depth == 20
    env = settings.to_env()
    assert json.loads(env["CHORUS_INPUT_LIMITS"])["max_depth"] == 20
    with pytest.raises(ValueError, match="max_depth"):
        Settings(_env_file=None, input_limits={"max_depth": 2})


# -- YAML ------------------------------------------------------------------------------


def alias_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{','.join([previous] * 9)}]")
    return "\n".join(lines)


def yaml_problem(text: str, limits: InputLimits = SMALL) -> str:
    with pytest.raises(ChainSpecError) as caught:
        load_yaml(text, limits)
    [problem] = caught.value.problems
    return f"{problem.path}: {problem.message}"


def test_an_alias_bomb_is_refused_while_it_is_composed() -> None:
    started = time.perf_counter()
    message = yaml_problem(alias_bomb(9), InputLimits())
    assert time.perf_counter() - started < 0.5
    assert "with its aliases expanded" in message and "the limit is 262144" in message


def test_aliases_within_the_limit_are_fine() -> None:
    assert load_yaml(alias_bomb(2), SMALL)["a1"] == [["lol"] * 9] * 9


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a: &a [*a]", "recursive alias"),
        ("a: " + "[" * 10_000, "nested more than 8"),
        ("a:\n  " + "- " * 10_000 + "x", "nested more than 8"),
        ("a: " + "9" * 1000, "64-bit range"),
        (f"a: {INT64_MAX + 1}", "64-bit range"),
        ("a: .nan", "NaN is not a finite number"),
        ("a: [1.0e+999]", "Infinity is not a finite number"),
        ('a: "x\\0"', "NUL character"),
        ('a: "\\ud800"', "lone surrogate"),
        ("a: !!binary aGk=", "binary data"),
        ("a: 2020-13-45", "invalid YAML: month must be in 1..12"),
        ("a: !!int abc", "invalid YAML: invalid literal for int()"),
        ("a: !!float abc", "invalid YAML: could not convert string to float"),
        ("a: !!python/object:os.system x", "could not determine a constructor"),
        ("a: " + "x" * 101, "the limit is 100"),
        ("a: [" + ", ".join(["x" * 90] * 30) + "]", "the limit is 2048"),
    ],
)
def test_yaml_refusals_name_the_problem(text: str, says: str) -> None:
    assert says in yaml_problem(text)


def test_a_shipped_chain_parses_as_before() -> None:
    from core.settings import project_path

    spec = parse_chain_yaml((project_path("chains") / "support_triage.yaml").read_text())
    assert spec.name == "support_triage" and spec.steps

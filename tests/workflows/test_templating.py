"""Templates and expressions of the chain language: rendering, strictness,
the sandbox, and the static analysis the validator relies on."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from workflows.templating import (
    TemplateRefs,
    TemplateRenderError,
    evaluate,
    evaluate_bool,
    references,
    render,
)

CONTEXT: dict[str, Any] = {
    "input": {"question": "Why is the sky blue?", "tags": ["physics", "optics"]},
    "steps": {
        "classify": {
            "output": {"complexity": "simple", "topic": "physics"},
            "model": "cheap",
            "escalated": False,
        },
        "ask": {"output": {"a": "Rayleigh scattering.", "b": "Because of scattering."}},
    },
}


# -- render ---------------------------------------------------------------------------


def test_render_reads_input_and_step_outputs() -> None:
    text = render(
        "Q: {{ input.question }}\nTopic: {{ steps.classify.output.topic }}\n"
        "{% for t in input.tags %}[{{ t }}]{% endfor %}",
        CONTEXT,
    )
    assert text == "Q: Why is the sky blue?\nTopic: physics\n[physics][optics]"


def test_render_keeps_trailing_newline_and_does_not_escape_html() -> None:
    assert render("<b>{{ input.question }}</b> & more\n", CONTEXT) == (
        "<b>Why is the sky blue?</b> & more\n"
    )


def test_tojson_is_available_and_deterministic() -> None:
    assert render("{{ steps.classify.output | tojson }}", CONTEXT) == (
        '{"complexity": "simple", "topic": "physics"}'
    )


def test_missing_attribute_names_the_path_that_was_read() -> None:
    with pytest.raises(TemplateRenderError) as info:
        render("Hello\n{{ steps.classify.output.foo }}", CONTEXT)
    err = info.value
    assert "steps.classify.output has no attribute 'foo'" in err.message
    assert "complexity, topic" in err.message  # what is there instead
    assert err.line == 2
    assert err.source == "Hello\n{{ steps.classify.output.foo }}"


def test_missing_step_names_the_step_and_the_steps_that_ran() -> None:
    with pytest.raises(TemplateRenderError) as info:
        render("{{ steps['answer_simple'].output }}", CONTEXT)
    assert "steps has no attribute 'answer_simple'" in info.value.message
    assert "classify, ask" in info.value.message


def test_missing_variable_names_it() -> None:
    with pytest.raises(TemplateRenderError, match="variable 'question' is undefined"):
        render("{{ question }}", CONTEXT)


def test_attribute_of_a_string_is_reported_with_its_type() -> None:
    with pytest.raises(TemplateRenderError, match=r"input\.question has no attribute 'x'.*str"):
        render("{{ input.question.x }}", CONTEXT)


def test_undefined_inside_a_loop_is_still_an_error() -> None:
    with pytest.raises(TemplateRenderError, match="has no attribute 'missing'"):
        render("{% for t in input.tags %}{{ t.missing }}{% endfor %}", CONTEXT)


def test_syntax_error_carries_the_line() -> None:
    with pytest.raises(TemplateRenderError) as info:
        render("line one\nline two {{ input.question + }}", CONTEXT)
    assert info.value.line == 2
    assert "syntax error" in info.value.message
    assert str(info.value).startswith("line 2: ")


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ input.__class__ }}",
        "{{ input.tags.append('x') }}",  # immutable sandbox: no mutation of context
        "{{ input.update({'a': 1}) }}",
        "{{ 'x' * 100000000 }}",  # would build a 100 MB string
        "{{ 7 ** 10000000 }}",  # would compute for a long time
    ],
)
def test_sandbox_refuses_unsafe_operations(source: str) -> None:
    before = repr(CONTEXT)
    with pytest.raises(TemplateRenderError, match="not allowed in a template"):
        render(source, CONTEXT)
    assert repr(CONTEXT) == before


def test_non_deterministic_helpers_are_gone() -> None:
    for source in ("{{ lipsum() }}", "{{ cycler(1, 2).next() }}", "{{ joiner()() }}"):
        with pytest.raises(TemplateRenderError, match="is undefined"):
            render(source, CONTEXT)
    with pytest.raises(TemplateRenderError, match="No filter named 'random'"):
        render("{{ input.tags | random }}", CONTEXT)
    # pure helpers stay
    assert render("{{ range(3) | list }} {{ dict(a=1) }}", {}) == "[0, 1, 2] {'a': 1}"


def test_runtime_errors_are_template_errors() -> None:
    with pytest.raises(TemplateRenderError, match="ZeroDivisionError"):
        render("{{ 1 / 0 }}", {})


def test_render_error_survives_pickling() -> None:
    with pytest.raises(TemplateRenderError) as info:
        render("{{ nope }}", {})
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.source, copy.message, copy.line) == ("{{ nope }}", info.value.message, 1)


def test_compiled_templates_are_reused() -> None:
    source = "{{ input.question }} -- cache check"
    assert render(source, CONTEXT) == render(source, CONTEXT)
    from workflows import templating

    info = templating._compiled_template.cache_info()
    render(source, CONTEXT)
    assert templating._compiled_template.cache_info().hits == info.hits + 1


# -- expressions -----------------------------------------------------------------------


def test_evaluate_returns_python_values() -> None:
    assert evaluate("steps.classify.output.complexity == 'simple'", CONTEXT) is True
    assert evaluate("input.tags | length", CONTEXT) == 2
    assert evaluate("steps.ask.output", CONTEXT) == CONTEXT["steps"]["ask"]["output"]


def test_evaluate_bool_uses_truthiness() -> None:
    assert evaluate_bool("input.tags", CONTEXT) is True
    assert evaluate_bool("input.tags | select('eq', 'none') | list", CONTEXT) is False
    assert evaluate_bool("output.score < 0.5", {**CONTEXT, "output": {"score": 0.2}}) is True


@pytest.mark.parametrize(
    ("expression", "phrase"),
    [
        ("nope", "variable 'nope' is undefined"),
        ("[1, nope]", "variable 'nope' is undefined"),
        ("steps.answer", "steps has no attribute 'answer'"),
        ("steps.classify.output.complexty == 'simple'", "no attribute 'complexty'"),
    ],
)
def test_evaluate_raises_on_missing_names(expression: str, phrase: str) -> None:
    with pytest.raises(TemplateRenderError, match=phrase):
        evaluate(expression, CONTEXT)


@pytest.mark.parametrize("expression", ["", "a b", "1 +", "x == ", "{{ x }}"])
def test_evaluate_rejects_bad_syntax(expression: str) -> None:
    with pytest.raises(TemplateRenderError, match="syntax error"):
        evaluate(expression, CONTEXT)


# -- references -------------------------------------------------------------------------


def test_references_find_attribute_and_item_step_access() -> None:
    refs = references("{{ steps.x.output }} and {{ steps['y'].output.z }} for {{ input.q }}")
    assert refs == TemplateRefs(
        variables=frozenset({"steps", "input"}), steps=frozenset({"x", "y"}), dynamic_steps=False
    )


def test_references_ignore_template_locals_and_globals() -> None:
    source = (
        "{% set intro = 'Q' %}{{ intro }}"
        "{% for item in input.items %}{{ item.name }}{{ loop.index }}{% endfor %}"
        "{% macro show(v) %}{{ v }}{% endmacro %}{{ show(1) }}"
        "{{ range(2) | list }}{{ namespace(a=1).a }}"
    )
    refs = references(source)
    assert refs.variables == frozenset({"input"})
    assert refs.steps == frozenset()


def test_references_of_an_expression_include_output() -> None:
    refs = references("output.confidence < 0.5 or steps.classify.output.x", expression=True)
    assert refs.variables == frozenset({"output", "steps"})
    assert refs.steps == frozenset({"classify"})


def test_references_flag_computed_step_lookups() -> None:
    assert references("{{ steps[input.which].output }}").dynamic_steps is True


def test_references_report_syntax_errors_with_line() -> None:
    with pytest.raises(TemplateRenderError) as info:
        references("ok\nok\n{% if x %}never closed")
    assert info.value.line == 3
    with pytest.raises(TemplateRenderError, match="syntax error"):
        references("steps.a ==", expression=True)

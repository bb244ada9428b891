"""Templates and expressions of the chain language: rendering, strictness,
the sandbox, and the static analysis the validator relies on."""

from __future__ import annotations

import pickle
import time
import tracemalloc
from typing import Any

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from core.chain_errors import ChainErrorType
from workflows import templating
from workflows.template_sandbox import LEGACY_LIMITS, TemplateLimits
from workflows.templating import (
    TemplateLimitError,
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


# -- limits ------------------------------------------------------------------------------

BOMBS: dict[str, tuple[str, str]] = {
    # The four of issue 8, then their relatives.
    "namespace doubling": (
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
        "'~' concatenation would be 1048576 characters",
    ),
    "format width": ("{{ '{:>300000000}'.format(1) }}", "width or precision of 300000000"),
    "center filter": ("{{ 'ab' | center(10**12) }}", "filter 'center' width of 1000000000000"),
    "nested ranges": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "more than 200000 steps",
    ),
    "namespace doubling with +": (
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
        "'+' concatenation",
    ),
    "nested format width": ("{{ '{:>{}}'.format(1, 300000000) }}", "of 300000000"),
    "format precision": ("{{ '{:.300000000f}'.format(1.0) }}", "of 300000000"),
    "format_map width": ("{{ '{a:>99999999}'.format_map({'a': 1}) }}", "of 99999999"),
    "printf width": ("{{ '%300000000d' % 1 }}", "printf-style width or precision"),
    "printf star width": ("{{ '%*d' % (300000000, 1) }}", "printf-style '*' width"),
    "format filter width": ("{{ '%.300000000f' | format(1.0) }}", "printf-style width"),
    "str.center": ("{{ 'ab'.center(10**12) }}", "str.center width"),
    "str.ljust": ("{{ 'ab'.ljust(10**9) }}", "str.ljust width"),
    "str.rjust": ("{{ 'ab'.rjust(10**9, '-') }}", "str.rjust width"),
    "str.zfill": ("{{ '1'.zfill(10**9) }}", "str.zfill width"),
    "str.expandtabs": ("{{ ('\t' * 100000).expandtabs(10000) }}", "str.expandtabs would be"),
    "str.replace": ("{{ ('a' * 100000).replace('a', 'b' * 100) }}", "str.replace would be"),
    "str.join": ("{{ ('x' * 100000).join(['a'] * 100) }}", "str.join would be"),
    "str.translate": ("{{ ('a' * 1000).translate({97: 'x' * 10000}) }}", "translate would be"),
    "int.to_bytes": ("{{ (1).to_bytes(10**10, 'big') | length }}", "to_bytes length"),
    "string repetition": ("{{ 'x' * 100000000 }}", "'*' repetition would be 100000000"),
    "list repetition": ("{{ ([0] * 10**8) | length }}", "'*' repetition"),
    "integer power": ("{{ 7 ** 10000000 }}", "integer of more than 100000 bits"),
    "integer squaring": (
        "{% set ns = namespace(x=3) %}{% for i in range(40) %}"
        "{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x > 0 }}",
        "integer of more than 100000 bits",
    ),
    "replace filter": ("{{ ('a' * 1000000) | replace('a', 'bb') }}", "filter 'replace' would be"),
    "indent filter": ("{{ ('\n' * 100000) | indent(10000) }}", "filter 'indent' would be"),
    "join filter": ("{{ range(1000) | map('string') | join('x' * 10000) }}", "filter 'join'"),
    "batch fill": ("{{ [1] | batch(10**9, 0) | list | length }}", "filter 'batch' size"),
    "slice count": ("{{ [1] | slice(10**9) | list | length }}", "filter 'slice' count"),
    "big range": ("{{ range(10**9) | length }}", "range() of 1000000000 items"),
    "exponential macro": (
        "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(40) }}",
        "more than 200000 steps",
    ),
    "endless macro": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "nested more than 50"),
    "macro doubling": (
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s | length }}"
        "{% endif %}{% endmacro %}{{ d('a', 40) }}",
        "'~' concatenation",
    ),
    "endless recursive loop": (
        "{% for x in [1, 2] recursive %}{{ loop([1, 2]) }}{% endfor %}",
        "nested more than 50",
    ),
    "shared list printed": (
        "{% set ns = namespace(l=[0, 0]) %}{% for i in range(40) %}"
        "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
        "more than",
    ),
    "comparing shared lists": (
        "{% set ns = namespace(a=[0, 0], b=[0, 0]) %}{% for i in range(40) %}"
        "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}"
        "{{ ns.a == ns.b }}",
        "steps",
    ),
    "searching shared lists": (
        "{% set ns = namespace(a=[0, 0], b=[0, 0]) %}{% for i in range(40) %}"
        "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}"
        "{{ [ns.a] | select('in', [[ns.b]]) | list | length }}",
        "steps",
    ),
    "counting shared lists": (
        "{% set ns = namespace(a=[0, 0], b=[0, 0]) %}{% for i in range(40) %}"
        "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}"
        "{{ [ns.a].count(ns.b) }}",
        "steps",
    ),
    "loop.changed on shared lists": (
        "{% set ns = namespace(a=[0, 0]) %}{% for i in range(40) %}"
        "{% set ns.a = [ns.a, ns.a] %}{% endfor %}"
        "{% for i in range(2) %}{{ loop.changed(ns.a) }}{% endfor %}",
        "steps",
    ),
    "sorting shared lists": (
        "{% set ns = namespace(a=[0, 0], b=[0, 0]) %}{% for i in range(40) %}"
        "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}"
        "{{ [ns.a, ns.b] | unique | list | length }}",
        "steps",
    ),
    "one string many times": ("{{ ['x' * 1000000] * 1000 }}", "as text"),
    "one string many times as JSON": ("{{ (['x' * 100000] * 100) | tojson }}", "as text"),
    "output size": ("{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}", "the output"),
    "literal output": ("{% for i in range(100000) %}" + "y" * 1000 + "{% endfor %}", "output"),
    "accumulating a list": (
        "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
        "{% set ns.l = ns.l + ['x' * 1000 ~ i] %}{% endfor %}{{ ns.l | length }}",
        "characters in all",
    ),
    "slicing in a loop": (
        "{% set s = 'x' * 1000000 %}{% for i in range(100000) %}{{ s[1:] | length }}{% endfor %}",
        "characters in all",
    ),
    "lazy filter chain in a loop": (
        "{% for i in range(100000) %}{{ range(100000) | select('odd') | list | length }}"
        "{% endfor %}",
        "steps",
    ),
    "summing lists": (
        "{{ ([range(100000) | list] * 1000) | sum(start=[]) | length }}",
        "filter 'sum' would be",
    ),
    "sorting in a loop": (
        "{% for i in range(100000) %}{{ range(100000) | list | sort | length }}{% endfor %}",
        "steps",
    ),
}


@pytest.mark.parametrize("source", [s for s, _ in BOMBS.values()], ids=list(BOMBS))
def test_templates_over_a_limit_fail_fast_with_a_named_error(source: str) -> None:
    phrase = next(p for s, p in BOMBS.values() if s == source)
    started = time.perf_counter()
    with pytest.raises(TemplateLimitError) as info:
        render(source, CONTEXT)
    elapsed = time.perf_counter() - started

    err = info.value
    assert err.error_type == ChainErrorType.TEMPLATE_LIMIT_EXCEEDED == "TemplateLimitExceeded"
    assert err.message.startswith("template limit exceeded: ")
    assert phrase in err.message
    # A workflow task fails as deadlocked after 2 s: a bomb must stop far sooner
    # (measured: at most 0.3 s each on a 2-core machine shared by five test runs).
    assert elapsed < 1.5, f"{elapsed:.2f} s"


def test_templates_over_a_limit_stay_within_a_small_memory_budget() -> None:
    """Refused before they allocate: the worst bomb peaks at a few MB (the
    issue's format width reached 5.6 GB, namespace doubling 256 MB)."""
    peaks = {}
    for name, (source, phrase) in BOMBS.items():
        if "steps" in phrase:
            continue  # stopped by counting work, and slow under tracemalloc
        tracemalloc.start()
        try:
            with pytest.raises(TemplateLimitError):
                render(source, CONTEXT)
            peaks[name] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    worst = max(peaks, key=peaks.__getitem__)
    assert peaks[worst] < 64 * 2**20, f"{worst}: {peaks[worst] / 2**20:.0f} MB"


def test_expressions_have_the_same_limits() -> None:
    with pytest.raises(TemplateLimitError, match=r"str\.center width"):
        evaluate("'ab'.center(10**12) == ''", {})
    with pytest.raises(TemplateLimitError, match="steps"):
        evaluate_bool("range(100000) | select('odd') | map('string') | join | length > 0", {})


def test_limit_errors_say_where_and_survive_pickling() -> None:
    with pytest.raises(TemplateLimitError) as info:
        render("Intro\n{{ 'ab'.ljust(10**9) }}", {})
    assert info.value.line == 2
    copy = pickle.loads(pickle.dumps(info.value))
    assert isinstance(copy, TemplateLimitError)
    assert (copy.message, copy.line) == (info.value.message, 2)


def test_memory_and_recursion_errors_become_limit_errors() -> None:
    """Should a limit miss a case, running out of memory or stack still
    fails the step instead of the workflow task."""
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(TemplateLimitError, match="nested too deep"):
        render("{{ value | tojson }}", {"value": deep})


PASSAGES = [
    {"title": f"Doc {i}", "text": "lorem ipsum " * 20, "score": i / 1000} for i in range(1000)
]


def test_ordinary_templates_render_as_before() -> None:
    """Loops with `loop.*`, filters, macros, call blocks, recursive loops,
    slices, formats and `~` render exactly as Jinja renders them."""
    source = (
        "{% macro item(p, n) %}[{{ n }}/{{ caller() if caller else '' }}] {{ p.title | upper }}"
        "{% endmacro %}"
        "{% for p in passages if p.score >= 0.998 %}"
        "{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}"
        "{% endfor %}\n"
        "{% for p in passages[:2] %}{% call item(p, loop.revindex) %}c{% endcall %}\n"
        "{% endfor %}"
        "{% for node in tree recursive %}{{ node.name }}{% if node.kids %}({{ loop(node.kids) }})"
        "{% endif %}{% endfor %}\n"
        "{{ '{:>6.2f}|{:<4}|'.format(3.14159, 'ab') }}{{ '%05d %s' % (42, 'x') }}"
        "{{ '%-4s|' | format('ab') }}{{ 'a' ~ 1 ~ [2] }}\n"
        "{{ passages | map(attribute='title') | select('in', ['Doc 1', 'Doc 2']) | join(', ') }}"
        "{{ (passages | sort(attribute='score', reverse=true) | first).title }}"
        "{{ 'x' | center(9) }}|{{ 'ab\ncd' | indent(2) }}|{{ ('abc' * 3)[::-2] }}"
        "{{ [[1], [2]] | sum(start=[]) }}{{ [1, [2]] == [1, [2]] and 'b' in ['a', 'b'] }}"
        "{{ [[2], [1]] | sort | first }}{{ [3, 1] | select('in', [1, 2]) | list }}"
        "{{ [[1], 2].index(2) }}{% for x in [1, 1, 2] %}{{ loop.changed(x) }}{% endfor %}"
    )
    tree = [{"name": "a", "kids": [{"name": "b", "kids": []}, {"name": "c", "kids": []}]}]
    text = render(source, {"passages": PASSAGES, "tree": tree})
    assert text.splitlines() == [
        "1/2,2/2",
        "[2/c] DOC 0",
        "[1/c] DOC 1",
        "a(bc)",
        "  3.14|ab  |00042 xab  |a1[2]",
        "Doc 1, Doc 2Doc 999    x    |ab",
        "  cd|cabca[1, 2]True[1][1]1TrueFalseTrue",
    ]
    stock = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    assert text == stock.from_string(source).render(passages=PASSAGES, tree=tree)


def test_a_large_but_ordinary_prompt_renders() -> None:
    """A thousand retrieved passages (about 260 KB of prompt) are well inside the limits."""
    source = (
        "Answer from these passages:\n"
        "{% for p in passages %}[{{ loop.index }}] {{ p.title }} ({{ '%.3f' % p.score }}): "
        "{{ p.text | trim }}\n{% endfor %}"
    )
    text = render(source, {"passages": PASSAGES})
    assert text.count("\n") == 1001
    assert 200_000 < len(text) < 300_000


def test_limits_are_counts_so_every_worker_agrees() -> None:
    """The same template stops at the same place every time: the error
    names the same step count, whatever the machine's speed."""
    source = (
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}"
    )
    messages = set()
    for _ in range(3):
        with pytest.raises(TemplateLimitError) as info:
            render(source, {})
        messages.add(info.value.message)
    assert len(messages) == 1


def test_legacy_limits_render_what_ran_before_the_limits() -> None:
    """A run recorded before the limits re-renders without them on replay,
    with the two checks that existed then and their old errors."""
    source = "{% for i in range(300) %}{% for j in range(300) %}.{% endfor %}{% endfor %}"
    template = templating._compiled_template(source)
    with pytest.raises(TemplateLimitError):
        render(source, {})
    assert templating._render(template, source, {}, LEGACY_LIMITS) == "." * 90_000

    old = "{{ 'x' * 100000000 }}"
    with pytest.raises(TemplateRenderError, match="not allowed in a template") as info:
        templating._render(templating._compiled_template(old), old, {}, LEGACY_LIMITS)
    assert not isinstance(info.value, TemplateLimitError)


def test_limits_can_be_tightened() -> None:
    tight = TemplateLimits(max_output_chars=10)
    template = templating._compiled_template("{{ 'x' * 11 }}")
    with pytest.raises(TemplateLimitError, match="pass 10 characters"):
        templating._render(template, "{{ 'x' * 11 }}", {}, tight)

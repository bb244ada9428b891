"""Jinja2 templates and expressions of the chain language.

This module runs inside the Temporal workflow sandbox (it is passed through,
so one copy serves every run): rendering must be deterministic and do no I/O.
Hence a sandboxed, immutable environment whose only globals are pure
(`range`, `dict`, `namespace`), no `random` filter, strict undefined values
(a typo in a prompt fails the step instead of sending an empty string to a
model), and no autoescape (prompts are not HTML).

Rendering has limits (output size, loop steps, value sizes, widths and
precisions, nesting: `workflows.template_sandbox`), counted rather than timed,
so a template that would exhaust the worker fails the step with
`TemplateLimitError` (the run's `TemplateLimitExceeded`) on every worker and
every replay. A run whose history was recorded before the limits (no
`template-limits` marker) re-renders without them where one trips, so it
replays as it ran.

The same parser serves static analysis (`references`), which the validator
uses to reject references to unknown or not-yet-run steps before a run starts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.environment import Template, TemplateExpression
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.parser import Parser
from jinja2.runtime import Undefined
from temporalio import workflow

from core.chain_errors import ChainErrorType
from workflows.patches import applies
from workflows.template_sandbox import (
    DEFAULT_LIMITS,
    LEGACY_LIMITS,
    BoundedSandbox,
    LimitExceeded,
    TemplateLimits,
    budget,
    instrument,
)

__all__ = [
    "TEMPLATE_LIMITS_PATCH",
    "TemplateLimitError",
    "TemplateLimits",
    "TemplateRefs",
    "TemplateRenderError",
    "evaluate",
    "evaluate_bool",
    "references",
    "render",
]

_CACHE_SIZE = 1024
_T = TypeVar("_T")

TEMPLATE_LIMITS_PATCH = "template-limits"
"""Marks the runs whose templates render with limits (`workflow.patched`)."""


class TemplateRenderError(Exception):
    """A template or expression could not be parsed or evaluated.

    `message` names what is wrong (the missing variable or attribute, the
    syntax error, the refused operation); `line` is the 1-based line in
    `source` when known.
    """

    error_type: ClassVar[str] = ChainErrorType.TEMPLATE_ERROR
    """The `ApplicationError.type` the run fails with."""

    def __init__(self, source: str, message: str, line: int | None = None) -> None:
        self.source = source
        self.message = message
        self.line = line
        # A line number only helps in a multi-line source (a prompt, not a condition).
        multiline = "\n" in source.strip()
        super().__init__(f"line {line}: {message}" if line and multiline else message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.source, self.message, self.line))


class TemplateLimitError(TemplateRenderError):
    """A template went over a rendering limit (or ran out of memory or
    stack): rendering it again would fail again."""

    error_type: ClassVar[str] = ChainErrorType.TEMPLATE_LIMIT_EXCEEDED


@dataclass(frozen=True)
class TemplateRefs:
    """What a template reads from its context, found without rendering it."""

    variables: frozenset[str]
    """Top-level context names read (names bound by for/set/macro and globals excluded)."""
    steps: frozenset[str]
    """Step names read as `steps.NAME` or `steps['NAME']`."""
    dynamic_steps: bool = False
    """True when a step is looked up by a computed key (`steps[name]`): not checkable statically."""


def _make_environment() -> BoundedSandbox:
    env = BoundedSandbox(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        cache_size=0,  # templates are cached below, by source
    )
    # lipsum draws random numbers; cycler and joiner are stateful helpers that
    # have no use in prompts. `random` is the one non-deterministic filter.
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)
    env.filters.pop("random", None)
    return env


_ENV = _make_environment()
_GLOBAL_NAMES = frozenset(_ENV.globals)


# -- parsing ----------------------------------------------------------------------------


def _syntax_error(source: str, err: TemplateSyntaxError) -> TemplateRenderError:
    return TemplateRenderError(source, f"syntax error: {err.message}", err.lineno)


def _parse_template(source: str) -> nodes.Template:
    try:
        return _ENV.parse(source)
    except TemplateSyntaxError as err:
        raise _syntax_error(source, err) from None


def _parse_expression(source: str) -> nodes.Expr:
    """Parse one expression the way `Environment.compile_expression` does."""
    if not source.strip():
        raise TemplateRenderError(source, "syntax error: empty expression", 1)
    try:
        parser = Parser(_ENV, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError(
                f"unexpected {parser.stream.current.value!r} after the expression",
                parser.stream.current.lineno,
            )
    except TemplateSyntaxError as err:
        raise _syntax_error(source, err) from None
    expr.set_environment(_ENV)
    return expr


def _parse_tree(source: str, *, expression: bool) -> nodes.Template:
    """A template's AST; an expression is wrapped as `{{ expression }}`."""
    if not expression:
        return _parse_template(source)
    tree = nodes.Template([nodes.Output([_parse_expression(source)], lineno=1)], lineno=1)
    tree.set_environment(_ENV)
    return tree


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compiled_template(source: str) -> Template:
    tree = instrument(_parse_template(source), _ENV)
    try:
        return _ENV.from_string(tree)
    except TemplateSyntaxError as err:
        raise _syntax_error(source, err) from None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compiled_expression(source: str) -> TemplateExpression:
    # What `Environment.compile_expression` does, with the instrumentation.
    expr = _parse_expression(source)  # same checks and messages as `references`
    body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
    tree = instrument(nodes.Template(body, lineno=1), _ENV)
    try:
        return TemplateExpression(_ENV.from_string(tree), undefined_to_none=False)
    except TemplateSyntaxError as err:  # pragma: no cover - caught by the parse above
        raise _syntax_error(source, err) from None


# -- rendering --------------------------------------------------------------------------


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render a prompt template; any missing variable, refused operation or
    exceeded limit raises."""
    template = _compiled_template(source)
    return _limited(lambda limits: _render(template, source, context, limits))


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """Evaluate one expression (e.g. a route condition) against the context."""
    compiled = _compiled_expression(expression)
    return _limited(lambda limits: _evaluate(compiled, expression, context, limits))


def evaluate_bool(expression: str, context: Mapping[str, Any]) -> bool:
    """Evaluate a condition with Jinja's (Python's) truthiness."""
    value = evaluate(expression, context)
    try:
        return bool(value)
    except _RUNTIME_ERRORS as err:  # pragma: no cover - evaluate rejects undefined
        raise _runtime_error(expression, err, context, expression=True) from None


_RUNTIME_ERRORS = (TemplateError, ArithmeticError, TypeError, ValueError, LookupError)
"""Failures of the template itself. Other errors (e.g. a sandbox restriction of the
Temporal SDK) are bugs of ours and must surface as they are."""

_LIMIT_ERRORS = (LimitExceeded, MemoryError, RecursionError)
"""A template that costs too much: over a limit, or (should a limit miss a
case) out of memory or stack, which would recur on every attempt."""


def _limited(attempt: Callable[[TemplateLimits], _T]) -> _T:
    """Run `attempt` under the limits; in a workflow whose history was
    recorded without them (replaying, no marker), once more without."""
    try:
        return attempt(DEFAULT_LIMITS)
    except TemplateLimitError:
        if _limits_in_force():
            raise
    return attempt(LEGACY_LIMITS)


def _limits_in_force() -> bool:
    # Only asked when a limit trips, so runs within the limits record no
    # marker; a run wedged on a template before the limits existed takes the
    # new path on its next (non-replayed) attempt and fails cleanly.
    return not workflow.in_workflow() or applies(TEMPLATE_LIMITS_PATCH)


def _render(
    template: Template, source: str, context: Mapping[str, Any], limits: TemplateLimits
) -> str:
    pieces: list[str] = []
    size = 0
    with budget(limits):
        stream = template.generate(dict(context))
        try:
            for piece in stream:
                size += len(piece)
                if size > limits.max_output_chars and not limits.legacy:
                    raise LimitExceeded(
                        f"the output would pass {limits.max_output_chars} characters"
                    )
                pieces.append(piece)
        except _LIMIT_ERRORS as err:
            raise _limit_error(source, err) from None
        except _RUNTIME_ERRORS as err:
            raise _runtime_error(source, err, context, expression=False) from None
        finally:
            stream.close()
    return "".join(pieces)


def _evaluate(
    compiled: TemplateExpression,
    expression: str,
    context: Mapping[str, Any],
    limits: TemplateLimits,
) -> Any:
    with budget(limits):
        try:
            value = compiled(dict(context))
            _raise_if_undefined(value)
        except _LIMIT_ERRORS as err:
            raise _limit_error(expression, err, expression=True) from None
        except _RUNTIME_ERRORS as err:
            raise _runtime_error(expression, err, context, expression=True) from None
    return value


def _limit_error(
    source: str, err: BaseException, *, expression: bool = False
) -> TemplateLimitError:
    if isinstance(err, MemoryError):
        reason = "it ran out of memory"
    elif isinstance(err, RecursionError):
        reason = "it nested too deep (Python's recursion limit)"
    else:
        reason = str(err)
    line = None if expression else _template_line(err.__traceback__)
    return TemplateLimitError(source, f"template limit exceeded: {reason}", line)


def _raise_if_undefined(value: Any, depth: int = 0) -> None:
    """An expression may yield an undefined value without touching it (`foo`, `[foo]`)."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if depth < 4:
        if isinstance(value, list | tuple):
            for item in value:
                _raise_if_undefined(item, depth + 1)
        elif isinstance(value, dict):
            for item in value.values():
                _raise_if_undefined(item, depth + 1)


def _template_line(tb: TracebackType | None) -> int | None:
    """Jinja rewrites tracebacks so template frames carry template line numbers."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _runtime_error(
    source: str, err: Exception, context: Mapping[str, Any], *, expression: bool
) -> TemplateRenderError:
    # A compiled expression is a synthetic template: its line numbers mean nothing.
    line = None if expression else _template_line(err.__traceback__)
    if isinstance(err, UndefinedError):
        message = _undefined_message(source, str(err), context, expression=expression)
    elif isinstance(err, SecurityError):
        message = f"not allowed in a template: {err}"
    elif isinstance(err, TemplateError):
        message = str(err)
    else:
        message = f"{type(err).__name__}: {err}"
    return TemplateRenderError(source, message, line)


# -- readable undefined errors ----------------------------------------------------------

_UNDEFINED_NAME = re.compile(r"^'(?P<name>.+)' is undefined$")
_MISSING_MEMBER = re.compile(r" has no (?:attribute|element) '?(?P<name>.*?)'?$")


def _undefined_message(
    source: str, message: str, context: Mapping[str, Any], *, expression: bool
) -> str:
    """Turn "'dict object' has no attribute 'foo'" into a message naming the path read,
    e.g. "steps.classify.output has no attribute 'foo' (it has: complexity, topic)"."""
    if match := _UNDEFINED_NAME.match(message):
        return f"variable {match['name']!r} is undefined (available: {_keys(context)})"
    match = _MISSING_MEMBER.search(message)
    if match is None:
        return message
    try:
        tree = _parse_tree(source, expression=expression)
    except TemplateRenderError:  # pragma: no cover - it was compiled already
        return message
    for root, keys in _lookup_chains(tree):
        if str(keys[-1]) != match["name"] or root not in context:
            continue
        parent = context[root]
        for key in keys[:-1]:
            parent = _lookup(parent, key)
            if isinstance(parent, Undefined):
                break
        else:
            if isinstance(_lookup(parent, keys[-1]), Undefined):
                return f"{_format_path(root, keys[:-1])} has no attribute {keys[-1]!r}" + (
                    f" (it has: {_keys(parent)})"
                    if isinstance(parent, Mapping)
                    else f" (it is {_describe(parent)})"
                )
    return message


def _lookup(obj: Any, key: str | int) -> Any:
    try:
        return _ENV.getattr(obj, key) if isinstance(key, str) else _ENV.getitem(obj, key)
    except Exception:  # pragma: no cover - only to explain an error already raised
        return _ENV.undefined()


def _lookup_chains(tree: nodes.Node) -> Iterator[tuple[str, list[str | int]]]:
    """Every `name.a['b'][0]` chain with constant keys, as (root, keys), in order."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        keys: list[str | int] = []
        current: nodes.Node = node
        while True:
            if isinstance(current, nodes.Getattr):
                keys.append(current.attr)
                current = current.node
            elif (
                isinstance(current, nodes.Getitem)
                and isinstance(current.arg, nodes.Const)
                and isinstance(current.arg.value, str | int)
            ):
                keys.append(current.arg.value)
                current = current.node
            else:
                break
        if isinstance(current, nodes.Name) and keys:
            yield current.name, keys[::-1]


def _format_path(root: str, keys: list[str | int]) -> str:
    parts = [root]
    for key in keys:
        if isinstance(key, str) and key.isidentifier():
            parts.append(f".{key}")
        else:
            parts.append(f"[{key!r}]")
    return "".join(parts)


def _keys(mapping: Mapping[Any, Any], limit: int = 20) -> str:
    names = [str(key) for key in mapping]
    if not names:
        return "nothing"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _describe(value: Any) -> str:
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


# -- static analysis --------------------------------------------------------------------


@functools.lru_cache(maxsize=_CACHE_SIZE)
def references(source: str, *, expression: bool = False) -> TemplateRefs:
    """The context names and steps a template (or expression) reads.

    Raises TemplateRenderError (with the line) on a syntax error (not
    cached). Cached by source like the compiled templates: a run whose chain
    nobody checked validates it when it starts, so every run of the same
    chain would otherwise parse its templates again. The answer depends on
    the source alone and is immutable, so runs sharing it stay deterministic.
    """
    tree = _parse_tree(source, expression=expression)
    variables = frozenset(meta.find_undeclared_variables(tree) - _GLOBAL_NAMES)
    steps: set[str] = set()
    dynamic = False
    if "steps" in variables:
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            if not (isinstance(node.node, nodes.Name) and node.node.name == "steps"):
                continue
            if isinstance(node, nodes.Getattr):
                steps.add(node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                steps.add(node.arg.value)
            else:
                dynamic = True
    return TemplateRefs(variables=variables, steps=frozenset(steps), dynamic_steps=dynamic)

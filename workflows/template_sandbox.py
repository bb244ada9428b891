"""The Jinja sandbox templates render in, with limits on what one rendering
may cost.

Jinja's sandbox refuses attribute escapes but not size: a template could build
a 256 MB string, format a number 300 million characters wide or nest two
100,000-step loops. Rendering runs inside a workflow task, so such a template
would stall the worker's event loop (the 2 s deadlock detector fails the task,
Temporal retries it, forever) or exhaust its memory. Here every rendering gets
a budget (`TemplateLimits`), charged in counts, never in time, so a template
that exceeds it fails the same way on every worker and on every replay:

- Python-level work, in *steps*: every loop iteration costs its body's size in
  template nodes (plus its `if` filter), every macro call its body's size, and
  filters walking a sequence one step per item. This bounds nested loops,
  recursion through macros, and loops whose bodies are large.
- allocation, in *characters* (or items): every string or list built by an
  operator, a filter, a string method, a slice, a format or an output
  expression is charged, so a rendering builds at most `max_total_chars`.
- one value: an operation that would build a string or sequence longer than
  `max_value_chars` (`*`, `+`, `~`, `join`, `replace`, `indent`, ...) is refused
  before it allocates, and so is turning a container into text when its text
  would be that long (lists sharing one big string, nested lists of lists).
- widths and precisions (`'{:>300000000}'`, `'%.9999999f'`, `center`, `ljust`,
  `rjust`, `zfill`, `expandtabs`, `int.to_bytes`, `batch`/`slice` counts):
  at most `max_width`.
- integers: `*` and `**` may not build one of more than `max_int_bits`.
- macro and recursive-loop nesting: at most `max_call_depth`.
- output: at most `max_output_chars`, counted while the output streams.

- comparisons (`==`, `<`, `in`, comparing tests and filters such as `sort`):
  containers are measured first, as for turning them into text, since
  comparing them runs in C over every nested item.

How: `instrument` rewrites a parsed template (before it is compiled) so loops,
macro bodies, slices, comparisons and `~` call the hooks below; the environment overrides
the sandbox's `call`, `call_binop` and str.format hooks, wraps every filter,
and checks every output expression (`finalize`). The budget of the
rendering in progress lives in a context variable, set by `budget()`.

`LEGACY_LIMITS` turns every one of these off except the two checks that
existed before (`*` and `**`, which then raise SecurityError as they did), so
a run whose history was recorded without limits replays exactly.

This module runs inside the workflow sandbox (imported by the passed-through
`workflows.templating`): pure, deterministic, no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, MappingView
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes, pass_context
from jinja2.runtime import Context, LoopContext, Macro, Undefined
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedFormatter,
    SecurityError,
    safe_range,
)
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer
from markupsafe import EscapeFormatter, Markup

__all__ = [
    "DEFAULT_LIMITS",
    "LEGACY_LIMITS",
    "BoundedSandbox",
    "LimitExceeded",
    "TemplateLimits",
    "budget",
    "instrument",
]


@dataclass(frozen=True)
class TemplateLimits:
    """What one rendering (or one expression evaluation) may cost."""

    max_output_chars: int = 1_000_000
    """Characters a template may render (a prompt that long is already past
    every model's context window, and near Temporal's 2 MB payload limit)."""
    max_value_chars: int = 1_000_000
    """Characters (or items) of any one string or sequence an operation builds,
    and of the text of a container turned into a string."""
    max_total_chars: int = 50_000_000
    """Characters (or items) built during the whole rendering."""
    max_steps: int = 200_000
    """Loop iterations and macro calls, weighted by their bodies' size in
    template nodes, plus items walked by filters."""
    max_width: int = 10_000
    """A width, precision, fill count or padding a template asks for."""
    max_range: int = 100_000
    """Items of one `range()` (Jinja's own sandbox limit, as a named limit)."""
    max_call_depth: int = 50
    """Macros (and recursive loops) calling themselves or each other."""
    max_int_bits: int = 100_000
    """Bits of an integer built by `*` or `**`."""
    legacy: bool = False
    """Only the checks that existed before these limits (see the module doc)."""


DEFAULT_LIMITS = TemplateLimits()
LEGACY_LIMITS = TemplateLimits(legacy=True)

_LEGACY_SEQUENCE_PRODUCT = 1_000_000
_LEGACY_POWER_BITS = 100_000


class LimitExceeded(Exception):
    """A rendering went over one of its limits. Deliberately not a TypeError,
    LookupError or ValueError: Jinja and Python code catch those on the way."""


# -- the budget of the rendering in progress ---------------------------------------------

_CONTAINERS = (list, tuple, dict, set, frozenset, MappingView, Namespace)
_ITEM_CHARS = 8


class _Budget:
    __slots__ = ("chars", "depth", "limits", "measured", "steps")

    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.steps = 0
        self.chars = 0
        self.depth = 0
        self.measured: dict[int, tuple[Any, int]] = {}
        """Containers compared during this rendering, by id, kept alive with
        their size (so an id is never reused for another object meanwhile)."""

    def charge(self, steps: int = 0, chars: int = 0) -> None:
        self.steps += steps
        self.chars += chars
        if self.steps > self.limits.max_steps:
            raise LimitExceeded(
                f"the template ran more than {self.limits.max_steps} steps "
                "(loop iterations and macro calls weighted by their size, items walked by filters)"
            )
        if self.chars > self.limits.max_total_chars:
            raise LimitExceeded(
                f"the template built more than {self.limits.max_total_chars} characters in all"
            )

    def value(self, size: int, what: str) -> None:
        if size > self.limits.max_value_chars:
            raise LimitExceeded(
                f"{what} would be {size} characters or items long "
                f"(limit {self.limits.max_value_chars})"
            )

    def width(self, width: Any, what: str) -> None:
        if isinstance(width, int) and width > self.limits.max_width:
            raise LimitExceeded(f"{what} of {width} is over the limit of {self.limits.max_width}")

    def produced(self, result: Any) -> None:
        """Charge a value an operation built: a string by its length, a
        container by its items (each costs about a pointer copy and a
        reference count, `_ITEM_CHARS` characters' worth)."""
        if isinstance(result, str | bytes):
            self.charge(chars=len(result))
        elif isinstance(result, list | tuple | dict | set):
            self.charge(chars=len(result) * _ITEM_CHARS)

    def measure(self, value: Any, what: str) -> int:
        """At least how many characters `str(value)` holds, walking containers
        (so a list holding one big string many times counts it each time)
        and refusing as soon as it passes `max_value_chars`. Each item walked
        costs a step: a container is as expensive to measure as to print."""
        kind = type(value)
        if kind is str or kind is bytes:
            return len(value)
        if kind in _SCALARS or not isinstance(value, _CONTAINERS):
            return len(value) if isinstance(value, str | bytes) else _scalar_size(value)
        limit = self.limits.max_value_chars
        steps_left = self.limits.max_steps - self.steps
        size = walked = 0
        stack: list[Any] = [value]
        pop, extend = stack.pop, stack.extend
        while stack:
            item = pop()
            walked += 1
            kind = type(item)
            if kind is int:
                size += item.bit_length() // 3 + 1
            elif kind in _SCALARS:
                size += 1
            elif kind is str or isinstance(item, str | bytes):
                size += len(item) + 2
            elif isinstance(item, list | tuple):
                size += 2 + 2 * len(item)
                if size <= limit:
                    extend(item)
            elif isinstance(item, dict):
                size += 2 + 4 * len(item)
                if size <= limit:
                    extend(item.keys())
                    extend(item.values())
            elif isinstance(item, Namespace):
                attrs = item._Namespace__attrs  # type: ignore[attr-defined]
                size += 13 + 4 * len(attrs)
                if size <= limit:
                    extend(attrs.items())
            elif isinstance(item, _CONTAINERS):
                size += 2 + 2 * len(item)  # type: ignore[arg-type]
                if size <= limit:
                    extend(item)  # type: ignore[arg-type]
            else:
                size += _scalar_size(item)
            if size > limit:
                self.charge(steps=walked)
                raise LimitExceeded(
                    f"{what} would be more than {limit} characters long as text (limit {limit})"
                )
            if walked > steps_left:
                break
        self.charge(steps=walked)
        return size

    def comparable(self, value: Any, what: str) -> Any:
        """`value`, once its size as text is known to be within
        `max_value_chars`: comparing, sorting or searching containers runs
        in C over every nested item, and lists built of one list twice, 40
        times over, hold 2**40 of them. Measured once per container."""
        if type(value) in _SCALARS or isinstance(value, str | bytes | Undefined):
            return value
        if not isinstance(value, _CONTAINERS):
            return value
        known = self.measured.get(id(value))
        if known is None or known[0] is not value:
            size = self.measure(value, what)
            self.value(size, what)
            self.measured[id(value)] = (value, size)
        return value


def _scalar_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() // 3 + 1
    return 1


_BUDGET: ContextVar[_Budget | None] = ContextVar("chorus_template_budget", default=None)


def _active() -> _Budget | None:
    """The budget of the rendering in progress, None outside one or in legacy mode."""
    current = _BUDGET.get()
    return None if current is None or current.limits.legacy else current


@contextmanager
def budget(limits: TemplateLimits) -> Iterator[None]:
    """Render (or evaluate) with `limits`; renderings do not nest."""
    token = _BUDGET.set(_Budget(limits))
    try:
        yield
    finally:
        _BUDGET.reset(token)


# -- format strings ------------------------------------------------------------------------

_DIGITS = re.compile(r"\d+")
_PRINTF = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?"
    r"[hlL]?(?P<conversion>[diouxXeEfFgGcrsa%])"
)


def _number(digits: str) -> int:
    # int() refuses more than 4300 digits; anything past 18 is over every limit.
    return int(digits) if len(digits) <= 18 else 10**18


def _check_format_spec(current: _Budget, spec: str) -> None:
    """Any number in a `str.format` spec (width, precision) is at most max_width."""
    for digits in _DIGITS.findall(spec):
        current.width(_number(digits), f"format spec {spec[:40]!r}: a width or precision")


def _check_printf(current: _Budget, fmt: str, values: Any) -> None:
    """Widths and precisions of a printf-style format (`%`, `|format`), `*`
    ones taken from the values the way Python takes them; and the text of
    the values themselves."""
    positional = values if isinstance(values, tuple) else (values,)
    index = 0
    for match in _PRINTF.finditer(fmt):
        if match["conversion"] == "%":
            continue
        for part in (match["width"], match["precision"]):
            if part == "*":
                if index < len(positional):
                    current.width(positional[index], "a printf-style '*' width or precision")
                index += 1
            elif part:
                current.width(_number(part), "a printf-style width or precision")
        if match["key"] is None:
            index += 1
    current.value(current.measure(values, "a printf-style argument"), "a printf-style argument")


class _BoundedFormatter(SandboxedFormatter):
    """`str.format` in the sandbox, refusing wide fields and huge arguments."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        current = _active()
        if current is not None:
            _check_format_spec(current, format_spec)
            current.value(current.measure(value, "a format argument"), "a format argument")
        result = super().format_field(value, format_spec)
        if current is not None:
            current.produced(result)
        return result


class _BoundedEscapeFormatter(_BoundedFormatter, EscapeFormatter):
    pass


# -- string methods ----------------------------------------------------------------------

_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _argument(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _check_method(
    current: _Budget, func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[Any, ...]:
    """Refuse, before they allocate, the str/bytes/int methods that can build
    far more than their inputs. Returns the arguments to call with (a join's
    iterable is read into a list first, counting its items)."""
    owner = getattr(func, "__self__", None)
    name = getattr(func, "__name__", "")
    if isinstance(owner, int) and not isinstance(owner, bool) and name == "to_bytes":
        length = _argument(args, kwargs, 0, "length")
        current.width(1 if length is None else length, "int.to_bytes length")
        return args
    if isinstance(owner, list | tuple) and name in ("count", "index"):
        for value in (owner, *args[:1]):  # both compared, item by item, in C
            current.comparable(value, f"{type(owner).__name__}.{name}")
        return args
    if isinstance(owner, LoopContext) and name == "changed":
        for value in args:  # compared with the previous iteration's
            current.comparable(value, "loop.changed")
        return args
    if not isinstance(owner, str | bytes | bytearray):
        return args
    kind = type(owner).__name__
    if name in _WIDTH_METHODS:
        current.width(_argument(args, kwargs, 0, "width"), f"{kind}.{name} width")
    elif name == "expandtabs":
        tabsize = _argument(args, kwargs, 0, "tabsize")
        tabsize = 8 if tabsize is None else tabsize
        current.width(tabsize, f"{kind}.expandtabs tab size")
        if isinstance(tabsize, int):
            tab = "\t" if isinstance(owner, str) else b"\t"
            current.value(len(owner) + owner.count(tab) * tabsize, f"{kind}.expandtabs")  # type: ignore[arg-type]
    elif name == "replace" and len(args) >= 2:
        count = _argument(args, kwargs, 2, "count")
        current.value(
            _replaced_size(owner, args[0], args[1], -1 if count is None else count),
            f"{kind}.replace",
        )
    elif name == "join" and args:
        items = _listed(current, args[0])
        size = sum(len(item) for item in items if isinstance(item, str | bytes | bytearray))
        current.value(size + len(owner) * max(len(items) - 1, 0), f"{kind}.join")
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max(
            (len(v) for v in args[0].values() if isinstance(v, str)),
            default=1,
        )
        current.value(len(owner) * max(longest, 1), f"{kind}.translate")
    return args


def _replaced_size(text: Any, old: Any, new: Any, count: Any) -> int:
    if not (
        isinstance(text, str | bytes | bytearray)
        and isinstance(old, type(text) | str)
        and isinstance(new, type(text) | str)
        and isinstance(count, int)
    ):
        return 0  # the call itself refuses mismatched types
    occurrences = len(text) + 1 if not old else text.count(old)  # type: ignore[arg-type]
    if count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * (len(new) - len(old))


def _listed(current: _Budget, iterable: Any) -> list[Any]:
    """An iterable as a list, one step per item of a list or tuple; an
    iterator's items cost what producing them lazily did (`map`, `select`
    run Python per item: `_CALLBACK_WEIGHT`)."""
    if isinstance(iterable, list | tuple):
        current.charge(steps=len(iterable))
        return list(iterable) if isinstance(iterable, tuple) else iterable
    weight = 1 if isinstance(iterable, _SIZED) else _CALLBACK_WEIGHT
    items = []
    for item in iterable:
        current.charge(steps=weight)
        items.append(item)
    return items


# -- filters -------------------------------------------------------------------------------

_STRUCTURAL_FILTERS = frozenset(
    {
        "batch", "dictsort", "groupby", "items", "list", "map", "max", "min", "reject",
        "rejectattr", "reverse", "select", "selectattr", "slice", "sort", "sum", "unique",
    }
)  # fmt: skip
"""Filters that walk a sequence item by item in Python: one step per item."""

_CALLBACK_FILTERS = frozenset(
    {"dictsort", "groupby", "map", "max", "min", "reject", "rejectattr", "select",
     "selectattr", "sort", "sum", "unique"}
)  # fmt: skip
"""Structural filters that run Python (an attribute getter, a filter, a test,
a comparison key) for every item."""

_COMPARING_FILTERS = frozenset({"dictsort", "groupby", "max", "min", "sort", "unique"})
"""Filters comparing (or hashing) their items in C."""

_COMPARING_TESTS = frozenset(
    {"!=", "<", "<=", "==", ">", ">=", "eq", "equalto", "ge", "greaterthan", "gt", "in", "le",
     "lessthan", "lt", "ne"}
)  # fmt: skip

_CALLBACK_WEIGHT = 4
"""Steps per item of those: a Python call costs about four template steps."""

_SIZED = (str, bytes, list, tuple, dict, set, frozenset, range, MappingView)

_CONSTANT_FILTERS = frozenset(
    {"abs", "attr", "bool", "count", "d", "default", "first", "float", "int", "last", "length",
     "round"}
)  # fmt: skip
"""Filters that neither walk nor stringify their input (and build nothing big)."""

_SLOW_TEXT_FILTERS = frozenset({"pprint", "urlencode", "urlize", "wordwrap", "xmlattr"})
"""Filters that work through their input's text in Python, not C: a step
per four characters."""

_NON_BUILDING_FILTERS = frozenset({"attr", "d", "default", "first", "last", "max", "min"})
"""Filters that return an existing value rather than building one."""


def _check_filter(
    current: _Budget, name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Per-filter checks before it runs; returns the value to run it on."""
    if name in _CONSTANT_FILTERS or name == "join":
        pass
    elif name in _STRUCTURAL_FILTERS:
        weight = _CALLBACK_WEIGHT if name in _CALLBACK_FILTERS else 1
        if name in _COMPARING_FILTERS:
            current.comparable(value, f"the input of filter {name!r}")
        if isinstance(value, _SIZED):
            current.charge(steps=len(value) * weight)
        elif isinstance(value, Iterator):
            # Lazily produced upstream (map, select, ...), which runs Python per item.
            value = _counted_items(value, current, _CALLBACK_WEIGHT, 0)
    else:
        size = current.measure(value, f"the input of filter {name!r}")
        if not isinstance(value, str):
            current.value(size, f"the input of filter {name!r}")
        if name in _SLOW_TEXT_FILTERS:
            current.charge(steps=size // 4)

    if name == "center":
        current.width(_argument(args, kwargs, 0, "width"), "filter 'center' width")
    elif name == "indent" and isinstance(value, str):
        width = _argument(args, kwargs, 0, "width")
        width = 4 if width is None else width
        current.width(width, "filter 'indent' width")
        pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        current.value(len(value) + (value.count("\n") + 2) * pad, "filter 'indent'")
    elif name == "replace" and isinstance(value, str) and len(args) >= 2:
        count = _argument(args, kwargs, 2, "count")
        current.value(
            _replaced_size(value, args[0], args[1], -1 if count is None else count),
            "filter 'replace'",
        )
    elif name == "format" and isinstance(value, str):
        _check_printf(current, value, kwargs or tuple(args))
    elif name == "wordwrap" and isinstance(value, str):
        width = _argument(args, kwargs, 0, "width")
        wrapstring = _argument(args, kwargs, 2, "wrapstring")
        if isinstance(width, int) and isinstance(wrapstring, str) and width > 0:
            lines = len(value) // width + value.count("\n") + 1
            current.value(len(value) + lines * len(wrapstring), "filter 'wordwrap'")
    elif name == "batch":
        if _argument(args, kwargs, 1, "fill_with") is not None:
            current.width(_argument(args, kwargs, 0, "linecount"), "filter 'batch' size")
    elif name == "slice":
        current.width(_argument(args, kwargs, 0, "slices"), "filter 'slice' count")
    elif name == "sum" and isinstance(
        start := _argument(args, kwargs, 1, "start"), str | bytes | list | tuple
    ):
        # Summing sequences adds them one by one: each partial sum is a copy.
        items = _listed(current, value)
        value = items
        size = len(start) + sum(len(i) for i in items if isinstance(i, _SIZED))
        current.value(size, "filter 'sum'")
        current.charge(chars=size * len(items) // 2)
    elif name == "join" and not isinstance(value, Undefined):
        separator = _argument(args, kwargs, 0, "d")
        sep_len = len(separator) if isinstance(separator, str) else 0
        if isinstance(value, str):
            current.value(len(value) * (1 + sep_len), "filter 'join'")
        else:
            value = _listed(current, value)
            size = sum(current.measure(item, "an item of filter 'join'") for item in value)
            current.value(size + sep_len * max(len(value) - 1, 0), "filter 'join'")
    return value


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    # The value is the first argument, after the context, eval context or
    # environment Jinja passes to filters marked with pass_context & co.
    offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)  # keeps `jinja_pass_arg`, so Jinja passes the same arguments
    def bounded(*args: Any, **kwargs: Any) -> Any:
        current = _active()
        if current is None or len(args) <= offset:
            return func(*args, **kwargs)
        value = _check_filter(current, name, args[offset], args[offset + 1 :], kwargs)
        result = func(*args[:offset], value, *args[offset + 1 :], **kwargs)
        if name not in _NON_BUILDING_FILTERS:
            current.produced(result)
        return result

    return bounded


def _bounded_test(func: Callable[..., Any]) -> Callable[..., Any]:
    """A comparing test (`is eq`, `is in`, and `select('in', ...)`): its
    operands measured first, like the operands of a comparison."""

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        current = _active()
        if current is not None:
            for arg in args:
                current.comparable(arg, "a compared value")
        return func(*args, **kwargs)

    return bounded


# -- loops, macros and concatenation: the instrumentation's hooks ---------------------------


def _hook_compare(value: Any) -> Any:
    """An operand of a comparison (`==`, `<`, `in`, ...)."""
    current = _active()
    return value if current is None else current.comparable(value, "a compared value")


class _CountedItems:
    """An iterable charging each item it yields; sized when its source is
    (`loop.length`, `loop.revindex` keep working without reading ahead)."""

    __slots__ = ("_budget", "_chars", "_items", "_steps")

    def __init__(self, items: Iterable[Any], current: _Budget, steps: int, chars: int) -> None:
        self._items = items
        self._budget = current
        self._steps = steps
        self._chars = chars

    def __iter__(self) -> Iterator[Any]:
        # The hottest path of a rendering: the budget is updated in place.
        current, steps, chars = self._budget, self._steps, self._chars
        max_steps, max_chars = current.limits.max_steps, current.limits.max_total_chars
        for item in self._items:
            current.steps += steps
            current.chars += chars
            if current.steps > max_steps or current.chars > max_chars:
                current.charge()  # raises, naming the limit
            yield item

    def __len__(self) -> int:
        return len(self._items)  # type: ignore[arg-type]  # TypeError when unsized, as Jinja expects


def _counted_items(items: Iterable[Any], current: _Budget, steps: int, chars: int) -> Iterator[Any]:
    return iter(_CountedItems(items, current, steps, chars))


def _hook_loop(items: Any, steps: int, chars: int) -> Any:
    """A `for` loop's iterable: each item costs the loop body (and filter)."""
    current = _active()
    if current is None or isinstance(items, Undefined):
        return items
    return _CountedItems(items, current, steps, chars)


def _hook_charge(steps: int, chars: int) -> str:
    """Charged at the top of a macro body or a recursive loop's body."""
    current = _active()
    if current is not None:
        current.charge(steps, chars)
    return ""


def _hook_slice(obj: Any, start: Any, stop: Any, step: Any) -> Any:
    """`obj[start:stop:step]` (Jinja compiles slices to plain subscripts,
    past the sandbox's getitem): the copy is charged."""
    result = obj[start:stop:step]
    current = _active()
    if current is not None:
        current.produced(result)
    return result


def _hook_concat(*parts: Any) -> str:
    """`a ~ b ~ c`: Jinja's str_join, measured first."""
    current = _active()
    if current is not None:
        size = sum(current.measure(part, "an operand of '~'") for part in parts)
        current.value(size, "a '~' concatenation")
        current.charge(chars=size)
    return "".join(map(str, parts))


_HOOKS = {
    "_chorus_loop": _hook_loop,
    "_chorus_charge": _hook_charge,
    "_chorus_concat": _hook_concat,
    "_chorus_slice": _hook_slice,
    "_chorus_compare": _hook_compare,
}
_HOOK_IDS = frozenset(id(hook) for hook in _HOOKS.values())


def _size(nodes_: Iterable[nodes.Node | None]) -> tuple[int, int]:
    """A body's cost per run: template nodes, and characters of literal text."""
    steps = chars = 0
    for top in nodes_:
        if top is None:
            continue
        for node in (top, *top.find_all(nodes.Node)):
            steps += 1
            if isinstance(node, nodes.TemplateData):
                chars += len(node.data)
    return steps, chars


_CALL_STEPS = 8
"""What calling a macro costs over its body (Jinja binds its arguments in Python)."""


def _hook_call(name: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(name), args, [], None, None, lineno=lineno)


def _charge_statement(steps: int, chars: int, lineno: int) -> nodes.ExprStmt:
    call = _hook_call("_chorus_charge", [nodes.Const(steps), nodes.Const(chars)], lineno)
    return nodes.ExprStmt(call, lineno=lineno)


class _Instrument(NodeTransformer):
    def visit_For(self, node: nodes.For) -> nodes.Node:
        body_steps, body_chars = _size(node.body)
        test_steps, _ = _size([node.test])
        self.generic_visit(node)
        if node.recursive:
            # `loop(items)` re-enters the body without the iterable hook.
            node.body.insert(0, _charge_statement(body_steps, body_chars, node.lineno))
            per_item = (1 + test_steps, 0)
        else:
            per_item = (1 + test_steps + body_steps, body_chars)
        node.iter = _hook_call(
            "_chorus_loop", [node.iter, nodes.Const(per_item[0]), nodes.Const(per_item[1])],
            node.lineno,
        )  # fmt: skip
        return node

    def _charge_body(self, node: nodes.Macro | nodes.CallBlock) -> nodes.Node:
        steps, chars = _size(node.body)
        self.generic_visit(node)
        node.body.insert(0, _charge_statement(steps + _CALL_STEPS, chars, node.lineno))
        return node

    def visit_Macro(self, node: nodes.Macro) -> nodes.Node:
        return self._charge_body(node)

    def visit_CallBlock(self, node: nodes.CallBlock) -> nodes.Node:
        return self._charge_body(node)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        self.generic_visit(node)
        if not isinstance(node.arg, nodes.Slice):
            return node
        bounds = [
            nodes.Const(None) if part is None else part
            for part in (node.arg.start, node.arg.stop, node.arg.step)
        ]
        return _hook_call("_chorus_slice", [node.node, *bounds], node.lineno)

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        if not isinstance(node.expr, nodes.Const):
            node.expr = _hook_call("_chorus_compare", [node.expr], node.lineno)
        for operand in node.ops:
            if not isinstance(operand.expr, nodes.Const):
                operand.expr = _hook_call("_chorus_compare", [operand.expr], node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _hook_call("_chorus_concat", list(node.nodes), node.lineno)


def instrument(tree: nodes.Template, environment: BoundedSandbox) -> nodes.Template:
    """Rewrite a freshly parsed template so its loops, macros and `~` are
    charged to the rendering's budget. Mutates and returns `tree`."""
    _Instrument().visit(tree)
    tree.set_environment(environment)
    return tree


# -- the environment ---------------------------------------------------------------------


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    """Every `{{ expression }}`: measured before Jinja turns it into text.
    (Taking the context also stops Jinja from evaluating constant output at
    compile time, outside any budget.)"""
    kind = type(value)
    if kind in _SCALARS:
        return value  # its text is short (an int has at most 100,000 bits)
    current = _active()
    if current is None:
        return value
    if kind is str:
        current.charge(chars=len(value))
    elif not isinstance(value, Undefined):
        size = current.measure(value, "an output expression")
        if not isinstance(value, str):
            current.value(size, "an output expression")
        current.charge(chars=size)
    return value


_SCALARS = frozenset({int, float, bool, type(None)})


def _bounded_range(*args: int) -> range:
    current = _BUDGET.get()
    if current is None or current.limits.legacy:
        return safe_range(*args)
    items = range(*args)
    if len(items) > current.limits.max_range:
        raise LimitExceeded(
            f"range() of {len(items)} items is over the limit of {current.limits.max_range}"
        )
    return items


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox charging what templates do to the rendering's budget.

    Templates must go through `instrument` before they are compiled, and be
    rendered inside `budget(...)`; outside a budget every hook lets things
    through (Chorus never renders that way)."""

    intercepted_binops = frozenset({"+", "*", "%", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_finalize, optimized=False, **options)
        self.globals["range"] = _bounded_range
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.tests = {
            name: _bounded_test(test) if name in _COMPARING_TESTS else test
            for name, test in self.tests.items()
        }
        for name, hook in _HOOKS.items():
            setattr(self, name, hook)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        current = _BUDGET.get()
        if current is not None and current.limits.legacy:
            _legacy_binop_checks(operator, left, right)
            return super().call_binop(context, operator, left, right)
        current = _active()
        if current is not None:
            _check_binop(current, operator, left, right)
        result = super().call_binop(context, operator, left, right)
        if current is not None and operator != "**":
            current.produced(result)
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's own wrapper of `str.format`/`format_map`, with a formatter
        that checks each field (the stock one cannot be swapped in)."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        f_self: str = value.__self__
        formatter: SandboxedFormatter = (
            _BoundedEscapeFormatter(self, escape=f_self.escape)
            if isinstance(f_self, Markup)
            else _BoundedFormatter(self)
        )
        str_type = type(f_self)
        is_format_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs, args = args[0], ()
            return str_type(formatter.vformat(f_self, args, kwargs))

        return functools.update_wrapper(wrapper, value)

    def call(
        __self,  # Jinja's signature: the call's keyword arguments may be named `self`
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if id(__obj) in _HOOK_IDS:
            return __obj(*args)  # Jinja adds `_loop_vars`/`_block_vars`: not for hooks
        current = _active()
        if current is None:
            return super().call(__context, __obj, *args, **kwargs)
        args = _check_method(current, __obj, args, kwargs)
        nested = isinstance(__obj, Macro | LoopContext)
        if nested:
            if isinstance(__obj, LoopContext) and args:
                args = (_CountedItems(args[0], current, 1, 0), *args[1:])
            current.depth += 1
            if current.depth > current.limits.max_call_depth:
                raise LimitExceeded(
                    f"macros or recursive loops nested more than "
                    f"{current.limits.max_call_depth} deep"
                )
        try:
            result = super().call(__context, __obj, *args, **kwargs)
        finally:
            if nested:
                current.depth -= 1
        current.produced(result)
        return result


def _legacy_binop_checks(operator: str, left: Any, right: Any) -> None:
    """The two checks rendering had before the limits, with their old errors."""
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if (
                isinstance(seq, str | list | tuple)
                and isinstance(count, int)
                and len(seq) * count > _LEGACY_SEQUENCE_PRODUCT
            ):
                raise SecurityError(
                    f"refusing to build a sequence of {len(seq) * count} items with '*' "
                    f"(limit {_LEGACY_SEQUENCE_PRODUCT})"
                )
    elif (
        operator == "**"
        and isinstance(left, int)
        and isinstance(right, int)
        and right > 0
        and max(left.bit_length(), 1) * right > _LEGACY_POWER_BITS
    ):
        raise SecurityError(f"refusing to compute {left} ** {right} (result too large)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_binop(current: _Budget, operator: str, left: Any, right: Any) -> None:
    limits = current.limits
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, str | bytes | list | tuple) and isinstance(count, int):
                current.value(len(seq) * max(count, 0), "a '*' repetition")
        if (
            _is_int(left)
            and _is_int(right)
            and (left.bit_length() + right.bit_length() > limits.max_int_bits)
        ):
            raise LimitExceeded(
                f"'*' would build an integer of more than {limits.max_int_bits} bits"
            )
    elif operator == "**":
        if (
            _is_int(left)
            and _is_int(right)
            and right > 0
            and max(left.bit_length(), 1) * right > limits.max_int_bits
        ):
            raise LimitExceeded(
                f"{left} ** {right} would be an integer of more than {limits.max_int_bits} bits"
            )
    elif operator == "+":
        for kind in (str, bytes, list, tuple):
            if isinstance(left, kind) and isinstance(right, kind):
                current.value(len(left) + len(right), "a '+' concatenation")
    elif operator == "%" and isinstance(left, str):
        _check_printf(current, left, right)

"""Parse chain specs: YAML or a mapping to a ChainSpec, with every problem
named by its document path (`steps[1].branches[0].steps[0].model`) rather
than pydantic's internal location. The problem types and the path helpers
live here too; workflows/validate.py checks the meaning of what parses.

Pure: no I/O.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from core.chain_spec import STEP_NAME_PATTERN, ChainSpec, ParallelStep, RouteStep, Step
from core.input_limits import DEFAULT_LIMITS, InputLimits, InputProblem, check_value

__all__ = [
    "DOCUMENT",
    "ChainSpecError",
    "SpecProblem",
    "did_you_mean",
    "format_path",
    "iter_steps",
    "join_path",
    "load_yaml",
    "parse_chain",
    "parse_chain_yaml",
]

DOCUMENT = "<document>"
"""Path of problems that concern the whole document (bad YAML, not a mapping)."""


@dataclass(frozen=True)
class SpecProblem:
    path: str
    """Document path, e.g. `steps[1].branches[0].steps[0].model`."""
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ChainSpecError(ValueError):
    """A chain spec that cannot run; `problems` lists every reason found."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        header = f"invalid chain spec ({count} problem{'s' if count != 1 else ''})"
        super().__init__("\n".join([header, *(f"  {p}" for p in self.problems)]))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


# -- parsing ---------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last
    one), and bounds what a document may become while it is composed: nesting
    deeper than the limits' `max_depth` (PyYAML's composer recurses, so 1,000
    levels end in a RecursionError), and a document whose size with every
    alias expanded exceeds `max_spec_bytes` (a few hundred bytes of nested
    aliases can mean gigabytes: an alias bomb), or an alias of itself."""

    def __init__(self, stream: str, limits: InputLimits) -> None:
        super().__init__(stream)
        self.limits = limits
        self._depth = 0
        self._aliased = False
        self._expanded: dict[int, int] = {}
        """Expanded size of each composed node (approximate JSON bytes)."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node: yaml.Node = super().compose_node(parent, index)
            self._aliased = True
            if id(node) not in self._expanded:
                raise yaml.composer.ComposerError(
                    None, None, "found an alias inside the node it names (a recursive alias)", mark
                )
            return node
        mark = self.peek_event().start_mark
        collection = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        if collection and self._depth >= self.limits.max_depth:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {self.limits.max_depth} levels deep", mark
            )
        self._depth += collection
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= collection
        size = self._size(node)
        limit = self.limits.max_spec_bytes
        if size > limit:
            problem = (
                f"the document expands to at least {size} bytes with its aliases expanded "
                f"(each use of an alias counts as a copy); the limit is {limit}"
                if self._aliased
                else f"the document is at least {size} bytes as JSON; the limit is {limit}"
            )
            raise yaml.composer.ComposerError(None, None, problem, mark)
        self._expanded[id(node)] = size
        return node

    def _size(self, node: yaml.Node) -> int:
        sizes = self._expanded
        if isinstance(node, yaml.SequenceNode):
            return 2 + sum(sizes[id(item)] + 1 for item in node.value)
        if isinstance(node, yaml.MappingNode):
            return 2 + sum(sizes[id(key)] + sizes[id(value)] + 2 for key, value in node.value)
        return len(str(node.value)) + 3


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:  # unhashable key: let the constructor report it
            continue
        if first != key_node.start_mark.line + 1:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first at line {first})",
                key_node.start_mark,
            )
    return loader.construct_mapping(node, deep=True)


def _construct_int(loader: _StrictLoader, node: yaml.ScalarNode) -> Any:
    # Python converts at most 4,300 digits (slowly), and raises a ValueError
    # past that; no 64-bit integer has more than 20 characters.
    if len(str(node.value)) > 30:
        raise yaml.constructor.ConstructorError(
            None, None, "integer outside the 64-bit range", node.start_mark
        )
    return loader.construct_yaml_int(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def load_yaml(text: str, limits: InputLimits = DEFAULT_LIMITS) -> Any:
    """YAML text to plain data within `limits` (see `_StrictLoader`), every
    value checked by `core.input_limits.check_value`; raises ChainSpecError."""
    loader = _StrictLoader(text, limits)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as err:
        raise ChainSpecError([SpecProblem(DOCUMENT, _yaml_message(err))]) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # A scalar its tag cannot build (`2020-13-45` as a timestamp, `!!int abc`):
        # PyYAML's constructors raise these bare, without a position.
        raise ChainSpecError([SpecProblem(DOCUMENT, f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    try:
        check_value(data, limits, max_bytes=limits.max_spec_bytes)
    except InputProblem as problem:
        raise ChainSpecError([SpecProblem(problem.path or DOCUMENT, problem.problem)]) from None
    return data


def parse_chain_yaml(text: str, limits: InputLimits = DEFAULT_LIMITS) -> ChainSpec:
    """YAML text to a ChainSpec; raises ChainSpecError naming each problem."""
    return parse_chain(load_yaml(text, limits))


def _yaml_message(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"invalid YAML{where}: {problem}"


def parse_chain(data: Any) -> ChainSpec:
    """A mapping (parsed YAML or JSON) to a ChainSpec; raises ChainSpecError."""
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ChainSpecError([SpecProblem(DOCUMENT, f"a chain spec must be a mapping, got {kind}")])
    try:
        return ChainSpec.model_validate(dict(data))
    except ValidationError as err:
        problems = [_pydantic_problem(e) for e in err.errors(include_url=False)]
        raise ChainSpecError(_dedupe(problems)) from None


def _step_kinds() -> dict[str, type[BaseModel]]:
    union = typing.get_args(Step)[0]
    return {model.model_fields["kind"].default: model for model in typing.get_args(union)}


_STEP_KINDS = _step_kinds()
_ALLOWED_KINDS = ", ".join(_STEP_KINDS)


def _pydantic_problem(error: Mapping[str, Any]) -> SpecProblem:
    raw_loc = tuple(error["loc"])
    loc = _document_loc(raw_loc)
    path = format_path(loc)
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "union_tag_invalid":
        return SpecProblem(
            join_path(path, "kind"),
            f"unknown step kind {ctx.get('tag')!r} (allowed: {_ALLOWED_KINDS})",
        )
    if kind == "union_tag_not_found":
        return SpecProblem(
            join_path(path, "kind"), f"missing step kind (allowed: {_ALLOWED_KINDS})"
        )
    if kind == "missing":
        return SpecProblem(path, "required field is missing")
    if kind == "extra_forbidden":
        field = str(loc[-1])
        allowed = _fields_at(raw_loc[:-1])
        hint = did_you_mean(field, allowed) if allowed else ""
        return SpecProblem(path, f"unknown field {field!r}{hint}")
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == STEP_NAME_PATTERN:
        return SpecProblem(
            path,
            f"invalid name {value!r}: use letters, digits and underscores, "
            "not starting with a digit (templates read it as `steps.NAME`)",
        )
    message = str(error["msg"])
    if isinstance(value, str | int | float | bool) and kind not in ("model_type", "dict_type"):
        message += f" (got {value!r})"
    return SpecProblem(path, message)


def _document_loc(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop the discriminated union's tag (`model`, `route`, ...) that pydantic puts
    after a list index, so the location is a path in the document."""
    out: list[str | int] = []
    for i, segment in enumerate(loc):
        if (
            isinstance(segment, str)
            and segment in _STEP_KINDS
            and i
            and isinstance(loc[i - 1], int)
        ):
            continue
        out.append(segment)
    return tuple(out)


def _fields_at(raw_loc: tuple[str | int, ...]) -> list[str] | None:
    """Field names of the model found at a pydantic location (tags included)."""
    current: Any = ChainSpec
    for segment in raw_loc:
        current = _unwrap(current)
        if isinstance(segment, int):
            if typing.get_origin(current) is not list:
                return None
            current = typing.get_args(current)[0]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            if segment not in current.model_fields:
                return None
            current = current.model_fields[segment].annotation
        elif segment in _STEP_KINDS:
            current = _STEP_KINDS[segment]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated and Optional from a type annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _dedupe(problems: list[SpecProblem]) -> list[SpecProblem]:
    return list(dict.fromkeys(problems))


# -- paths -----------------------------------------------------------------------------


def format_path(loc: Sequence[str | int]) -> str:
    path = ""
    for segment in loc:
        path = f"{path}[{segment}]" if isinstance(segment, int) else join_path(path, str(segment))
    return path or DOCUMENT


def join_path(path: str, field: str) -> str:
    return f"{path}.{field}" if path and path != DOCUMENT else field


def iter_steps(steps: Sequence[Step], prefix: str = "steps") -> Iterator[tuple[str, Step]]:
    """Every step in the tree with its document path, depth first, in document order."""
    for i, step in enumerate(steps):
        path = f"{prefix}[{i}]"
        yield path, step
        if isinstance(step, RouteStep):
            for j, branch in enumerate(step.branches):
                yield from iter_steps(branch.steps, f"{path}.branches[{j}].steps")
            if step.otherwise:
                yield from iter_steps(step.otherwise, f"{path}.otherwise")
        elif isinstance(step, ParallelStep):
            for j, parallel_branch in enumerate(step.branches):
                yield from iter_steps(parallel_branch.steps, f"{path}.branches[{j}].steps")


def did_you_mean(word: str, choices: Collection[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, else nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

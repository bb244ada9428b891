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

__all__ = [
    "DOCUMENT",
    "ChainSpecError",
    "SpecProblem",
    "did_you_mean",
    "format_path",
    "iter_steps",
    "join_path",
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
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


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


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_chain_yaml(text: str) -> ChainSpec:
    """YAML text to a ChainSpec; raises ChainSpecError naming each problem."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as err:
        raise ChainSpecError([SpecProblem(DOCUMENT, _yaml_message(err))]) from None
    return parse_chain(data)


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

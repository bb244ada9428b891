"""Plain Python functions as tools, their JSON Schema derived from the signature.

The parameters of a function become the fields of a pydantic model built
once at registration (`pydantic.create_model`): their annotations, defaults
and descriptions (from `Annotated[..., Field(description=...)]`, a
`Field(...)` default, or the docstring's `Args:` section) give the JSON Schema
a model sees, and the same model validates the arguments before every call,
so what the schema promises and what the function receives cannot drift
apart. Nested pydantic models, enums and `Literal`s work as they do anywhere
in pydantic.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema

from activities.tools.base import (
    IDEMPOTENCY_KEY_PARAM,
    Tool,
    check_policy,
    check_tool_name,
)
from activities.tools.errors import InvalidToolArguments, ToolDefinitionError
from activities.tools.types import ToolInfo


class _ToolSchema(GenerateJsonSchema):
    """Pydantic's schema without the per-field titles ("Order Id"), which a
    model does not need and which cost tokens on every turn."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


# -- docstrings ----------------------------------------------------------------

_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Returns?|Yields?|Raises|Examples?|Notes?)\s*:?\s*$"
)
_GOOGLE_ARG = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_ARG = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def docstring_summary(doc: str | None) -> str:
    """The first paragraph, joined into one line (the tool's description)."""
    if not doc:
        return ""
    lines: list[str] = []
    for line in inspect.cleandoc(doc).splitlines():
        if not line.strip() or _SECTION.match(line.strip()) or line.lstrip().startswith(":"):
            break
        lines.append(line.strip())
    return " ".join(lines)


def docstring_params(doc: str | None) -> dict[str, str]:
    """Parameter descriptions from a Google-style `Args:` section or Sphinx
    `:param name:` lines; more-indented continuation lines are joined."""
    if not doc:
        return {}
    found: dict[str, str] = {}
    current: str | None = None
    current_indent = 0
    in_args = False
    for raw in inspect.cleandoc(doc).splitlines():
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if not stripped:
            current = None
            continue
        if current is not None and indent > current_indent:
            found[current] = f"{found[current]} {stripped}"
            continue
        current = None
        sphinx = _SPHINX_ARG.match(raw)
        google = _GOOGLE_ARG.match(raw) if in_args else None
        if _SECTION.match(stripped):
            in_args = stripped.rstrip(": ") in ("Args", "Arguments", "Parameters", "Params")
        elif sphinx or google:
            match = sphinx or google
            assert match is not None
            current, current_indent = match.group(1), indent
            found[current] = match.group(2).strip()
    return found


# -- signature → model -------------------------------------------------------


def _has_description(annotation: Any, default: Any) -> bool:
    if isinstance(default, FieldInfo) and default.description:
        return True
    if typing.get_origin(annotation) is Annotated:
        return any(
            isinstance(meta, FieldInfo) and meta.description for meta in annotation.__metadata__
        )
    return False


def arguments_model(
    fn: Callable[..., Any], tool_name: str
) -> tuple[type[BaseModel], dict[str, str], bool]:
    """A pydantic model of `fn`'s parameters, the map from its field names
    to parameter names, and whether `fn` takes an idempotency key.

    Fields are named `p0, p1, ...` and aliased to the parameter names, so a
    parameter may be called `json`, `schema` or `model_config` without
    colliding with `BaseModel`'s own attributes.
    """
    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise ToolDefinitionError(f"tool {tool_name!r}: cannot read the signature: {exc}") from exc
    param_docs = docstring_params(inspect.getdoc(fn))
    fields: dict[str, Any] = {}
    names: dict[str, str] = {}
    takes_key = False
    for index, (name, param) in enumerate(signature.parameters.items()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(
                f"tool {tool_name!r}: parameter {param}: *args and **kwargs have no schema; "
                "name every parameter"
            )
        if param.kind is param.POSITIONAL_ONLY:
            raise ToolDefinitionError(
                f"tool {tool_name!r}: parameter {name!r} is positional-only; "
                "tools are called with keyword arguments"
            )
        if name == IDEMPOTENCY_KEY_PARAM:
            takes_key = True
            continue
        annotation = hints.get(name, Any)
        default = param.default
        base = (
            default
            if isinstance(default, FieldInfo)
            else Field()
            if default is param.empty
            else Field(default)
        )
        extra: dict[str, Any] = {"alias": name}
        if name in param_docs and not _has_description(annotation, default):
            extra["description"] = param_docs[name]
        field_name = f"p{index}"
        fields[field_name] = (annotation, FieldInfo.merge_field_infos(base, Field(**extra)))
        names[field_name] = name
    try:
        model = create_model(
            f"{tool_name}_arguments",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False),
            **fields,
        )
        model.model_json_schema(schema_generator=_ToolSchema)
    except Exception as exc:  # pydantic raises several types for unsupported annotations
        raise ToolDefinitionError(
            f"tool {tool_name!r}: parameters have no JSON Schema ({type(exc).__name__}: {exc})"
        ) from exc
    return model, names, takes_key


def parameters_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(schema_generator=_ToolSchema)
    schema.pop("title", None)
    schema.setdefault("properties", {})
    return schema


def format_validation_error(exc: ValidationError, *, whole: str = "(arguments)") -> list[str]:
    """One line per problem: `path: message` (`whole` for the whole
    object). Input values are left out: they may be personal data."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(part) for part in err["loc"]) or whole
        problems.append(f"{path}: {err['msg']}")
    return problems


class PythonTool(Tool):
    """A (sync or async) Python function with a schema derived from its signature.

    Sync functions run in a worker thread so a slow one never blocks the
    event loop the worker's workflows share; note that a thread cannot be
    stopped, so a sync tool past its timeout finishes in the background
    (its result is discarded).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = True,
        requires_approval: bool = False,
        timeout_s: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        tool_name = check_tool_name(name or str(getattr(fn, "__name__", "")))
        check_policy(tool_name, timeout_s=timeout_s, max_attempts=max_attempts)
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        self.model, self._names, self._takes_key = arguments_model(fn, tool_name)
        text = description or docstring_summary(inspect.getdoc(fn))
        if not text:
            raise ToolDefinitionError(
                f"tool {tool_name!r} has no description: give it a docstring or description="
            )
        self.info = ToolInfo(
            name=tool_name,
            description=text,
            parameters=parameters_schema(self.model),
            idempotent=idempotent,
            requires_approval=requires_approval,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
        )

    @property
    def accepts_idempotency_key(self) -> bool:
        return self._takes_key

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        try:
            parsed = self.model.model_validate(dict(arguments))
        except ValidationError as exc:
            raise InvalidToolArguments(self.name, format_validation_error(exc)) from None
        return {param: getattr(parsed, field) for field, param in self._names.items()}

    async def invoke(
        self,
        arguments: dict[str, Any],
        *,
        idempotency_key: str | None,
        http: httpx.AsyncClient,
    ) -> Any:
        kwargs = dict(arguments)
        if self._takes_key:
            kwargs[IDEMPOTENCY_KEY_PARAM] = idempotency_key
        if self.is_async:
            return await self.fn(**kwargs)
        # to_thread copies the context, so activity.info() works inside the tool.
        return await asyncio.to_thread(self.fn, **kwargs)

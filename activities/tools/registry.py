"""The tool registry: every tool a worker can run, by name.

Chains and agents name tools; this is the one place that turns a name into
something runnable and describable. It is built completely at worker start
(Python tools registered, the HTTP tools file validated), so a bad tool stops
the worker with a message naming it instead of failing a run halfway.

    registry = ToolRegistry()

    @registry.tool(idempotent=True, timeout_s=5)
    def weather(city: Annotated[str, Field(description="City name")]) -> dict:
        "Today's weather in a city."
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar, overload

from activities.tools.base import Tool
from activities.tools.errors import ToolDefinitionError
from activities.tools.http_tools import load_http_tools
from activities.tools.python_tools import PythonTool
from activities.tools.types import ToolInfo

F = TypeVar("F", bound=Callable[..., Any])


def refuse_taken_names(path: str | Path, tools: Iterable[Tool], *, taken: Container[str]) -> None:
    """ToolDefinitionError when the tools file at `path` defines a name
    already `taken` (by a builtin tool)."""
    clashes = sorted(t.name for t in tools if t.name in taken)
    if clashes:
        raise ToolDefinitionError(
            f"tools file {path} defines {', '.join(clashes)}, already registered "
            "(builtin tool names are taken)"
        )


class ToolRegistry:
    """Tools by name, Python and HTTP alike."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.add(tool)

    # -- adding tools -------------------------------------------------------

    def add(self, tool: Tool) -> Tool:
        if tool.name in self._tools:
            raise ToolDefinitionError(f"tool {tool.name!r} is registered twice")
        self._tools[tool.name] = tool
        return tool

    def add_function(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = True,
        requires_approval: bool = False,
        timeout_s: float = 30.0,
        max_attempts: int = 3,
    ) -> PythonTool:
        """Register a Python function; its schema comes from its signature."""
        tool = PythonTool(
            fn,
            name=name,
            description=description,
            idempotent=idempotent,
            requires_approval=requires_approval,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
        )
        self.add(tool)
        return tool

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = True,
        requires_approval: bool = False,
        timeout_s: float = 30.0,
        max_attempts: int = 3,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = True,
        requires_approval: bool = False,
        timeout_s: float = 30.0,
        max_attempts: int = 3,
    ) -> Any:
        """Decorator registering a function as a tool (`@registry.tool` or
        `@registry.tool(...)`); the function itself is returned unchanged."""

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.add_function(
                function,
                name=name,
                description=description,
                idempotent=idempotent,
                requires_approval=requires_approval,
                timeout_s=timeout_s,
                max_attempts=max_attempts,
            )
            return function

        return register(fn) if fn is not None else register

    def load_http_file(self, path: str | Path) -> list[Tool]:
        """Register every tool of an HTTP tools file (all or none)."""
        tools = load_http_tools(path)
        refuse_taken_names(path, tools, taken=self._tools)
        for tool in tools:
            self.add(tool)
        return list(tools)

    # -- reading ------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def get(self, name: str) -> Tool:
        """The tool; KeyError naming it and the known ones."""
        try:
            return self._tools[name]
        except KeyError:
            raise KeyError(
                f"unknown tool {name!r} (known: {', '.join(self.names) or 'none'})"
            ) from None

    def describe(self, name: str) -> ToolInfo:
        """What a workflow may know: schema and policy (no URL, no header)."""
        return self.get(name).info

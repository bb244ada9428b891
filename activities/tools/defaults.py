"""The tools a worker hosts by default: the builtin Python tools over the
sample order desk, plus the HTTP tools of the configured tools file."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from activities.tools.builtin import BUILTIN_TOOL_NAMES, OrderDesk, register_builtin_tools
from activities.tools.http_tools import load_http_tools
from activities.tools.registry import ToolRegistry, refuse_taken_names
from core.settings import project_path

DEFAULT_TOOLS_PATH = project_path("chains/tools/http.yaml")
"""The HTTP tools file shipped with the project (a source checkout or editable install)."""


class ToolsSettings(Protocol):
    """What `default_registry` reads from the worker's settings."""

    @property
    def tools_file(self) -> Path | None: ...


def _tools_file(settings: ToolsSettings | None) -> Path | None:
    """`settings.tools_file`; the shipped file without settings."""
    return DEFAULT_TOOLS_PATH if settings is None else settings.tools_file


def builtin_registry(desk: OrderDesk | None = None) -> ToolRegistry:
    """The builtin Python tools over the sample order desk (`desk`, or a
    fresh in-memory one)."""
    registry = ToolRegistry()
    register_builtin_tools(registry, desk if desk is not None else OrderDesk())
    return registry


def default_registry(
    settings: ToolsSettings | None = None, *, desk: OrderDesk | None = None
) -> ToolRegistry:
    """What a worker hosts: the builtin tools plus the HTTP tools of
    `settings.tools_file` (the shipped file without settings; none when the
    setting is None). A bad file raises ToolDefinitionError."""
    registry = builtin_registry(desk)
    tools_file = _tools_file(settings)
    if tools_file is not None:
        registry.load_http_file(tools_file)
    return registry


def tool_names(settings: ToolsSettings | None = None) -> list[str]:
    """The names `default_registry(settings)` registers, sorted, without
    building the order desk (no orders file, no database, no schemas): all a
    catalog checks chains against. The HTTP tools file is validated as
    `default_registry` does; a bad one raises ToolDefinitionError."""
    names = set(BUILTIN_TOOL_NAMES)
    tools_file = _tools_file(settings)
    if tools_file is not None:
        http_tools = load_http_tools(tools_file)
        refuse_taken_names(tools_file, http_tools, taken=names)
        names.update(tool.name for tool in http_tools)
    return sorted(names)

"""The tools a worker hosts by default: the builtin Python tools over the
sample order desk, plus the HTTP tools of the configured tools file."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from activities.tools.builtin import OrderDesk, register_builtin_tools
from activities.tools.registry import ToolRegistry

DEFAULT_TOOLS_PATH = Path(__file__).resolve().parents[2] / "chains" / "tools" / "http.yaml"
"""The HTTP tools file shipped with the project (a source checkout or editable install)."""


class ToolsSettings(Protocol):
    """What `default_registry` reads from the worker's settings."""

    @property
    def tools_file(self) -> Path | None: ...


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
    tools_file = DEFAULT_TOOLS_PATH if settings is None else settings.tools_file
    if tools_file is not None:
        registry.load_http_file(tools_file)
    return registry

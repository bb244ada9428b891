"""The default tools: listing their names (all a catalog needs) gives what
the worker's registry holds, without building the order desk."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from activities.tools import builtin
from activities.tools.defaults import DEFAULT_TOOLS_PATH, default_registry, tool_names
from activities.tools.errors import ToolDefinitionError


@pytest.mark.parametrize(
    "settings",
    [None, SimpleNamespace(tools_file=None), SimpleNamespace(tools_file=DEFAULT_TOOLS_PATH)],
    ids=["no settings", "no tools file", "shipped tools file"],
)
def test_tool_names_are_the_default_registrys(settings: SimpleNamespace | None) -> None:
    assert tool_names(settings) == default_registry(settings).names


def test_tool_names_do_not_build_the_order_desk(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_desk(*args: object, **kwargs: object) -> None:
        raise AssertionError("the order desk was built")

    monkeypatch.setattr(builtin.OrderDesk, "__init__", no_desk)
    assert {"lookup_order", "issue_refund", "carrier_status"} <= set(tool_names())


def test_tool_names_refuse_what_the_registry_refuses(tmp_path: Path) -> None:
    clash = tmp_path / "clash.yaml"
    clash.write_text("tools:\n  lookup_order: {description: d, url: 'http://h'}\n")
    settings = SimpleNamespace(tools_file=clash)
    with pytest.raises(ToolDefinitionError) as listed:
        tool_names(settings)
    with pytest.raises(ToolDefinitionError) as built:
        default_registry(settings)
    assert str(listed.value) == str(built.value)
    assert "lookup_order, already registered" in str(listed.value)

    with pytest.raises(ToolDefinitionError, match="cannot read tools file"):
        tool_names(SimpleNamespace(tools_file=tmp_path / "missing.yaml"))

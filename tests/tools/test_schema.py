"""Python tools: the JSON Schema comes from the signature, and the same model
checks the arguments before the function runs."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from activities.tools.errors import InvalidToolArguments, ToolDefinitionError
from activities.tools.python_tools import PythonTool, docstring_params, docstring_summary
from activities.tools.registry import ToolRegistry


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Line(BaseModel):
    """One line of an order."""

    sku: str
    quantity: int = Field(gt=0, description="How many")


class Address(BaseModel):
    city: str
    zip: str | None = None


def rich(
    name: Annotated[str, Field(description="Who is asking", max_length=20)],
    lines: list[Line],
    mode: Literal["fast", "careful"] = "fast",
    color: Color = Color.RED,
    ship_to: Address | None = None,
    limit: int = Field(10, ge=1, le=100, description="At most this many"),
    tags: dict[str, float] | None = None,
    note: str = "",
    untyped=None,  # type: ignore[no-untyped-def]
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Do a rich thing with many kinds of parameters.

    This second paragraph is detail for humans, not the model.

    Args:
        name: Ignored, the Annotated description wins.
        lines: The order lines to handle,
            across two lines of docstring.
        note: A free-text note.
    """
    return {"name": name}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return PythonTool(rich).info.parameters


def test_types_defaults_and_required(schema: dict[str, Any]) -> None:
    props = schema["properties"]
    assert schema["type"] == "object"
    assert schema["required"] == ["name", "lines"]
    assert schema["additionalProperties"] is False
    assert props["name"]["type"] == "string" and props["name"]["maxLength"] == 20
    assert props["lines"] == {
        "type": "array",
        "items": {"$ref": "#/$defs/Line"},
        "description": "The order lines to handle, across two lines of docstring.",
    }
    assert props["mode"] == {"type": "string", "enum": ["fast", "careful"], "default": "fast"}
    assert props["limit"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 10,
        "description": "At most this many",
    }
    assert props["tags"]["anyOf"] == [
        {"type": "object", "additionalProperties": {"type": "number"}},
        {"type": "null"},
    ]
    assert props["note"] == {"type": "string", "default": "", "description": "A free-text note."}
    assert props["untyped"] == {"default": None}


def test_descriptions_prefer_annotated_then_docstring(schema: dict[str, Any]) -> None:
    assert schema["properties"]["name"]["description"] == "Who is asking"
    assert "description" not in schema["properties"]["mode"]


def test_nested_models_and_enums_become_defs(schema: dict[str, Any]) -> None:
    defs = schema["$defs"]
    assert defs["Line"]["properties"]["quantity"] == {
        "type": "integer",
        "exclusiveMinimum": 0,
        "description": "How many",
    }
    assert defs["Line"]["required"] == ["sku", "quantity"]
    assert defs["Line"]["description"] == "One line of an order."
    assert defs["Color"]["enum"] == ["red", "green"]
    assert schema["properties"]["color"] == {"$ref": "#/$defs/Color", "default": "red"}
    assert schema["properties"]["ship_to"]["anyOf"][0] == {"$ref": "#/$defs/Address"}


def test_no_titles_and_no_idempotency_key(schema: dict[str, Any]) -> None:
    assert "title" not in schema
    for prop in schema["properties"].values():
        assert "title" not in prop
    assert "idempotency_key" not in schema["properties"]
    assert PythonTool(rich).accepts_idempotency_key


def test_description_is_the_docstring_first_paragraph() -> None:
    tool = PythonTool(rich, idempotent=False, requires_approval=True, timeout_s=3, max_attempts=5)
    info = tool.info
    assert info.name == "rich"
    assert info.description == "Do a rich thing with many kinds of parameters."
    assert (info.idempotent, info.requires_approval, info.timeout_s, info.max_attempts) == (
        False,
        True,
        3,
        5,
    )
    assert PythonTool(rich, name="other", description="Given.").info.description == "Given."


def test_docstring_parsing() -> None:
    doc = """Summary line
    continues here.

    :param a: first
        more of a
    :param int b: second
    Returns:
        nothing
    """
    assert docstring_summary(doc) == "Summary line continues here."
    assert docstring_params(doc) == {"a": "first more of a", "b": "second"}
    assert docstring_params("Only a summary.") == {}


def test_validation_converts_and_reports_every_problem_with_its_path() -> None:
    tool = PythonTool(rich)
    args = tool.validate(
        {"name": "Ann", "lines": [{"sku": "A", "quantity": "2"}], "color": "green"}
    )
    assert args["lines"] == [Line(sku="A", quantity=2)]
    assert args["color"] is Color.GREEN
    assert args["limit"] == 10 and args["mode"] == "fast"
    assert "idempotency_key" not in args

    with pytest.raises(InvalidToolArguments) as caught:
        tool.validate(
            {
                "name": "x" * 30,
                "lines": [{"sku": "A", "quantity": 0}, {"quantity": 1}],
                "mode": "reckless",
                "limit": 0,
                "surprise": 1,
            }
        )
    problems = caught.value.problems
    assert problems == [
        "name: String should have at most 20 characters",
        "lines.0.quantity: Input should be greater than 0",
        "lines.1.sku: Field required",
        "mode: Input should be 'fast' or 'careful'",
        "limit: Input should be greater than or equal to 1",
        "surprise: Extra inputs are not permitted",
    ]
    assert "xxxxxxxxxx" not in str(caught.value)  # input values stay out of messages
    assert str(caught.value).startswith("invalid arguments for tool 'rich': name:")


def test_parameters_may_shadow_basemodel_attributes() -> None:
    def shadow(json: str, schema: int, model_config: bool = False) -> str:
        """Names pydantic models reserve."""
        return json

    tool = PythonTool(shadow)
    assert set(tool.info.parameters["properties"]) == {"json", "schema", "model_config"}
    assert tool.validate({"json": "a", "schema": 2}) == {
        "json": "a",
        "schema": 2,
        "model_config": False,
    }


def test_decorator_with_and_without_parentheses_returns_the_function() -> None:
    registry = ToolRegistry()

    @registry.tool
    def plain(x: int) -> int:
        """Plain."""
        return x

    @registry.tool(name="renamed", idempotent=False, timeout_s=2)
    async def fancy(y: str) -> str:
        """Fancy."""
        return y

    assert plain(3) == 3  # still the function
    assert registry.names == ["plain", "renamed"]
    assert registry.describe("renamed").idempotent is False
    assert registry.describe("renamed").timeout_s == 2
    assert registry.get("renamed").is_async  # type: ignore[attr-defined]
    assert not registry.get("plain").is_async  # type: ignore[attr-defined]


def _star(*args: int) -> None:
    """Star."""


def _kw(**kwargs: int) -> None:
    """Kw."""


def _posonly(a: int, /) -> None:
    """Positional only."""


def _nodoc(a: int) -> None:
    pass


def _unschematic(a: object) -> None:
    """A parameter without a JSON Schema."""


class _Opaque:
    pass


def _opaque(a: _Opaque) -> None:
    """An arbitrary class."""


@pytest.mark.parametrize(
    ("fn", "kwargs", "phrase"),
    [
        (_star, {}, "*args and **kwargs have no schema"),
        (_kw, {}, "*args and **kwargs have no schema"),
        (_posonly, {}, "positional-only"),
        (_nodoc, {}, "has no description"),
        (_opaque, {}, "parameters have no JSON Schema"),
        (_nodoc, {"name": "bad name!", "description": "x"}, "must be 1-64 letters"),
        (_nodoc, {"description": "x", "timeout_s": 0}, "timeout_s must be > 0"),
        (_nodoc, {"description": "x", "max_attempts": 0}, "max_attempts must be >= 1"),
    ],
)
def test_unsupported_definitions_are_refused(fn: Any, kwargs: dict[str, Any], phrase: str) -> None:
    with pytest.raises(ToolDefinitionError, match=r"^tool( name)? '") as caught:
        PythonTool(fn, **kwargs)
    assert phrase in str(caught.value)


def test_object_annotation_is_any_json() -> None:
    assert PythonTool(_unschematic).info.parameters["properties"]["a"] == {}


def test_a_name_is_registered_once() -> None:
    registry = ToolRegistry()
    registry.add_function(_nodoc, description="x")
    with pytest.raises(ToolDefinitionError, match="'_nodoc' is registered twice"):
        registry.add_function(_nodoc, description="y")
    with pytest.raises(KeyError, match="unknown tool 'nope' \\(known: _nodoc\\)"):
        registry.get("nope")

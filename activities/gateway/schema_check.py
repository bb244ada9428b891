"""Structured output: parse a model's reply as JSON and check it against a schema.

An invalid reply is an answer, not an error: `call_model` returns the
validation messages (with JSON paths) so the workflow can re-ask with the
errors fed back, or escalate to a stronger model. Only a schema that is itself
invalid is an error, and it is raised before any model is paid to answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from core.json_formats import FORMAT_CHECKER

MAX_SCHEMA_ERRORS = 20
MAX_ERROR_CHARS = 300
"""Validation messages quote the instance; keep history and re-ask prompts small."""

_FENCED = re.compile(r"```[ \t]*(?:json|JSON|json5)?[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)


class InvalidSchemaError(ValueError):
    """The output schema given by a chain is not a valid JSON Schema."""


def check_schema(schema: dict[str, Any]) -> None:
    """Raise InvalidSchemaError when `schema` is not valid Draft 2020-12."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidSchemaError(
            f"invalid JSON schema at {exc.json_path}: {_short(exc.message)}"
        ) from None


def strip_fences(text: str) -> str:
    """The JSON inside a ``` fenced block (models add them despite being told
    not to), or the text itself, stripped."""
    match = _FENCED.search(text)
    return (match.group(1) if match else text).strip()


def _short(message: str) -> str:
    return message if len(message) <= MAX_ERROR_CHARS else message[: MAX_ERROR_CHARS - 1] + "…"


def check_json_output(text: str, schema: dict[str, Any]) -> tuple[Any | None, list[str] | None]:
    """(parsed value or None, None when valid else the reasons).

    Reasons read like `$.items[0].price: 'abc' is not of type 'number'` so a
    re-ask prompt can quote them to the model.
    """
    candidate = strip_fences(text)
    try:
        parsed = json.loads(candidate)
    except ValueError as exc:
        return None, [f"$: the reply is not valid JSON ({exc})"]
    validator = Draft202012Validator(schema, format_checker=FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(parsed), key=lambda e: (e.json_path, e.message))
    if not errors:
        return parsed, None
    messages = [_short(f"{e.json_path}: {e.message}") for e in errors[:MAX_SCHEMA_ERRORS]]
    if len(errors) > MAX_SCHEMA_ERRORS:
        messages.append(f"... and {len(errors) - MAX_SCHEMA_ERRORS} more errors")
    return parsed, messages

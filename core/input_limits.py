"""What a request may carry: the one place the API's input limits live.

A value that Chorus cannot store, hash or hand to Temporal is refused where it
enters, with a 422 naming its path, rather than failing deep inside (a
`RecursionError` while parsing, a `UnicodeEncodeError` while hashing, a
PostgreSQL error on a NUL, a workflow start Temporal refuses as too large).
Every JSON document a request brings (a body, a run input, a chain spec, a
knowledge document) passes `check_value`; YAML specs pass it too, after a
loader that bounds nesting and alias expansion while it composes
(`workflows.spec_parsing`).

Refused everywhere:

- nesting deeper than `max_depth` (JSON over ~1,000 levels would otherwise
  end in a `RecursionError` in the parser, and 500 levels already break the
  workflow's data converter);
- strings longer than `max_string_chars` (`max_document_chars` for a knowledge
  document's text), strings with a NUL (PostgreSQL text cannot hold one) or a
  lone surrogate (not encodable as UTF-8: it cannot be hashed, stored or sent);
- integers outside the signed 64-bit range, and non-finite numbers (`NaN`,
  `Infinity`, `1e999`), which JSON cannot represent.

Documents are bounded too: a run input by `max_input_bytes` and a chain spec
by `max_spec_bytes` (as compact JSON, after YAML alias expansion), so that a
run's spec and input always fit a workflow start.

Operators tune the limits with one setting, `CHORUS_INPUT_LIMITS`, a JSON
object of the fields of `InputLimits` (e.g. `{"max_string_chars": 100000}`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.problems import Unprocessable

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_VERSION = 2**31 - 1
"""The largest chain version number: versions live in 32-bit INTEGER columns."""


class InputLimits(BaseModel):
    """The limits, one field each (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_depth: int = Field(default=64, ge=8, le=200)
    """Levels of nested arrays and objects in any document."""
    max_string_chars: int = Field(default=256 * 1024, ge=64)
    """Characters of any one string (a key, an input field, a prompt); at
    least 64, which `check_value` relies on to skip short ASCII strings."""
    max_document_chars: int = Field(default=2_000_000, ge=64)
    """Characters of a knowledge document's text (its own bound: documents are long)."""
    max_input_bytes: int = Field(default=256 * 1024, ge=1024)
    """A run input, as compact JSON."""
    max_spec_bytes: int = Field(default=256 * 1024, ge=1024)
    """A chain spec, as compact JSON after YAML alias expansion."""
    max_start_bytes: int = Field(default=1536 * 1024, ge=64 * 1024, le=2 * 1024 * 1024)
    """A workflow start (spec and input as Temporal encodes them); Temporal
    refuses payloads over 2 MB."""


DEFAULT_LIMITS = InputLimits()


class InputProblem(Unprocessable):
    """A value over a limit, or one that cannot be carried (422).

    `path` names where in the document (`body.input.items[3]`), `code` what is
    wrong; the details are one `{path, message, type, limit?}` entry, the
    shape of every 422's details.
    """

    code = "invalid_value"

    def __init__(self, code: str, path: str, problem: str, *, limit: int | None = None) -> None:
        self.path = path
        self.problem = problem
        self.limit = limit
        entry: dict[str, Any] = {"path": path or "<document>", "message": problem, "type": code}
        if limit is not None:
            entry["limit"] = limit
        super().__init__(f"{path}: {problem}" if path else problem, details=[entry], code=code)


# -- paths -------------------------------------------------------------------------------

_Path = tuple[Any, str | int] | None
"""A path as a linked list (parent, segment): built for every value walked,
formatted only when one is refused."""


def format_path(path: _Path, root: str) -> str:
    segments: list[str | int] = []
    while path is not None:
        path, segment = path
        segments.append(segment)
    text = root
    for segment in reversed(segments):
        if isinstance(segment, int):
            text = f"{text}[{segment}]"
        else:
            key = printable(segment, 60)
            text = f"{text}.{key}" if text else key
    return text if len(text) <= 240 else f"{text[:120]}…{text[-100:]}"


def printable(text: str, limit: int = 60) -> str:
    """`text` safe to put in an answer: no NUL, no lone surrogate, at most
    `limit` characters (an error must never be the thing that fails to encode)."""
    cut = text[:limit]
    safe = cut.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return safe + ("…" if len(text) > limit else "")


# -- values ------------------------------------------------------------------------------


def loads_json(
    data: str | bytes,
    limits: InputLimits = DEFAULT_LIMITS,
    *,
    root: str = "body",
    max_string_chars: int | None = None,
    max_bytes: int | None = None,
) -> Any:
    """Parse a JSON document and `check_value` it; InputProblem when it is not
    JSON or breaks a limit (never RecursionError, never a huge int conversion)."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise InputProblem(
            "nesting_too_deep",
            root,
            f"nested more than {limits.max_depth} levels deep",
            limit=limits.max_depth,
        ) from None
    except json.JSONDecodeError as exc:
        raise InputProblem(
            "invalid_json",
            root,
            f"invalid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
        ) from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            # Python refuses (at once) to convert more than 4,300 digits.
            raise _out_of_range(None, root) from None
        # Bytes that are not UTF-8, among others.
        raise InputProblem("invalid_json", root, f"invalid JSON: {exc}") from None
    check_value(value, limits, root=root, max_string_chars=max_string_chars, max_bytes=max_bytes)
    return value


def check_value(
    value: Any,
    limits: InputLimits = DEFAULT_LIMITS,
    *,
    root: str = "",
    max_string_chars: int | None = None,
    max_bytes: int | None = None,
) -> None:
    """Raise InputProblem for a value that breaks a limit; with `max_bytes`,
    also when the whole is larger as compact JSON.

    Iterative, so any depth is walked safely; a value reached twice (a YAML
    alias) is walked twice, as it would be serialised twice. Scalars are
    checked where they stand and paths built only for a refusal: the walk
    costs about what `json.loads` of the same document does.
    """
    max_chars = max_string_chars or limits.max_string_chars
    max_depth = limits.max_depth
    if not _is_container(value):
        _check_scalar(value, None, root, max_chars)
    stack: list[tuple[Any, _Path, int]] = [(value, None, 0)] if _is_container(value) else []
    while stack:
        item, path, depth = stack.pop()
        if depth >= max_depth:
            raise InputProblem(
                "nesting_too_deep",
                format_path(path, root),
                f"nested more than {max_depth} levels deep",
                limit=max_depth,
            )
        mapping = isinstance(item, dict)
        pairs: Iterable[tuple[Any, Any]] = item.items() if mapping else enumerate(item)
        for segment, child in pairs:
            if mapping:
                if type(segment) is not str:
                    segment = str(segment)  # a YAML mapping's non-string key
                elif len(segment) > 64 or not segment.isascii() or "\x00" in segment:
                    _check_string(segment, path, root, max_chars, key=True)
            kind = type(child)
            if kind is str:
                # Short ASCII text without NUL (most strings) has nothing to check.
                if len(child) > 64 or not child.isascii() or "\x00" in child:
                    _check_string(child, (path, segment), root, max_chars)
            elif kind is int:
                if not INT64_MIN <= child <= INT64_MAX:
                    raise _out_of_range((path, segment), root)
            elif kind is float:
                if not math.isfinite(child):
                    _check_scalar(child, (path, segment), root, max_chars)
            elif kind is bool or child is None:
                continue
            elif kind is dict or kind is list or isinstance(child, _CONTAINERS):
                stack.append((child, (path, segment), depth + 1))
            else:
                _check_scalar(child, (path, segment), root, max_chars)
    if max_bytes is not None:
        size = json_size(value)
        if size > max_bytes:
            raise InputProblem(
                "document_too_large",
                root,
                f"is {size} bytes as JSON; the limit is {max_bytes}",
                limit=max_bytes,
            )


_CONTAINERS = (dict, list, tuple, set, frozenset)


def _is_container(value: Any) -> bool:
    return isinstance(value, _CONTAINERS)


def _check_scalar(item: Any, path: _Path, root: str, max_chars: int) -> None:
    if isinstance(item, str):
        _check_string(item, path, root, max_chars)
    elif isinstance(item, bool) or item is None:
        return
    elif isinstance(item, int):
        if not INT64_MIN <= item <= INT64_MAX:
            raise _out_of_range(path, root)
    elif isinstance(item, float):
        if not math.isfinite(item):
            raise InputProblem(
                "non_finite_number",
                format_path(path, root),
                f"{_number_name(item)} is not a finite number (JSON has no NaN or Infinity)",
            )
    elif isinstance(item, bytes | bytearray):
        raise InputProblem(
            "invalid_value", format_path(path, root), "binary data is not a JSON value"
        )


def _check_string(text: str, path: _Path, root: str, max_chars: int, *, key: bool = False) -> None:
    what = "key" if key else "string"
    where = (path, text) if key else path
    if len(text) > max_chars:
        raise InputProblem(
            "string_too_long",
            format_path(where, root),
            f"{what} of {len(text)} characters; the limit is {max_chars}",
            limit=max_chars,
        )
    if "\x00" in text:
        raise InputProblem(
            "invalid_character",
            format_path(where, root),
            f"{what} contains a NUL character (\\u0000) at position {text.index(chr(0))}",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputProblem(
            "invalid_character",
            format_path(where, root),
            f"{what} contains a lone surrogate (\\u{ord(text[exc.start]):04x}) at position "
            f"{exc.start}: it is not valid Unicode and cannot be encoded as UTF-8",
        ) from None


def _number_name(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


def _out_of_range(path: _Path, root: str) -> InputProblem:
    return InputProblem(
        "integer_out_of_range",
        format_path(path, root),
        f"integer outside the 64-bit range [{INT64_MIN}, {INT64_MAX}]",
    )


def check_text(text: str, *, path: str, max_chars: int) -> None:
    """`check_value` for one string (a raw text body, a query parameter)."""
    _check_string(text, None, path, max_chars)


def json_size(value: Any) -> int:
    """Bytes of `value` as compact UTF-8 JSON (the shape hashes and payloads take).
    The value must have passed `check_value` (finite, bounded depth)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text.encode("utf-8", "surrogatepass"))
